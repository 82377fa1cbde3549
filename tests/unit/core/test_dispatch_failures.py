"""Dispatch with a fake executor: a lost worker (or one whose data file is damaged) is retried on
replicas, a timed-out batch is not."""

from __future__ import annotations

import asyncio

import pyarrow as pa
import pytest

from czar.dispatch import DispatchResult, dispatch
from czar.plan.model import QueryPlan, WorkerBatch
from qserv.errors import DataCorrupted, QservError, QueryCanceled, WorkerUnavailable

PLACEMENT = {1: ("A", "B"), 2: ("A", "B"), 3: ("B", "A")}


def _plan() -> QueryPlan:
    return QueryPlan(
        strategy="full-scan",
        reasons=(),
        chunk_ids=(1, 2, 3),
        batches=(WorkerBatch("A", (1, 2), "sql A"), WorkerBatch("B", (3,), "sql B")),
        merge_sql="SELECT * FROM __result",
        columns=("x",),
        types=("BIGINT",),
        worker_template="SELECT 1 AS x WHERE __QSERV_CHUNK_FILTER_0__",
        chunk_columns=("_chunk",),
    )


class FakeWorkers:
    """Worker A fails with ``error``; B answers after ``release`` is set."""

    def __init__(self, error: QservError) -> None:
        self.error = error
        self.calls: list[tuple[str, tuple[int, ...]]] = []
        self.cancelled: list[str] = []
        self.release = asyncio.Event()

    async def __call__(
        self, worker: str, query_id: str, sql: str, chunk_ids: tuple[int, ...]
    ) -> tuple[pa.Schema | None, list[pa.RecordBatch]]:
        self.calls.append((worker, chunk_ids))
        if worker == "A":
            raise self.error
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled.append(worker)
            raise
        batch = pa.record_batch({"x": pa.array([len(chunk_ids)], pa.int64())})
        return batch.schema, [batch]


def test_a_lost_worker_is_retried_on_its_replicas() -> None:
    async def run() -> tuple[FakeWorkers, set[str], int]:
        workers = FakeWorkers(WorkerUnavailable("worker A is unreachable"))
        workers.release.set()
        result = await dispatch(_plan(), workers, "q", PLACEMENT, ("A", "B"))
        return workers, result.failed_workers, result.retried_chunks

    workers, failed, retried = asyncio.run(run())
    assert ("B", (1, 2)) in workers.calls and failed == {"A"} and retried == 2


def test_a_timed_out_batch_fails_the_statement_and_cancels_the_others() -> None:
    async def run() -> FakeWorkers:
        workers = FakeWorkers(QueryCanceled("canceling statement due to worker timeout"))
        with pytest.raises(QueryCanceled, match="worker timeout"):
            await dispatch(_plan(), workers, "q", PLACEMENT, ("A", "B"))
        return workers

    workers = asyncio.run(run())
    # not retried on B (slow is not dead), and B's batch was cancelled with the statement
    assert sorted(workers.calls) == [("A", (1, 2)), ("B", (3,))]
    assert workers.cancelled == ["B"]


def test_a_damaged_replica_is_read_from_another_and_reported_without_marking_its_worker_down() -> None:
    async def run() -> tuple[FakeWorkers, DispatchResult]:
        workers = FakeWorkers(DataCorrupted("a worker's data file is damaged"))
        workers.release.set()
        return workers, await dispatch(_plan(), workers, "q", PLACEMENT, ("A", "B"))

    workers, result = asyncio.run(run())
    assert ("B", (1, 2)) in workers.calls
    assert result.damaged == {"A": {1, 2}}
    assert result.failed_workers == set()
    assert sum(b.column("x")[0].as_py() for b in result.batches) == 3


def test_a_chunk_whose_only_replica_is_damaged_fails_with_the_damage() -> None:
    async def run() -> None:
        workers = FakeWorkers(DataCorrupted("a worker's data file is damaged"))
        workers.release.set()
        await dispatch(_plan(), workers, "q", {1: ("A",), 2: ("A", "B"), 3: ("B",)}, ("A", "B"))

    with pytest.raises(DataCorrupted, match="damaged") as caught:
        asyncio.run(run())
    assert caught.value.sqlstate == "XX001"
