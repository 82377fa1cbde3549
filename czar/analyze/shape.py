"""Pass 2 (shape): refuse what the planner cannot yet evaluate correctly, naming the construct.

    SELECT a FROM Object UNION SELECT b FROM Source   -> Unsupported 0A000 "UNION/INTERSECT/EXCEPT"
    SELECT a FROM Object LIMIT 5 OFFSET x             -> Unsupported 0A000 "OFFSET must be ..."

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
    (exp.Qualify, "QUALIFY", "filter the result instead"),
    (exp.Lateral, "LATERAL", "join the tables directly"),
    (exp.Rollup, "ROLLUP", "use GROUP BY"),
    (exp.Cube, "CUBE", "use GROUP BY"),
    (exp.GroupingSets, "GROUPING SETS", "use GROUP BY"),
    (exp.Filter, "aggregate FILTER", "use CASE inside the aggregate"),
    (exp.Unnest, "UNNEST", "select catalog columns"),
    (exp.Values, "VALUES", "select from catalog tables"),
)

SPLITTABLE_AGGREGATES = (
    exp.Count,
    exp.Sum,
    exp.Min,
    exp.Max,
    exp.Avg,
    exp.Stddev,
    exp.StddevSamp,
    exp.StddevPop,
    exp.Variance,
    exp.VariancePop,
)


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
    for key in ("limit", "offset"):
        clause = tree.args.get(key)
        if clause is not None:
            value = clause.expression if isinstance(clause, exp.Limit | exp.Offset) else clause
            if not (isinstance(value, exp.Literal) and value.is_int):
                raise Unsupported(
                    f"{key.upper()} must be an integer constant", position=node_position(clause)
                )


def _check_aggregate(node: exp.AggFunc) -> None:
    name = node.sql_name().upper()
    if not isinstance(node, SPLITTABLE_AGGREGATES):
        raise Unsupported(
            f"aggregate {name} cannot be split across chunks yet: use COUNT, SUM, MIN, MAX, AVG, "
            "STDDEV or VARIANCE",
            position=node_position(node),
        )
    for inner in node.find_all(exp.AggFunc):
        if inner is not node:
            raise Unsupported(f"nested aggregate inside {name} is not allowed", position=node_position(inner))
