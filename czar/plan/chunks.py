"""Chunk selection, layered cheapest first; each layer says why it did not apply.

1. director-key  ``objectId IN (1, 2)`` -> director index -> a few chunks
   director-range ``objectId BETWEEN 1 AND 99`` -> director index range -> its chunks, when at
                  most MAX_RANGE_CHUNKS (else the next layer)
2. region        ``qserv_areaspec_*``/``scisql_s2PtIn*(...) = 1`` -> HEALPix coverage at the chunk order
                 (the intersection of every restrictor's cover)
3. full-scan     every non-empty chunk of the query's chunked tables

(A query over regular tables only is ``regular-only``: one batch to one worker.)  Every
layer intersects with the non-empty chunks, so empty chunks are never dispatched.
"""

from __future__ import annotations

from dataclasses import dataclass

from czar.analyze.model import AnalyzedQuery, KeyRange, KeyRestriction, Region
from czar.plan.model import PlanContext
from qserv.catalog import Partitioning

NO_KEYS = "director-key: no director key = constant or key IN (constants) in WHERE"
NO_REGION = "region: no spatial restrictor (qserv_areaspec_*, scisql_s2PtIn*) as a top-level WHERE term"
# a key range lying in more chunks than this is scanned like the rest (as fast, and a bounded
# lookup keeps planning a few milliseconds however wide the range)
MAX_RANGE_CHUNKS = 512


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
    tables = tuple(sorted({ref.key for ref in chunked}))
    order = chunk_order(chunked[0].table.database, q.partitioning, ctx)
    return layered(tables, order, q.director_keys, q.region, ctx, q.director_range)


def chunk_order(database: str, analyzed: Partitioning | None, ctx: PlanContext) -> int | None:
    """The chunk order of ``database`` in this snapshot (else as the analyzer saw it)."""
    db = ctx.catalog.database(database) if ctx.catalog is not None else None
    partitioning = db.partitioning if db is not None else analyzed
    return partitioning.order if partitioning is not None else None


def layered(
    tables: tuple[tuple[str, str], ...],
    order: int | None,
    keys: KeyRestriction | None,
    region: Region | None,
    ctx: PlanContext,
    key_range: KeyRange | None = None,
) -> ChunkChoice:
    """The layers over the chunked ``tables`` ((db, table) lower), partitioned at ``order``."""
    nonempty, nonempty_sorted = chunks_with_rows(ctx, tables)
    region_chunks: frozenset[int] | None = None
    if region is not None and order is not None:
        region_chunks = frozenset(region.chunks(order))
    if keys is not None:
        chunks = frozenset(ctx.director_index.chunks_for_keys(*keys.director, keys.keys)) & nonempty
        if region_chunks is not None:
            chunks &= region_chunks
        return ChunkChoice("director-key", (), tuple(sorted(chunks)))
    reasons: tuple[str, ...] = (NO_KEYS,)
    if key_range is not None:
        in_range = ctx.director_index.chunks_for_range(
            *key_range.director, key_range.low, key_range.high, MAX_RANGE_CHUNKS
        )
        if in_range is not None:
            chunks = in_range & nonempty
            if region_chunks is not None:
                chunks &= region_chunks
            return ChunkChoice("director-range", (), tuple(sorted(chunks)))
        reasons = (
            f"director-range: keys {key_range.low}..{key_range.high} lie in more than "
            f"{MAX_RANGE_CHUNKS} chunks",
        )
    if region_chunks is not None:
        return ChunkChoice("region", reasons, tuple(sorted(region_chunks & nonempty)))
    return ChunkChoice("full-scan", (*reasons, NO_REGION), nonempty_sorted)


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
