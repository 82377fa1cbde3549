"""Typed values of the planning stage (frozen dataclasses) and the director-index protocol."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from qserv.catalog import Catalog

CHUNK_FILTER_PLACEHOLDER = "__QSERV_CHUNK_FILTER_{}__"


class DirectorIndex(Protocol):
    """Maps director keys to the chunks holding their rows (and their children's)."""

    def chunks_for_keys(self, database: str, table: str, keys: Sequence[int | str]) -> frozenset[int]: ...


@dataclass(frozen=True)
class PlanContext:
    """What the planner needs to know about the cluster right now."""

    placement: Mapping[int, tuple[str, ...]]  # chunk -> live replicas' workers, preferred first
    nonempty_chunks: Mapping[tuple[str, str], frozenset[int]]  # (db, table) lower -> chunks
    workers: tuple[str, ...]  # live workers
    director_index: DirectorIndex
    catalog: Catalog | None = None  # partitioning per database (else the analyzer's snapshot)


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

    def render(self, chunk_ids: Sequence[int]) -> str:
        """Worker SQL for a subset of chunks (empty: a query returning no rows, same schema)."""
        ids = ", ".join(str(int(c)) for c in sorted(chunk_ids))
        sql = self.worker_template
        for i, column in enumerate(self.chunk_columns):
            sql = sql.replace(CHUNK_FILTER_PLACEHOLDER.format(i), f"{column} IN ({ids})" if ids else "FALSE")
        return sql

    def explain(self) -> str:
        """Deterministic text of the plan (what ``EXPLAIN`` returns)."""
        from czar.plan.explain import explain

        return explain(self)
