"""Stage 3: an analyzed query -> a :class:`QueryPlan` (chunks, worker batches, merge query).

Passes, in order:

0. counts   COUNT(*) of a whole table: answered from the chunks' row counts (counts.py)
1. chunks   layered chunk choice: director-key, region, full scan (chunks.py)
2. split    worker query template and merge query, aggregates split (split.py)
3. assign   one live replica per chunk, load balanced; one batch per worker (assign.py)

The plan prints itself (explain.py).
"""

from __future__ import annotations

import dataclasses
import zlib

from czar.analyze.model import AnalyzedQuery
from czar.plan.assign import assign
from czar.plan.chunks import ChunkChoice, choose_chunks
from czar.plan.counts import whole_table_count
from czar.plan.model import (
    MAX_RANGES,
    DirectorIndex,
    PlanContext,
    QueryPlan,
    Runs,
    WorkerBatch,
    chunk_runs,
    id_list,
)
from czar.plan.split import Split, split
from qserv.errors import WorkerUnavailable

__all__ = ["PASSES", "DirectorIndex", "PlanContext", "QueryPlan", "WorkerBatch", "place", "plan", "skeleton"]

PASSES = (choose_chunks, split, assign)


def plan(q: AnalyzedQuery, ctx: PlanContext) -> QueryPlan:
    """Plan ``q`` on the cluster described by ``ctx``."""
    counted = whole_table_count(q, ctx)
    if counted is not None:
        return QueryPlan(
            strategy="row-counts",
            reasons=(),
            chunk_ids=(),
            batches=(),
            merge_sql="",
            columns=q.columns,
            types=q.types,
            worker_template="",
            chunk_columns=(),
            rows=counted,
        )
    return place(skeleton(q, split(q), choose_chunks(q, ctx)), ctx)


def skeleton(q: AnalyzedQuery, parts: Split, choice: ChunkChoice) -> QueryPlan:
    """The plan before placement: chunks chosen, worker and merge SQL, no batches yet."""
    return QueryPlan(
        strategy=choice.strategy,
        reasons=choice.reasons,
        chunk_ids=choice.chunk_ids,
        batches=(),
        merge_sql=parts.merge_sql,
        columns=q.columns,
        types=q.types,
        worker_template=parts.worker_template,
        chunk_columns=parts.chunk_columns,
        passthrough=parts.passthrough,
        aggregation=parts.aggregation,
        far=parts.far,
    )


def place(draft: QueryPlan, ctx: PlanContext) -> QueryPlan:
    """``draft`` (chunks chosen, no batches) with one batch per worker (assign pass)."""
    if not ctx.workers:
        raise WorkerUnavailable("no live worker: start a worker or wait for one to recover")
    workers = sorted(ctx.workers)
    if not draft.chunk_ids:
        # Regular tables, or no chunk selected: one batch still returns the result schema.
        worker = workers[zlib.crc32(draft.worker_template.encode()) % len(workers)]
        batches: tuple[WorkerBatch, ...] = (WorkerBatch(worker, (), draft.render(())),)
    else:
        batches = tuple(
            WorkerBatch(w, ids, draft.render(ids, runs=runs, ids_text=text))
            for w, ids, runs, text in _assignment(draft.chunk_ids, ctx)
        )
    return dataclasses.replace(draft, batches=batches)


# (worker, chunk ids, ranges, the ids' IN-list text when no ranges) per batch
Assignment = tuple[tuple[str, tuple[int, ...], Runs | None, str | None], ...]


def _assignment(chunk_ids: tuple[int, ...], ctx: PlanContext) -> Assignment:
    """(worker, chunk ids, ranges, IN-list text) per batch; memoised in ``ctx.memo`` by chunk set."""
    # the memo lives with one snapshot, whose placement mapping per family is one object
    key = ("assignment", id(ctx.placement), tuple(sorted(ctx.workers)), chunk_ids)
    if ctx.memo is not None and key in ctx.memo:
        return ctx.memo[key]  # type: ignore[return-value]
    by_worker = assign(chunk_ids, ctx.placement, ctx.workers)
    held = ctx.held
    if held is None and any(len(ids) > MAX_RANGES for ids in by_worker.values()):
        derived: dict[str, set[int]] = {}
        for chunk_id, replicas in ctx.placement.items():
            for w in replicas:
                derived.setdefault(w, set()).add(chunk_id)
        held = {w: frozenset(cs) for w, cs in derived.items()}
    held = held or {}
    result = tuple(
        (w, tuple(ids), runs, None if runs is not None else id_list(ids))
        for w, ids in sorted(by_worker.items())
        for runs in [chunk_runs(ids, held.get(w))]
    )
    if ctx.memo is not None:
        if len(ctx.memo) > 512:  # bounded: a snapshot lives seconds, chunk sets repeat
            ctx.memo.clear()
        ctx.memo[key] = result
    return result
