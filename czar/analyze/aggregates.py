"""Pass 7 (aggregates): does the query aggregate, and what are its GROUP BY keys?

    SELECT filterId AS f, COUNT(*) FROM Source GROUP BY 1   -> group_by = ("s"."filterId",)

Ordinals and select-list aliases in GROUP BY were replaced by the projection they name (names
pass), so the split (plan/split.py) can match keys structurally.  ``GROUP BY ALL`` (DuckDB)
becomes the list of projections without an aggregate, as DuckDB expands it:

    SELECT flags, COUNT(*) FROM Object GROUP BY ALL  -> ... GROUP BY "Object"."flags"

Depends on resolve, names and shape.
"""

from __future__ import annotations

from sqlglot import exp

from czar.analyze.model import AggregateInfo
from czar.analyze.names import group_all_keys


def analyze_aggregates(tree: exp.Select) -> AggregateInfo:
    """Record aggregation and expand GROUP BY ALL in place."""
    group = tree.args.get("group")
    keys: list[exp.Expr] = []
    if group is not None and group.args.get("all"):
        # without keys (constants only) it is a plain aggregate over all rows
        keys = group_all_keys(tree)
        if keys:
            group.set("all", None)
            group.set("expressions", [k.copy() for k in keys])
        else:
            group.pop()
            group = None
    elif group is not None:
        keys = list(group.expressions)
    aggregated = group is not None or any(p.find(exp.AggFunc) is not None for p in tree.expressions)
    if tree.args.get("having") is not None:
        aggregated = True
    return AggregateInfo(aggregated=aggregated, group_by=tuple(keys))
