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

import functools
from collections.abc import Callable
from dataclasses import dataclass

from sqlglot import exp

from czar.analyze.model import AnalyzedQuery, JoinKind, TableRef
from czar.analyze.using import to_on
from czar.parse import copy_tree, node_position
from czar.plan.match import FarPairs, far_pairs
from czar.plan.model import CHUNK_FILTER_PLACEHOLDER
from czar.plan.neighbour import copy_condition, far_pair_checked, near_band, read_with_overlap
from qserv.catalog import CHUNK_COLUMN, TableKind
from qserv.errors import Unsupported

RESULT_TABLE = "__result"


@functools.lru_cache(maxsize=256)
def _parsed_type(name: str) -> exp.DataType:
    return exp.DataType.build(name, dialect="duckdb")


def _type(name: str) -> exp.DataType:
    """DuckDB type ``name`` as a node (parsed once: parsing a type costs ~20 us)."""
    return copy_tree(_parsed_type(name))


def _sum(a: exp.Expr) -> exp.Expr:
    return exp.Sum(this=a)


def _double(a: exp.Expr) -> exp.Expr:
    return exp.cast(a, _type("DOUBLE"), copy=False)


# a window column over the merge input, partitioned by the GROUP BY keys (see _Partials.window)
Window = Callable[[exp.Expr], exp.Expr]


def _m2(p: list[exp.Expr], window: Window) -> exp.Expr:
    """The sum of squared deviations of all rows from the per-chunk (count, mean, M2) partials.

    Chan et al.'s pairwise formula generalised to k parts: M2 = sum(M2_i) + sum(n_i (mean_i -
    mean)^2), with ``mean`` the weighted mean of the group (a window column). Never the sum of
    squares minus the squared sum, which cancels catastrophically on a large mean and a small
    variance: each term here is a small deviation.
    """
    n, mean, m2 = p
    overall = window(
        exp.Div(
            this=_sum(exp.Mul(this=_double(n), expression=mean)),
            expression=exp.Nullif(this=_double(_sum(n)), expression=exp.Literal.number(0)),
        )
    )
    deviation = exp.Paren(this=exp.Sub(this=mean, expression=overall))
    between = _sum(
        exp.Mul(this=exp.Mul(this=_double(n), expression=deviation), expression=copy_tree(deviation))
    )
    return exp.Add(this=_sum(m2), expression=between)


def _variance(sample: bool, root: bool) -> Callable[[list[exp.Expr], Window], exp.Expr]:
    def make(p: list[exp.Expr], window: Window) -> exp.Expr:
        count = _double(_sum(copy_tree(p[0])))
        divisor = exp.Sub(this=count, expression=exp.Literal.number(1)) if sample else count
        # no variance of no rows, nor a sample variance of one row (NULL, as PostgreSQL/DuckDB)
        value: exp.Expr = exp.Div(
            this=exp.Paren(this=_m2(p, window)),
            expression=exp.Nullif(this=divisor, expression=exp.Literal.number(0)),
        )
        return exp.Sqrt(this=value) if root else value

    return make


def _moments(n: exp.AggFunc) -> list[exp.Expr]:
    """Per-chunk partials of a variance: count, mean and M2 (DuckDB's VAR_POP is Welford's)."""
    x = n.this
    return [
        exp.Count(this=copy_tree(x)),
        exp.Avg(this=_double(copy_tree(x))),
        exp.Mul(this=exp.VariancePop(this=_double(copy_tree(x))), expression=exp.Count(this=copy_tree(x))),
    ]


# aggregate -> (worker partials from the call, merge expression from the partial columns and a
# window-column maker). The call is the plan's own copy, replaced in the merge by the merge
# expression: a partial may take it, or its argument, once without copying. An aggregate over DISTINCT arguments has no rule: the worker groups by
# its arguments and the merge runs the aggregate itself over their distinct values.
RULES: dict[
    type[exp.AggFunc],
    tuple[
        Callable[[exp.AggFunc], list[exp.Expr]],
        Callable[[list[exp.Expr], Window], exp.Expr],
    ],
] = {
    exp.Count: (
        lambda n: [n],
        lambda p, w: exp.cast(
            exp.Coalesce(this=_sum(p[0]), expressions=[exp.Literal.number(0)]), _type("BIGINT"), copy=False
        ),
    ),
    exp.Sum: (lambda n: [n], lambda p, w: _sum(p[0])),
    exp.Min: (lambda n: [n], lambda p, w: exp.Min(this=p[0])),
    exp.Max: (lambda n: [n], lambda p, w: exp.Max(this=p[0])),
    exp.Avg: (
        lambda n: [exp.Sum(this=n.this), exp.Count(this=copy_tree(n.this))],
        lambda p, w: exp.Div(
            this=_double(_sum(p[0])),
            expression=exp.Nullif(this=_sum(p[1]), expression=exp.Literal.number(0)),
        ),
    ),
    exp.Stddev: (_moments, _variance(sample=True, root=True)),
    exp.StddevSamp: (_moments, _variance(sample=True, root=True)),
    exp.StddevPop: (_moments, _variance(sample=False, root=True)),
    exp.Variance: (_moments, _variance(sample=True, root=False)),
    exp.VariancePop: (_moments, _variance(sample=False, root=False)),
}


@dataclass(frozen=True)
class Split:
    worker_template: str  # DuckDB SQL with CHUNK_FILTER_PLACEHOLDER markers
    chunk_columns: tuple[str, ...]
    merge_sql: str
    # the merge only renames the worker columns: batches can be concatenated, no DuckDB needed
    passthrough: bool = False
    aggregation: str = ""  # how aggregates are computed, for EXPLAIN ("" when not aggregated)
    far: FarPairs | None = None  # a match join's pairs beyond the overlap (czar/plan/match.py)


def _col(name: str) -> exp.Column:
    return exp.column(name)


def _result_from() -> exp.From:
    """``FROM __result`` built as a node (``select().from_(name)`` parses the name: ~0.1 ms)."""
    return exp.From(this=exp.Table(this=exp.to_identifier(RESULT_TABLE)))


def _quoted(name: str) -> str:
    """A DuckDB quoted identifier, as sqlglot writes ``to_identifier(name, quoted=True)``."""
    return '"' + name.replace('"', '""') + '"'


def _inner(p: exp.Expr) -> exp.Expr:
    return p.this if isinstance(p, exp.Alias) else p


def _add_chunk_filters(q: AnalyzedQuery, worker: exp.Select) -> tuple[tuple[str, ...], list[tuple[str, str]]]:
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
    checks: list[tuple[str, str]] = []  # worker SQL that fails the query on a far match pair (neighbour.py)
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
            checks.append(read_with_overlap(q, worker, cj))
    by_alias = {r.alias.lower(): r for r in q.tables}
    for alias, bit in q.match_copies:
        ref = by_alias[alias.lower()]
        add(alias, copy_condition(ref, bit), ref.outer)
    return tuple(columns), checks


def split(q: AnalyzedQuery) -> Split:
    """Build the worker template and the merge query of ``q``."""
    worker = copy_tree(q.tree)
    columns, checks = _add_chunk_filters(q, worker)
    far = far_pairs(q) if checks else None
    # far match pairs are answered in a chunk of their own: a group may span two (plan/match.py)
    local = chunk_local_group(q) if far is None else None
    aggregation = ""
    if q.aggregates.aggregated and local is not None:
        # every group lies in one chunk: the workers compute the final rows (HAVING included)
        merge = _split_plain(q, worker)
        aggregation = f"on workers (groups are chunk-local: GROUP BY {local})"
    elif q.aggregates.aggregated:
        merge = _split_aggregate(q, worker)
    else:
        merge = _split_plain(q, worker)
    template = worker.sql(dialect="duckdb", copy=False)  # (this plan's own copy: no second one)
    if checks and far is None:
        template = far_pair_checked(template, len(worker.expressions), checks)
    for i in range(len(columns)):
        if template.count(CHUNK_FILTER_PLACEHOLDER.format(i)) != 1:
            raise Unsupported("query text collides with qserv's internal chunk placeholders")
    passthrough = (
        not q.aggregates.aggregated
        and q.tree.args.get("distinct") is None
        and q.tree.args.get("order") is None
        and q.tree.args.get("limit") is None
        and q.tree.args.get("offset") is None
    )
    merge_sql = merge if isinstance(merge, str) else merge.sql(dialect="duckdb", copy=False)
    return Split(template, columns, merge_sql, passthrough, aggregation, far)


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
            return key.sql(dialect="duckdb", copy=False)  # (a column: rendering changes nothing)
        if t.kind is TableKind.CHILD and (t.key_column or "").lower() == name and _joined_to_director(q, ref):
            return key.sql(dialect="duckdb", copy=False)  # (a column: rendering changes nothing)
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


def _split_plain(q: AnalyzedQuery, worker: exp.Select) -> exp.Select | str:
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
                projections.append(exp.alias_(copy_tree(item.this), name, copy=False))
                ref = merge_ref = _col(name)
            worker_order.append(_reordered(item, ref))
            merge_order.append(_reordered(item, merge_ref))
    worker.set("expressions", projections)
    limit = tree.args.get("limit")
    worker.set("offset", None)
    if limit is not None:
        # a chunk contributes at most LIMIT + OFFSET rows: the first ones in the query's order
        worker.set(
            "limit",
            exp.Limit(expression=exp.Literal.number(_constant(limit) + _constant(tree.args.get("offset")))),
        )
    if limit is not None and order is not None:
        worker.set("order", exp.Order(expressions=worker_order))
    else:
        worker.set("order", None)
    if not distinct and not merge_order and limit is None and tree.args.get("offset") is None:
        # the merge only renames: its text is written directly (rendering a tree costs ~0.2 ms)
        names = ", ".join(f"_q_c{i} AS {_quoted(q.columns[i])}" for i in range(len(tree.expressions)))
        return f"SELECT {names} FROM {RESULT_TABLE}"
    merge = exp.select(
        *[exp.alias_(_col(f"_q_c{i}"), _name(q, i), copy=False) for i in range(len(tree.expressions))]
    )
    merge.set("from_", _result_from())
    if distinct:
        merge.set("distinct", exp.Distinct())
    if merge_order:
        merge.set("order", exp.Order(expressions=merge_order))
    _page(tree, merge)
    return merge


def _constant(clause: exp.Expr | None) -> int:
    """The integer of a LIMIT/OFFSET clause (checked by the shape pass); 0 when absent."""
    if clause is None:
        return 0
    value = clause.expression if isinstance(clause, exp.Limit | exp.Offset) else clause
    return int(value.this)


def _reordered(item: exp.Ordered, this: exp.Expr) -> exp.Ordered:
    new = copy_tree(item)
    new.set("this", this)
    return new


class _Partials:
    """The worker's partial aggregate columns, de-duplicated, and the merge expressions over them.

    ``distinct`` are the arguments of DISTINCT aggregates: the worker groups by them too (its
    other partials are then finer-grained, which every rule merges alike), so the merge sees
    each distinct value of a group at least once. ``windows`` are columns the merge computes
    over its input before aggregating (a group's mean, for a variance).
    """

    def __init__(self, groups: tuple[exp.Expr, ...]) -> None:
        self.groups = groups
        self.worker: list[exp.Expr] = []
        self._index: dict[exp.Expr, int] = {}  # structural equality: no rendering for a key
        self.distinct: list[exp.Expr] = []
        self._distinct_index: dict[exp.Expr, int] = {}
        self.windows: list[exp.Expr] = []

    def _partial(self, expression: exp.Expr) -> exp.Column:
        if expression not in self._index:
            self._index[expression] = len(self.worker)
            self.worker.append(expression)
        return _col(f"_q_a{self._index[expression]}")

    def _distinct(self, expression: exp.Expr) -> exp.Column:
        if expression not in self._distinct_index:
            self._distinct_index[expression] = len(self.distinct)
            self.distinct.append(copy_tree(expression))
        return _col(f"_q_d{self._distinct_index[expression]}")

    def window(self, expression: exp.Expr) -> exp.Expr:
        """A column holding ``expression`` (aggregates over the group's rows) on every row."""
        partition = [_col(f"_q_g{j}") for j in range(len(self.groups))]

        def over(node: exp.Expr) -> exp.Expr:
            if isinstance(node, exp.AggFunc):
                return exp.Window(this=node, partition_by=[copy_tree(c) for c in partition] or None)
            return node

        self.windows.append(expression.transform(over, copy=False))
        return _col(f"_q_w{len(self.windows) - 1}")

    def merge(self, expression: exp.Expr, copy: bool = True) -> exp.Expr:
        """``expression`` rewritten over ``__result`` columns (in place when not ``copy``)."""

        def rewrite(node: exp.Expr) -> exp.Expr:
            for j, group in enumerate(self.groups):
                if node == group:
                    return _col(f"_q_g{j}")
            if isinstance(node, exp.AggFunc) and isinstance(node.this, exp.Distinct):
                over_distinct = copy_tree(node)
                over_distinct.set(
                    "this", exp.Distinct(expressions=[self._distinct(e) for e in node.this.expressions])
                )
                return over_distinct
            if isinstance(node, exp.AggFunc):
                rule = RULES.get(type(node))
                if rule is None:
                    raise Unsupported(
                        f"aggregate {node.sql_name()} cannot be split across chunks",
                        position=node_position(node),
                    )
                make_partials, make_merge = rule
                merged = make_merge([self._partial(p) for p in make_partials(node)], self.window)
                if isinstance(merged, exp.Binary) and isinstance(node.parent, (exp.Binary, exp.Unary)):
                    merged = exp.Paren(this=merged)  # MAX(x) / AVG(y): not MAX(x) / SUM(y) / COUNT(y)
                return merged
            return node

        out = (copy_tree(expression) if copy else expression).transform(rewrite, copy=False)
        for col in out.find_all(exp.Column):
            if col.table or not col.name.startswith("_q_"):
                raise Unsupported(
                    f'column "{col.name}" must appear in GROUP BY or be used in an aggregate',
                    position=node_position(col),
                )
        return out

    def source(self) -> exp.Expr:
        """What the merge reads: ``__result``, with the window columns beside it if any."""
        if not self.windows:
            return _result_from().this  # (to_table parses its argument: ~0.2 ms)
        inner = exp.select(exp.Star(), *[exp.alias_(w, f"_q_w{i}") for i, w in enumerate(self.windows)])
        inner.set("from_", _result_from())
        return exp.Subquery(this=inner, alias=exp.TableAlias(this=exp.to_identifier(RESULT_TABLE)))


def _split_aggregate(q: AnalyzedQuery, worker: exp.Select) -> exp.Select:
    tree = q.tree
    groups = q.aggregates.group_by
    partials = _Partials(groups)
    merged = []
    # the worker's projections, HAVING and ORDER BY are this plan's own copies of the tree's,
    # replaced below: the merge is rewritten from them in place, with no second copy
    for i, p in enumerate(list(worker.expressions)):
        aggregated = _inner(p).find(exp.AggFunc) is not None
        expression = partials.merge(_inner(p), copy=False)
        # (no cast to DuckDB's "NULL" type of MIN(NULL): it has no SQL spelling)
        if aggregated and q.types[i].strip('"').upper() != "NULL":
            expression = exp.cast(expression, _type(q.types[i]), copy=False)
        merged.append(exp.alias_(expression, _name(q, i), copy=False))
    having = worker.args.get("having")
    merged_having = partials.merge(having.this, copy=False) if having is not None else None
    order = worker.args.get("order")
    items = []
    for item in order.expressions if order is not None else []:
        index = _order_target(q, item.this)
        this = _ordinal(index) if index is not None else partials.merge(item.this, copy=False)
        items.append(_reordered(item, this))
    merge = exp.select(*merged)
    source = partials.source()
    merge.set("from_", exp.From(this=source))
    if groups:
        merge.group_by(*[_col(f"_q_g{j}") for j in range(len(groups))], copy=False)
    if merged_having is not None:
        merge.having(merged_having, copy=False)
    if items:
        merge.set("order", exp.Order(expressions=items))
    if tree.args.get("distinct") is not None:
        merge.set("distinct", exp.Distinct())
    _page(tree, merge)
    worker.set(
        "expressions",
        [exp.alias_(copy_tree(g), f"_q_g{j}", copy=False) for j, g in enumerate(groups)]
        + [exp.alias_(copy_tree(d), f"_q_d{k}", copy=False) for k, d in enumerate(partials.distinct)]
        + [exp.alias_(w, f"_q_a{k}", copy=False) for k, w in enumerate(partials.worker)],
    )
    if partials.distinct:
        worker.set("group", exp.Group(expressions=[copy_tree(e) for e in (*groups, *partials.distinct)]))
    if not worker.expressions:
        worker.set("expressions", [exp.alias_(exp.Literal.number(1), "_q_one")])
    for key in ("having", "order", "limit", "offset", "distinct"):
        worker.set(key, None)
    return merge


def _page(tree: exp.Select, merge: exp.Select) -> None:
    """The query's LIMIT and OFFSET, applied by the merge."""
    for key in ("limit", "offset"):
        if tree.args.get(key) is not None:
            merge.set(key, copy_tree(tree.args[key]))
