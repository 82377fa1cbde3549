"""The plan prints itself: strategy, why not cheaper ones, chunks, worker and merge SQL, batches.

Deterministic (sorted ids, no addresses), so plan fixtures can compare it::

    strategy: region
    not director-key: no key = constant or key IN (constants) in WHERE
    chunks: 3 [1038, 1039, 1041]
    worker query: SELECT ... WHERE ... AND "o"."_chunk" IN (:chunks)
    merge query: SELECT ... FROM __result
    batch worker-1: 2 chunks [1038, 1041]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from czar.plan.model import CHUNK_FILTER_PLACEHOLDER

if TYPE_CHECKING:
    from czar.plan.model import QueryPlan

SHOWN_IDS = 8


def _ids(ids: Sequence[int]) -> str:
    shown = ", ".join(str(c) for c in ids[:SHOWN_IDS])
    return f"[{shown}{', ...' if len(ids) > SHOWN_IDS else ''}]"


def explain(plan: QueryPlan) -> str:
    """Render ``plan`` as the text ``EXPLAIN`` returns."""
    template = plan.worker_template
    for i, column in enumerate(plan.chunk_columns):
        template = template.replace(CHUNK_FILTER_PLACEHOLDER.format(i), f"{column} IN (:chunks)")
    lines = [f"strategy: {plan.strategy}"]
    columns = f"columns: {', '.join(f'{n} {t}' for n, t in zip(plan.columns, plan.types, strict=True))}"
    if plan.rows is not None:  # answered while planning: nothing is dispatched
        rows = "; ".join(", ".join(map(str, row)) for row in plan.rows)
        return "\n".join([*lines, f"answer from the chunks' recorded row counts: {rows}", columns]) + "\n"
    lines += [f"not {reason}" for reason in plan.reasons]
    lines.append(f"chunks: {len(plan.chunk_ids)} {_ids(plan.chunk_ids)}")
    if plan.aggregation:
        lines.append(f"aggregation: {plan.aggregation}")
    if plan.far is not None:  # czar/plan/match.py
        searched = "every chunk of the match table" if plan.far.everywhere else "these chunks"
        lines.append(
            f"far match pairs: pairs of {plan.far.match.name} farther apart than the overlap, fetched "
            f"from {searched} and both sides' chunks, joined at the czar"
        )
    lines.append(f"worker query: {template}")
    lines.append(f"merge query: {plan.merge_sql}")
    lines.append(f"columns: {', '.join(f'{n} {t}' for n, t in zip(plan.columns, plan.types, strict=True))}")
    for batch in plan.batches:
        lines.append(f"batch {batch.worker}: {len(batch.chunk_ids)} chunks {_ids(batch.chunk_ids)}")
    return "\n".join(lines) + "\n"
