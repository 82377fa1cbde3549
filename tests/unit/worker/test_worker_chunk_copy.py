"""Chunk copy between two real workers over gRPC: export, pull, install, drop, checksums."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from worker_helpers import FILTER_COLUMNS, OBJECT_COLUMNS, SOURCE_COLUMNS, collect, objects, worker_config

from qserv.catalog import TableKind
from qserv.errors import DataError, UndefinedTable
from qserv.rpc.client import ChunkPart, TableChecksum, WorkerClient
from worker import chunk_copy, table_copy
from worker.service import RunningWorker, start
from worker.storage import Storage


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[RunningWorker, WorkerClient, RunningWorker, WorkerClient]]:
    a = start(worker_config(tmp_path / "a"))
    b = start(worker_config(tmp_path / "b"))
    ca, cb = WorkerClient(a.address), WorkerClient(b.address)
    yield a, ca, b, cb
    ca.close()
    cb.close()
    a.stop()
    b.stop()


def sources(object_rows: pa.Table, per_object: int = 2) -> pa.Table:
    ids = object_rows.column("objectId").to_pylist()
    chunks = object_rows.column("_chunk").to_pylist()
    return pa.table(
        {
            "sourceId": [i * 10 + k for i in ids for k in range(per_object)],
            "objectId": [i for i in ids for _ in range(per_object)],
            "flux": [None if (i + k) % 5 == 0 else i * 0.5 + k for i in ids for k in range(per_object)],
            "_chunk": [c for c in chunks for _ in range(per_object)],
        },
        schema=pa.schema(
            [
                ("sourceId", pa.int64()),
                ("objectId", pa.int64()),
                ("flux", pa.float64()),
                ("_chunk", pa.int32()),
            ]
        ),
    )


def family(client: WorkerClient, dbs: tuple[str, str] = ("Sky", "Deep")) -> None:
    """Two databases of one family: a director with overlap and a child, and a second director."""
    for db in dbs:
        client.create_table(db, "Object", TableKind.DIRECTOR, OBJECT_COLUMNS)
    client.create_table(dbs[0], "Source", TableKind.CHILD, SOURCE_COLUMNS)


def load(client: WorkerClient, txn: int, rows: pa.Table, db: str = "Sky") -> None:
    items: list[tuple[int, str, str, bool, pa.Table]] = [
        (txn, db, "Object", False, rows),
        (txn, db, "Object", True, objects(7, chunks=rows.column("_chunk")[0].as_py() + 1, start=10_000)),
    ]
    if db == "Sky":
        items.append((txn, db, "Source", False, sources(rows)))
    client.ingest(items)
    client.commit(txn)


def rows_of(client: WorkerClient, db: str, table: str, chunk: int) -> list[tuple]:
    t = collect(client, f'SELECT * FROM "{db}"."{table}" WHERE _chunk = {chunk} ORDER BY ALL')
    return [tuple(r.values()) for r in t.to_pylist()]


TABLES = (
    ("Sky", "Object"),
    ("Sky", "Object__overlap"),
    ("Sky", "Source"),
    ("Deep", "Object"),
    ("Deep", "Object__overlap"),
)


def test_pull_copies_every_table_of_the_family_chunk_and_only_it(pair: tuple) -> None:
    _, ca, _, cb = pair
    family(ca)
    family(cb)
    load(ca, 1, objects(200, chunks=4))
    load(ca, 2, objects(50, chunks=4, start=5000), db="Deep")
    installed = cb.pull_chunks(ca.address, ["Sky", "Deep"], [3])
    assert {(t.database, t.table) for t in installed} == set(TABLES)
    for db, table in TABLES:
        assert rows_of(cb, db, table, 3) == rows_of(ca, db, table, 3)
        assert rows_of(cb, db, table, 2) == []  # other chunks are not copied
    assert sorted(cb.chunk_checksums(["Sky", "Deep"], [3]), key=str) == sorted(
        ca.chunk_checksums(["Sky", "Deep"], [3]), key=str
    )
    assert any(t.rows > 0 for t in installed) and all(len(t.checksum) == 16 for t in installed)


def test_pull_replaces_a_damaged_replica_and_checksums_tell_them_apart(pair: tuple) -> None:
    _, ca, _, cb = pair
    family(ca)
    family(cb)
    load(ca, 1, objects(120, chunks=3))
    cb.pull_chunks(ca.address, ["Sky", "Deep"], [1])
    damaged = objects(120, chunks=3)
    damaged = damaged.set_column(1, "ra", pa.array([r + 1e-9 for r in damaged.column("ra").to_pylist()]))
    load(cb, 9, damaged.filter(pa.compute.equal(damaged.column("_chunk"), 1)).slice(0, 1))  # one extra row
    assert cb.chunk_checksums(["Sky", "Deep"], [1]) != ca.chunk_checksums(["Sky", "Deep"], [1])
    cb.pull_chunks(ca.address, ["Sky", "Deep"], [1])
    assert cb.chunk_checksums(["Sky", "Deep"], [1]) == ca.chunk_checksums(["Sky", "Deep"], [1])
    for db, table in TABLES:
        assert rows_of(cb, db, table, 1) == rows_of(ca, db, table, 1)


def test_checksum_ignores_row_order_but_not_values() -> None:
    conn = Storage(__import__("duckdb").connect())
    with conn.cursor() as cur:
        cur.execute('CREATE SCHEMA "S"; CREATE TABLE "S"."T" (x DOUBLE, s VARCHAR, _chunk INTEGER)')
        cur.execute(
            """INSERT INTO "S"."T" VALUES (1.5, 'a', 1), (NULL, NULL, 1), (1.5, 'a', 1), (2.0, 'b', 2)"""
        )
    first = chunk_copy.checksums(conn, ["S"], [1])
    with conn.cursor() as cur:
        cur.execute('CREATE OR REPLACE TABLE "S"."T" AS SELECT * FROM "S"."T" ORDER BY x DESC NULLS FIRST')
    assert chunk_copy.checksums(conn, ["S"], [1]) == first and first[0].rows == 3
    with conn.cursor() as cur:
        cur.execute(
            """UPDATE "S"."T" SET s = 'A' WHERE rowid = (SELECT min(rowid) FROM "S"."T" WHERE s = 'a')"""
        )
    assert chunk_copy.checksums(conn, ["S"], [1]) != first
    conn.close()


def _storage_with_chunk(path: Path) -> Storage:
    import duckdb

    storage = Storage(duckdb.connect(str(path)), staging_dir=path.parent / f"{path.stem}-staging")
    with storage.cursor() as cur:
        cur.execute('CREATE SCHEMA "S"; CREATE TABLE "S"."T" (x BIGINT, _chunk INTEGER)')
        cur.execute('CREATE TABLE "S"."U" (y BIGINT, _chunk INTEGER)')
        cur.execute('INSERT INTO "S"."T" SELECT range, range % 3 FROM range(30)')
        cur.execute('INSERT INTO "S"."U" SELECT range, range % 3 FROM range(9)')
    return storage


def _counts(storage: Storage) -> tuple:
    with storage.cursor() as cur:
        return cur.execute(
            'SELECT (SELECT count(*) FROM "S"."T" WHERE _chunk = 1), (SELECT count(*) FROM "S"."U" WHERE _chunk = 1)'
        ).fetchall()[0]


def test_a_bad_copy_changes_nothing_and_leaves_no_file(tmp_path: Path) -> None:
    source = _storage_with_chunk(tmp_path / "src.duckdb")
    target = _storage_with_chunk(tmp_path / "dst.duckdb")
    with target.cursor() as cur:
        cur.execute('DELETE FROM "S"."T" WHERE x = 4')  # target's chunk 1 differs: 9 rows, not 10
    before = _counts(target)
    parts = list(chunk_copy.export(source, ["S"], [1]))

    def tampered() -> Iterator[ChunkPart]:
        for p in parts:
            if p.end is not None and p.table == "U":
                bad = TableChecksum(p.database, p.table, p.chunk_id, p.end.rows, "0" * 16)
                yield ChunkPart(p.database, p.table, p.chunk_id, end=bad)
            else:
                yield p

    with pytest.raises(DataError, match="checksum"):
        chunk_copy.install(target, ["S"], [1], tampered())
    assert _counts(target) == before

    with pytest.raises(DataError, match="ended before the end"):
        chunk_copy.install(target, ["S"], [1], iter(parts[:-1]))
    assert _counts(target) == before

    def broken() -> Iterator[ChunkPart]:
        yield parts[0]
        raise ConnectionError("source went away")

    with pytest.raises(ConnectionError):
        chunk_copy.install(target, ["S"], [1], broken())
    assert _counts(target) == before
    assert list(target.staging_dir.iterdir()) == []

    assert chunk_copy.install(target, ["S"], [1], iter(parts))  # the good stream installs
    assert _counts(target) == _counts(source) == (10, 3)
    source.close()
    target.close()


def test_a_copy_spool_left_by_a_crash_is_removed_when_the_worker_starts(tmp_path: Path) -> None:
    import duckdb

    storage = _storage_with_chunk(tmp_path / "w.duckdb")
    spool = storage.staging_dir / "copy__abc__S__T.arrow"
    spool.write_bytes(b"half a copy")
    storage._conn.close()  # a crash: no checkpoint, nothing cleaned up
    again = Storage(duckdb.connect(str(tmp_path / "w.duckdb")), staging_dir=tmp_path / "w-staging")
    assert not spool.exists()
    assert _counts(again) == (10, 3)
    again.close()


def test_missing_table_on_the_target_is_refused(pair: tuple) -> None:
    _, ca, _, cb = pair
    family(ca)
    cb.create_table("Sky", "Object", TableKind.DIRECTOR, OBJECT_COLUMNS)  # no Source, no Deep
    load(ca, 1, objects(40, chunks=2))
    with pytest.raises(UndefinedTable, match="does not exist on this worker"):
        cb.pull_chunks(ca.address, ["Sky", "Deep"], [1])
    assert rows_of(cb, "Sky", "Object", 1) == []


def test_drop_removes_the_family_chunk_only(pair: tuple) -> None:
    _, ca, _, _ = pair
    family(ca)
    load(ca, 1, objects(90, chunks=3))
    ca.drop_chunks(["Sky", "Deep"], [2])
    for db, table in TABLES:
        assert rows_of(ca, db, table, 2) == []
    assert rows_of(ca, "Sky", "Object", 1) and rows_of(ca, "Sky", "Source", 1)


def test_queries_never_see_half_a_copied_chunk(pair: tuple) -> None:
    _, ca, _, cb = pair
    family(ca)
    family(cb)
    load(ca, 1, objects(3000, chunks=2))
    full = (
        len(rows_of(ca, "Sky", "Object", 1)),
        len(rows_of(ca, "Sky", "Source", 1)),
        len(rows_of(ca, "Sky", "Object__overlap", 1)),
    )
    sql = (
        'SELECT (SELECT count(*) FROM "Sky"."Object" WHERE _chunk = 1) AS o, '
        '(SELECT count(*) FROM "Sky"."Source" WHERE _chunk = 1) AS s, '
        '(SELECT count(*) FROM "Sky"."Object__overlap" WHERE _chunk = 1) AS v'
    )
    seen: set[tuple] = set()
    stop = threading.Event()

    def reader() -> None:
        with WorkerClient(cb.address) as c:
            while not stop.is_set():
                row = collect(c, sql).to_pylist()[0]
                seen.add((row["o"], row["s"], row["v"]))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for _ in range(6):
            cb.pull_chunks(ca.address, ["Sky", "Deep"], [1])
            cb.drop_chunks(["Sky", "Deep"], [1])
    finally:
        stop.set()
        thread.join()
    assert seen <= {(0, 0, 0), full} and seen


def test_several_chunks_are_copied_in_one_call_and_one_transaction(pair: tuple) -> None:
    _, ca, _, cb = pair
    family(ca)
    family(cb)
    load(ca, 1, objects(400, chunks=8))
    installed = cb.pull_chunks(ca.address, ["Sky", "Deep"], [5, 1, 3, 3])
    assert sorted({t.chunk_id for t in installed}) == [1, 3, 5]
    for chunk in (1, 3, 5):
        for db, table in TABLES:
            assert rows_of(cb, db, table, chunk) == rows_of(ca, db, table, chunk)
    assert rows_of(cb, "Sky", "Object", 2) == []
    assert sorted(cb.chunk_checksums(["Sky", "Deep"], [1, 3, 5]), key=str) == sorted(
        ca.chunk_checksums(["Sky", "Deep"], [1, 3, 5]), key=str
    )
    cb.drop_chunks(["Sky", "Deep"], [1, 5])
    assert rows_of(cb, "Sky", "Object", 1) == rows_of(cb, "Sky", "Object", 5) == []
    assert rows_of(cb, "Sky", "Object", 3)


def filters(n: int, name: str = "f") -> pa.Table:
    return pa.table(
        {
            "filterId": pa.array(range(n), pa.int32()),
            "name": [None if i % 4 == 3 else f"{name}{i}" for i in range(n)],
        }
    )


def test_a_regular_table_is_copied_whole_and_replaces_the_old_copy(pair: tuple) -> None:
    _, ca, _, cb = pair
    for client in (ca, cb):
        client.create_table("Sky", "Filter", TableKind.REGULAR, FILTER_COLUMNS)
    ca.ingest([(1, "Sky", "Filter", False, filters(1000))])
    ca.commit(1)
    cb.ingest([(1, "Sky", "Filter", False, filters(10, name="stale"))])
    cb.commit(1)
    assert ca.table_checksums([("sky", "filter")]) != cb.table_checksums([("Sky", "Filter")])
    installed = cb.pull_tables(ca.address, [("sky", "FILTER")])
    assert [(t.table, t.chunk_id, t.rows) for t in installed] == [("Filter", -1, 1000)]
    assert cb.table_checksums([("Sky", "Filter")]) == ca.table_checksums([("Sky", "Filter")]) == installed
    got = collect(cb, 'SELECT * FROM "Sky"."Filter" ORDER BY ALL').to_pylist()
    assert got == collect(ca, 'SELECT * FROM "Sky"."Filter" ORDER BY ALL').to_pylist()
    assert len(got) == 1000


def test_a_regular_table_copy_that_does_not_add_up_changes_nothing(tmp_path: Path) -> None:
    import duckdb

    storage = Storage(duckdb.connect(str(tmp_path / "w.duckdb")), staging_dir=tmp_path / "w-staging")
    try:
        with storage.cursor() as cur:
            cur.execute('CREATE SCHEMA "Sky"; CREATE TABLE "Sky"."Filter" ("filterId" INTEGER, name VARCHAR)')
            cur.execute("""INSERT INTO "Sky"."Filter" VALUES (1, 'kept')""")
        rows = filters(5)
        bad = [
            ChunkPart("Sky", "Filter", -1, batch=rows.to_batches()[0]),
            ChunkPart("Sky", "Filter", -1, end=TableChecksum("Sky", "Filter", -1, 6, "0" * 16)),
        ]
        with pytest.raises(DataError, match="received 5 rows"):
            table_copy.install(storage, [("Sky", "Filter")], bad)
        with pytest.raises(DataError, match="ended before its checksum"):
            table_copy.install(storage, [("Sky", "Filter")], bad[:1])
        with pytest.raises(UndefinedTable, match="Sky.Nope does not exist"):
            table_copy.install(storage, [("Sky", "Nope")], [])
        assert table_copy.checksums(storage, [("Sky", "Filter")])[0].rows == 1  # unchanged
        assert not list(storage.staging_dir.iterdir())
    finally:
        storage.close()
