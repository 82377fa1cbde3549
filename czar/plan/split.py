"""Split a query into the worker query (per chunk set) and the merge query (over ``__result``).

Aggregates split by one table of rules (:data:`RULES`); the worker half and the merge half of
each call are built together::

    SELECT f.filterName, COUNT(*) AS n, AVG(s.psfFlux) FROM Source s JOIN Filter f ON ...
    GROUP BY f.filterName HAVING COUNT(*) > 10 ORDER BY n DESC LIMIT 3
    worker: SELECT "f"."filterName" AS _q_g0, COUNT(*) AS _q_a0, SUM("s"."psfFlux") AS _q_a1,
                   COUNT("s"."psfFlux") AS _q_a2 FROM ... WHERE <chunk filter> GROUP BY "f"."filterName"
    merge:  SELECT _q_g0 AS "filterName", CAST(COALESCE(SUM(_q_a0), 0) AS BIGINT) AS "n",
                   CAST(CAST(SUM(_q_a1) AS DOUBLE) / NULLIF(SUM(_q_a2), 0) AS DOUBLE) AS "avg(psfFlux)"
            FROM __result GROUP BY _q_g0 HAVING ... ORDER BY 2 DESC LIMIT 3

Expressions over aggregates (``SUM(x) / COUNT(*)``) split each call inside them.  GROUP BY is
pushed down and re-applied; HAVING, DISTINCT, ORDER BY and LIMIT run at merge.  Queries
without aggregates push ``[ORDER BY ...] LIMIT n`` down and re-apply it at merge.
Merge outputs of aggregate projections are cast to the type single-node DuckDB gives.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlglot import exp

from czar.analyze.model import AnalyzedQuery, JoinKind, TableRef
from czar.analyze.using import to_on
from czar.parse import node_position
from czar.plan.model import CHUNK_FILTER_PLACEHOLDER
from czar.plan.neighbour import copy_condition, near_band, read_with_overlap
from qserv.catalog import CHUNK_COLUMN, TableKind
from qserv.errors import Unsupported

RESULT_TABLE = "__result"


def _sum(a: exp.Expr) -> exp.Expr:
    return exp.Sum(this=a)


# aggregate -> (worker partials from the argument, merge expression from the partial columns)
RULES: dict[
    type[exp.AggFunc],
    tuple[
        Callable[[exp.AggFunc], list[exp.Expr]],
        Callable[[list[exp.Expr]], exp.Expr],
    ],
] = {
    exp.Count: (
        lambda n: [n.copy()],
        lambda p: exp.cast(exp.Coalesce(this=_sum(p[0]), expressions=[exp.Literal.number(0)]), "BIGINT"),
    ),
    exp.Sum: (lambda n: [n.copy()], lambda p: _sum(p[0])),
    exp.Min: (lambda n: [n.copy()], lambda p: exp.Min(this=p[0])),
    exp.Max: (lambda n: [n.copy()], lambda p: exp.Max(this=p[0])),
    exp.Avg: (
        lambda n: [exp.Sum(this=n.this.copy()), exp.Count(this=n.this.copy())],
        lambda p: exp.Div(
            this=exp.cast(_sum(p[0]), "DOUBLE"),
            expression=exp.Nullif(this=_sum(p[1]), expression=exp.Literal.number(0)),
        ),
    ),
}


@dataclass(frozen=True)
class Split:
    worker_template: str  # DuckDB SQL with CHUNK_FILTER_PLACEHOLDER markers
    chunk_columns: tuple[str, ...]
    merge_sql: str
    # the merge only renames the worker columns: batches can be concatenated, no DuckDB needed
    passthrough: bool = False
    aggregation: str = ""  # how aggregates are computed, for EXPLAIN ("" when not aggregated)


def _col(name: str) -> exp.Column:
    return exp.column(name)


def _inner(p: exp.Expr) -> exp.Expr:
    return p.this if isinstance(p, exp.Alias) else p


def _add_chunk_filters(q: AnalyzedQuery, worker: exp.Select) -> tuple[str, ...]:
    """``alias._chunk IN (:chunks)`` for every chunked table; ``b._chunk = a._chunk`` per join;
    the second side of a near-neighbour join read with its overlap rows (plan/neighbour.py),
    a match table's copies chosen by their flag bit (czar/analyze/match.py)."""
    to_on(worker, q.tables)
    joins = {j.this.alias_or_name.lower(): j for j in worker.args.get("joins") or []}
    order = {r.alias.lower(): i for i, r in enumerate(q.tables)}

    def add(alias: str, condition: exp.Expr, in_on: bool) -> None:
        join = joins.get(alias.lower())
        if in_on and join is not None:
            on = join.args.get("on")
            join.set("on", exp.and_(on, condition, copy=False) if on is not None else condition)
        else:
            worker.where(condition, append=True, copy=False)

    columns = []
    for i, ref in enumerate(q.chunked):
        columns.append(f'"{ref.alias}"."{CHUNK_COLUMN}"')
        add(ref.alias, exp.var(CHUNK_FILTER_PLACEHOLDER.format(i)), ref.outer)
    for cj in q.chunk_joins:
        # the conditions belong to the join of whichever table comes later in FROM
        target = max(cj.left, cj.right, key=lambda a: order[a.lower()])
        eq = exp.EQ(
            this=exp.column(CHUNK_COLUMN, table=exp.to_identifier(cj.right, quoted=True)),
            expression=exp.column(CHUNK_COLUMN, table=exp.to_identifier(cj.left, quoted=True)),
        )
        add(target, eq, cj.in_on)
        if cj.kind is JoinKind.NEAR:
            add(target, near_band(q, worker, cj), cj.in_on)
        elif cj.kind is JoinKind.OVERLAP:
            read_with_overlap(q, worker, cj)
    by_alias = {r.alias.lower(): r for r in q.tables}
    for alias, bit in q.match_copies:
        ref = by_alias[alias.lower()]
        add(alias, copy_condition(ref, bit), ref.outer)
    return tuple(columns)


def split(q: AnalyzedQuery) -> Split:
    """Build the worker template and the merge query of ``q``."""
    worker = q.tree.copy()
    columns = _add_chunk_filters(q, worker)
    local = chunk_local_group(q)
    aggregation = ""
    if q.aggregates.aggregated and local is not None:
        # every group lies in one chunk: the workers compute the final rows (HAVING included)
        merge = _split_plain(q, worker)
        aggregation = f"on workers (groups are chunk-local: GROUP BY {local})"
    elif q.aggregates.aggregated:
        merge = _split_aggregate(q, worker)
    else:
        merge = _split_plain(q, worker)
    template = worker.sql(dialect="duckdb")
    for i in range(len(columns)):
        if template.count(CHUNK_FILTER_PLACEHOLDER.format(i)) != 1:
            raise Unsupported("query text collides with qserv's internal chunk placeholders")
    passthrough = (
        not q.aggregates.aggregated
        and q.tree.args.get("distinct") is None
        and q.tree.args.get("order") is None
        and q.tree.args.get("limit") is None
    )
    return Split(template, columns, merge.sql(dialect="duckdb"), passthrough, aggregation)


def chunk_local_group(q: AnalyzedQuery) -> str | None:
    """A GROUP BY key whose groups each lie in one chunk (SQL text), else None.

    A director's key is unique (unless loaded as non-unique) and its rows are in their own chunk (not read from an overlap,
    not the nullable side of a LEFT JOIN, whose NULL group spans chunks); so is a child's key
    when the child is inner-joined to its director (a child row lives in its director row's
    chunk).  One such key makes every group chunk-local, whatever the other keys.
    """
    if not q.aggregates.aggregated or not q.chunked:
        return None
    by_alias = {r.alias.lower(): r for r in q.tables}
    overlapped = {j.right.lower() for j in q.chunk_joins if j.kind in (JoinKind.NEAR, JoinKind.OVERLAP)}
    for key in q.aggregates.group_by:
        if not isinstance(key, exp.Column):
            continue
        ref = by_alias.get(key.table.lower())
        if ref is None or ref.outer or ref.alias.lower() in overlapped:
            continue
        t = ref.table
        name = key.name.lower()
        if t.kind is TableKind.DIRECTOR and not t.non_unique_key and (t.id_column or "").lower() == name:
            return key.sql(dialect="duckdb")
        if t.kind is TableKind.CHILD and (t.key_column or "").lower() == name and _joined_to_director(q, ref):
            return key.sql(dialect="duckdb")
    return None


def _joined_to_director(q: AnalyzedQuery, child: TableRef) -> bool:
    by_alias = {r.alias.lower(): r for r in q.tables}
    for j in q.chunk_joins:
        if j.kind is not JoinKind.KEY or child.alias not in (j.left, j.right):
            continue
        other = by_alias[(j.right if j.left == child.alias else j.left).lower()]
        if (
            other.kind is TableKind.DIRECTOR
            and not other.outer
            and other.table.name.lower() == (child.table.director or "").lower()
            and other.table.database.lower() == child.table.database.lower()
        ):
            return True
    return False


def _name(q: AnalyzedQuery, i: int) -> exp.Identifier:
    return exp.to_identifier(q.columns[i], quoted=True)


def _ordinal(i: int) -> exp.Expr:
    return exp.Literal.number(i + 1)


def _order_target(q: AnalyzedQuery, key: exp.Expr) -> int | None:
    """Index of the projection an ORDER BY key names (ordinal, or the same expression).

    The names pass turned alias references into ordinals and checked their range.
    """
    projections = q.tree.expressions
    if isinstance(key, exp.Literal) and key.is_int:
        return int(key.this) - 1
    for i, p in enumerate(projections):
        if _inner(p) == key:
            return i
    return None


def _split_plain(q: AnalyzedQuery, worker: exp.Select) -> exp.Select:
    tree = q.tree
    # ``worker`` is this plan's own copy of the tree: its projections can move without copying
    projections = [exp.alias_(_inner(p), f"_q_c{i}", copy=False) for i, p in enumerate(worker.expressions)]
    order = tree.args.get("order")
    merge_order: list[exp.Ordered] = []
    worker_order: list[exp.Ordered] = []
    distinct = tree.args.get("distinct") is not None
    if order is not None:
        for item in order.expressions:
            target = _order_target(q, item.this)
            if target is not None:
                ref: exp.Expr = _col(f"_q_c{target}")
                merge_ref: exp.Expr = _ordinal(target) if distinct else ref
            else:
                name = f"_q_o{len(projections) - len(tree.expressions)}"
                projections.append(exp.alias_(item.this.copy(), name))
                ref = merge_ref = _col(name)
            worker_order.append(_reordered(item, ref))
            merge_order.append(_reordered(item, merge_ref))
    worker.set("expressions", projections)
    limit = tree.args.get("limit")
    if limit is not None and order is not None:
        worker.set("order", exp.Order(expressions=worker_order))
    else:
        worker.set("order", None)
    merge = exp.select(
        *[exp.alias_(_col(f"_q_c{i}"), _name(q, i)) for i in range(len(tree.expressions))]
    ).from_(RESULT_TABLE)
    if distinct:
        merge.set("distinct", exp.Distinct())
    if merge_order:
        merge.set("order", exp.Order(expressions=merge_order))
    if limit is not None:
        merge.set("limit", limit.copy())
    return merge


def _reordered(item: exp.Ordered, this: exp.Expr) -> exp.Ordered:
    new = item.copy()
    new.set("this", this)
    return new


class _Partials:
    """The worker's partial aggregate columns, de-duplicated, and the merge expressions over them."""

    def __init__(self, groups: tuple[exp.Expr, ...]) -> None:
        self.groups = groups
        self.worker: list[exp.Expr] = []
        self._index: dict[str, int] = {}

    def _partial(self, expression: exp.Expr) -> exp.Column:
        key = expression.sql(dialect="duckdb")
        if key not in self._index:
            self._index[key] = len(self.worker)
            self.worker.append(expression)
        return _col(f"_q_a{self._index[key]}")

    def merge(self, expression: exp.Expr) -> exp.Expr:
        """``expression`` rewritten over ``__result`` columns."""

        def rewrite(node: exp.Expr) -> exp.Expr:
            for j, group in enumerate(self.groups):
                if node == group:
                    return _col(f"_q_g{j}")
            if isinstance(node, exp.AggFunc):
                rule = RULES.get(type(node))
                if rule is None:
                    raise Unsupported(
                        f"aggregate {node.sql_name()} cannot be split across chunks",
                        position=node_position(node),
                    )
                make_partials, make_merge = rule
                merged = make_merge([self._partial(p) for p in make_partials(node)])
                if isinstance(merged, exp.Binary) and isinstance(node.parent, (exp.Binary, exp.Unary)):
                    merged = exp.Paren(this=merged)  # MAX(x) / AVG(y): not MAX(x) / SUM(y) / COUNT(y)
                return merged
            return node

        out = expression.copy().transform(rewrite, copy=False)
        for col in out.find_all(exp.Column):
            if col.table or not col.name.startswith("_q_"):
                raise Unsupported(
                    f'column "{col.name}" must appear in GROUP BY or be used in an aggregate',
                    position=node_position(col),
                )
        return out


def _split_aggregate(q: AnalyzedQuery, worker: exp.Select) -> exp.Select:
    tree = q.tree
    groups = q.aggregates.group_by
    partials = _Partials(groups)
    merged = []
    for i, p in enumerate(tree.expressions):
        expression = partials.merge(_inner(p))
        # (no cast to DuckDB's "NULL" type of MIN(NULL): it has no SQL spelling)
        if _inner(p).find(exp.AggFunc) is not None and q.types[i].strip('"').upper() != "NULL":
            expression = exp.cast(expression, exp.DataType.build(q.types[i], dialect="duckdb"))
        merged.append(exp.alias_(expression, _name(q, i)))
    merge = exp.select(*merged).from_(RESULT_TABLE)
    if groups:
        merge.group_by(*[_col(f"_q_g{j}") for j in range(len(groups))], copy=False)
    having = tree.args.get("having")
    if having is not None:
        merge.having(partials.merge(having.this), copy=False)
    order = tree.args.get("order")
    if order is not None:
        items = []
        for item in order.expressions:
            index = _order_target(q, item.this)
            this = _ordinal(index) if index is not None else partials.merge(item.this)
            items.append(_reordered(item, this))
        merge.set("order", exp.Order(expressions=items))
    if tree.args.get("distinct") is not None:
        merge.set("distinct", exp.Distinct())
    if tree.args.get("limit") is not None:
        merge.set("limit", tree.args["limit"].copy())
    worker.set(
        "expressions",
        [exp.alias_(g.copy(), f"_q_g{j}") for j, g in enumerate(groups)]
        + [exp.alias_(w, f"_q_a{k}") for k, w in enumerate(partials.worker)],
    )
    if not worker.expressions:
        worker.set("expressions", [exp.alias_(exp.Literal.number(1), "_q_one")])
    for key in ("having", "order", "limit", "distinct"):
        worker.set(key, None)
    return merge
