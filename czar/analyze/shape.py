"""Pass 2 (shape): refuse what the planner cannot yet evaluate correctly, naming the construct.

    SELECT COUNT(DISTINCT a) FROM Object       -> Unsupported 0A000 "COUNT(DISTINCT ...)"
    SELECT a FROM Object LIMIT 5 OFFSET 10     -> Unsupported 0A000 "OFFSET"

Depends on guard (the tree is a SELECT).
"""

from __future__ import annotations

from sqlglot import exp

from czar.parse import node_position
from qserv.errors import Unsupported

# (node type, construct name, remedy)
_REFUSED: tuple[tuple[type[exp.Expr], str, str], ...] = (
    (exp.With, "WITH (common table expressions)", "inline the CTE"),
    (exp.SetOperation, "UNION/INTERSECT/EXCEPT", "run the queries separately"),
    (exp.Window, "window functions", "compute them on the result"),
    (exp.Offset, "OFFSET", "page with a WHERE condition on an ordered key"),
    (exp.Qualify, "QUALIFY", "filter the result instead"),
    (exp.Lateral, "LATERAL", "join the tables directly"),
    (exp.Rollup, "ROLLUP", "use GROUP BY"),
    (exp.Cube, "CUBE", "use GROUP BY"),
    (exp.GroupingSets, "GROUPING SETS", "use GROUP BY"),
    (exp.Filter, "aggregate FILTER", "use CASE inside the aggregate"),
    (exp.Unnest, "UNNEST", "select catalog columns"),
    (exp.Values, "VALUES", "select from catalog tables"),
)

SPLITTABLE_AGGREGATES = (exp.Count, exp.Sum, exp.Min, exp.Max, exp.Avg)


def shape(tree: exp.Select) -> None:
    """Raise :class:`Unsupported` for the first construct the planner cannot split yet."""
    for node in tree.walk():
        if isinstance(node, exp.Select | exp.Subquery) and node is not tree:
            raise Unsupported(
                "sub-queries are not supported yet: join the tables directly",
                position=node_position(node),
            )
        for cls, name, remedy in _REFUSED:
            if isinstance(node, cls):
                raise Unsupported(f"{name} is not supported yet: {remedy}", position=node_position(node))
        if isinstance(node, exp.AggFunc):
            _check_aggregate(node)
    distinct = tree.args.get("distinct")
    if isinstance(distinct, exp.Distinct) and distinct.args.get("on"):
        raise Unsupported("DISTINCT ON is not supported yet: use GROUP BY", position=node_position(distinct))
    limit = tree.args.get("limit")
    if limit is not None:
        value = limit.expression if isinstance(limit, exp.Limit) else limit
        if not (isinstance(value, exp.Literal) and value.is_int):
            raise Unsupported("LIMIT must be an integer constant", position=node_position(limit))


def _check_aggregate(node: exp.AggFunc) -> None:
    name = node.sql_name().upper()
    if isinstance(node.this, exp.Distinct):
        raise Unsupported(
            f"{name}(DISTINCT ...) is not supported yet: use GROUP BY on the column",
            position=node_position(node),
        )
    if not isinstance(node, SPLITTABLE_AGGREGATES):
        raise Unsupported(
            f"aggregate {name} cannot be split across chunks yet: use COUNT, SUM, MIN, MAX or AVG",
            position=node_position(node),
        )
    for inner in node.find_all(exp.AggFunc):
        if inner is not node:
            raise Unsupported(f"nested aggregate inside {name} is not allowed", position=node_position(inner))
