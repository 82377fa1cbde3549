"""Sub-query results sent to the workers: a derived table or CTE joined with catalog tables.

The step's rows (czar/steps.py) become a regular table of the query's catalog, so the analyzer
and planner treat it as any regular table (joinable with anything, on every worker), and the
worker query reads them from a ``WITH`` clause of constants instead of a stored table::

    SELECT s.sourceId, t.n FROM Source s JOIN (SELECT flags AS f, COUNT(*) AS n FROM Object
    GROUP BY flags) AS t ON t.f = s.filterId
    worker: WITH "__qserv_sq_0" AS (SELECT CAST(c0 AS INTEGER) AS "f", CAST(c1 AS BIGINT) AS "n"
            FROM (VALUES (0, 251), (1, 244), ...) AS v(c0, c1)) SELECT ... FROM "sky"."Source" AS "s"
            JOIN "__qserv_sq_0" AS "t" ON ...

At most :data:`MAX_SHIPPED_ROWS` rows travel so, in every worker query: a larger result is
refused with an error naming the bound. Pure functions of the rows and the plan.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import pyarrow as pa
from sqlglot import exp

from czar.plan.constants import literal
from czar.plan.model import QueryPlan
from qserv.catalog import Catalog, Column, Table, TableKind
from qserv.errors import StatementTooComplex

MAX_SHIPPED_ROWS = 10_000
"""Most rows of a derived table or CTE sent to the workers (joined with catalog tables)."""

# name -> (rows, DuckDB type of each column)
Shipped = Mapping[str, tuple[pa.Table, Sequence[str]]]


def shipped_catalog(catalog: Catalog, database: str, shipped: Shipped) -> Catalog:
    """``catalog`` with each shipped result as a regular table of ``database``."""
    tables = tuple(
        Table(
            database,
            name,
            TableKind.REGULAR,
            tuple(Column(c, t) for c, t in zip(rows.column_names, types, strict=True)),
        )
        for name, (rows, types) in shipped.items()
    )
    return dataclasses.replace(catalog, tables=catalog.tables + tables)


def _constants(name: str, rows: pa.Table, types: Sequence[str]) -> str:
    """``SELECT`` of ``rows`` as constants of their types (no rows: the typed empty result)."""
    if rows.num_rows > MAX_SHIPPED_ROWS:
        raise StatementTooComplex(
            f"sub-query result too large: a derived table or CTE joined with catalog tables has "
            f"{rows.num_rows} rows, above the bound of {MAX_SHIPPED_ROWS} sent to the workers",
            hint="restrict the sub-query, or filter with IN (SELECT ...)",
        )
    names = [exp.to_identifier(c, quoted=True).sql(dialect="duckdb") for c in rows.column_names]
    if rows.num_rows == 0:
        columns = ", ".join(
            f"{literal(None, t).sql(dialect='duckdb')} AS {n}" for n, t in zip(names, types, strict=True)
        )
        return f"SELECT {columns} WHERE FALSE"
    values = ", ".join(
        "("
        + ", ".join(literal(v, t).sql(dialect="duckdb") for v, t in zip(row.values(), types, strict=True))
        + ")"
        for row in rows.to_pylist()
    )
    columns = ", ".join(
        f"CAST(c{i} AS {exp.DataType.build(t, dialect='duckdb').sql(dialect='duckdb')}) AS {n}"
        if t.strip('"').upper() != "NULL"
        else f"c{i} AS {n}"
        for i, (n, t) in enumerate(zip(names, types, strict=True))
    )
    aliases = ", ".join(f"c{i}" for i in range(len(names)))
    return f"SELECT {columns} FROM (VALUES {values}) AS v({aliases})"


def ship(plan: QueryPlan, database: str, shipped: Shipped) -> QueryPlan:
    """``plan`` with the shipped tables' rows written into its worker queries."""
    if not shipped:
        return plan
    clauses = []
    replacements = []
    for name, (rows, types) in shipped.items():
        quoted = exp.to_identifier(name, quoted=True).sql(dialect="duckdb")
        qualified = f"{exp.to_identifier(database, quoted=True).sql(dialect='duckdb')}.{quoted}"
        clauses.append(f"{quoted} AS ({_constants(name, rows, types)})")
        replacements.append((qualified, quoted))
    prefix = "WITH " + ", ".join(clauses) + " "

    def rewrite(sql: str) -> str:
        for qualified, quoted in replacements:
            sql = sql.replace(qualified, quoted)
        return prefix + sql

    return dataclasses.replace(
        plan,
        worker_template=rewrite(plan.worker_template),
        batches=tuple(dataclasses.replace(b, sql=rewrite(b.sql)) for b in plan.batches),
    )
