"""Result names and types of a query from the catalog alone, where DuckDB's answer is certain.

The output pass (output.py) must report exactly what single-node DuckDB's ``DESCRIBE`` gives
(names and types become the wire's), and must let DuckDB refuse what it would refuse (a
column neither grouped nor aggregated, ``avg(name)``).  Describing costs ~2 ms, more than
the rest of a typical query's planning, so the common shapes are typed here from the
catalog's column types with DuckDB's own rules::

    SELECT COUNT(*), AVG(gFlux), o.flags FROM Object o WHERE flags > 3 GROUP BY o.flags
    -> ("count_star()", "avg(gFlux)", "flags"), ("BIGINT", "DOUBLE", "INTEGER")

Anything outside the rules below (user functions, DECIMAL arithmetic, literals of other
kinds, HAVING, sub-expressions DuckDB names in its own way ...) returns None and the caller
asks DuckDB.  The rules are proved against DuckDB's DESCRIBE by
tests/unit/czar/test_static_types.py over a corpus of query shapes.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

import duckdb
from sqlglot import exp

from czar.analyze.model import TableRef
from czar.analyze.resolve import WRITTEN
from qserv.sphere.scisql import MACROS

# column of a table -> DuckDB's spelling of its type (output.py's memo of DESCRIBE)
ColumnTypes = Callable[[TableRef], dict[str, str]]

_INTS = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT")
_UNSIGNED = ("UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT")
_FLOATS = ("FLOAT", "DOUBLE")
_DECIMAL = re.compile(r"DECIMAL\((\d+),(\d+)\)")
_INT32 = 2**31 - 1


def _numeric(t: str) -> bool:
    return t in _INTS or t in _UNSIGNED or t in _FLOATS or _DECIMAL.fullmatch(t) is not None


def _sum_type(t: str) -> str | None:
    if t in _INTS or t in _UNSIGNED or t == "BOOLEAN":
        return "HUGEINT"
    if t in _FLOATS:
        return "DOUBLE"
    decimal = _DECIMAL.fullmatch(t)
    return f"DECIMAL(38,{decimal.group(2)})" if decimal else None


def _avg_type(t: str) -> str | None:
    return "DOUBLE" if _numeric(t) else None


def _same_type(t: str) -> str | None:
    return t if _numeric(t) or t in ("VARCHAR", "BOOLEAN", "DATE", "TIMESTAMP") else None


# aggregate -> (DuckDB's name of the call, result type from the argument's type)
_AGGREGATES: dict[type[exp.Expr], tuple[str, Callable[[str], str | None]]] = {
    exp.Count: ("count", lambda t: "BIGINT"),
    exp.Sum: ("sum", _sum_type),
    exp.Avg: ("avg", _avg_type),
    exp.Min: ("min", _same_type),
    exp.Max: ("max", _same_type),
    exp.Stddev: ("stddev", _avg_type),
    exp.StddevSamp: ("stddev_samp", _avg_type),
    exp.StddevPop: ("stddev_pop", _avg_type),
    exp.Variance: ("variance", _avg_type),
    exp.VariancePop: ("var_pop", _avg_type),
}


@functools.cache
def _keywords() -> frozenset[str]:
    """DuckDB's keywords: its names quote them (``upper("name")``)."""
    conn = duckdb.connect(":memory:")
    try:
        return frozenset(
            str(r[0]).lower() for r in conn.execute("SELECT keyword_name FROM duckdb_keywords()").fetchall()
        )
    finally:
        conn.close()


def _plain_identifier(name: str) -> bool:
    return re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) is not None and name.lower() not in _keywords()


class _Typer:
    """Types and names of expressions over ``refs``; None wherever the rules are not sure."""

    def __init__(self, refs: tuple[TableRef, ...], column_types: ColumnTypes) -> None:
        self.refs = refs
        self.column_types = column_types
        self._types: dict[str, dict[str, str]] = {}  # alias -> its columns' types (one lookup)
        self.seen: list[tuple[str, str]] | None = None  # (alias, column) of the columns typed

    def _column_type(self, ref: TableRef, name: str) -> str | None:
        types = self._types.get(ref.alias)
        if types is None:
            types = self._types[ref.alias] = self.column_types(ref)
        if self.seen is not None:
            self.seen.append((ref.alias.lower(), name.lower()))
        return types.get(name.lower())

    def bind(self, column: exp.Column) -> tuple[TableRef, str] | None:
        """(table, catalog column name) of a column bound to exactly one table."""
        if isinstance(column.this, exp.Star) or column.args.get("db") or column.args.get("catalog"):
            return None
        alias = column.table.lower()
        owners = [
            (r, c.name)
            for r in self.refs
            if not alias or r.alias.lower() == alias
            for c in [r.table.column(column.name)]
            if c is not None
        ]
        return owners[0] if len(owners) == 1 else None

    def type_of(self, node: exp.Expr) -> str | None:
        """DuckDB's type of a scalar (non-aggregate) expression."""
        if isinstance(node, exp.Paren):
            return self.type_of(node.this)
        if isinstance(node, exp.Column):
            bound = self.bind(node)
            return self._column_type(*bound) if bound else None
        if isinstance(node, exp.Literal):
            return _literal_type(node)
        if isinstance(node, exp.Neg):
            inner = self.type_of(node.this)
            return inner if inner in ("INTEGER", "BIGINT", "DOUBLE") else None
        if isinstance(node, (exp.Add, exp.Sub, exp.Mul)):
            return _arithmetic(self.type_of(node.this), self.type_of(node.expression), node)
        if isinstance(node, (exp.EQ, exp.NEQ, exp.LT, exp.LTE, exp.GT, exp.GTE)):
            return "BOOLEAN" if self.comparable(node.this, node.expression) else None
        if isinstance(node, (exp.And, exp.Or)):
            both = (self.type_of(node.this), self.type_of(node.expression))
            return "BOOLEAN" if both == ("BOOLEAN", "BOOLEAN") else None
        if isinstance(node, exp.Not):
            return "BOOLEAN" if self.type_of(node.this) == "BOOLEAN" else None
        if isinstance(node, exp.Cast) and type(node) is exp.Cast:
            return self.cast_type(node)
        if isinstance(node, exp.Coalesce):
            return _unify([self.type_of(a) for a in (node.this, *node.expressions)], node)
        if isinstance(node, exp.Case) and node.this is None:
            if any(self.type_of(w.this) != "BOOLEAN" for w in node.args.get("ifs") or []):
                return None
            branches = [w.args.get("true") for w in node.args.get("ifs") or []]
            default = node.args.get("default")
            types = [self.type_of(b) if b is not None else None for b in branches]
            types.append(self.type_of(default) if default is not None else "NULL")
            return _unify(types, node)
        if isinstance(node, (exp.Upper, exp.Lower)):
            return "VARCHAR" if self.type_of(node.this) == "VARCHAR" else None
        if isinstance(node, exp.Length) and not node.args.get("binary"):
            return "BIGINT" if self.type_of(node.this) == "VARCHAR" else None
        if isinstance(node, exp.Abs):
            inner = self.type_of(node.this)
            return inner if inner in ("INTEGER", "BIGINT", "DOUBLE") else None
        if isinstance(node, exp.Anonymous):
            return self.macro_type(node)
        return None

    def comparable(self, left: exp.Expr, right: exp.Expr) -> bool:
        """Both sides typed and of one kind (numbers, or the same type): DuckDB binds it."""
        a, b = self.type_of(left), self.type_of(right)
        if a is None or b is None:
            return False
        return (_numeric(a) and _numeric(b)) or a == b

    def cast_type(self, node: exp.Cast) -> str | None:
        source = self.type_of(node.this)
        target = _CAST_TARGETS.get(node.to.sql(dialect="duckdb").upper())
        if source is None or target is None or node.args.get("format") or node.args.get("safe"):
            return None
        if source == target or target == "VARCHAR" or (_numeric(source) and _numeric(target)):
            return target
        return None

    def macro_type(self, node: exp.Anonymous) -> str | None:
        """A sciSQL macro over DOUBLE columns and numeric literals (as positions are)."""
        arity = _MACRO_ARITY.get(node.name.lower())
        if arity != len(node.expressions):
            return None
        for arg in node.expressions:
            t = self.type_of(arg)
            if t != "DOUBLE" and not (isinstance(arg, (exp.Literal, exp.Neg)) and t is not None):
                return None
        return _MACRO_TYPES.get(node.name.lower())

    def name_of(self, node: exp.Expr, top: bool) -> str | None:
        """DuckDB's name of an unaliased expression (its ToString), for the shapes known here."""
        if isinstance(node, exp.Column):
            bound = self.bind(node)
            if bound is None:
                return None
            if top:
                return bound[1]  # a bare column is named by its catalog spelling
            # named as the user wrote it (``avg(psfFlux)`` of the resolved ``"s"."psfFlux"``)
            written = node.meta.get(WRITTEN)
            source = written if isinstance(written, exp.Column) else node
            parts = [source.table, source.name] if source.table else [source.name]
            return ".".join(parts) if all(_plain_identifier(p) for p in parts) else None
        if isinstance(node, exp.Literal) and not node.is_string and re.fullmatch(r"\d+", node.this):
            return node.this
        if isinstance(node, (exp.Add, exp.Sub, exp.Mul)):
            a, b = self.name_of(node.this, False), self.name_of(node.expression, False)
            op = {exp.Add: "+", exp.Sub: "-", exp.Mul: "*"}[type(node)]
            return f"({a} {op} {b})" if a is not None and b is not None else None
        if isinstance(node, exp.Cast) and type(node) is exp.Cast:
            # DuckDB writes the type as the query spells it (sqlglot's TEXT for VARCHAR): only
            # the spellings that are DuckDB's own names are known to read the same
            inner = self.name_of(node.this, False)
            spelled = node.to.sql(dialect="duckdb")
            known = _CAST_TARGETS.get(spelled.upper()) == spelled
            return f"CAST({inner} AS {spelled})" if inner is not None and known else None
        if isinstance(node, exp.Count) and isinstance(node.this, exp.Star):
            return "count_star()"
        if type(node) in _AGGREGATES:
            arg, distinct = _aggregate_argument(node)
            inner = self.name_of(arg, False) if arg is not None else None
            if inner is None:
                return None
            return f"{_AGGREGATES[type(node)][0]}({'DISTINCT ' if distinct else ''}{inner})"
        return None

    def aggregate_type(self, node: exp.Expr) -> str | None:
        """DuckDB's type of an aggregate call over a scalar expression."""
        if isinstance(node, exp.Count) and isinstance(node.this, exp.Star):
            return "BIGINT"
        arg, _ = _aggregate_argument(node)
        if arg is None:
            return None
        t = self.type_of(arg)
        return _AGGREGATES[type(node)][1](t) if t is not None else None


def _aggregate_argument(node: exp.Expr) -> tuple[exp.Expr | None, bool]:
    """(the one argument, whether DISTINCT) of an aggregate call; (None, _) for other forms."""
    if type(node) not in _AGGREGATES or node.args.get("expressions"):
        return None, False
    arg = node.this
    if isinstance(arg, exp.Distinct):
        values = arg.expressions
        return (values[0], True) if len(values) == 1 else (None, True)
    return arg, False


_CAST_TARGETS = {
    "TINYINT": "TINYINT",
    "SMALLINT": "SMALLINT",
    "INT": "INTEGER",
    "INTEGER": "INTEGER",
    "BIGINT": "BIGINT",
    "HUGEINT": "HUGEINT",
    "DOUBLE": "DOUBLE",
    "REAL": "FLOAT",
    "FLOAT": "FLOAT",
    "TEXT": "VARCHAR",
    "VARCHAR": "VARCHAR",
    "BOOLEAN": "BOOLEAN",
}

_MACRO_ARITY = {name.lower(): len(params.split(",")) for name, params, _ in MACROS}


@functools.cache
def _macro_types() -> dict[str, str]:
    """Each sciSQL macro's result type over DOUBLE arguments, as DuckDB binds it."""
    from qserv.sphere.scisql import install_macros

    conn = duckdb.connect(":memory:")
    try:
        install_macros(conn)
        out = {}
        for name, params, _ in MACROS:
            args = ", ".join("1.5::DOUBLE" for _ in params.split(","))
            out[name.lower()] = str(conn.execute(f"DESCRIBE SELECT {name}({args})").fetchall()[0][1])
        return out
    finally:
        conn.close()


class _MacroTypes:
    def get(self, name: str) -> str | None:
        return _macro_types().get(name)


_MACRO_TYPES = _MacroTypes()


def _literal_type(node: exp.Literal) -> str | None:
    """An integer literal that fits 32 bits is INTEGER; a decimal literal is not typed here."""
    if node.is_string or not re.fullmatch(r"\d+", node.this) or int(node.this) > _INT32:
        return None
    return "INTEGER"


def _is_int_literal(node: exp.Expr) -> bool:
    return isinstance(node, exp.Literal) and _literal_type(node) is not None


def _arithmetic(a: str | None, b: str | None, node: exp.Binary) -> str | None:
    """``+ - *`` over INTEGER, BIGINT and DOUBLE (an integer literal takes the other side's type)."""
    if a is None or b is None:
        return None
    if _is_int_literal(node.expression) and a in ("INTEGER", "BIGINT", "DOUBLE"):
        return a
    if _is_int_literal(node.this) and b in ("INTEGER", "BIGINT", "DOUBLE"):
        return b
    pair = {a, b}
    if not pair <= {"INTEGER", "BIGINT", "DOUBLE"}:
        return None
    return "DOUBLE" if "DOUBLE" in pair else "BIGINT" if "BIGINT" in pair else "INTEGER"


def _unify(types: list[str | None], node: exp.Expr) -> str | None:
    """The one type of COALESCE arguments or CASE branches: all the same (NULL and integer
    literals taking the others' INTEGER, BIGINT or DOUBLE); else None."""
    if any(t is None for t in types):
        return None
    values = [v for v in (node.args.get("this"), *(node.args.get("expressions") or ())) if v is not None]
    if isinstance(node, exp.Case):
        values = [w.args.get("true") for w in node.args.get("ifs") or []]
        if node.args.get("default") is not None:
            values.append(node.args["default"])
    typed = {
        t for t, v in zip(types, [*values, None], strict=False) if t != "NULL" and not _is_int_literal(v)
    }
    if not typed:
        return "INTEGER" if any(_is_int_literal(v) for v in values) else None
    if len(typed) != 1:
        return None
    (only,) = typed
    if any(_is_int_literal(v) for v in values) and only not in ("INTEGER", "BIGINT", "DOUBLE"):
        return None
    return only


def static_describe(
    tree: exp.Select, refs: tuple[TableRef, ...], column_types: ColumnTypes
) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """(names, DuckDB types) of the result of ``tree`` (columns as written), or None when not sure.

    No walk of the whole tree (each costs more than this typing): the typer visits only the
    nodes it knows, and any other node (a sub-query, a window) makes it answer None.
    """
    if not _bindable(tree, refs):
        return None
    typer = _Typer(refs, column_types)
    names: list[str] = []
    types: list[str] = []
    outside: list[tuple[str, str]] = []  # columns of the projections outside any aggregate
    aggregated = tree.args.get("group") is not None
    for projection in tree.expressions:
        node = projection.this if isinstance(projection, exp.Alias) else projection
        if isinstance(node, exp.AggFunc):
            aggregated = True
            t = typer.aggregate_type(node) if type(node) in _AGGREGATES else None
        else:
            typer.seen = outside
            t = typer.type_of(node)
            typer.seen = None
        name = projection.alias if isinstance(projection, exp.Alias) else typer.name_of(node, True)
        if t is None or name is None:
            return None
        names.append(name)
        types.append(t)
    if not _grouping_bound(tree, typer, aggregated, outside):
        return None
    return tuple(names), tuple(types)


def _bindable(tree: exp.Select, refs: tuple[TableRef, ...]) -> bool:
    """The clauses around the projections are ones DuckDB surely binds: tables in FROM (no
    sub-query), simple WHERE and ON, no HAVING, USING or window clause."""
    if any(r.using for r in refs) or any(tree.args.get(k) for k in ("having", "windows", "qualify", "with")):
        return False
    distinct = tree.args.get("distinct")
    if distinct is not None and distinct.args.get("on") is not None:
        return False
    from_ = tree.args.get("from_")
    if from_ is not None and not isinstance(from_.this, exp.Table):
        return False
    for join in tree.args.get("joins") or []:
        if not isinstance(join.this, exp.Table) or join.args.get("using") or join.args.get("method"):
            return False
        on = join.args.get("on")
        if on is not None and not simple_predicate(on, refs):
            return False
    where = tree.args.get("where")
    return where is None or simple_predicate(where.this, refs)


def _grouping_bound(
    tree: exp.Select, typer: _Typer, aggregated: bool, outside: list[tuple[str, str]]
) -> bool:
    """GROUP BY keys are bound columns, every column outside the aggregates is a key, and
    ORDER BY names ordinals or (grouped) columns: what DuckDB surely accepts."""
    group = tree.args.get("group")
    keys: set[tuple[str, str]] = set()
    for key in group.expressions if group is not None else []:
        bound = typer.bind(key) if isinstance(key, exp.Column) else None
        if bound is None:
            return False
        keys.add((bound[0].alias.lower(), bound[1].lower()))
    if aggregated and any(c not in keys for c in outside):
        return False
    order = tree.args.get("order")
    for item in order.expressions if order is not None else []:
        this = item.this
        if isinstance(this, exp.Literal) and this.is_int:
            continue  # an ordinal (the names pass checked its range)
        if tree.args.get("distinct") is not None or not isinstance(this, exp.Column):
            return False
        bound = typer.bind(this)
        if bound is None or (aggregated and (bound[0].alias.lower(), bound[1].lower()) not in keys):
            return False
    return True


_LOGIC = (exp.And, exp.Or, exp.Not, exp.Paren)
_COMPARE = (exp.EQ, exp.NEQ, exp.LT, exp.LTE, exp.GT, exp.GTE, exp.NullSafeEQ, exp.NullSafeNEQ)


def is_numeric_type(type_: str) -> bool:
    """Whether a catalog type is a number (INT, DOUBLE, DECIMAL(p,s) ...)."""
    return any(word in type_.upper() for word in ("INT", "DOUBLE", "FLOAT", "DECIMAL", "REAL", "NUMERIC"))


def _fits(numeric: bool, value: exp.Expr) -> bool:
    """A literal of the kind a (numeric or not) column compares with unchanged, or NULL."""
    if isinstance(value, exp.Neg):
        value = value.this
    return isinstance(value, exp.Null) or (isinstance(value, exp.Literal) and numeric != value.is_string)


def simple_predicate(node: exp.Expr, refs: tuple[TableRef, ...]) -> bool:
    """A WHERE made only of column-vs-literal tests of matching kinds, column-vs-column tests
    of one kind, sciSQL macros compared with numbers and area restrictors (point lookups,
    cones, joins on keys, near neighbours): nothing in it that DuckDB could refuse to bind."""
    if isinstance(node, _LOGIC):
        return all(simple_predicate(child, refs) for child in node.iter_expressions())
    if isinstance(node, _COMPARE) and _macro_call(node.this, refs) and _number(node.expression):
        return True  # scisql_angSep(...) < 0.01, the restrictors' scisql_s2PtInCircle(...) = 1
    if (
        isinstance(node, _COMPARE)
        and isinstance(node.this, exp.Column)
        and isinstance(node.expression, exp.Column)
    ):
        a, b = catalog_type(node.this, refs), catalog_type(node.expression, refs)
        return a is not None and b is not None and (a == b or (is_numeric_type(a) and is_numeric_type(b)))
    if isinstance(node, (*_COMPARE, exp.In, exp.Between)):
        column, values = operands(node)
        type_ = catalog_type(column, refs) if column is not None else None
        if type_ is None or not values or (isinstance(node, exp.In) and node.args.get("query")):
            return False
        numeric = is_numeric_type(type_)
        return all(_fits(numeric, v) for v in values)
    if isinstance(node, exp.Is):
        return isinstance(node.this, exp.Column) and isinstance(node.expression, exp.Null)
    if isinstance(node, exp.Anonymous) and node.name.lower().startswith("qserv_areaspec_"):
        return all(isinstance(a, (exp.Literal, exp.Neg)) for a in node.expressions)
    return False


def _number(node: exp.Expr) -> bool:
    inner = node.this if isinstance(node, exp.Neg) else node
    return isinstance(inner, exp.Literal) and not inner.is_string


def _macro_call(node: exp.Expr, refs: tuple[TableRef, ...]) -> bool:
    """A spatial macro called with its number of numeric column or constant arguments."""
    return (
        isinstance(node, exp.Anonymous)
        and _MACRO_ARITY.get(node.name.lower()) == len(node.expressions)
        and all(_number(a) or is_numeric_type(catalog_type(a, refs) or "") for a in node.expressions)
    )


def operands(node: exp.Expr) -> tuple[exp.Expr | None, list[exp.Expr]]:
    """(the column side, the other side's values) of a comparison, IN or BETWEEN."""
    if isinstance(node, exp.In):
        return node.this, list(node.expressions)
    if isinstance(node, exp.Between):
        return node.this, [v for v in (node.args.get("low"), node.args.get("high")) if v is not None]
    if isinstance(node.this, exp.Column):
        return node.this, [node.expression]
    return node.expression, [node.this]


def catalog_type(column: exp.Expr, refs: tuple[TableRef, ...]) -> str | None:
    """The catalog type of a bare column bound to exactly one table, else None."""
    if not isinstance(column, exp.Column):
        return None
    owners = [r for r in refs if not column.table or r.alias.lower() == column.table.lower()]
    found = [c for c in (r.table.column(column.name) for r in owners) if c is not None]
    return found[0].type if len(found) == 1 else None
