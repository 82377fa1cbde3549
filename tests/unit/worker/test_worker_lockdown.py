"""Lockdown: user SQL can read tables and nothing else; each refusal is clear and harmless."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from worker_helpers import collect, objects

from qserv.errors import AccessDenied, QservError
from qserv.rpc.client import WorkerClient
from worker.lockdown import check_select, open_database


@pytest.fixture
def loaded(client: WorkerClient, object_table: str, txn: int) -> str:
    client.ingest([(txn, object_table, "Object", False, objects(100))])
    client.commit(txn)
    return object_table


def refusals(db: str, tmp: Path) -> list[tuple[str, str]]:
    """(sql, message fragment): each must fail with AccessDenied (42501)."""
    t = f'"{db}"."Object"'
    return [
        (f"INSERT INTO {t} SELECT * FROM {t}", "only SELECT"),
        (f"DELETE FROM {t}", "only SELECT"),
        (f"UPDATE {t} SET ra = 0", "only SELECT"),
        (f"DROP TABLE {t}", "only SELECT"),
        (f"CREATE TABLE {db}.x AS SELECT 1", "only SELECT"),
        (f"SELECT 1; DROP TABLE {t}", "exactly one statement"),
        (f"COPY {t} TO '{tmp}/out.csv'", "only SELECT"),
        ("SELECT * FROM read_csv('/etc/passwd')", "/etc/passwd"),
        ("SELECT * FROM read_text('/etc/hostname')", "/etc/hostname"),
        ("SELECT * FROM glob('/etc/*')", "file system operations are disabled"),
        ("SELECT * FROM 'https://example.com/x.parquet'", "disabled"),
        (f"ATTACH '{tmp}/other.duckdb' AS other", "only SELECT"),
        ("INSTALL httpfs", "only SELECT"),
        ("LOAD httpfs", "only SELECT"),
        ("SET enable_external_access = true", "only SELECT"),
        ("PRAGMA threads = 8", "only SELECT"),
        ("CALL duckdb_secrets()", "only SELECT"),
        ("EXPLAIN SELECT 1", "only SELECT"),
        ("SELECT * FROM _staging._tables", "uncommitted"),
        ('SELECT count(*) FROM (FROM "_STAGING"."_tables")', "uncommitted"),
    ]


def test_refused_over_grpc_and_data_unchanged(client: WorkerClient, loaded: str, tmp_path: Path) -> None:
    before = collect(client, f'SELECT * FROM "{loaded}"."Object" ORDER BY objectId')
    for sql, fragment in refusals(loaded, tmp_path):
        with pytest.raises(QservError) as info:
            collect(client, sql)
        err = info.value
        assert isinstance(err, AccessDenied), (sql, err)
        assert err.sqlstate == "42501" and fragment in err.message, (sql, err.message)
    after = collect(client, f'SELECT * FROM "{loaded}"."Object" ORDER BY objectId')
    assert after.equals(before)
    assert list(tmp_path.iterdir()) == []  # nothing written, nothing attached


def test_connection_itself_is_locked(tmp_path: Path) -> None:
    """Below the statement check, the DuckDB configuration refuses the same accesses."""
    conn = open_database(tmp_path / "w", threads=1, memory_limit="128MB")
    try:
        conn.execute("CREATE TABLE t AS SELECT 1 AS a")
        cases = [
            ("SELECT * FROM read_csv('/etc/passwd')", duckdb.PermissionException),
            (f"COPY t TO '{tmp_path}/out.csv'", duckdb.PermissionException),
            (f"ATTACH '{tmp_path}/x.duckdb'", duckdb.PermissionException),
            ("INSTALL httpfs", duckdb.PermissionException),
            ("LOAD httpfs", duckdb.PermissionException),
            ("SET enable_external_access = true", duckdb.InvalidInputException),
            ("SET threads = 4", duckdb.InvalidInputException),
            ("RESET lock_configuration", duckdb.InvalidInputException),
        ]
        for sql, error in cases:
            with pytest.raises(error):
                conn.execute(sql)
        # the worker's own mechanisms still work: Arrow via register, DDL, checkpoint
        cur = conn.cursor()
        cur.register("rows", pa.table({"a": [2, 3]}))
        cur.execute("INSERT INTO t SELECT * FROM rows")
        cur.close()
        conn.execute("CHECKPOINT")
        assert conn.execute("SELECT sum(a) FROM t").fetchone() == (6,)
        # SQL cannot reach Python variables (replacement scans are off)
        local_table = pa.table({"a": [1]})  # noqa: F841
        with pytest.raises(duckdb.CatalogException):
            conn.execute("SELECT * FROM local_table")
        # a read-only transaction refuses writes even if a write got past the statement check
        cur = conn.cursor()
        cur.execute("BEGIN TRANSACTION READ ONLY")
        with pytest.raises(duckdb.TransactionException, match="read-only"):
            cur.execute("INSERT INTO t VALUES (9)")
        cur.close()
    finally:
        conn.close()


def test_check_select_accepts_reads() -> None:
    conn = duckdb.connect()
    for sql in ["SELECT 1", "FROM range(3)", "WITH a AS (SELECT 1) SELECT * FROM a", "VALUES (1)"]:
        check_select(conn, sql)
    with pytest.raises(AccessDenied):
        check_select(conn, "")
