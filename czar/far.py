"""Running the far part of a director-match-director join (czar/plan/match.py).

Beside the plan's own batches, the far copies of its chunks; then the rows of both sides of
those pairs, and the plan's worker SQL over the virtual chunk they make at the czar; its rows
join the workers' batches before the merge. ``fetch`` (the pipeline's dispatch of one
worker template over chunks) and ``chunks_for_keys`` (the director index) come from the
caller, so this runs against fakes in tests as the pipeline does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Sequence

import pyarrow as pa

from czar.plan.match import MAX_FAR_PAIRS, FarPairs, checked_count, virtual_rows
from czar.plan.model import QueryPlan
from qserv.catalog import CHUNK_COLUMN

Fetch = Callable[[str, str, Sequence[int]], Awaitable[pa.Table]]
ChunksForKeys = Callable[[str, str, Sequence[int | str]], Collection[int]]


async def far_copies(
    plan: QueryPlan, far: FarPairs, fetch: Fetch, match_chunks: Collection[int], bound: int = MAX_FAR_PAIRS
) -> pa.Table | None:
    """The far copies in the chunks ``plan`` reads (every chunk of the match table when a
    restrictor on the right director chose them); None when there are none. Needs nothing of
    the plan's own batches: the pipeline runs it beside them."""
    searched = sorted(match_chunks) if far.everywhere else list(plan.chunk_ids)
    if not searched:
        return None
    copies = await fetch(far.copies_template(), "__m", searched)
    if copies.num_rows == 0:
        return None
    checked_count(copies, bound)
    return copies


async def far_rows(
    plan: QueryPlan, far: FarPairs, copies: pa.Table, fetch: Fetch, chunks_for_keys: ChunksForKeys
) -> pa.Table:
    """The worker-shaped rows of the far pairs of ``copies``: both sides' rows fetched, then the
    plan's worker SQL over the virtual chunk they make."""
    assert far.match.left_column and far.match.right_column  # a match table has both
    left_keys = _distinct(copies.column(far.match.left_column))
    right_keys = _distinct(copies.column(far.match.right_column))
    left_chunks = sorted({int(c) for c in copies.column(CHUNK_COLUMN).to_pylist()})
    right_chunks = sorted(chunks_for_keys(far.right.database, far.right.name, right_keys))
    left, right = await asyncio.gather(
        fetch(far.rows_template(far.left, left_keys), "__d", left_chunks),
        fetch(far.rows_template(far.right, right_keys), "__d", right_chunks),
    )
    return await asyncio.to_thread(virtual_rows, plan, far, copies, left, right)


async def far_part(
    plan: QueryPlan,
    far: FarPairs,
    fetch: Fetch,
    chunks_for_keys: ChunksForKeys,
    match_chunks: Collection[int],
    bound: int = MAX_FAR_PAIRS,
) -> pa.Table | None:
    """:func:`far_copies` then :func:`far_rows` (None: no far pair)."""
    copies = await far_copies(plan, far, fetch, match_chunks, bound)
    return None if copies is None else await far_rows(plan, far, copies, fetch, chunks_for_keys)


def _distinct(column: pa.ChunkedArray) -> list[int | str]:
    return list(dict.fromkeys(v for v in column.to_pylist() if v is not None))
