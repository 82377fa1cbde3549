"""Pass 7 (aggregates): does the query aggregate, and what are its GROUP BY keys?

    SELECT filterId AS f, COUNT(*) FROM Source GROUP BY 1   -> group_by = ("s"."filterId",)

Ordinals and select-list aliases in GROUP BY are replaced by the projection they name, so the
split (plan/split.py) can match keys structurally.  ``GROUP BY ALL`` (DuckDB) becomes the list
of projections without an aggregate, as DuckDB expands it:

    SELECT flags, COUNT(*) FROM Object GROUP BY ALL  -> ... GROUP BY "Object"."flags"

Depends on resolve and shape.
"""

from __future__ import annotations

from sqlglot import exp

from czar.analyze.model import AggregateInfo
from czar.parse import node_position
from qserv.errors import QservError


def projection_for(tree: exp.Select, ref: exp.Expr) -> exp.Expr | None:
    """The projection an ordinal (``1``) or bare alias names, unwrapped from its alias."""
    projections = tree.expressions
    if isinstance(ref, exp.Literal) and ref.is_int:
        index = int(ref.this) - 1
        if not 0 <= index < len(projections):
            err = QservError(
                f"position {ref.this} is not in select list (1..{len(projections)})",
                position=node_position(ref),
            )
            err.sqlstate = "42P10"
            raise err
        p = projections[index]
        return p.this if isinstance(p, exp.Alias) else p
    if isinstance(ref, exp.Column) and not ref.table:
        for p in projections:
            if isinstance(p, exp.Alias) and p.alias.lower() == ref.name.lower():
                return p.this
    return None


def analyze_aggregates(tree: exp.Select) -> AggregateInfo:
    """Record aggregation and resolve GROUP BY keys in place."""
    group = tree.args.get("group")
    keys: list[exp.Expr] = []
    if group is not None and group.args.get("all"):
        # DuckDB's GROUP BY ALL: every projection with columns and no aggregate is a key
        # (constants are not); without keys it is a plain aggregate over all rows
        for p in tree.expressions:
            target = p.this if isinstance(p, exp.Alias) else p
            if target.find(exp.AggFunc) is None and target.find(exp.Column) is not None:
                keys.append(target.copy())
        if keys:
            group.set("all", None)
            group.set("expressions", [k.copy() for k in keys])
        else:
            group.pop()
            group = None
    elif group is not None:
        for key in group.expressions:
            target = projection_for(tree, key)
            if target is not None:
                key.replace(target.copy())
                keys.append(target.copy())
            else:
                keys.append(key)
    aggregated = group is not None or any(p.find(exp.AggFunc) is not None for p in tree.expressions)
    having = tree.args.get("having")
    if having is not None:
        aggregated = True
    return AggregateInfo(aggregated=aggregated, group_by=tuple(keys))
