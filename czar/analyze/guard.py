"""Pass 1 (guard): only a read-only SELECT over allowed functions gets past.

    INSERT INTO t VALUES (1)          -> AccessDenied 42501 "INSERT is not allowed"
    SELECT * FROM read_csv('/etc/x')  -> AccessDenied 42501 "read_csv reads files"
    SELECT foo(ra) FROM Object        -> UndefinedFunction 42883 "function foo does not exist"

Depends on nothing; every later pass may assume a SELECT with known functions.
"""

from __future__ import annotations

import re

from sqlglot import exp

from czar.parse import SQL_META, node_position
from qserv.errors import AccessDenied, DatatypeMismatch, SyntaxError_, UndefinedFunction, Unsupported
from qserv.sphere.scisql import FUNCTIONS

# Typed sqlglot function nodes that are safe and evaluate identically on workers and czar.
ALLOWED_FUNCTION_NODES: frozenset[str] = frozenset(
    """Abs Acos Asin Atan Atan2 Cbrt Ceil Cos Cot Degrees Exp Floor Ln Log Pi Pow Radians Round
    Sign Sin Sqrt Tan Trunc Hex Typeof Chr Unhex Case If Cast TryCast Coalesce Nullif Greatest Least Concat Length
    Lower Upper Substring Trim Left Right StrPosition Replace Count Sum Min Max Avg Stddev
    StddevPop StddevSamp Variance VariancePop Median AnyValue Rand Exists""".split()
)
# Functions sqlglot does not know (parsed as Anonymous), lower-cased.
ALLOWED_ANONYMOUS: frozenset[str] = frozenset(
    FUNCTIONS
    | {"qserv_areaspec_box", "qserv_areaspec_circle", "qserv_areaspec_ellipse", "qserv_areaspec_poly"}
    | {"log10", "log2", "ltrim", "rtrim", "isnan"}
    | {"isinf", "isfinite", "ifnull", "even", "gamma", "lgamma", "factorial"}
    | {"list_value"}  # ADQL shapes as result columns (czar/analyze/geometry.py)
)
FILE_FUNCTIONS = ("read_", "glob", "scan_", "parquet_", "sniff_", "iceberg", "delta_", "http")

_WRITES: tuple[tuple[type[exp.Expr], str], ...] = (
    (exp.Insert, "INSERT"),
    (exp.Update, "UPDATE"),
    (exp.Delete, "DELETE"),
    (exp.Merge, "MERGE"),
    (exp.Create, "CREATE"),
    (exp.Drop, "DROP"),
    (exp.Alter, "ALTER"),
    (exp.Copy, "COPY"),
    (exp.Attach, "ATTACH"),
    (exp.Detach, "DETACH"),
    (exp.Set, "SET"),
    (exp.Pragma, "PRAGMA"),
    (exp.Install, "INSTALL") if hasattr(exp, "Install") else (exp.Command, "COMMAND"),
    (exp.Command, "COMMAND"),
    (exp.Into, "SELECT INTO"),
    (exp.TruncateTable, "TRUNCATE"),
)


def _statement_name(tree: exp.Expr) -> str:
    if isinstance(tree, exp.Describe):
        return "DESCRIBE"
    if isinstance(tree, exp.Command):
        return str(tree.this).upper()
    for cls, name in _WRITES:
        if isinstance(tree, cls):
            return name
    # Statements sqlglot does not know (INSTALL x) parse as an expression: name the first word.
    first = next((n for n in tree.walk() if isinstance(n, exp.Identifier)), None)
    return first.name.upper() if first is not None else tree.key.upper()


def guard(tree: exp.Expr) -> exp.Select:
    """Refuse anything but a SELECT, and any function outside the allow-list."""
    if isinstance(tree, exp.SetOperation):
        raise Unsupported(
            f"{tree.key.upper()} is not supported yet: run the queries separately",
            position=node_position(tree),
        )
    if isinstance(tree, exp.Show):  # MySQL's SHOW COLUMNS/TABLES/...: read-only, not yet answered
        raise Unsupported(
            f"SHOW {str(tree.this).upper()} is not supported yet: select from the table to see its columns",
            position=1,
        )
    if not isinstance(tree, exp.Select):
        name = _statement_name(tree)
        raise AccessDenied(
            f"{name} is not allowed: qserv accepts read-only SELECT queries only",
            position=1,  # the statement itself
        )
    if not tree.expressions:
        # PostgreSQL answers rows of no columns; DuckDB (and so the workers) cannot
        raise Unsupported(
            "a SELECT without a select list is not supported: select at least one column",
            position=node_position(tree.args["from_"]) if tree.args.get("from_") else 1,
        )
    for clause in ("where", "having"):
        condition = tree.args[clause].this if tree.args.get(clause) else None
        if isinstance(condition, exp.Tuple):  # WHERE (1, 2): a row is not a condition
            raise DatatypeMismatch(
                f"argument of {clause.upper()} must be type boolean, not type record",
                position=node_position(condition),
            )
    for clause in ("order", "group"):
        for item in tree.args[clause].expressions if tree.args.get(clause) else ():
            key = item.this if isinstance(item, exp.Ordered) else item
            constant = isinstance(key, (exp.Null, exp.Boolean))
            if constant or (isinstance(key, exp.Literal) and not key.is_int):  # ORDER BY 'a', NULL
                raise SyntaxError_(
                    f"non-integer constant in {clause.upper()} BY",
                    position=_constant_position(tree, key, clause),
                )
    for alias in tree.find_all(exp.TableAlias):
        columns = alias.args.get("columns") or []
        for column in columns:
            if isinstance(column, exp.Identifier) and not column.quoted and column.name[:1].isdigit():
                raise SyntaxError_(f'syntax error at or near "{column.name}"', position=node_position(column))
        if columns:  # FROM Object o (a, b): the czar binds the catalog's names only
            raise Unsupported(
                f"column aliases in FROM are not supported: {alias.sql()}; alias the columns in the select list",
                position=node_position(columns[0]),
            )
    for node in tree.walk():
        if isinstance(node, exp.Dot):  # b''.width: a field of something that has none
            raise SyntaxError_('syntax error at or near "."', position=_dot_position(tree, node))
        if isinstance(node, exp.BitString | exp.HexString | exp.ByteString):
            raise Unsupported(
                "bit-string and byte-string literals are not supported: write the number",
                position=node_position(node),
            )
        if isinstance(node, exp.Window):
            raise Unsupported(
                "window functions are not supported yet: compute them on the result",
                position=node_position(node),
            )
        for cls, name in _WRITES:
            if isinstance(node, cls):
                raise AccessDenied(
                    f"{name} is not allowed inside a query: qserv accepts read-only SELECT only",
                    position=node_position(node),
                )
        if isinstance(node, exp.Table) and not isinstance(node.this, exp.Identifier):
            fname = node.this.sql_name() if isinstance(node.this, exp.Func) else node.this.key
            if isinstance(node.this, exp.Anonymous):
                fname = node.this.name
            raise AccessDenied(
                f"table function {fname} is not allowed: select from catalog tables only",
                position=node_position(node),
            )
        if isinstance(node, exp.Func) and not isinstance(node, exp.Connector):
            _check_function(node)
    return tree


def _dot_position(tree: exp.Select, node: exp.Dot) -> int | None:
    """Where the ``.`` of a dotted access is written: the last one before its field name."""
    after = node_position(node.expression)
    sql = tree.meta.get(SQL_META)
    if after is None or not isinstance(sql, str):
        return after
    dot = sql.rfind(".", 0, after - 1)
    return dot + 1 if dot >= 0 else after


def _constant_position(tree: exp.Select, key: exp.Expr, clause: str) -> int | None:
    """Where a constant of ORDER/GROUP BY is written (NULL and TRUE carry no position)."""
    position = node_position(key)
    sql = tree.meta.get(SQL_META)
    if position is not None or not isinstance(sql, str):
        return position
    by = re.search(rf"\b{clause}\s+BY\b", sql, re.I)
    found = re.compile(rf"\b{re.escape(key.sql())}\b", re.I).search(sql, by.end()) if by else None
    return found.start() + 1 if found else None


def _check_function(node: exp.Func) -> None:
    if isinstance(node, exp.Anonymous):
        name = node.name.lower()
        if name in ALLOWED_ANONYMOUS:
            return
    else:
        if type(node).__name__ in ALLOWED_FUNCTION_NODES:
            return
        name = node.sql_name().lower()
    if name.startswith(FILE_FUNCTIONS) or "read" in name or type(node).__name__.startswith("Read"):
        raise AccessDenied(
            f"function {name} reads files or the network and is not allowed in queries",
            position=node_position(node),
        )
    raise UndefinedFunction(
        f"function {name} does not exist or is not allowed in qserv queries",
        hint="allowed: arithmetic, string, CASE/CAST/COALESCE, COUNT/SUM/MIN/MAX/AVG, scisql_*",
        position=node_position(node),
    )
