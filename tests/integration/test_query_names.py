"""Through psycopg on a real cluster: names in ORDER BY/GROUP BY/HAVING bind as DuckDB binds them,
positions and SELECT DISTINCT ... ORDER BY are refused as PostgreSQL refuses them, and a query
over two databases of different partitioning is planned on its chunked tables' family.

The reference is one DuckDB holding the same files, running the query text as sqlglot
transpiles it from PostgreSQL to DuckDB. The second database (``aaa``, sorting before ``sky``,
other partitioning) is created through the HTTP API and loaded with the real ``qserv load``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlglot

from tests.cluster import LiveCluster, running_cluster

OTHER = {"name": "aaa", "order": 4, "sub_order": 7, "overlap": 0.02}


def _create_database(cluster: LiveCluster, doc: dict[str, object]) -> None:
    cluster.create_database(str(doc["name"]), int(doc["order"]), int(doc["sub_order"]), float(doc["overlap"]))


@pytest.fixture(scope="module")
def two_databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveCluster, Path]]:
    """A cluster with the sample in ``sky``; ``aaa`` holds a regular table and a director."""
    tmp = tmp_path_factory.mktemp("names")
    with running_cluster(tmp, objects=4000) as cluster:
        _create_database(cluster, OTHER)
        files = tmp / "aaa"
        files.mkdir()
        pq.write_table(
            pa.table({"flag": pa.array([0, 1, 1], pa.int32()), "label": ["point", "ext", "ext2"]}),
            files / "Kind.parquet",
        )
        objects = pq.read_table(cluster.sample["Object"]).slice(0, 1500).select(["objectId", "ra", "decl"])
        pq.write_table(objects, files / "Other.parquet")
        cluster.load("--database", "aaa", "--table", "Kind", "--regular", str(files / "Kind.parquet"))
        cluster.load(
            "--database", "aaa", "--table", "Other", "--director",
            "--id", "objectId", "--lon", "ra", "--lat", "decl", str(files / "Other.parquet"),
        )  # fmt: skip
        yield cluster, files


@pytest.fixture(scope="module")
def cluster(two_databases: tuple[LiveCluster, Path]) -> LiveCluster:
    return two_databases[0]


@pytest.fixture(scope="module")
def reference(two_databases: tuple[LiveCluster, Path]) -> Iterator[duckdb.DuckDBPyConnection]:
    """One DuckDB with schemas ``sky`` (the sample) and ``aaa``; unqualified names are sky's."""
    cluster, files = two_databases
    conn = duckdb.connect()
    for schema, paths in (("sky", cluster.sample), ("aaa", {p.stem: p for p in files.glob("*.parquet")})):
        conn.execute(f"CREATE SCHEMA {schema}")
        for name, path in paths.items():
            conn.execute(f"CREATE TABLE {schema}.\"{name}\" AS SELECT * FROM read_parquet('{path}')")
    conn.execute("SET search_path = 'sky'")
    yield conn
    conn.close()


def _expected(reference: duckdb.DuckDBPyConnection, sql: str) -> list[tuple]:
    return reference.execute(sqlglot.transpile(sql, read="postgres", write="duckdb")[0]).fetchall()


def _rounded(rows: list[tuple]) -> list[tuple]:
    return [tuple(round(v, 9) if isinstance(v, float) else v for v in row) for row in rows]


ORDERED = [
    # ORDER BY a bare name: the alias, not the column of that name
    "SELECT objectId, ra AS decl FROM Object ORDER BY decl LIMIT 5",
    "SELECT objectId, ra AS decl FROM Object ORDER BY decl DESC",
    "SELECT objectId AS ra, decl FROM Object ORDER BY ra DESC LIMIT 4",
    "SELECT o.objectId AS ra, s.ra AS decl FROM Object o JOIN Source s ON o.objectId = s.objectId "
    "ORDER BY decl, ra LIMIT 6",
    # an expression or a qualified name: the column (an alias only where no column has the name)
    "SELECT objectId, ra AS decl FROM Object ORDER BY decl + 1 LIMIT 5",
    "SELECT objectId, ra AS decl FROM Object o ORDER BY o.decl DESC LIMIT 5",
    "SELECT objectId, ra AS x FROM Object ORDER BY x + 0 DESC LIMIT 5",
    # aggregates: ORDER BY alias, GROUP BY column, HAVING alias unless the column is a group key
    "SELECT extendedness AS ra, COUNT(*) AS n FROM Object GROUP BY extendedness ORDER BY ra DESC",
    "SELECT extendedness AS x, MAX(ra) AS ra FROM Object GROUP BY 1 ORDER BY ra LIMIT 1",
    "SELECT extendedness AS decl, COUNT(*) AS n FROM Object GROUP BY extendedness HAVING decl > 0 ORDER BY 1",
    "SELECT extendedness AS x, COUNT(*) AS extendedness FROM Object GROUP BY extendedness "
    "HAVING extendedness > 0 ORDER BY 1",
    "SELECT DISTINCT extendedness AS ra FROM Object ORDER BY ra DESC",
]


@pytest.mark.parametrize("sql", ORDERED)
def test_names_bind_as_in_duckdb(
    cluster: LiveCluster, reference: duckdb.DuckDBPyConnection, sql: str
) -> None:
    want = _expected(reference, sql)
    assert want, f"{sql}: answers nothing"
    assert _rounded(cluster.query(sql)) == _rounded(want), sql


def _refusal(cluster: LiveCluster, sql: str) -> psycopg.Error:
    with cluster.connect() as conn, pytest.raises(psycopg.Error) as refused:
        conn.execute(sql)  # type: ignore[arg-type]
    return refused.value


# (query, SQLSTATE, PostgreSQL's message, the text the position points at)
REFUSED = [
    (
        "SELECT DISTINCT extendedness FROM Object ORDER BY ra LIMIT 3",
        "42P10",
        "for SELECT DISTINCT, ORDER BY expressions must appear in select list",
        "ra LIMIT",
    ),
    (
        "SELECT DISTINCT extendedness FROM Object ORDER BY extendedness + 1",
        "42P10",
        "for SELECT DISTINCT, ORDER BY expressions must appear in select list",
        "extendedness + 1",
    ),
    ("SELECT objectId FROM Object ORDER BY 0", "42P10", "ORDER BY position 0 is not in select list", "0"),
    (
        "SELECT objectId, ra FROM Object ORDER BY 3 LIMIT 2",
        "42P10",
        "ORDER BY position 3 is not in select list",
        "3",
    ),
    ("SELECT objectId FROM Object ORDER BY -1", "42P10", "ORDER BY position -1 is not in select list", None),
    ("SELECT objectId FROM Object ORDER BY 'x'", "42601", "non-integer constant in ORDER BY", "'x'"),
    (
        "SELECT extendedness, COUNT(*) FROM Object GROUP BY 0",
        "42P10",
        "GROUP BY position 0 is not in select list",
        "0",
    ),
    (
        "SELECT extendedness, COUNT(*) FROM Object GROUP BY 3",
        "42P10",
        "GROUP BY position 3 is not in select list",
        "3",
    ),
]


@pytest.mark.parametrize(("sql", "sqlstate", "message", "at"), REFUSED)
def test_refused_as_postgresql(
    cluster: LiveCluster, sql: str, sqlstate: str, message: str, at: str | None
) -> None:
    error = _refusal(cluster, sql)
    assert error.sqlstate == sqlstate, (sql, str(error))
    assert error.diag.message_primary == message, sql
    if at is not None:
        assert error.diag.statement_position == str(sql.rindex(at) + 1), sql
    # the czar keeps answering on the same terms
    assert cluster.query("SELECT COUNT(*) FROM Object") == _count(cluster)


def _count(cluster: LiveCluster) -> list[tuple]:
    return [(pq.read_metadata(cluster.sample["Object"]).num_rows,)]


TWO_DATABASES = [
    # a regular table of aaa (sorting first, other family) with sky's director and child
    "SELECT COUNT(*) FROM aaa.Kind k, sky.Object o WHERE k.flag = o.extendedness",
    "SELECT k.label, COUNT(*), SUM(o.ra) FROM sky.Object o JOIN aaa.Kind k ON k.flag = o.extendedness "
    "GROUP BY k.label ORDER BY k.label",
    "SELECT COUNT(*) FROM aaa.Kind k JOIN Source s ON s.filterId = k.flag",
    "SELECT o.objectId, k.label FROM aaa.Kind k JOIN Object o ON k.flag = o.extendedness "
    "WHERE o.objectId IN (1003, 1006, 2000) ORDER BY o.objectId, k.label",
    # aaa's director on its own family, with a regular table of sky
    "SELECT COUNT(*) FROM aaa.Other",
    "SELECT f.filterName, COUNT(*) FROM aaa.Other a JOIN sky.Filter f ON f.filterId = a.objectId % 6 "
    "GROUP BY f.filterName ORDER BY f.filterName",
]


@pytest.mark.parametrize("sql", TWO_DATABASES)
def test_two_databases_count_as_one_duckdb(
    cluster: LiveCluster, reference: duckdb.DuckDBPyConnection, sql: str
) -> None:
    want = _expected(reference, sql)
    assert want and want != [(0,)], f"{sql}: answers nothing"
    assert _rounded(cluster.query(sql)) == _rounded(want), sql


def test_director_lookups_over_two_databases_reuse_the_family(
    cluster: LiveCluster, reference: duckdb.DuckDBPyConnection
) -> None:
    # the second and third lookups take the generic plan of the first (same shape)
    for key in (1003, 1501, 3997):
        sql = f"SELECT o.objectId, k.label FROM aaa.Kind k JOIN sky.Object o ON k.flag = o.extendedness WHERE o.objectId = {key}"
        want = sorted(_expected(reference, sql))
        assert want, sql
        assert sorted(cluster.query(sql)) == want, sql


def test_join_of_chunked_tables_of_two_families_is_refused(cluster: LiveCluster) -> None:
    sql = "SELECT COUNT(*) FROM aaa.Other a JOIN sky.Object o ON a.objectId = o.objectId"
    error = _refusal(cluster, sql)
    assert error.sqlstate == "0A000", str(error)
    message = error.diag.message_primary or ""
    for name in ("aaa.Other", "sky.Object", "healpix-o4-s7", "healpix-o5-s8"):
        assert name in message, message
    assert error.diag.statement_position == str(sql.index("sky.Object") + 1)
