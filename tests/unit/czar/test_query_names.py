"""Name resolution in ORDER BY, GROUP BY and HAVING, positions, and SELECT DISTINCT ... ORDER BY.

Answers are compared with one plain DuckDB running the query text as sqlglot transpiles it from
PostgreSQL to DuckDB, over the same rows (never with the analyzer's own rewrite): the
distributed pipeline runs in process (tests/differential/harness.py's fake workers).
Refusals are compared with a real PostgreSQL server holding empty tables of the same schema:
same SQLSTATE, same message, same position.
"""

from __future__ import annotations

from collections.abc import Iterator

import duckdb
import psycopg
import pyarrow as pa
import pytest
import sqlglot

from qserv.errors import QservError
from tests.differential.harness import FakeCluster, assert_same_rows, rows_of
from tests.pgserver import running_postgres


@pytest.fixture(scope="module")
def fake() -> FakeCluster:
    return FakeCluster()


@pytest.fixture(scope="module")
def plain(fake: FakeCluster) -> Iterator[duckdb.DuckDBPyConnection]:
    """One DuckDB holding the plain tables, unqualified names resolving to the catalog's database."""
    conn = fake.generated.plain_duckdb()
    yield conn
    conn.close()


def reference(plain: duckdb.DuckDBPyConnection, sql: str) -> duckdb.DuckDBPyRelation:
    return plain.sql(sqlglot.transpile(sql, read="postgres", write="duckdb")[0])


def assert_same(got: pa.Table, want: pa.Table, *, ordered: bool, sql: str) -> None:
    """Equal names, types and rows (in order where ``ordered``; floats to 1e-9)."""
    assert got.column_names == want.column_names, f"{sql}\nnames {got.column_names} != {want.column_names}"
    assert got.schema.types == want.schema.types, f"{sql}\ntypes {got.schema} != {want.schema}"
    assert_same_rows(rows_of(got), rows_of(want), ordered=ordered, sql=sql)


# (query, whether its ORDER BY fixes the order of every row it returns)
ANSWERED = [
    # ORDER BY a bare name: the select-list alias first, then the input column
    ("SELECT objectId, ra AS decl FROM Object ORDER BY decl LIMIT 5", True),
    ("SELECT objectId, ra AS decl FROM Object ORDER BY decl", True),
    ("SELECT objectId, ra AS decl FROM Object ORDER BY decl DESC LIMIT 7", True),
    ("SELECT objectId AS ra, decl FROM Object ORDER BY ra DESC LIMIT 4", True),
    ("SELECT ra AS decl, decl AS ra FROM Object ORDER BY ra, decl LIMIT 6", True),
    ("SELECT (ra) AS decl FROM Object ORDER BY (decl) LIMIT 3", True),
    ("SELECT o.objectId, o.ra AS decl FROM Object o ORDER BY decl LIMIT 5", True),
    # in an expression, or qualified: the input column (DuckDB: an alias only if no column)
    ("SELECT objectId, ra AS decl FROM Object ORDER BY decl + 1 LIMIT 5", True),
    ("SELECT objectId, ra AS decl FROM Object ORDER BY -decl LIMIT 5", True),
    ("SELECT objectId, ra AS decl FROM Object ORDER BY Object.decl LIMIT 5", True),
    ("SELECT o.objectId, o.ra AS decl FROM Object o ORDER BY o.decl DESC LIMIT 5", True),
    ("SELECT objectId, ra AS x FROM Object ORDER BY x + 0 DESC LIMIT 5", True),
    ("SELECT objectId, ra AS x FROM Object ORDER BY x * 2 + decl", True),
    # joins
    (
        "SELECT o.objectId AS ra, s.ra AS decl FROM Object o JOIN Source s ON o.objectId = s.objectId "
        "ORDER BY decl, ra LIMIT 5",
        True,
    ),
    (
        "SELECT s.sourceId AS objectId, s.decl AS ra FROM Object o JOIN Source s ON o.objectId = s.objectId "
        "ORDER BY ra DESC, objectId LIMIT 5",
        True,
    ),
    # SELECT DISTINCT ordered by what it selects
    ("SELECT DISTINCT flags AS ra FROM Object ORDER BY ra DESC", True),
    ("SELECT DISTINCT flags AS f FROM Object ORDER BY flags LIMIT 3", True),
    ("SELECT DISTINCT flags, flags + 1 AS g FROM Object ORDER BY flags + 1 DESC", True),
    # aggregates: ORDER BY alias first; GROUP BY input column first
    ("SELECT flags AS ra, COUNT(*) AS n FROM Object GROUP BY flags ORDER BY ra", True),
    ("SELECT flags AS ra, COUNT(*) AS n FROM Object GROUP BY flags ORDER BY ra DESC LIMIT 2", True),
    ("SELECT flags AS x, COUNT(*) AS flags FROM Object GROUP BY flags ORDER BY flags DESC, 1", True),
    ("SELECT flags AS x, COUNT(*) AS n FROM Object GROUP BY x ORDER BY x", True),
    ("SELECT flags + 1 AS x, COUNT(*) AS n FROM Object GROUP BY x ORDER BY x", True),
    ("SELECT flags AS x, MAX(ra) AS ra FROM Object GROUP BY 1 ORDER BY ra DESC LIMIT 3", True),
    ("SELECT flags AS x, MAX(ra) AS m FROM Object GROUP BY 1 ORDER BY m + 0 LIMIT 3", True),
    ("SELECT flags AS x, MAX(ra) AS decl FROM Object GROUP BY 1 ORDER BY MAX(decl) LIMIT 3", True),
    (
        "SELECT f.filterName AS objectId, COUNT(*) AS n FROM Source s JOIN Filter f "
        "ON s.filterId = f.filterId GROUP BY f.filterName ORDER BY objectId",
        True,
    ),
    # HAVING: an input column that is a GROUP BY key, else the alias
    ("SELECT flags AS x, COUNT(*) AS flags FROM Object GROUP BY flags HAVING flags > 1 ORDER BY 1", True),
    ("SELECT flags AS x, COUNT(*) AS n FROM Object GROUP BY flags HAVING x > 1 ORDER BY 1", True),
    ("SELECT flags AS decl, COUNT(*) AS n FROM Object GROUP BY flags HAVING decl > 1 ORDER BY 1", True),
    ("SELECT flags AS x, COUNT(*) AS n FROM Object GROUP BY flags HAVING n > 100 ORDER BY x", True),
    (
        "SELECT flags AS x, COUNT(*) AS n FROM Object GROUP BY flags HAVING n + 0 > 100 ORDER BY n + 0, x",
        True,
    ),
    ("SELECT flags + 1 AS x, COUNT(*) AS n FROM Object GROUP BY flags HAVING x > 2 ORDER BY x", True),
    ("SELECT flags AS ra, COUNT(*) AS n FROM Object GROUP BY flags HAVING SUM(ra) > 10 ORDER BY 1", True),
    ("SELECT flags AS decl, COUNT(*) AS n FROM Object GROUP BY flags, decl HAVING decl > 80", False),
    ("SELECT COUNT(*) AS ra FROM Object HAVING ra > 1", False),
    ("SELECT flags AS x, COUNT(*) AS n FROM Object GROUP BY ALL HAVING x > 1 ORDER BY x", True),
    # parentheses around a key change nothing
    ("SELECT DISTINCT (flags) FROM Object ORDER BY flags", True),
    ("SELECT flags, COUNT(*) FROM Object GROUP BY (flags) ORDER BY 1", True),
    ("SELECT flags + 1 AS f, COUNT(*) FROM Object GROUP BY (flags + 1) ORDER BY 1", True),
    # a bare column's own name is its output name: ORDER BY binds it even where inputs clash
    ("SELECT o.ra FROM Object o JOIN Source s ON o.objectId = s.objectId ORDER BY ra LIMIT 5", True),
    (
        "SELECT s.filterId, COUNT(*) FROM Object o JOIN Source s ON o.objectId = s.objectId "
        "GROUP BY s.filterId ORDER BY filterId",
        True,
    ),
    # NULLs sort first under DESC, as in PostgreSQL
    ("SELECT name AS x, objectId FROM Object ORDER BY x DESC, objectId LIMIT 3", True),
    ("SELECT rMag, objectId FROM Object ORDER BY rMag DESC NULLS LAST, objectId LIMIT 3", True),
]


@pytest.mark.parametrize(("sql", "ordered"), ANSWERED)
def test_names_bind_as_duckdb_does(
    fake: FakeCluster, plain: duckdb.DuckDBPyConnection, sql: str, ordered: bool
) -> None:
    got = fake.run(sql).table
    want = reference(plain, sql).to_arrow_table()
    assert want.num_rows > 0, f"{sql}: a query answering nothing tests nothing"
    assert_same(got, want, ordered=ordered, sql=sql)


def test_distinct_order_by_a_selected_expression_keeps_the_order(
    fake: FakeCluster, plain: duckdb.DuckDBPyConnection
) -> None:
    sql = "SELECT DISTINCT flags AS f FROM Object ORDER BY flags DESC LIMIT 2"
    got = [r["f"] for r in fake.run(sql).table.to_pylist()]
    assert got == [r[0] for r in reference(plain, sql).fetchall()]


# Both DuckDB and PostgreSQL refuse these, for the name binding (not the syntax).
DUCKDB_REFUSES = [
    "SELECT flags AS ra, COUNT(*) AS n FROM Object GROUP BY ra",  # GROUP BY binds the column ra
    "SELECT flags AS x, COUNT(*) FROM Object GROUP BY x + 1",  # no alias inside a GROUP BY expression
    "SELECT flags AS ra, COUNT(*) AS n FROM Object GROUP BY flags ORDER BY ra + 0",  # input ra
    "SELECT flags AS x, COUNT(*) AS n FROM Object GROUP BY flags HAVING SUM(x) > 1",  # aggregate args
]


@pytest.mark.parametrize("sql", DUCKDB_REFUSES)
def test_what_duckdb_refuses_is_refused(
    fake: FakeCluster, plain: duckdb.DuckDBPyConnection, sql: str
) -> None:
    with pytest.raises(duckdb.Error):
        reference(plain, sql).fetchall()
    with pytest.raises(QservError) as refused:
        fake.run(sql)
    assert refused.value.sqlstate in {"42703", "42803", "0A000"}, refused.value
    assert "_q_" not in str(refused.value)


# Refused as PostgreSQL refuses them: (query, compare the position too)
PG_REFUSES = [
    ("SELECT DISTINCT flags FROM Object ORDER BY ra LIMIT 3", True),
    ("SELECT DISTINCT flags FROM Object ORDER BY flags + 1", True),
    ("SELECT DISTINCT flags, ra FROM Object ORDER BY flags, decl DESC", True),
    ("SELECT DISTINCT o.flags FROM Object o JOIN Source s ON o.objectId = s.objectId ORDER BY s.ra", True),
    ("SELECT DISTINCT flags, COUNT(*) FROM Object GROUP BY flags ORDER BY MAX(ra)", True),
    ("SELECT objectId FROM Object ORDER BY 0", True),
    ("SELECT objectId, ra FROM Object ORDER BY 3 LIMIT 2", True),
    ("SELECT flags, COUNT(*) FROM Object GROUP BY flags ORDER BY 5", True),
    ("SELECT objectId FROM Object ORDER BY -1", False),  # PostgreSQL points at the minus sign
    ("SELECT objectId FROM Object ORDER BY 'x'", True),
    ("SELECT objectId FROM Object ORDER BY 1.5", True),
    ("SELECT objectId FROM Object ORDER BY NULL", False),  # NULL is a keyword: no position
    ("SELECT flags, COUNT(*) FROM Object GROUP BY 0", True),
    ("SELECT flags, COUNT(*) FROM Object GROUP BY 3", True),
    ("SELECT flags, COUNT(*) FROM Object GROUP BY 2", True),
    ("SELECT flags, COUNT(*) FROM Object GROUP BY 'x'", True),
    ("SELECT ra AS x, decl AS x FROM Object ORDER BY x", True),
    ("SELECT objectId AS decl, decl FROM Object ORDER BY decl", True),
    ("SELECT flags AS x, ra AS x, COUNT(*) FROM Object GROUP BY x", True),
]

_PG_TYPES = {"DOUBLE": "double precision", "VARCHAR": "text", "BOOLEAN": "boolean"}


@pytest.fixture(scope="module")
def postgres(fake: FakeCluster) -> Iterator[psycopg.Connection]:
    """PostgreSQL with empty tables of the catalog's schema (names fold to lower case there)."""
    with running_postgres() as server, psycopg.connect(server.url, autocommit=True) as conn:
        for table in fake.generated.tables:
            cols = ", ".join(f"{c.name} {_PG_TYPES.get(c.type.upper(), c.type)}" for c in table.columns)
            conn.execute(f"CREATE TABLE {table.name} ({cols})")  # type: ignore[arg-type]
        yield conn


@pytest.mark.parametrize(("sql", "with_position"), PG_REFUSES)
def test_refused_as_postgresql_refuses(
    fake: FakeCluster, postgres: psycopg.Connection, sql: str, with_position: bool
) -> None:
    with pytest.raises(psycopg.Error) as pg:
        postgres.execute(sql)  # type: ignore[arg-type]
    with pytest.raises(QservError) as ours:
        fake.run(sql)
    assert ours.value.sqlstate == pg.value.sqlstate, (sql, str(ours.value), str(pg.value))
    assert ours.value.message == pg.value.diag.message_primary, sql
    if with_position:
        assert ours.value.position == int(pg.value.diag.statement_position or 0), sql
