"""Beyond Qserv on a real cluster through psycopg: sub-queries and CTEs, a director-key range
through the director index, and COUNT(*) from the committed row counts (which follow a second
load), each checked against one DuckDB holding the same rows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tests.cluster import LiveCluster, running_cluster

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveCluster]:
    with running_cluster(tmp_path_factory.mktemp("beyond"), workers=2, objects=3000) as tc:
        yield tc


@pytest.fixture(scope="module")
def reference(small: LiveCluster) -> Iterator[duckdb.DuckDBPyConnection]:
    ref = small.reference()
    yield ref
    ref.close()


SUB_QUERIES = [
    "SELECT COUNT(*) FROM Source WHERE objectId IN (SELECT objectId FROM Object WHERE decl > 60)",
    "SELECT COUNT(*) FROM Object WHERE r_psfFlux > (SELECT AVG(r_psfFlux) FROM Object)",
    "SELECT COUNT(*) FROM Object WHERE EXISTS (SELECT 1 FROM Source WHERE psfFlux > 0)",
    "WITH e AS (SELECT extendedness, COUNT(*) AS n FROM Object GROUP BY extendedness) "
    "SELECT extendedness, n FROM e ORDER BY extendedness",
    "SELECT MAX(n) FROM (SELECT objectId, COUNT(*) AS n FROM Source GROUP BY objectId) AS t",
    "SELECT COUNT(DISTINCT extendedness), STDDEV(1e6 + ra * 1e-3) FROM Object",
    "SELECT COUNT(*), SUM(t.n) FROM Source s JOIN (SELECT extendedness AS e, COUNT(*) AS n FROM Object "
    "GROUP BY extendedness) AS t ON t.e = s.filterId",  # a derived table sent to the workers
]


@pytest.mark.parametrize("sql", SUB_QUERIES)
def test_sub_queries_match_single_duckdb(
    small: LiveCluster, reference: duckdb.DuckDBPyConnection, sql: str
) -> None:
    got = small.query(sql)
    want = reference.execute(sql).fetchall()
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g == pytest.approx(w, rel=1e-8), sql  # sums in another order: last bits differ


def test_explain_shows_the_steps(small: LiveCluster) -> None:
    plan = small.explain(
        "SELECT COUNT(*) FROM Source WHERE objectId IN (SELECT objectId FROM Object WHERE decl > 60)"
    )
    assert plan.splitlines()[0] == "strategy: sub-queries"
    assert "step __qserv_sq_0 (in, distributed): SELECT objectId FROM Object WHERE decl > 60" in plan


def test_correlated_sub_query_is_refused_naming_the_column(small: LiveCluster) -> None:
    with small.connect() as conn, pytest.raises(Exception) as info:
        conn.execute(
            "SELECT COUNT(*) FROM Object o WHERE EXISTS (SELECT 1 FROM Source s WHERE s.objectId = o.objectId)"
        )
    assert info.value.sqlstate == "0A000"  # type: ignore[attr-defined]
    assert '"o.objectId"' in str(info.value)


def test_key_range_goes_through_the_director_index(
    small: LiveCluster, reference: duckdb.DuckDBPyConnection
) -> None:
    low, high = reference.execute("SELECT MIN(objectId), MIN(objectId) + 40 FROM Object").fetchall()[0]
    sql = f"SELECT objectId, ra FROM Object WHERE objectId BETWEEN {low} AND {high} ORDER BY objectId"
    assert small.query(sql) == reference.execute(sql).fetchall()
    plan = small.explain(sql)
    assert "strategy: director-range" in plan
    child = f"SELECT COUNT(*) FROM Source WHERE objectId BETWEEN {low} AND {high}"
    assert small.query(child) == reference.execute(child).fetchall()
    assert "strategy: director-range" in small.explain(child)


def test_whole_table_count_follows_a_second_load(
    small: LiveCluster, reference: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    before = reference.execute("SELECT COUNT(*) FROM Object").fetchall()[0][0]
    assert small.query("SELECT COUNT(*) FROM Object") == [(before,)]
    assert "strategy: row-counts" in small.explain("SELECT COUNT(*) FROM Object")
    # a second transaction: 100 more objects with new keys
    extra = pq.read_table(small.sample["Object"]).slice(0, 100)
    ids = extra.column("objectId")
    extra = extra.set_column(extra.schema.get_field_index("objectId"), "objectId", pc.add(ids, 10_000_000))
    path = tmp_path / "more.parquet"
    pq.write_table(extra, path)
    small.load(
        "--database", "sky", "--table", "Object", "--director", "--id", "objectId",
        "--lon", "ra", "--lat", "decl", "--no-progress", str(path),
    )  # fmt: skip
    assert small.query("SELECT COUNT(*) FROM Object") == [(before + 100,)]
    # the workers agree: the same count by a scan
    assert small.query("SELECT COUNT(*) FROM Object WHERE objectId IS NOT NULL") == [(before + 100,)]
