"""``SELECT *`` over USING/NATURAL joins: the czar's column names and order are PostgreSQL's.

DuckDB (the differential reference) keeps a USING column where the left table has it, while
PostgreSQL puts the merged columns first; so the reference here is a real PostgreSQL server
(tests/pgserver.py) holding empty tables of the same schemas (names quoted, case kept).
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from tests.differential.harness import FakeCluster
from tests.differential.joins_catalog import generate_joins
from tests.pgserver import PostgresServer, required_postgres

PG_TYPES = {"BIGINT": "bigint", "DOUBLE": "double precision", "INTEGER": "integer", "VARCHAR": "text"}


@pytest.fixture(scope="module")
def cluster() -> FakeCluster:
    return FakeCluster(generate_joins())


@pytest.fixture(scope="module")
def postgres(cluster: FakeCluster) -> Iterator[psycopg.Connection]:
    server: PostgresServer
    for server in required_postgres("USING column order"):
        with psycopg.connect(server.url, autocommit=True) as conn:
            for db in cluster.generated.databases:
                conn.execute(f'CREATE SCHEMA "{db.name}"')
            for t in cluster.generated.tables:
                cols = ", ".join(f'"{c.name}" {PG_TYPES[c.type]}' for c in t.columns)
                conn.execute(f'CREATE TABLE "{t.database}"."{t.name}" ({cols})')
            conn.execute('SET search_path = "sky"')
            yield conn


QUERIES = [
    "SELECT * FROM Source JOIN Filter USING (filterId)",
    "SELECT * FROM Source s NATURAL JOIN Filter f",
    "SELECT * FROM Source s LEFT JOIN Filter f USING (filterId)",
    "SELECT * FROM Object o JOIN Source s USING (objectId) JOIN Filter f USING (filterId)",
    "SELECT * FROM Pair p NATURAL JOIN sky2.Kind",
    "SELECT * FROM Object a JOIN Object b USING (decl, objectId)",
    "SELECT s.*, f.* FROM Source s JOIN Filter f USING (filterId)",
    "SELECT *, filterId FROM Source JOIN other.Band USING (filterId)",
]


@pytest.mark.parametrize("sql", QUERIES)
def test_star_columns_as_postgres(cluster: FakeCluster, postgres: psycopg.Connection, sql: str) -> None:
    cur = postgres.execute(sql.replace("Object", '"Object"').replace("Source", '"Source"')
                           .replace("Filter", '"Filter"').replace("Pair", '"Pair"')
                           .replace("Kind", '"Kind"').replace("Band", '"Band"')
                           .replace("USING (filterId)", 'USING ("filterId")')
                           .replace("USING (objectId)", 'USING ("objectId")')
                           .replace("USING (decl, objectId)", 'USING ("decl", "objectId")')
                           .replace("*, filterId", '*, "filterId"'))  # fmt: skip
    assert cur.description is not None
    expected = [d.name for d in cur.description]
    assert list(cluster.analyze(sql).columns) == expected
    assert cluster.run(sql).table.column_names == expected
