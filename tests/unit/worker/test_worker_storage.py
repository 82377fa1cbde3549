"""Tables and transactional ingest through a real worker: staging, commit, abort, restart."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from worker_helpers import (
    FILTER_COLUMNS,
    OBJECT_COLUMNS,
    SOURCE_COLUMNS,
    collect,
    objects,
    worker_config,
)

from qserv.catalog import Column, TableKind
from qserv.errors import DuplicateObject, InvalidParameter, UndefinedTable
from qserv.rpc.client import ChunkStat, WorkerClient
from worker.service import start


def count(client: WorkerClient, db: str, table: str) -> int:
    return collect(client, f'SELECT count(*) AS n FROM "{db}"."{table}"').column("n")[0].as_py()


def test_create_table_is_idempotent_and_checks_columns(client: WorkerClient, db: str) -> None:
    client.create_table(db, "Object", TableKind.DIRECTOR, OBJECT_COLUMNS)
    client.create_table(db, "Object", TableKind.DIRECTOR, OBJECT_COLUMNS)  # same: no-op
    # INT and INTEGER are one type once DuckDB normalises it
    client.create_table(db, "Filter", TableKind.REGULAR, (Column("filterId", "INT"), Column("name", "TEXT")))
    client.create_table(db, "Filter", TableKind.REGULAR, FILTER_COLUMNS)
    with pytest.raises(DuplicateObject, match="exists with columns"):
        client.create_table(db, "Object", TableKind.DIRECTOR, OBJECT_COLUMNS[:2])
    with pytest.raises(DuplicateObject):  # a child has no _subchunk: different stored columns
        client.create_table(db, "Object", TableKind.CHILD, OBJECT_COLUMNS)
    with pytest.raises(InvalidParameter, match="reserved"):
        client.create_table(db, "Bad", TableKind.REGULAR, (Column("_chunk", "INTEGER"),))
    with pytest.raises(InvalidParameter, match="unknown type"):
        client.create_table(db, "Bad", TableKind.REGULAR, (Column("x", "NOSUCHTYPE"),))
    schema = collect(client, f'SELECT * FROM "{db}"."Object" LIMIT 0').schema
    assert schema.names == ["objectId", "ra", "decl", "_chunk", "_subchunk"]
    overlap = collect(client, f'SELECT * FROM "{db}"."Object__overlap" LIMIT 0').schema
    assert overlap.names == schema.names


def test_transaction_is_invisible_until_commit(client: WorkerClient, object_table: str, txn: int) -> None:
    db = object_table
    client.create_table(db, "Source", TableKind.CHILD, SOURCE_COLUMNS)
    client.create_table(db, "Filter", TableKind.REGULAR, FILTER_COLUMNS)
    sources = pa.table(
        {"sourceId": [1, 2, 3], "objectId": [0, 0, 1], "flux": [1.0, 2.0, 3.0], "_chunk": [0, 0, 1]},
        schema=pa.schema(
            [
                ("sourceId", pa.int64()),
                ("objectId", pa.int64()),
                ("flux", pa.float64()),
                ("_chunk", pa.int32()),
            ]
        ),
    )
    filters = pa.table({"name": ["u", "g"], "filterId": [1, 2]})  # column order does not matter
    staged = client.ingest(
        [
            (txn, db, "Object", False, objects(1000)),
            (txn, db, "Object", True, objects(10, start=5000)),
            (txn, db, "Source", False, sources),
            (txn, db, "Filter", False, filters),
        ]
    )
    assert staged == 1000 + 10 + 3 + 2
    assert count(client, db, "Object") == 0 and count(client, db, "Filter") == 0
    client.commit(txn)
    assert (count(client, db, "Object"), count(client, db, "Object__overlap")) == (1000, 10)
    assert (count(client, db, "Source"), count(client, db, "Filter")) == (3, 2)
    client.commit(txn)  # idempotent
    assert count(client, db, "Object") == 1000
    stats = client.chunk_stats(db)
    assert ChunkStat("Object", 3, 100) in stats
    assert ChunkStat("Object__overlap", 0, 1) in stats
    assert ChunkStat("Source", 0, 2) in stats
    assert ChunkStat("Filter", -1, 2) in stats
    assert sum(s.rows for s in stats if s.table == "Object") == 1000
    assert client.chunk_stats("NoSuchDatabase") == []


def test_abort_drops_staged_rows(client: WorkerClient, object_table: str, txn: int) -> None:
    db = object_table
    client.ingest([(txn, db, "Object", False, objects(50))])
    client.abort(txn)
    client.abort(txn)  # idempotent
    client.commit(txn)  # nothing left to publish
    assert count(client, db, "Object") == 0


def test_streams_of_one_transaction_accumulate(client: WorkerClient, object_table: str, txn: int) -> None:
    db = object_table
    assert client.ingest([(txn, db, "Object", False, objects(100))]) == 100
    assert client.ingest([(txn, db, "Object", False, objects(100, start=100))]) == 100
    client.commit(txn)
    assert count(client, db, "Object") == 200


def test_large_ingest_is_split_into_messages_and_ordered_by_chunk(
    client: WorkerClient, object_table: str, txn: int
) -> None:
    db = object_table
    n = 300_000  # ~12 MB: several 4 MB messages in one stream
    assert client.ingest([(txn, db, "Object", False, objects(n, chunks=500))]) == n
    client.commit(txn)
    result = collect(client, f'SELECT count(*) AS n, count(DISTINCT _chunk) AS c FROM "{db}"."Object"')
    assert result.to_pylist() == [{"n": n, "c": 500}]


def test_bad_ingest_is_refused_and_stages_nothing(client: WorkerClient, object_table: str, txn: int) -> None:
    db = object_table
    good = objects(10)
    with pytest.raises(InvalidParameter, match=r"missing \['_subchunk'\]"):
        client.ingest(
            [(txn, db, "Object", False, good), (txn, db, "Object", False, good.drop(["_subchunk"]))]
        )
    with pytest.raises(InvalidParameter, match=r"unexpected \['extra'\]"):
        client.ingest([(txn, db, "Object", False, good.append_column("extra", pa.array([1] * 10)))])
    with pytest.raises(UndefinedTable, match="does not exist"):
        client.ingest([(txn, db, "Nope", False, good)])
    bad_type = good.set_column(1, "ra", pa.array(["x"] * 10))
    with pytest.raises(Exception, match="column types|Could not convert") as info:
        client.ingest([(txn, db, "Object", False, bad_type)])
    assert getattr(info.value, "sqlstate", None) == "22000"
    # the failed streams were all-or-nothing: the good rows of the first one are gone too
    client.commit(txn)
    assert count(client, db, "Object") == 0


def test_restart_keeps_data_and_finishes_a_commit(tmp_path: Path, txn: int) -> None:
    config = worker_config(tmp_path / "w")
    first = start(config)
    try:
        c = WorkerClient(first.address)
        c.create_table("Sky", "Object", TableKind.DIRECTOR, OBJECT_COLUMNS)
        c.ingest([(txn, "Sky", "Object", False, objects(100))])
        c.commit(txn)
        c.ingest([(txn + 1, "Sky", "Object", False, objects(30, start=100))])
        c.close()
    finally:
        first.stop()
    second = start(config)
    try:
        c = WorkerClient(second.address)
        assert count(c, "Sky", "Object") == 100
        c.commit(txn)  # already done: no-op
        c.commit(txn + 1)  # staged before the restart: published now
        assert count(c, "Sky", "Object") == 130
        assert collect(c, "SELECT scisql_angSep(0, 0, 1, 0) AS d").column("d")[0].as_py() == pytest.approx(
            1.0
        )
        c.close()
    finally:
        second.stop()
