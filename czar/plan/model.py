"""Typed values of the planning stage (frozen dataclasses) and the director-index protocol."""

from __future__ import annotations

from collections.abc import Collection, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from qserv.catalog import Catalog

if TYPE_CHECKING:
    from czar.plan.match import FarPairs

CHUNK_FILTER_PLACEHOLDER = "__QSERV_CHUNK_FILTER_{}__"


class DirectorIndex(Protocol):
    """Maps director keys to the chunks holding their rows (and their children's)."""

    def chunks_for_keys(self, database: str, table: str, keys: Sequence[int | str]) -> frozenset[int]: ...

    def chunks_for_range(
        self, database: str, table: str, low: int, high: int, max_chunks: int
    ) -> frozenset[int] | None:
        """Chunks holding a key in [low, high]; None when more than ``max_chunks`` do."""
        ...


MAX_RANGES = 8


Runs = tuple[tuple[int, int], ...]


def chunk_runs(chunk_ids: Sequence[int], held: Collection[int] | None) -> Runs | None:
    """Ranges selecting exactly ``chunk_ids`` on a worker holding ``held``; None: use IN.

    A range is safe when every chunk the worker holds inside it is wanted, so ranges are
    runs over the held chunks. Short lists stay IN lists (zone maps prune those too).
    """
    if held is None:  # (before building the set: a full scan lists thousands of ids)
        return None
    wanted = sorted({int(c) for c in chunk_ids})
    if len(wanted) <= MAX_RANGES:
        return None
    want = set(wanted)
    runs: list[list[int]] = []
    previous_wanted = False
    for c in sorted(want.union(held)):
        if c in want:
            if previous_wanted:
                runs[-1][1] = c
            else:
                runs.append([c, c])
        previous_wanted = c in want
    if len(runs) > MAX_RANGES:
        return None
    return tuple((a, b) for a, b in runs)


def id_list(chunk_ids: Sequence[int]) -> str:
    """The text of an IN list of ``chunk_ids`` (sorted, distinct)."""
    return ", ".join(map(str, sorted({int(c) for c in chunk_ids})))


def chunk_filter(
    column: str,
    chunk_ids: Sequence[int],
    held: Collection[int] | None = None,
    runs: Runs | None = None,
    ids_text: str | None = None,
) -> str:
    """SQL keeping the rows of ``chunk_ids`` on a worker that stores the ``held`` chunks.

    A long ``IN`` list costs DuckDB a hash probe per row (~9x a plain scan for 4,000 chunks),
    while a few ``BETWEEN`` ranges prune row groups by zone map (see :func:`chunk_runs`)::

        wanted 0..19 and 30, held 0..39     -> (_chunk BETWEEN 0 AND 19 OR _chunk = 30)
        wanted 0..19 and 30, held 0..19, 30 -> _chunk BETWEEN 0 AND 30
        wanted {3, 4, 7}                    -> _chunk IN (3, 4, 7)
    """
    if not chunk_ids:
        return "FALSE"
    if runs is None:
        runs = chunk_runs(chunk_ids, held)
    if runs is None:
        # ``ids_text``: the id_list, rendered once per batch (a full scan lists thousands)
        return f"{column} IN ({ids_text if ids_text is not None else id_list(chunk_ids)})"
    parts = [f"{column} = {a}" if a == b else f"{column} BETWEEN {a} AND {b}" for a, b in runs]
    return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"


@dataclass(frozen=True)
class PlanContext:
    """What the planner needs to know about the cluster right now."""

    placement: Mapping[int, tuple[str, ...]]  # chunk -> live replicas' workers, preferred first
    nonempty_chunks: Mapping[tuple[str, str], frozenset[int]]  # (db, table) lower -> chunks
    workers: tuple[str, ...]  # live workers
    director_index: DirectorIndex
    catalog: Catalog | None = None  # partitioning per database (else the analyzer's snapshot)
    # worker -> chunks it holds; derived from ``placement`` when None (precomputed by the czar)
    held: Mapping[str, frozenset[int]] | None = None
    # a cache living as long as this placement (the czar's metadata snapshot): replica choice
    # for 12,000 chunks costs ~10 ms of Python, and full scans repeat the same chunk set
    memo: MutableMapping[object, object] | None = None
    # (db, table) lower -> committed rows (sum of the chunks' row counts); None: not known
    row_counts: Mapping[tuple[str, str], int] | None = None


@dataclass(frozen=True)
class WorkerBatch:
    """All chunk tasks of one query sent to one worker, as one SQL statement."""

    worker: str
    chunk_ids: tuple[int, ...]
    sql: str


@dataclass(frozen=True)
class QueryPlan:
    """How a query runs: chunks, per-worker SQL, and the merge query over ``__result``."""

    strategy: str  # director-key | region | full-scan | regular-only
    reasons: tuple[str, ...]  # why cheaper strategies were not taken
    chunk_ids: tuple[int, ...]
    batches: tuple[WorkerBatch, ...]
    merge_sql: str
    columns: tuple[str, ...]
    types: tuple[str, ...]
    worker_template: str  # worker SQL with one placeholder per chunked table reference
    chunk_columns: tuple[str, ...]  # the ``alias._chunk`` column SQL of each placeholder
    passthrough: bool = False  # merge_sql only renames columns (no aggregate/order/limit/distinct)
    rows: tuple[tuple[object, ...], ...] | None = None  # the answer, known when planning (no batch)
    aggregation: str = ""  # how aggregates are computed (EXPLAIN); "" when not aggregated
    far: FarPairs | None = None  # match pairs beyond the overlap, answered at the czar (plan/match.py)

    def render(
        self,
        chunk_ids: Sequence[int],
        held: Collection[int] | None = None,
        runs: Runs | None = None,
        ids_text: str | None = None,
    ) -> str:
        """Worker SQL for a subset of chunks (empty: a query returning no rows, same schema).

        ``held`` (every chunk the target worker stores) or precomputed ``runs`` let the
        filter use ranges (see :func:`chunk_filter`).
        """
        if runs is None and held is not None:
            runs = chunk_runs(chunk_ids, held)
        if runs is None and ids_text is None and chunk_ids and len(self.chunk_columns) > 1:
            ids_text = id_list(chunk_ids)  # one list for every chunked table of the query
        sql = self.worker_template
        for i, column in enumerate(self.chunk_columns):
            sql = sql.replace(
                CHUNK_FILTER_PLACEHOLDER.format(i),
                chunk_filter(column, chunk_ids, runs=runs, ids_text=ids_text),
            )
        return sql

    def explain(self) -> str:
        """Deterministic text of the plan (what ``EXPLAIN`` returns)."""
        from czar.plan.explain import explain

        return explain(self)
