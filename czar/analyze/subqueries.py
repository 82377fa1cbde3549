"""Sub-queries and CTEs -> a :class:`Program`: steps run one after another, each its own query.

Every uncorrelated sub-query becomes a step planned and run as its own query (distributed, or
at the czar when it reads only earlier steps' results); its result is then written into the
queries that use it (czar/steps.py), so the analyzer and planner only ever see queries without
sub-queries::

    SELECT s.sourceId FROM Source s WHERE s.objectId IN (SELECT objectId FROM Object WHERE flags = 3)
    step __qserv_sq_0 (in):     SELECT objectId FROM Object WHERE flags = 3
    final:                      SELECT s.sourceId FROM Source s WHERE s.objectId IN (:__qserv_sq_0)
                                -> IN (1003, 1017, ...): the director index picks the chunks

    WITH b AS (SELECT flags, COUNT(*) AS n FROM Object GROUP BY flags) SELECT MAX(n) FROM b
    step __qserv_sq_0 (table):  SELECT flags, COUNT(*) AS n FROM Object GROUP BY flags
    final (at the czar):        SELECT MAX(n) FROM __qserv_sq_0 AS b

Uses: a scalar sub-query (a literal of its type), ``IN (SELECT ...)`` (a constant list),
``EXISTS (SELECT ...)`` (TRUE/FALSE, the inner query limited to one row), and a derived table
or CTE (its rows: a query that reads only sub-query results runs at the czar's merge DuckDB;
one that joins them with catalog tables sends them to the workers as constants, see
czar/plan/shipped.py). A sub-query naming a column of an enclosing query (correlated) is
refused, naming the column.

Pure: the tree in, a typed program out (no I/O). Depends on guard (only SELECTs, allowed
functions, everywhere in the tree).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from sqlglot import exp

from czar.analyze.output import describe_whole
from czar.parse import node_position
from qserv.catalog import Catalog
from qserv.errors import Unsupported

STEP_PREFIX = "__qserv_sq_"


class Use(enum.Enum):
    SCALAR = "scalar"
    IN = "in"
    EXISTS = "exists"
    TABLE = "table"
    RESULT = "result"  # the final query: its rows are the answer


@dataclass(frozen=True)
class Step:
    """One query of a program. ``query`` holds ``exp.Placeholder(name)`` where earlier steps'
    values go and reads earlier TABLE steps as tables named by their step names."""

    name: str
    query: exp.Select
    use: Use
    local: bool  # reads only earlier steps' tables (or no table): runs at the czar
    position: int | None = None  # of the sub-query in the user's SQL


@dataclass(frozen=True)
class Program:
    steps: tuple[Step, ...]  # in dependency order
    final: Step
    names: tuple[str, ...] | None = None  # result names of the query as written

    def explain(self) -> str:
        lines = ["strategy: sub-queries"]
        for step in (*self.steps, self.final):
            where = "czar" if step.local else "distributed"
            lines.append(f"step {step.name} ({step.use.value}, {where}): {step.query.sql(dialect='duckdb')}")
        return "\n".join(lines) + "\n"


def has_subqueries(tree: exp.Expr) -> bool:
    """Whether ``tree`` holds a sub-query or a WITH clause."""
    return tree.args.get("with_") is not None or any(
        isinstance(n, exp.Select | exp.Subquery) and n is not tree for n in tree.walk()
    )


def decompose(tree: exp.Select, catalog: Catalog, default_db: str) -> Program | None:
    """The steps of ``tree`` (None: no sub-query, plan it as one query). Refuses correlated
    sub-queries and derived tables joined with catalog tables (Unsupported 0A000)."""
    if not has_subqueries(tree):
        return None
    lowering = _Lowering(catalog, default_db)
    final, local = lowering.select(tree.copy(), {}, [])
    return Program(
        tuple(lowering.steps),
        Step("result", final, Use.RESULT, local, node_position(tree)),
        describe_whole(tree, catalog, default_db),
    )


@dataclass
class _Scope:
    """The tables one SELECT reads: alias (lower) -> column names (lower; None: not known)."""

    tables: dict[str, frozenset[str] | None] = field(default_factory=dict)

    def has_alias(self, alias: str) -> bool:
        return alias.lower() in self.tables

    def has_column(self, name: str) -> bool:
        return any(cols is not None and name.lower() in cols for cols in self.tables.values())

    def may_have_column(self, name: str) -> bool:
        return any(cols is None or name.lower() in cols for cols in self.tables.values())


def _output_names(select: exp.Select) -> frozenset[str] | None:
    """The column names of ``select``'s result (None: some are not known before running it)."""
    names: set[str] = set()
    for p in select.expressions:
        if isinstance(p, exp.Alias):
            names.add(p.alias.lower())
        elif isinstance(p, exp.Column) and not isinstance(p.this, exp.Star):
            names.add(p.name.lower())
        else:  # ``*``, or an expression DuckDB names by its text: not known here
            return None
    return frozenset(names)


def _own_nodes(select: exp.Select) -> list[exp.Expr]:
    """Nodes of ``select`` outside its nested SELECTs (and sub-queries)."""
    out: list[exp.Expr] = []
    stack: list[exp.Expr] = [select]
    while stack:
        node = stack.pop()
        out.append(node)
        for child in node.iter_expressions():
            if isinstance(child, exp.Select | exp.Subquery | exp.With):
                continue
            stack.append(child)
    return out


class _Lowering:
    def __init__(self, catalog: Catalog, default_db: str) -> None:
        self.catalog = catalog
        self.default_db = default_db
        self.steps: list[Step] = []
        self._columns: dict[str, frozenset[str] | None] = {}  # step -> its output names

    def _add(self, query: exp.Select, use: Use, local: bool, at: exp.Expr) -> str:
        name = f"{STEP_PREFIX}{len(self.steps)}"
        self.steps.append(Step(name, query, use, local, node_position(at)))
        return name

    def _inner(self, node: exp.Expr) -> exp.Select:
        inner = node.this if isinstance(node, exp.Subquery | exp.Exists | exp.CTE) else node
        while isinstance(inner, exp.Subquery):
            inner = inner.this
        if not isinstance(inner, exp.Select):
            raise Unsupported(
                f"{inner.key.upper()} in a sub-query is not supported yet: run the queries separately",
                position=node_position(node),
            )
        return inner

    def select(self, s: exp.Select, ctes: dict[str, str], outer: list[_Scope]) -> tuple[exp.Select, bool]:
        """Lower ``s`` in place (its sub-queries become steps); whether it runs at the czar."""
        ctes = dict(ctes)
        with_ = s.args.get("with_")
        if with_ is not None:
            if with_.args.get("recursive"):
                raise Unsupported("WITH RECURSIVE is not supported", position=node_position(with_))
            for cte in with_.expressions:
                body, local = self.select(self._inner(cte), ctes, outer)
                ctes[cte.alias_or_name.lower()] = self._add(body, Use.TABLE, local, cte)
                self._columns[ctes[cte.alias_or_name.lower()]] = _output_names(body)
            s.set("with_", None)
        scope = _Scope()
        catalog_read: list[exp.Table] = []
        sources: list[exp.Expr] = []
        if s.args.get("from_") is not None:
            sources.append(s.args["from_"].this)
        sources += [j.this for j in s.args.get("joins") or []]
        for source in sources:
            if isinstance(source, exp.Subquery):
                alias = source.alias
                if not alias:
                    raise Unsupported(
                        "a sub-query in FROM must have an alias", position=node_position(source)
                    )
                body, local = self.select(self._inner(source), ctes, outer)
                name = self._add(body, Use.TABLE, local, source)
                self._columns[name] = _output_names(body)
                source.replace(exp.alias_(exp.to_table(name), alias, table=True))
                scope.tables[alias.lower()] = self._columns[name]
            elif isinstance(source, exp.Table) and not source.db and source.name.lower() in ctes:
                name = ctes[source.name.lower()]
                alias = source.alias or source.name
                source.replace(exp.alias_(exp.to_table(name), alias, table=True))
                scope.tables[alias.lower()] = self._columns.get(name)
            elif isinstance(source, exp.Table):
                table = self.catalog.table(source.db or self.default_db, source.name)
                columns = frozenset(c.name.lower() for c in table.columns) if table is not None else None
                scope.tables[(source.alias or source.name).lower()] = columns
                catalog_read.append(source)
        self._check_correlation(s, scope, outer)
        # (derived tables were replaced above: what is left is in expressions)
        nested = [
            child
            for n in _own_nodes(s)
            for child in n.iter_expressions()
            if isinstance(child, exp.Select | exp.Subquery)
        ]
        for node in nested:
            parent = node.parent
            if isinstance(parent, exp.Exists):
                body, local = self.select(self._inner(node), ctes, [*outer, scope])
                if body.args.get("limit") is None:
                    body.set("limit", exp.Limit(expression=exp.Literal.number(1)))  # one row decides
                parent.replace(exp.Placeholder(this=self._add(body, Use.EXISTS, local, parent)))
            elif isinstance(parent, exp.In) and parent.args.get("query") is node:
                body, local = self.select(self._inner(node), ctes, [*outer, scope])
                parent.set("query", exp.Placeholder(this=self._add(body, Use.IN, local, node)))
            else:
                body, local = self.select(self._inner(node), ctes, [*outer, scope])
                node.replace(exp.Placeholder(this=self._add(body, Use.SCALAR, local, node)))
        return s, not catalog_read

    def _check_correlation(self, s: exp.Select, scope: _Scope, outer: list[_Scope]) -> None:
        if not outer:
            return
        aliases = {p.alias.lower() for p in s.expressions if isinstance(p, exp.Alias)}
        for col in (n for n in _own_nodes(s) if isinstance(n, exp.Column)):
            if isinstance(col.this, exp.Star):
                continue
            if col.table:
                if scope.has_alias(col.table):
                    continue
                owner = next((o for o in reversed(outer) if o.has_alias(col.table)), None)
            else:
                if scope.may_have_column(col.name) or col.name.lower() in aliases:
                    continue
                owner = next((o for o in reversed(outer) if o.has_column(col.name)), None)
            if owner is not None:
                raise Unsupported(
                    f'correlated sub-queries are not supported: the sub-query uses the outer query\'s column "{col.sql()}"',
                    hint="rewrite it as a join or GROUP BY, or with IN (SELECT ...) over constants",
                    position=node_position(col),
                )
