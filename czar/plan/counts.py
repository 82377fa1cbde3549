"""``COUNT(*)`` of a whole table, answered from the row counts recorded at commit.

Every committed load records its rows per chunk (``chunk_rows`` in the metadata store, written
in the same commit that publishes the rows), so a count of a whole director or child table is
their sum, without dispatching to a worker::

    SELECT COUNT(*) AS n FROM Object      -> strategy row-counts, answer (2000,)
    SELECT COUNT(*) FROM Object WHERE ... -> not this plan: the workers count

Only the plainest shape qualifies: one director or child table (match tables store a pair with
both of its sides), no WHERE, JOIN, GROUP BY, HAVING, DISTINCT, LIMIT or OFFSET, and a select
list of ``COUNT(*)`` (or ``COUNT(constant)``) calls only.
"""

from __future__ import annotations

from sqlglot import exp

from czar.analyze.model import AnalyzedQuery
from czar.plan.model import PlanContext
from qserv.catalog import TableKind

_COUNTED = (TableKind.DIRECTOR, TableKind.CHILD)
_CLAUSES = ("where", "joins", "group", "having", "distinct", "limit", "offset", "qualify")


def _counts_all_rows(node: exp.Expr) -> bool:
    """``COUNT(*)``, or ``COUNT(c)`` of a non-NULL constant (it counts every row too)."""
    if isinstance(node, exp.Alias):
        node = node.this
    if not isinstance(node, exp.Count):
        return False
    arg = node.this
    return isinstance(arg, exp.Star) or (isinstance(arg, exp.Literal | exp.Boolean))


def whole_table_count(q: AnalyzedQuery, ctx: PlanContext) -> tuple[tuple[int, ...], ...] | None:
    """The one result row of ``q`` when it counts a whole table the metadata has row counts
    for; None: plan it as usual."""
    if ctx.row_counts is None or len(q.tables) != 1 or q.tables[0].kind not in _COUNTED:
        return None
    if any(q.tree.args.get(clause) for clause in _CLAUSES):
        return None
    if not q.tree.expressions or not all(_counts_all_rows(p) for p in q.tree.expressions):
        return None
    rows = ctx.row_counts.get(q.tables[0].key, 0)
    return (tuple(rows for _ in q.tree.expressions),)
