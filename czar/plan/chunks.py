"""Chunk selection, layered cheapest first; each layer says why it did not apply.

1. director-key  ``objectId IN (1, 2)`` -> director index -> a few chunks
2. region        ``qserv_areaspec_circle(...)`` -> HEALPix coverage at the chunk order
3. full-scan     every non-empty chunk of the query's chunked tables

(A query over regular tables only is ``regular-only``: one batch to one worker.)  Every
layer intersects with the non-empty chunks, so empty chunks are never dispatched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from czar.analyze.model import AnalyzedQuery
from czar.plan.model import PlanContext

NO_KEYS = "director-key: no director key = constant or key IN (constants) in WHERE"
NO_REGION = "region: no qserv_areaspec_* restrictor in WHERE"


@dataclass(frozen=True)
class ChunkChoice:
    strategy: str
    reasons: tuple[str, ...]
    chunk_ids: tuple[int, ...]


def choose_chunks(q: AnalyzedQuery, ctx: PlanContext) -> ChunkChoice:
    """The cheapest strategy that applies, with the chunks it selects (sorted)."""
    chunked = q.chunked
    if not chunked:
        return ChunkChoice("regular-only", (), ())
    nonempty, nonempty_sorted = chunks_with_rows(ctx, tuple(sorted({ref.key for ref in chunked})))
    partitioning = q.partitioning
    if ctx.catalog is not None:
        db = ctx.catalog.database(chunked[0].table.database)
        partitioning = db.partitioning if db is not None else partitioning
    region_chunks: frozenset[int] | None = None
    if q.region is not None and partitioning is not None:
        region_chunks = frozenset(q.region.chunks(partitioning.order))
    if q.director_keys is not None:
        return key_chunks(q.director_keys.director, q.director_keys.keys, nonempty, region_chunks, ctx)
    if region_chunks is not None:
        return ChunkChoice("region", (NO_KEYS,), tuple(sorted(region_chunks & nonempty)))
    return ChunkChoice("full-scan", (NO_KEYS, NO_REGION), nonempty_sorted)


def key_chunks(
    director: tuple[str, str],
    keys: Sequence[int | str],
    nonempty: frozenset[int],
    region_chunks: frozenset[int] | None,
    ctx: PlanContext,
) -> ChunkChoice:
    """The director-key layer: the chunks the director index gives for ``keys``."""
    chunks = frozenset(ctx.director_index.chunks_for_keys(*director, keys)) & nonempty
    if region_chunks is not None:
        chunks &= region_chunks
    return ChunkChoice("director-key", (), tuple(sorted(chunks)))


def chunks_with_rows(
    ctx: PlanContext, keys: tuple[tuple[str, str], ...]
) -> tuple[frozenset[int], tuple[int, ...]]:
    """Chunks with rows in any of the tables ``keys`` ((db, table) lower), as a set and sorted;
    memoised per metadata snapshot (a union and sort of 12,000 chunks costs ~1 ms a query)."""
    memo_key = ("nonempty", id(ctx.nonempty_chunks), keys)
    if ctx.memo is not None and memo_key in ctx.memo:
        return ctx.memo[memo_key]  # type: ignore[return-value]
    union: frozenset[int] = frozenset().union(*(ctx.nonempty_chunks.get(k, frozenset()) for k in keys))
    result = (union, tuple(sorted(union)))
    if ctx.memo is not None:
        ctx.memo[memo_key] = result
    return result
