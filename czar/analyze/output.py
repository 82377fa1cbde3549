"""Pass 8 (output): output column names and types exactly as single-node DuckDB gives them.

DuckDB names unaliased expressions its own way (``count_star()``, ``(ra + 1)``, ``sum(x)``)
and types sums of integers as HUGEINT.  Rather than re-implement its rules, the query is
described (``DESCRIBE``) on an in-memory DuckDB holding empty tables of the same schema, with
the spatial macros installed; binder errors (grouping, types) surface here, before dispatch.

    SELECT COUNT(*), AVG(flux) FROM Object  -> ("count_star()", "avg(flux)"), ("BIGINT", "DOUBLE")

Depends on every rewriting pass (it describes the final tree).
"""

from __future__ import annotations

import re

import duckdb
from sqlglot import exp

from czar.analyze.model import TableRef
from qserv.errors import QservError, from_sqlstate
from qserv.sphere.scisql import install_macros


def _sqlstate(message: str) -> str:
    if "GROUP BY" in message or "aggregate" in message.lower():
        return "42803"  # grouping_error
    if "function" in message.lower() and ("does not exist" in message or "No function" in message):
        return "42883"
    if "not found" in message.lower() and "column" in message.lower():
        return "42703"
    return "42804"  # datatype_mismatch: the most common remaining binder error


def describe(tree: exp.Select, refs: tuple[TableRef, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(names, DuckDB types) of the query's result columns."""
    conn = duckdb.connect(":memory:")
    try:
        install_macros(conn)
        seen: set[tuple[str, str]] = set()
        for ref in refs:
            key = (ref.table.database.lower(), ref.table.name.lower())
            if key in seen:
                continue
            seen.add(key)
            cols = ", ".join(f'"{c.name}" {c.type}' for c in ref.table.columns)
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{ref.table.database}"')
            conn.execute(f'CREATE TABLE "{ref.table.database}"."{ref.table.name}" ({cols})')
        try:
            rows = conn.execute("DESCRIBE " + tree.sql(dialect="duckdb")).fetchall()
        except duckdb.Error as e:
            message = re.sub(r"\s*LINE \d+:.*", "", str(e), flags=re.S).strip()
            message = re.sub(r"^\w+ Error: ", "", message)
            raise from_sqlstate(_sqlstate(message), message) from None
        return tuple(str(r[0]) for r in rows), tuple(str(r[1]) for r in rows)
    except QservError:
        raise
    finally:
        conn.close()
