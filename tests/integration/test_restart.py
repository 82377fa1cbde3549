"""Restarting with the same data dir (and metadata URL) serves the same data, on both backends.

A small cluster is started with the embedded SQLite metadata store, or with ``--metadata
postgresql://...`` against a private PostgreSQL server (tests/pgserver.py); the sample is
loaded through ``qserv load``; a few queries are answered, compared with one DuckDB; every
process is stopped and started again on the same data dir, ports and metadata URL; the same
queries give the same answers, and the restarted cluster accepts a new load.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.cluster import LiveCluster, running_cluster
from tests.pgserver import PostgresServer, required_postgres

OBJECTS = 3_000
QUERIES = [
    "SELECT COUNT(*) FROM Object",
    "SELECT COUNT(*), SUM(g_psfFlux), MIN(ra), MAX(decl) FROM Object",
    "SELECT extendedness, COUNT(*) FROM Object GROUP BY extendedness ORDER BY extendedness",
    "SELECT objectId, ra, decl FROM Object WHERE objectId IN (1003, 1006, 4000, 9001) ORDER BY objectId",
    "SELECT o.objectId, COUNT(*) FROM Object o JOIN Source s ON o.objectId = s.objectId "
    "WHERE o.objectId IN (1003, 1006, 1009) GROUP BY o.objectId ORDER BY o.objectId",
    "SELECT f.filterName, COUNT(*) FROM Source s JOIN Filter f ON s.filterId = f.filterId "
    "GROUP BY f.filterName ORDER BY f.filterName",
    "SELECT objectId FROM Object WHERE qserv_areaspec_circle(10, 5, 20) ORDER BY objectId",
]
# the reference's spelling of the areaspec restrictor
REFERENCE = {
    QUERIES[
        -1
    ]: "SELECT objectId FROM Object WHERE scisql_s2PtInCircle(ra, decl, 10, 5, 20) = 1 ORDER BY objectId"
}


@pytest.fixture(scope="module")
def pg_server() -> Iterator[PostgresServer]:
    """A private PostgreSQL server (skipped only when QSERV_SKIP_POSTGRES=1 says so)."""
    yield from required_postgres("the PostgreSQL metadata cluster test")


def _answers(tc: LiveCluster) -> list[list[tuple]]:
    with tc.connect() as conn:
        return [conn.execute(sql).fetchall() for sql in QUERIES]


def _same(a: list[tuple], b: list[tuple]) -> bool:
    if len(a) != len(b):
        return False
    for ra, rb in zip(a, b, strict=True):
        for x, y in zip(ra, rb, strict=True):
            if isinstance(x, float) and isinstance(y, float):
                if not math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9):
                    return False
            elif x != y:
                return False
    return True


def _check_restart(tc: LiveCluster, tmp: Path) -> None:
    ref = tc.reference()
    want = [ref.execute(REFERENCE.get(sql, sql)).fetchall() for sql in QUERIES]
    before = _answers(tc)
    for sql, got, expected in zip(QUERIES, before, want, strict=True):
        assert _same(got, expected), f"{sql}\n got: {got[:5]}\nwant: {expected[:5]}"
    assert before[0] == [(OBJECTS,)]

    tc.restart()
    after = _answers(tc)
    for sql, got, expected in zip(QUERIES, after, before, strict=True):
        assert _same(got, expected), f"after restart: {sql}\n got: {got[:5]}\nwant: {expected[:5]}"
    with tc.connect() as conn:
        assert conn.execute("EXPLAIN SELECT * FROM Object WHERE objectId = 1006").fetchall()

    # the restarted cluster keeps its metadata consistent: a new load commits and is served
    extra = tmp / "band.parquet"
    pq.write_table(pa.table({"band": pa.array(["g", "r"]), "lam": pa.array([475.0, 620.0])}), extra)
    tc.load("--database", "sky", "--table", "Band", "--regular", "--no-progress", str(extra))
    with tc.connect() as conn:
        assert conn.execute("SELECT band FROM Band ORDER BY lam").fetchall() == [("g",), ("r",)]
        assert conn.execute("SELECT COUNT(*) FROM Object").fetchone() == (OBJECTS,)
    # and rerunning an old load after the restart finds its committed transaction: no duplicates
    tc.load("--database", "sky", "--table", "Filter", "--regular", "--no-progress", str(tc.sample["Filter"]))
    with tc.connect() as conn:
        assert conn.execute("SELECT COUNT(*) FROM Filter").fetchone() == (6,)


def test_restart_on_sqlite_serves_the_same_data(tmp_path: Path) -> None:
    with running_cluster(tmp_path, workers=2, replicas=2, objects=OBJECTS) as tc:
        _check_restart(tc, tmp_path)
        assert (tc.spec.data_dir / "metadata.sqlite3").exists()


def test_restart_on_postgresql_metadata_serves_the_same_data(
    tmp_path: Path, pg_server: PostgresServer
) -> None:
    url = pg_server.create_database("qserv_restart")
    with running_cluster(tmp_path, workers=2, replicas=2, objects=OBJECTS, metadata_url=url) as tc:
        _check_restart(tc, tmp_path)
        # the metadata really lives in PostgreSQL, not in an embedded file
        assert not (tc.spec.data_dir / "metadata.sqlite3").exists()
        with psycopg.connect(url) as pg:
            tables = {r[0] for r in pg.execute("SELECT name FROM tables").fetchall()}
            workers = pg.execute("SELECT COUNT(*) FROM workers").fetchone()
        assert {"Object", "Source", "Filter", "Band"} <= tables
        assert workers == (2,)
