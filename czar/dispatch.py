"""Dispatch: run a plan's worker batches in parallel, retrying failed chunks on other replicas.

One streaming call per worker carries all of that worker's chunk tasks (a Python RPC costs
~0.5 ms; thousands of per-chunk calls would dominate small queries). A batch's rows are kept
apart until the batch completes, so when a worker dies mid-stream its partial rows are dropped
and its chunks are re-rendered (``QueryPlan.render``) for the next live replica of each chunk:
the client never sees the failure. Errors in the query itself (a worker answering with a typed
SQL error) are not retried: they go to the client.

Example: chunks {10, 11} on worker A (replicas A, B) and {12} on B (replicas B, C). If A dies,
{10, 11} are re-sent to B as one new batch; the answer is unchanged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import pyarrow as pa

from czar.plan.model import QueryPlan
from qserv.errors import DataCorrupted, QservError, WorkerUnavailable
from qserv.log import event

log = logging.getLogger(__name__)

# Failures that say "this worker could not answer", not "this query is wrong": a failed
# connection (unreachable, refused, stream broken) or a worker shutting down. Only these are
# retried on replicas and reported in ``failed_workers`` (which the pipeline plans around).
# A batch past its deadline or a cancelled one is 57014: slow is not dead, so it fails the
# statement and leaves the worker in the plan.
RETRYABLE_SQLSTATES = frozenset({"08006", "08001", "08000", "57P01", "57P03", DataCorrupted.sqlstate})
# A worker whose data file is damaged (XX001) still serves its other chunks: the batch is retried
# on other replicas, and its chunks are reported (``damaged``) so that the replicas are verified
# and repaired, without marking the worker down.


class BatchExecutor(Protocol):
    async def __call__(
        self, worker: str, query_id: str, sql: str, chunk_ids: tuple[int, ...]
    ) -> tuple[pa.Schema | None, list[pa.RecordBatch]]:
        """Run one worker batch; return its schema and record batches, or raise QservError."""
        ...


@dataclass
class DispatchResult:
    schema: pa.Schema | None
    batches: list[pa.RecordBatch] = field(default_factory=list)
    failed_workers: set[str] = field(default_factory=set)  # unreachable: plan around them
    retried_chunks: int = 0
    damaged: dict[str, set[int]] = field(default_factory=dict)  # worker -> chunks it could not read

    @property
    def excluded(self) -> set[str]:
        """Workers this query no longer sends batches to."""
        return self.failed_workers | self.damaged.keys()

    @property
    def rows(self) -> int:
        return sum(b.num_rows for b in self.batches)


@dataclass(frozen=True)
class _Attempt:
    worker: str
    chunk_ids: tuple[int, ...]
    sql: str


async def _run(
    execute: BatchExecutor, attempt: _Attempt, query_id: str
) -> tuple[_Attempt, tuple[pa.Schema | None, list[pa.RecordBatch]] | QservError]:
    try:
        return attempt, await execute(attempt.worker, query_id, attempt.sql, attempt.chunk_ids)
    except QservError as err:
        return attempt, err


Refresh = Callable[[], tuple[Mapping[int, tuple[str, ...]], Sequence[str]]]
"""A fresh (placement, live workers) from the metadata store."""


@dataclass
class _Replicas:
    """Where the plan's chunks can run; read again from the store once if a chunk runs out."""

    placement: Mapping[int, tuple[str, ...]]
    live_workers: Sequence[str]
    refresh: Refresh | None = None

    def reload(self) -> bool:
        """Take a fresh placement (once): the replication controller may have copied the chunk
        since the plan's snapshot was taken."""
        if self.refresh is None:
            return False
        self.placement, self.live_workers = self.refresh()
        self.refresh = None
        return True


def _reassign(chunk_ids: Sequence[int], replicas: _Replicas, excluded: set[str]) -> dict[str, list[int]]:
    """Group ``chunk_ids`` by the first replica of each that is not excluded."""
    by_worker: dict[str, list[int]] = {}
    for chunk_id in chunk_ids:
        worker = next((w for w in replicas.placement.get(chunk_id, ()) if w not in excluded), None)
        if worker is None and replicas.reload():
            worker = next((w for w in replicas.placement.get(chunk_id, ()) if w not in excluded), None)
        if worker is None:
            raise WorkerUnavailable(
                f"chunk {chunk_id} has no reachable replica (tried {', '.join(sorted(excluded))})",
                hint="check the workers with `qserv replica status`; the query can be retried",
            )
        by_worker.setdefault(worker, []).append(chunk_id)
    return by_worker


def _retry_attempts(
    plan: QueryPlan, failed: _Attempt, replicas: _Replicas, excluded: set[str]
) -> list[_Attempt]:
    if not failed.chunk_ids:
        # A batch without chunks (regular tables only, or an empty chunk set): any live worker will do.
        other = next((w for w in replicas.live_workers if w not in excluded), None)
        if other is None:
            raise WorkerUnavailable("no reachable worker left to run the query")
        return [_Attempt(other, (), failed.sql)]
    return [
        _Attempt(worker, tuple(chunks), plan.render(chunks))
        for worker, chunks in sorted(_reassign(failed.chunk_ids, replicas, excluded).items())
    ]


def _take(
    plan: QueryPlan,
    attempt: _Attempt,
    outcome: tuple[pa.Schema | None, list[pa.RecordBatch]] | QservError,
    result: DispatchResult,
    query_id: str,
    replicas: _Replicas,
) -> list[_Attempt]:
    """Add a finished batch to ``result``; the retries it needs (raises a non-retryable error)."""
    if isinstance(outcome, QservError):
        if outcome.sqlstate not in RETRYABLE_SQLSTATES:
            raise outcome
        if outcome.sqlstate == DataCorrupted.sqlstate:
            result.damaged.setdefault(attempt.worker, set()).update(attempt.chunk_ids)
        else:
            result.failed_workers.add(attempt.worker)
        event(
            log,
            "worker batch failed; retrying on replicas",
            logging.WARNING,
            query_id=query_id,
            worker=attempt.worker,
            chunks=len(attempt.chunk_ids),
            error=outcome.message,
        )
        result.retried_chunks += len(attempt.chunk_ids)
        try:
            return _retry_attempts(plan, attempt, replicas, result.excluded)
        except WorkerUnavailable:
            if attempt.worker in result.damaged:
                raise outcome from None  # the damage, not "unreachable", is why no replica answers
            raise
    schema, batches = outcome
    if schema is not None and result.schema is None:
        result.schema = schema
    result.batches.extend(b for b in batches if b.num_rows)
    return []


async def dispatch(
    plan: QueryPlan,
    execute: BatchExecutor,
    query_id: str,
    placement: Mapping[int, tuple[str, ...]],
    live_workers: Sequence[str],
    refresh: Refresh | None = None,
) -> DispatchResult:
    """Run every batch of ``plan``; retry the chunks of an unreachable worker elsewhere.

    ``refresh`` gives a fresh placement when a chunk has no replica left in ``placement``
    (asked at most once per query).
    """
    result = DispatchResult(schema=None)
    replicas = _Replicas(placement, live_workers, refresh)
    pending = [_Attempt(b.worker, tuple(b.chunk_ids), b.sql) for b in plan.batches]

    while pending:
        attempts, pending = pending, []
        if len(attempts) == 1:
            # the common small query (one worker): awaited in this task, without the
            # task/as_completed machinery (~0.1 ms); a cancel reaches the call directly
            attempt, outcome = await _run(execute, attempts[0], query_id)
            pending.extend(_take(plan, attempt, outcome, result, query_id, replicas))
        else:
            tasks = [asyncio.ensure_future(_run(execute, a, query_id)) for a in attempts]
            try:
                for future in asyncio.as_completed(tasks):
                    attempt, outcome = await future
                    pending.extend(_take(plan, attempt, outcome, result, query_id, replicas))
            except BaseException:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise
        # a retry may have been routed to a worker that failed later in the same round
        rerouted: list[_Attempt] = []
        excluded = result.excluded
        for a in pending:
            if a.worker in excluded:
                rerouted.extend(_retry_attempts(plan, a, replicas, excluded))
            else:
                rerouted.append(a)
        pending = rerouted
    return result
