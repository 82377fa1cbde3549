"""Every supported query shape: the fake cluster's answer equals one DuckDB's."""

from __future__ import annotations

import pytest

from qserv.errors import QservError
from tests.differential.harness import FakeCluster, Outcome, assert_clean_refusal, assert_matches

QUERIES = [
    # projections, expressions, WHERE, NULLs
    "SELECT objectId, ra, decl FROM Object",
    "SELECT *, rFlux / gFlux AS ratio FROM Object WHERE flags = 3",
    "SELECT objectId, rFlux + 1, -decl, ra DIV 10, flags MOD 3, COALESCE(gFlux, -1) FROM Object",
    "SELECT objectId FROM Object WHERE gFlux IS NULL OR rFlux <=> NULL",
    "SELECT name, flags FROM Object WHERE name LIKE 'obj1%' AND decl BETWEEN -30 AND 30",
    "SELECT o.* FROM Object o WHERE o.OBJECTID IN (1000, 1003, 1006, 99999999)",
    "SELECT objectId, CASE WHEN flags > 4 THEN 'hi' ELSE 'lo' END AS f FROM Object",
    # aggregates
    "SELECT COUNT(*), COUNT(gFlux), SUM(flags), SUM(rFlux), MIN(ra), MAX(decl), AVG(iFlux) FROM Object",
    "SELECT AVG(flags), SUM(objectId), MIN(name), MAX(name) FROM Object",
    "SELECT flags, COUNT(*) AS n, AVG(rMag) FROM Object GROUP BY flags",
    "SELECT flags AS f, COUNT(*) FROM Object GROUP BY 1 HAVING COUNT(*) > 100 ORDER BY f",
    "SELECT flags, SUM(rFlux) / COUNT(*) AS mean, MAX(ra) - MIN(ra) FROM Object GROUP BY flags ORDER BY mean DESC",
    "SELECT flags % 2 AS parity, COUNT(*) FROM Object GROUP BY flags % 2",
    "SELECT COUNT(*) + 1, AVG(gFlux) * 2 FROM Object WHERE flags > 100",
    "SELECT flags FROM Object GROUP BY flags HAVING MAX(decl) > 80",
    "SELECT flags % 2 AS parity, name, COUNT(*), AVG(rFlux) FROM Object GROUP BY ALL ORDER BY parity, name LIMIT 9",
    "SELECT 1 AS one, COUNT(*) FROM Object WHERE flags > 100 GROUP BY ALL",
    # ORDER BY, LIMIT, DISTINCT
    "SELECT objectId, rMag FROM Object ORDER BY rMag DESC, objectId LIMIT 7",
    "SELECT objectId FROM Object ORDER BY decl LIMIT 5",
    "SELECT TOP 3 objectId, ra FROM Object ORDER BY ra",
    "SELECT DISTINCT flags FROM Object ORDER BY flags",
    "SELECT DISTINCT name FROM Object WHERE flags < 2",
    "SELECT DISTINCT flags, COUNT(*) > 0 FROM Object GROUP BY flags",
    # areaspecs
    "SELECT objectId FROM Object WHERE qserv_areaspec_box(5, 0, 15, 10)",
    "SELECT COUNT(*) FROM Object WHERE qserv_areaspec_box(359, -5, 1, 5)",
    "SELECT objectId, ra FROM Object WHERE qserv_areaspec_box(350, -10, 10, 10) AND flags > 2",
    "SELECT COUNT(*), AVG(rFlux) FROM Object WHERE qserv_areaspec_circle(10, 5, 1.5)",
    "SELECT objectId FROM Object WHERE qserv_areaspec_circle(0, 90, 3)",
    "SELECT objectId FROM Object WHERE qserv_areaspec_circle(123, 45, 0.0001)",
    # bound parameters arrive as casts (czar/pgwire/params.py)
    "SELECT COUNT(*) FROM Object WHERE qserv_areaspec_circle(CAST(10.0 AS DOUBLE), CAST(5 AS REAL), 1.5::float8)",
    # director keys
    "SELECT objectId, ra FROM Object WHERE objectId = 1003",
    "SELECT * FROM Object WHERE objectId IN (1000, 1003, 1006) AND flags >= 0",
    "SELECT s.sourceId FROM Source s WHERE s.objectId = 1003",
    # director-child joins
    "SELECT o.objectId, s.sourceId, s.psfFlux FROM Object o JOIN Source s ON s.objectId = o.objectId WHERE o.flags = 1",
    "SELECT o.objectId, COUNT(s.sourceId) AS n, AVG(s.psfFlux) FROM Object o, Source s "
    "WHERE o.objectId = s.objectId GROUP BY o.objectId HAVING COUNT(*) > 3",
    "SELECT o.objectId, s.sourceId FROM Object o LEFT JOIN Source s ON s.objectId = o.objectId "
    "WHERE qserv_areaspec_box(5, 0, 15, 10)",
    "SELECT COUNT(*) FROM Object o JOIN Source s ON o.objectId = s.objectId WHERE o.objectId IN (1000, 1003)",
    # regular tables
    "SELECT filterName, photClam FROM Filter",
    "SELECT f.filterName, COUNT(*) AS n, AVG(s.psfFlux) FROM Source s JOIN Filter f ON f.filterId = s.filterId "
    "GROUP BY f.filterName ORDER BY n DESC",
    "SELECT s.sourceId, f.filterName FROM Source s LEFT JOIN Filter f ON f.filterId = s.filterId WHERE s.psfFlux > 90",
    # spatial functions
    "SELECT objectId, scisql_angSep(ra, decl, 10, 5) AS d FROM Object WHERE scisql_angSep(ra, decl, 10, 5) < 1",
    "SELECT COUNT(*) FROM Object WHERE scisql_s2PtInCircle(ra, decl, 200, -30, 1) = 1",
    "SELECT objectId, scisql_s2PtInBox(ra, decl, 0, -1, 1, 1) FROM Object WHERE decl BETWEEN -1 AND 1",
    # empty results
    "SELECT objectId FROM Object WHERE flags > 100",
    "SELECT COUNT(*), SUM(rFlux), AVG(rFlux), MIN(ra) FROM Object WHERE objectId = 5",
    "SELECT flags, COUNT(*) FROM Object WHERE flags > 100 GROUP BY flags",
    "SELECT objectId FROM Object WHERE qserv_areaspec_box(10, 20, 10.0001, 20.0001)",
    # regressions (issue 5): ORDER BY binds output names first, GROUP BY input columns first
    "SELECT objectId, ra AS decl FROM Object ORDER BY decl LIMIT 5",
    "SELECT objectId, decl AS ra FROM Object ORDER BY ra DESC, objectId LIMIT 6",
    "SELECT objectId, -ra AS ra FROM Object WHERE flags = 2 ORDER BY ra",
    "SELECT objectId, ra AS decl, decl AS ra FROM Object ORDER BY ra, decl LIMIT 4",
    "SELECT flags % 2 AS flags, COUNT(*) FROM Object GROUP BY flags ORDER BY 1, 2",
    "SELECT flags AS n, COUNT(*) AS c FROM Object GROUP BY flags HAVING COUNT(*) > 200 ORDER BY n DESC",
    "SELECT objectId, rMag FROM Object ORDER BY flags, rMag - 1 DESC, objectId LIMIT 8",
    "SELECT objectId FROM Object ORDER BY flags LIMIT 3",  # ties: any three of the first group
    "SELECT *, rFlux / gFlux AS ratio FROM Object WHERE flags = 3 ORDER BY ratio DESC, 1 LIMIT 4",
    # DISTINCT with ORDER BY on what it selects
    "SELECT DISTINCT flags AS f FROM Object ORDER BY f DESC",
    "SELECT DISTINCT flags, name FROM Object WHERE flags < 3 ORDER BY name, 1 LIMIT 10",
    # a second database (another partitioning family)
    "SELECT o.flags, b.band, COUNT(*) FROM Object o JOIN other.Band b ON b.filterId = o.flags GROUP BY o.flags, b.band",
    "SELECT o.objectId, b.band FROM Object o LEFT JOIN other.Band b ON b.filterId = o.flags "
    "WHERE qserv_areaspec_circle(10, 5, 1)",
    "SELECT COUNT(*), AVG(s.vMag) FROM other.Star s JOIN Filter f ON f.filterId = s.flags",
    "SELECT starId, vMag FROM other.Star WHERE qserv_areaspec_box(350, -20, 20, 20) ORDER BY vMag LIMIT 5",
]

# What PostgreSQL refuses, with its SQLSTATE: the czar must refuse it the same way.
REFUSED = [
    "SELECT DISTINCT flags FROM Object ORDER BY ra LIMIT 3",
    "SELECT DISTINCT flags FROM Object ORDER BY ra",
    "SELECT DISTINCT o.flags FROM Object o ORDER BY o.objectId",
    "SELECT objectId FROM Object ORDER BY 0",
    "SELECT objectId, ra FROM Object ORDER BY 3 LIMIT 2",
]

# Documented unsupported classes (DuckDB answers, the czar refuses by design).
UNSUPPORTED = [
    # partitioned tables of two families are not co-located (DESIGN §3): refused, naming both
    ("SELECT COUNT(*) FROM Object o JOIN other.Star s ON s.starId = o.objectId", "0A000"),
]


@pytest.mark.parametrize("sql", QUERIES)
def test_same_answer_as_single_duckdb(cluster: FakeCluster, sql: str) -> None:
    assert not cluster.reference(sql).refused, sql  # the corpus holds answerable queries
    cluster.check(sql)


@pytest.mark.parametrize("sql", REFUSED)
def test_refused_as_postgresql_refuses(cluster: FakeCluster, sql: str) -> None:
    expected = cluster.reference(sql)
    assert expected.refused and expected.sqlstate, sql
    assert cluster.check(sql) is None


@pytest.mark.parametrize(("sql", "sqlstate"), UNSUPPORTED)
def test_unsupported_is_refused_clearly(cluster: FakeCluster, sql: str, sqlstate: str) -> None:
    assert not cluster.reference(sql).refused, sql  # DuckDB answers it
    with pytest.raises(QservError) as info:
        cluster.run(sql)
    assert info.value.sqlstate == sqlstate, info.value
    assert_clean_refusal(info.value.sqlstate, str(info.value), cluster.reference(sql), sql=sql)


def _answered(cluster: FakeCluster, sql: str) -> Outcome:
    outcome = cluster.check(sql)
    assert outcome is not None, sql
    return outcome


def test_region_strategy_prunes_chunks(cluster: FakeCluster) -> None:
    outcome = _answered(cluster, "SELECT COUNT(*) FROM Object WHERE qserv_areaspec_circle(10, 5, 1)")
    assert outcome.plan.strategy == "region"
    assert 0 < len(outcome.plan.chunk_ids) < 40


def test_director_key_strategy(cluster: FakeCluster) -> None:
    outcome = _answered(cluster, "SELECT objectId FROM Object WHERE objectId IN (1000, 1003)")
    assert outcome.plan.strategy == "director-key"
    assert len(outcome.plan.chunk_ids) <= 2


def test_missing_key_dispatches_one_empty_batch(cluster: FakeCluster) -> None:
    outcome = _answered(cluster, "SELECT COUNT(*) FROM Object WHERE objectId = 7")
    assert outcome.plan.chunk_ids == ()
    assert len(outcome.plan.batches) == 1 and "FALSE" in outcome.plan.batches[0].sql
    assert outcome.table.to_pylist() == [{"count_star()": 0}]


def test_dead_worker_uses_replicas(cluster: FakeCluster) -> None:
    sql = "SELECT flags, COUNT(*) FROM Object GROUP BY flags"
    outcome = cluster.run(sql, workers=cluster.workers[1:])
    assert {b.worker for b in outcome.plan.batches} <= set(cluster.workers[1:])
    assert_matches(outcome.table, cluster.reference(sql), sql=sql)


def test_render_any_chunk_subset(cluster: FakeCluster) -> None:
    outcome = cluster.run("SELECT COUNT(ra) FROM Object")
    chunks = outcome.plan.chunk_ids[:3]
    sql = outcome.plan.render(chunks)
    assert all(str(c) in sql for c in chunks)
    assert outcome.plan.render([]).count("FALSE") == 1
