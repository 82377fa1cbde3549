"""The conductor: parse → analyze → plan → dispatch → merge.

This is the only module that chains the stages; each stage is a pure function in its own
module (``czar/parse.py``, ``czar/analyze/``, ``czar/plan/``, ``czar/dispatch.py``,
``czar/merge.py``). Worker I/O comes in through a :class:`~czar.dispatch.BatchExecutor`, so the
whole pipeline runs in tests against in-process fakes as well as against a real cluster.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import pyarrow as pa
from sqlglot import exp

from czar import generic, steps
from czar.analyze import AnalyzedQuery, analyze
from czar.analyze.guard import guard
from czar.analyze.subqueries import Program, decompose, has_subqueries
from czar.dialects.registry import DEFAULT_DIALECT
from czar.dispatch import BatchExecutor, DispatchResult, dispatch
from czar.far import Fetch, far_copies, far_rows
from czar.merge import MergeEngine, planned_table
from czar.parse import parse
from czar.plan import plan as make_plan
from czar.plan.assign import assign
from czar.plan.match import MAX_FAR_PAIRS, FarPairs, fetch_plan
from czar.plan.model import DirectorIndex, PlanContext, QueryPlan
from czar.plan.shipped import Shipped, ship, shipped_catalog
from czar.view import ClusterView, ViewCache
from qserv.catalog import TableKind
from qserv.errors import InternalError, UndefinedTable, WorkerUnavailable
from qserv.log import event

log = logging.getLogger(__name__)
T = TypeVar("T")

PLAN_CACHE_ENTRIES = 256
REFRESH_ON_MISS_SECONDS = 1.0
# Statements longer than this are planned off the event loop (~10 ms of parsing and planning)
INLINE_PLANNING_CHARS = 4096


@dataclass(frozen=True)
class Prepared:
    plan: QueryPlan
    placement: Mapping[int, tuple[str, ...]]
    live_workers: tuple[str, ...]
    planning: str = "full"  # full | cached (same text) | generic (same shape, other keys)
    # what the placement was computed for, to compute it again on a fresh snapshot
    family: str | None = None
    regular: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class QueryAnswer:
    query_id: str
    table: pa.Table
    plan: QueryPlan | None  # None: a program of sub-queries, each planned on its own
    retried_chunks: int


def regular_tables(q: AnalyzedQuery) -> tuple[tuple[str, str], ...]:
    """The regular tables ``q`` reads, as (database, table) lower-cased."""
    return tuple(sorted({r.key for r in q.tables if r.kind is TableKind.REGULAR}))


def _restricted(make: Callable[[], T], view: ClusterView, ctx: PlanContext) -> T:
    """``make()``; a chunk without a replica on the workers ``ctx`` allows is explained."""
    try:
        return make()
    except WorkerUnavailable as e:
        if len(ctx.workers) == len(view.live_workers):
            raise
        raise WorkerUnavailable(
            f"no live worker holding complete copies of the regular tables the query reads "
            f"({', '.join(ctx.workers)}) has a needed chunk: {e.message}",
            hint="restart the other workers holding the chunk, or load the regular tables again",
        ) from e


class Pipeline:
    """Runs SQL against the cluster described by a :class:`ViewCache`."""

    def __init__(
        self,
        views: ViewCache,
        director_index: DirectorIndex,
        execute: BatchExecutor,
        merger: MergeEngine,
        max_far_pairs: int = MAX_FAR_PAIRS,
    ) -> None:
        self._views = views
        self._director_index = director_index
        self._execute = execute
        self._merger = merger
        self._max_far_pairs = max_far_pairs  # CzarConfig.max_far_pairs (czar/plan/match.py)

    def prepare(self, sql: str, default_db: str, dialect: str = DEFAULT_DIALECT) -> Prepared | Program:
        """Parse (in the session dialect ``dialect``), analyze and plan ``sql`` (pure given the
        metadata snapshot); a query with sub-queries becomes a :class:`Program` of steps, each
        planned when it runs.

        Plans are cached per snapshot (a commit through this czar invalidates it): by exact
        text, so a repeated query (a dashboard, a monitoring probe) skips its ~5 ms of
        planning; and by shape for director-key lookups and areaspecs, so a lookup of
        another key or a cone elsewhere skips parsing too (czar/generic.py). Both caches are
        per dialect: one text means different things in two dialects (``a || b``).
        """
        view = self._views.get()
        db = default_db.lower()
        key = ("prepared", db, dialect, sql)
        cached = view.memo.get(key)
        if isinstance(cached, Prepared):
            return dataclasses.replace(cached, planning="cached")
        if isinstance(cached, Program):
            return cached
        shape = generic.shape_of(sql, dialect)
        shape_key = ("generic", db, dialect, shape.key) if shape is not None else None
        template = view.memo.get(shape_key) if shape_key is not None else None
        if shape is not None and isinstance(template, tuple) and isinstance(template[0], generic.Template):
            generic_plan, regular = template
            ctx = self._context(view, generic_plan.family, regular)
            rebound = _restricted(lambda: generic.rebind(generic_plan, shape, ctx), view, ctx)
            if rebound is not None:
                return Prepared(
                    rebound, ctx.placement, ctx.workers, "generic", generic_plan.family, tuple(regular)
                )
        analyzed, view = self._analyze(sql, default_db, dialect, view)
        if isinstance(analyzed, Program):
            if self._views.get() is view:
                view.memo[key] = analyzed
            return analyzed
        regular = regular_tables(analyzed)
        ctx = self._context(view, analyzed.family, regular)
        prepared = Prepared(
            _restricted(lambda: make_plan(analyzed, ctx), view, ctx),
            ctx.placement,
            ctx.workers,
            family=analyzed.family,
            regular=tuple(regular),
        )
        if self._views.get() is view:  # not if the snapshot was refreshed meanwhile
            if len(view.memo) > PLAN_CACHE_ENTRIES:
                view.memo.clear()
            view.memo[key] = prepared
            if shape is not None and shape_key is not None and shape_key not in view.memo:
                found = generic.template(analyzed, shape)
                view.memo[shape_key] = (found, regular) if found is not None else None  # None: not generic
        return prepared

    def _analyze(
        self, sql: str, default_db: str, dialect: str, view: ClusterView
    ) -> tuple[AnalyzedQuery | Program, ClusterView]:
        try:
            return self._analyze_on(sql, default_db, dialect, view), view
        except UndefinedTable:
            # the table may have been created through another czar since the snapshot was
            # taken (this czar's own loads invalidate it); re-read at most once a second, so
            # a client repeating a bad name cannot make every query re-read the store
            if time.monotonic() - view.taken_at < REFRESH_ON_MISS_SECONDS:
                raise
            view = self._views.get(refresh=True)
            return self._analyze_on(sql, default_db, dialect, view), view

    def _analyze_on(
        self, sql: str, default_db: str, dialect: str, view: ClusterView
    ) -> AnalyzedQuery | Program:
        tree = parse(sql, dialect)
        if has_subqueries(tree):
            program = decompose(guard(tree), view.catalog, default_db)
            if program is not None:
                return program
        return analyze(tree, view.catalog, default_db, sql=sql)

    def _prepare_tree(self, tree: exp.Select, default_db: str, shipped: Shipped) -> Prepared:
        """Analyze and plan one step of a program (no plan cache: its constants are results),
        with the ``shipped`` sub-query results as regular tables sent along."""
        view = self._views.get()
        catalog = shipped_catalog(view.catalog, default_db, shipped) if shipped else view.catalog
        analyzed = analyze(tree, catalog, default_db, sql=tree.sql())
        regular = tuple(k for k in regular_tables(analyzed) if k[1] not in {n.lower() for n in shipped})
        ctx = self._context(view, analyzed.family, regular)
        planned = _restricted(lambda: make_plan(analyzed, ctx), view, ctx)
        return Prepared(
            ship(planned, default_db, shipped),
            ctx.placement,
            ctx.workers,
            family=analyzed.family,
            regular=regular,
        )

    def _fresh_placement(self, prepared: Prepared) -> tuple[Mapping[int, tuple[str, ...]], tuple[str, ...]]:
        """``prepared``'s placement on a snapshot read now (chunks copied since it was planned)."""
        view = self._views.get(refresh=True)
        workers = view.holders_of(prepared.regular)
        placement = view.placement_on(prepared.family, workers)[0] if prepared.family else {}
        return placement, workers

    def _context(
        self, view: ClusterView, family: str | None, regular: tuple[tuple[str, str], ...] = ()
    ) -> PlanContext:
        """The cluster as ``family``'s chunks are placed (the query's chunked tables' family),
        on the live workers holding complete copies of the ``regular`` tables it reads."""
        workers = view.holders_of(regular)
        placement, held = view.placement_on(family, workers) if family else ({}, {})
        return PlanContext(
            placement=placement,
            held=held,
            memo=view.memo,
            nonempty_chunks=view.nonempty_chunks,
            workers=workers,
            director_index=self._director_index,
            catalog=view.catalog,
            row_counts=view.row_counts,
        )

    def explain(self, sql: str, default_db: str, dialect: str = DEFAULT_DIALECT) -> str:
        prepared = self.prepare(sql, default_db, dialect)
        return prepared.explain() if isinstance(prepared, Program) else prepared.plan.explain()

    async def run(
        self, sql: str, default_db: str, query_id: str | None = None, dialect: str = DEFAULT_DIALECT
    ) -> QueryAnswer:
        """Answer ``sql`` read in ``dialect``; raises a QservError for anything the client should see."""
        query_id = query_id or uuid.uuid4().hex[:16]
        started = time.perf_counter()
        if len(sql) <= INLINE_PLANNING_CHARS:
            # planning is a few ms of CPU under the GIL: a thread hop would only add latency
            prepared = self.prepare(sql, default_db, dialect)
        else:
            # a long statement (a key list of thousands) plans for up to seconds: in a thread,
            # the GIL's switch interval lets the event loop serve the other sessions meanwhile
            prepared = await asyncio.to_thread(self.prepare, sql, default_db, dialect)
        if isinstance(prepared, Program):
            return await self._run_program(prepared, default_db, query_id)
        return await self._answer(prepared, query_id, started)

    async def _run_program(self, program: Program, default_db: str, query_id: str) -> QueryAnswer:
        """Each step as its own query, its result written into the next (czar/steps.py)."""
        retried = 0

        async def distributed(query: exp.Select, shipped: Shipped) -> steps.Answer:
            nonlocal retried
            prepared = self._prepare_tree(query, default_db, shipped)
            answer = await self._answer(prepared, query_id, time.perf_counter())
            retried += answer.retried_chunks
            assert answer.plan is not None
            return answer.table, answer.plan.types

        async def local(query: exp.Select, tables: Mapping[str, pa.Table]) -> steps.Answer:
            return await asyncio.to_thread(self._merger.run_local, query.sql(dialect="duckdb"), tables)

        started = time.perf_counter()
        table, _ = await steps.execute(program, distributed, local)
        if program.names is not None and len(program.names) == table.num_columns:
            table = table.rename_columns(list(program.names))
        event(
            log,
            "query done",
            query_id=query_id,
            strategy="sub-queries",
            steps=len(program.steps) + 1,
            retried_chunks=retried,
            rows=table.num_rows,
            ms=round((time.perf_counter() - started) * 1000, 2),
        )
        return QueryAnswer(query_id, table, None, retried)

    def _after_dispatch(self, got: DispatchResult) -> None:
        """Plan around the workers a query could not reach; report the chunks it could not read."""
        if got.failed_workers:
            self._views.mark_down(got.failed_workers)
        if got.damaged:
            # a store write: off the event loop, and not waited for (it logs its own failure)
            asyncio.get_running_loop().run_in_executor(None, self._views.report_damaged, got.damaged)

    def _fetcher(self, prepared: Prepared, query_id: str) -> Fetch:
        """Runs one worker template over chunks on ``prepared``'s replicas (czar/far.py)."""

        async def fetch(template: str, alias: str, chunk_ids: Sequence[int]) -> pa.Table:
            live = prepared.live_workers
            assignment = assign(chunk_ids, prepared.placement, live) if chunk_ids else {}
            fetching = fetch_plan(template, alias, assignment, sorted(live)[0])
            got = await dispatch(fetching, self._execute, query_id, prepared.placement, live)
            self._after_dispatch(got)
            if got.schema is None:
                raise InternalError(f"query {query_id}: no worker batch returned a result schema")
            return pa.Table.from_batches(got.batches, got.schema)

        return fetch

    async def _far_copies(
        self, plan: QueryPlan, far: FarPairs, prepared: Prepared, query_id: str
    ) -> pa.Table | None:
        key = (far.match.database.lower(), far.match.name.lower())
        match_chunks = self._views.get().nonempty_chunks.get(key, frozenset())
        return await far_copies(
            plan, far, self._fetcher(prepared, query_id), match_chunks, self._max_far_pairs
        )

    async def _answer(self, prepared: Prepared, query_id: str, started: float) -> QueryAnswer:
        """Dispatch a planned query and merge its batches."""
        planned = time.perf_counter()
        plan = prepared.plan
        if plan.rows is not None:  # answered from the metadata while planning
            event(log, "query done", query_id=query_id, strategy=plan.strategy, planning=prepared.planning)
            return QueryAnswer(query_id, planned_table(plan), plan, 0)
        copies: asyncio.Future[pa.Table | None] | None = None
        if plan.far is not None:  # the far match copies, beside the plan's batches (czar/far.py)
            copies = asyncio.ensure_future(self._far_copies(plan, plan.far, prepared, query_id))
            copies.add_done_callback(lambda f: f.cancelled() or f.exception())  # read below or dropped
        try:
            dispatched = await dispatch(
                plan,
                self._execute,
                query_id,
                prepared.placement,
                prepared.live_workers,
                refresh=lambda: self._fresh_placement(prepared),
            )
            far = await copies if copies is not None else None
        finally:
            if copies is not None:
                copies.cancel()  # a failed dispatch: no need of them
        dispatched_at = time.perf_counter()
        self._after_dispatch(dispatched)
        schema = dispatched.schema
        if schema is None:
            raise InternalError(f"query {query_id}: no worker batch returned a result schema")
        if plan.far is not None and far is not None:
            fetch = self._fetcher(prepared, query_id)
            extra = await far_rows(plan, plan.far, far, fetch, self._director_index.chunks_for_keys)
            dispatched.batches.extend(b for b in extra.cast(schema).to_batches() if b.num_rows)
        if plan.passthrough:
            table = self._merger.merge(plan, dispatched.batches, schema)  # a rename, no DuckDB
        else:
            table = await asyncio.to_thread(self._merger.merge, plan, dispatched.batches, schema)
        event(
            log,
            "query done",
            query_id=query_id,
            strategy=plan.strategy,
            planning=prepared.planning,
            chunks=len(plan.chunk_ids),
            workers=len(plan.batches),
            retried_chunks=dispatched.retried_chunks,
            rows=table.num_rows,
            ms=round((time.perf_counter() - started) * 1000, 2),
            plan_ms=round((planned - started) * 1000, 2),
            dispatch_ms=round((dispatched_at - planned) * 1000, 2),
        )
        return QueryAnswer(query_id, table, plan, dispatched.retried_chunks)
