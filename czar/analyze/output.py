"""Pass 8 (output): output column names and types exactly as single-node DuckDB gives them.

DuckDB names unaliased expressions its own way (``count_star()``, ``(ra + 1)``, ``sum(x)``)
and types sums of integers as HUGEINT.  The common shapes (bare columns, the usual aggregates,
simple arithmetic, CASE, CAST, COALESCE over catalog columns) are typed from the catalog with
DuckDB's rules (static_types.py, proved against DESCRIBE by tests/unit/czar/test_static_types.py);
any other query is described (``DESCRIBE``) on an in-memory DuckDB holding empty tables of the
same schema, with the spatial macros installed, so that binder errors (grouping, types)
surface here, before dispatch, in PostgreSQL's words (qserv.sqlerrors) at the position of the
construct DuckDB pointed at.

    SELECT COUNT(*), AVG(flux) FROM Object  -> ("count_star()", "avg(flux)"), ("BIGINT", "DOUBLE")

Depends on every rewriting pass (it describes the final tree).
"""

from __future__ import annotations

import functools
import re

import duckdb
from sqlglot import exp

from czar.analyze.model import TableRef
from czar.analyze.static_types import catalog_type, is_numeric_type, operands, static_describe
from czar.parse import SQL_META, node_position, operator_position
from qserv.catalog import Catalog, Table
from qserv.errors import QservError, UndefinedFunction
from qserv.sphere.scisql import install_cpoly_signature, install_macros
from qserv.sqlerrors import translate


@functools.lru_cache(maxsize=8)
def _empty_database(tables: frozenset[Table]) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with empty tables of these schemas and the spatial macros.

    Memoised on the (immutable) table definitions: building it costs ~15 ms, describing a
    query on it well under 1 ms, and point lookups have a budget of a few milliseconds.
    Callers use their own cursor, so concurrent queries do not share a connection.
    """
    conn = duckdb.connect(":memory:")
    install_macros(conn)
    install_cpoly_signature(conn)  # its calls are written out only after this pass
    for table in sorted(tables, key=lambda t: (t.database.lower(), t.name.lower())):
        cols = ", ".join(f'"{c.name}" {c.type}' for c in table.columns)
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{table.database}"')
        conn.execute(f'CREATE TABLE "{table.database}"."{table.name}" ({cols})')
    return conn


@functools.lru_cache(maxsize=256)
def _column_types(table: Table) -> dict[str, str]:
    """Column (lower-cased) -> DuckDB's own spelling of its type (INT -> INTEGER)."""
    cursor = _empty_database(frozenset({table})).cursor()
    try:
        rows = cursor.execute(f'DESCRIBE "{table.database}"."{table.name}"').fetchall()
    finally:
        cursor.close()
    return {str(r[0]).lower(): str(r[1]) for r in rows}


def _ref_column_types(ref: TableRef) -> dict[str, str]:
    return _column_types(ref.table)


_COMPARE = (exp.EQ, exp.NEQ, exp.LT, exp.LTE, exp.GT, exp.GTE, exp.NullSafeEQ, exp.NullSafeNEQ)
_SYMBOL = r"[<>=!~|&+\-*/%^#@:]+"  # an operator written with symbols


def _refuse_text_number(node: exp.Expr, value: exp.Expr, tree: exp.Select) -> None:
    """``name = 1``: PostgreSQL has no text = integer operator (DuckDB would cast every name)."""
    number = value.this if isinstance(value, exp.Neg) else value
    if not isinstance(number, exp.Literal) or number.is_string:
        return
    sql = tree.meta.get(SQL_META)
    position = operator_position(node, sql) if isinstance(sql, str) else node_position(node)
    found = re.match(_SYMBOL, sql[position - 1 :]) if isinstance(sql, str) and position else None
    symbol = found.group(0) if found else "="
    kind = "integer" if re.fullmatch(r"\d+", number.this) else "numeric"
    left, right = ("text", kind) if node.args.get("expression") is value else (kind, "text")
    raise UndefinedFunction(
        f"operator does not exist: {left} {symbol} {right}",
        hint="No operator matches the given name and argument types. You might need to add explicit type casts.",
        position=position,
    )


def _check_literals(tree: exp.Select, refs: tuple[TableRef, ...]) -> None:
    """Refuse a string literal compared with a numeric column that does not read as its type
    (``objectId = 'abc'``: 22P02, as PostgreSQL), before a director-key plan skips the rows.

    DuckDB casts such literals only when it executes the query, not when it describes it.
    """
    for node in tree.find_all(*_COMPARE, exp.In, exp.Between):
        column, values = operands(node)
        type_ = catalog_type(column, refs) if column is not None else None
        if type_ is None:
            continue
        if not is_numeric_type(type_):
            if type_.upper() in ("VARCHAR", "TEXT") and isinstance(node, _COMPARE):
                _refuse_text_number(node, values[0], tree)
            continue
        for value in values:
            if isinstance(value, exp.Literal) and value.is_string:
                cursor = _empty_database(frozenset()).cursor()
                try:
                    cursor.execute(f"SELECT CAST(? AS {type_})", [value.this])
                except duckdb.Error as e:
                    err = translate(str(e))
                    err.position = node_position(value)
                    raise err from None
                finally:
                    cursor.close()


def describe_known(
    tree: exp.Select, refs: tuple[TableRef, ...]
) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """(names, DuckDB types) of the resolved query's result columns typed from the catalog
    (static_types.py: result names from the columns as written), None when not sure (then
    :func:`describe` asks DuckDB); literals checked as :func:`describe` does."""
    _check_literals(tree, refs)
    return static_describe(tree, refs, _ref_column_types)


def describe(tree: exp.Select, refs: tuple[TableRef, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(names, DuckDB types) of the query's result columns."""
    _check_literals(tree, refs)
    # the common shapes typed from the catalog (~50 us); DuckDB describes the others (~2 ms)
    known = static_describe(tree, refs, _ref_column_types)
    if known is not None:
        return known
    cursor = _empty_database(frozenset(ref.table for ref in refs)).cursor()
    try:
        rows = cursor.execute("DESCRIBE " + tree.sql(dialect="duckdb")).fetchall()
    except duckdb.Error as e:
        raise _place(translate(str(e)), tree) from None
    finally:
        cursor.close()
    return tuple(str(r[0]) for r in rows), tuple(str(r[1]) for r in rows)


def _squash(sql: str) -> str:
    return re.sub(r"[\s\"`]", "", sql).lower()


def _construct_node(tree: exp.Expr, construct: str | None) -> exp.Expr | None:
    """The node of the construct DuckDB underlined: exactly it, else the innermost node ending
    with it (DuckDB underlines an operator from the operator on: ``LIKE 1`` of ``name LIKE 1``)."""
    if not construct:
        return None
    want = _squash(construct)
    rendered = [(node, _squash(node.sql(dialect="duckdb"))) for node in tree.walk() if node is not tree]
    exact = [node for node, text in rendered if text == want]
    ending = [node for node, text in reversed(rendered) if text.endswith(want)]
    sql = tree.meta.get(SQL_META)
    if not exact and not ending and isinstance(sql, str) and re.fullmatch(_SYMBOL, construct):
        # a bare operator (``+``): the first binary node written with it
        for node, _ in rendered:
            at = operator_position(node, sql) if isinstance(node, exp.Binary) else None
            if at is not None and sql[at - 1 :].startswith(construct):
                return node
    # last, the innermost node whose text holds it (``NAME`` of ``CAST('x' AS NAME)``)
    holding = [node for node, text in reversed(rendered) if want in text]
    return next((n for n in exact + ending + holding if node_position(n) is not None), None)


def _place(err: QservError, tree: exp.Expr) -> QservError:
    """``err`` at its construct's position in the user's SQL (an operator's: at the operator),
    and a comparison's type error named by its operator, as PostgreSQL does."""
    node = _construct_node(tree, err.construct)
    if node is None:
        return err
    sql = tree.meta.get(SQL_META)
    binary = isinstance(node, exp.Binary) and isinstance(sql, str)
    err.position = operator_position(node, sql) if binary and isinstance(sql, str) else node_position(node)
    compare = re.match(r"cannot compare values of type (.+) and (.+)$", err.message)
    if compare and binary and isinstance(sql, str) and err.position is not None:
        symbol = re.match(_SYMBOL + r"|[A-Za-z]+", sql[err.position - 1 :])
        if symbol:
            err.message = f"operator does not exist: {compare.group(1)} {symbol.group(0)} {compare.group(2)}"
            err.hint = "No operator matches the given name and argument types. You might need to add explicit type casts."
    return err


def describe_whole(tree: exp.Select, catalog: Catalog, default_db: str) -> tuple[str, ...] | None:
    """Result names of a query with sub-queries, as single-node DuckDB gives them (the
    unaliased projection ``(SELECT max(x) FROM t)`` is named by its text, not by the constant
    the sub-query's result becomes); None when DuckDB cannot describe it as written."""
    tables = frozenset(
        t
        for node in tree.find_all(exp.Table)
        for t in [catalog.table(node.db or default_db, node.name)]
        if t is not None
    )
    cursor = _empty_database(tables).cursor()
    try:
        cursor.execute(f"SET schema = '{default_db.replace(chr(39), chr(39) * 2)}'")
        return tuple(str(r[0]) for r in cursor.execute("DESCRIBE " + tree.sql(dialect="duckdb")).fetchall())
    except duckdb.Error:
        return None
    finally:
        cursor.close()
