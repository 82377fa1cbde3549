"""Execute: one pass over many chunks, Arrow IPC streaming, typed errors, cancellation."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

import pyarrow as pa
import pytest
from worker_helpers import collect, objects, worker_config

from qserv.errors import (
    DataError,
    InvalidParameter,
    QservError,
    QueryCanceled,
    SyntaxError_,
    UndefinedColumn,
    UndefinedFunction,
    UndefinedTable,
    WorkerUnavailable,
)
from qserv.rpc import codec
from qserv.rpc.client import WorkerClient
from worker.service import RunningWorker, start

# hours of work for one DuckDB thread: finishes only if interrupted
SLOW_SQL = "SELECT count(*) FROM range(1000000000000) t(i) WHERE i % 7 = 3"


@pytest.fixture
def loaded(client: WorkerClient, object_table: str, txn: int) -> str:
    client.ingest([(txn, object_table, "Object", False, objects(10_000, chunks=100))])
    client.commit(txn)
    return object_table


def test_many_chunks_in_one_call(client: WorkerClient, loaded: str) -> None:
    chunk_ids = list(range(0, 100, 3))
    sql = (
        f'SELECT _chunk, count(*) AS n FROM "{loaded}"."Object" '
        f"WHERE _chunk IN ({', '.join(map(str, chunk_ids))}) GROUP BY _chunk ORDER BY _chunk"
    )
    result = collect(client, sql, chunk_ids)
    assert result.column("_chunk").to_pylist() == chunk_ids
    assert set(result.column("n").to_pylist()) == {100}


def test_large_result_streams_in_several_messages(client: WorkerClient, loaded: str) -> None:
    async def run() -> list[pa.RecordBatch]:
        sql = f'SELECT o.* FROM "{loaded}"."Object" o, range(20)'  # 200k rows
        out = [b async for b in client.execute("big", sql, [])]
        await client.aclose()
        return out

    batches = asyncio.run(run())
    assert sum(b.num_rows for b in batches) == 200_000
    assert len(batches) >= 3 and max(b.num_rows for b in batches) <= 65536


def test_empty_result_carries_schema(client: WorkerClient, loaded: str) -> None:
    result = collect(client, f'SELECT objectId, ra * 2 AS ra2 FROM "{loaded}"."Object" WHERE _chunk IN (-5)')
    assert result.num_rows == 0
    assert result.schema == pa.schema([("objectId", pa.int64()), ("ra2", pa.float64())])


def test_spatial_macros_are_installed(client: WorkerClient, loaded: str) -> None:
    sql = (
        f'SELECT count(*) AS n FROM "{loaded}"."Object" WHERE scisql_s2PtInCircle(ra, decl, 10, -80, 0.5) = 1'
    )
    assert collect(client, sql).column("n")[0].as_py() >= 1


@pytest.mark.parametrize(
    ("sql", "error", "fragment"),
    [
        ("SELEC 1", SyntaxError_, "syntax error"),
        ('SELECT * FROM "nodb"."Object"', UndefinedTable, "nodb"),
        ("SELECT nosuchcol FROM range(3)", UndefinedColumn, "nosuchcol"),
        ("SELECT no_such_fn(1)", UndefinedFunction, "no_such_fn"),
    ],
)
def test_errors_arrive_typed(client: WorkerClient, sql: str, error: type[QservError], fragment: str) -> None:
    with pytest.raises(error, match=fragment) as info:
        collect(client, sql)
    assert info.value.sqlstate == error.sqlstate


def test_error_after_some_results_arrives_typed(client: WorkerClient) -> None:
    sql = "SELECT CAST(CASE WHEN i < 150000 THEN '1' ELSE 'x' END AS INTEGER) AS v FROM range(200000) t(i)"

    async def run() -> int:
        rows = 0
        try:
            async for batch in client.execute("mid", sql, []):
                rows += batch.num_rows
        finally:
            await client.aclose()
        return rows

    with pytest.raises(DataError, match="invalid input syntax for type integer"):
        asyncio.run(run())


def test_taken_port_is_refused(worker: RunningWorker, tmp_path: Path) -> None:
    config = dataclasses.replace(worker_config(tmp_path / "w2"), port=worker.port)
    with pytest.raises(InvalidParameter, match="cannot listen"):
        start(config)


def test_errors_keep_non_ascii_text(client: WorkerClient) -> None:
    status = codec.rpc_status(QservError("radius 0.05° exceeds", detail="d°", hint="h", position=7))
    md = dict(status.metadata)
    assert md["qserv-sqlstate"] == "XX000" and md["qserv-position"] == "7"
    assert all(value.isascii() for value in md.values())
    with pytest.raises(UndefinedTable, match="Öbjekt_°"):
        collect(client, 'SELECT * FROM "Öbjekt_°"')


def test_internal_errors_get_an_incident_id() -> None:
    status = codec.rpc_status(ValueError("boom"))
    assert status.code.name == "INTERNAL"
    assert "incident" in dict(status.metadata)["qserv-message"]


def test_unreachable_worker_is_worker_unavailable() -> None:
    dead = WorkerClient("127.0.0.1:1")
    with pytest.raises(WorkerUnavailable):
        dead.health(timeout=2.0)
    with pytest.raises(WorkerUnavailable):
        collect(dead, "SELECT 1", timeout=2.0)
    dead.close()


def wait_for(predicate: object, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def test_cancel_interrupts_duckdb(client: WorkerClient, worker: RunningWorker) -> None:
    async def run() -> None:
        async def consume() -> None:
            async for _ in client.execute("slow", SLOW_SQL, []):
                pass

        task = asyncio.create_task(consume())
        while (await asyncio.to_thread(client.health)).queries_running == 0:
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await client.aclose()

    asyncio.run(run())
    # the query would run for hours: it only ends because the worker interrupted DuckDB
    assert wait_for(lambda: client.health().queries_running == 0)
    assert collect(client, "SELECT 42 AS x").column("x")[0].as_py() == 42


def test_deadline_interrupts_duckdb(client: WorkerClient) -> None:
    # slow is not dead: a deadline fails the statement (57014), it is not an unreachable worker
    with pytest.raises(QueryCanceled, match="worker timeout"):
        collect(client, SLOW_SQL, timeout=0.5)
    assert wait_for(lambda: client.health().queries_running == 0)


def test_health(client: WorkerClient, worker: RunningWorker) -> None:
    health = client.health()
    assert health.name == worker.name and health.version
