"""Beyond Qserv (issue 6, part 6): DISTINCT aggregates, exact variances, OFFSET, sub-queries and
CTEs, director-key ranges and whole-table counts, each against one plain DuckDB.

The generated catalog has NULLs in every flux and name column, duplicated names (97 of them
over 2000 objects), ties in ``flags``, objects across chunk edges, the poles and the 0/360 seam.
"""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from czar import steps
from czar.plan import shipped
from qserv.errors import QservError
from tests.differential.harness import FakeCluster, assert_clean_refusal

QUERIES = [
    # DISTINCT aggregates: NULLs ignored, duplicates counted once, per group and overall
    "SELECT COUNT(DISTINCT name) FROM Object",
    "SELECT COUNT(DISTINCT name), COUNT(name), COUNT(*) FROM Object",
    "SELECT flags, COUNT(DISTINCT name) AS n FROM Object GROUP BY flags ORDER BY flags",
    "SELECT COUNT(DISTINCT flags), SUM(DISTINCT flags), AVG(DISTINCT flags) FROM Object",
    "SELECT COUNT(DISTINCT gFlux), COUNT(gFlux) FROM Object WHERE flags = 2",
    "SELECT name, COUNT(DISTINCT flags), MIN(rFlux), MAX(rFlux), AVG(rFlux) FROM Object GROUP BY name",
    "SELECT COUNT(DISTINCT flags % 3), SUM(DISTINCT objectId % 5) FROM Object WHERE decl > 0",
    "SELECT flags, COUNT(DISTINCT name) FROM Object GROUP BY flags HAVING COUNT(DISTINCT name) > 90",
    "SELECT COUNT(DISTINCT s.filterId), COUNT(DISTINCT s.objectId) FROM Source s",
    "SELECT COUNT(DISTINCT name) FROM Object WHERE flags > 100",
    "SELECT f.filterName, COUNT(DISTINCT s.objectId) FROM Source s JOIN Filter f ON f.filterId = s.filterId "
    "GROUP BY f.filterName",
    # variances: a large mean and a small variance (the naive sum of squares is 20% off here)
    "SELECT STDDEV(1e6 + rFlux * 1e-3), VARIANCE(1e6 + rFlux * 1e-3) FROM Object",
    "SELECT STDDEV_POP(1e6 + gFlux * 1e-3), VAR_POP(1e6 + gFlux * 1e-3), STDDEV_SAMP(iFlux), VAR_SAMP(iFlux) "
    "FROM Object",
    "SELECT flags, STDDEV(1e6 + rFlux * 1e-3) AS s, VAR_POP(rMag) FROM Object GROUP BY flags ORDER BY flags",
    "SELECT STDDEV(flags), VARIANCE(objectId), STDDEV_POP(flags) FROM Object",
    "SELECT STDDEV(rFlux), VAR_SAMP(rFlux), VAR_POP(rFlux) FROM Object WHERE objectId = 1003",  # one row
    "SELECT STDDEV(rFlux), VAR_POP(rFlux) FROM Object WHERE flags > 100",  # no rows
    "SELECT name, STDDEV(psfFlux) FROM Object o JOIN Source s ON s.objectId = o.objectId GROUP BY name",
    "SELECT flags, STDDEV(DISTINCT flags), COUNT(DISTINCT name) FROM Object GROUP BY flags",
    # OFFSET: with ties (any rows of a cut tie group are valid), without ORDER BY, with GROUP BY
    "SELECT objectId, flags FROM Object ORDER BY flags LIMIT 5 OFFSET 250",
    "SELECT objectId FROM Object ORDER BY objectId LIMIT 4 OFFSET 10",
    "SELECT objectId FROM Object ORDER BY ra + decl DESC LIMIT 3 OFFSET 7",
    "SELECT flags FROM Object ORDER BY flags OFFSET 1990",
    "SELECT flags FROM Object OFFSET 1995",
    "SELECT objectId FROM Object LIMIT 3 OFFSET 5",
    "SELECT flags, COUNT(*) FROM Object GROUP BY flags ORDER BY COUNT(*) DESC, flags LIMIT 3 OFFSET 2",
    "SELECT DISTINCT name FROM Object ORDER BY name LIMIT 5 OFFSET 90",
    # ORDER BY aggregates and expressions not selected; GROUP BY expressions and aliases
    "SELECT flags FROM Object GROUP BY flags ORDER BY AVG(rFlux) DESC, flags",
    "SELECT flags % 3 AS m, COUNT(*) FROM Object GROUP BY m ORDER BY SUM(gFlux)",
    # scalar sub-queries
    "SELECT objectId FROM Object WHERE rMag > (SELECT AVG(rMag) FROM Object) AND flags = 3",
    "SELECT (SELECT COUNT(*) FROM Object), (SELECT MAX(psfFlux) FROM Source) AS m",
    "SELECT objectId, rFlux - (SELECT AVG(rFlux) FROM Object) AS d FROM Object WHERE objectId < 1030",
    "SELECT COUNT(*) FROM Object WHERE flags = (SELECT MAX(flags) FROM Object WHERE decl > 80)",
    "SELECT COUNT(*) FROM Object WHERE rFlux > (SELECT rFlux FROM Object WHERE flags > 100)",  # no row: NULL
    "SELECT name FROM Object WHERE name = (SELECT MIN(name) FROM Object) ORDER BY name LIMIT 3",
    "SELECT SUM(rFlux - (SELECT AVG(rFlux) FROM Object)) FROM Object",
    "SELECT (SELECT NULL) AS x, (SELECT 'it''s') AS y",
    "SELECT COUNT(*) FROM Object WHERE gFlux > (SELECT NULL)",
    # IN (SELECT ...): the list goes through the director index when the column is a key
    "SELECT s.sourceId, s.psfFlux FROM Source s WHERE s.objectId IN (SELECT objectId FROM Object WHERE "
    "flags = 3 AND decl > 60)",
    "SELECT objectId FROM Object WHERE objectId NOT IN (SELECT objectId FROM Source) ORDER BY objectId LIMIT 5",
    "SELECT COUNT(*) FROM Object WHERE objectId IN (SELECT objectId FROM Object WHERE flags > 100)",
    "SELECT COUNT(*) FROM Object WHERE gFlux IN (SELECT gFlux FROM Object WHERE flags = 1)",  # NULLs
    "SELECT name, COUNT(*) FROM Object WHERE name IN (SELECT name FROM Object WHERE objectId < 1030) "
    "GROUP BY name",
    "SELECT COUNT(*) FROM Source WHERE filterId IN (SELECT filterId FROM Filter WHERE photClam > 600)",
    "SELECT COUNT(*) FROM Object WHERE flags IN (SELECT flags FROM Object WHERE objectId IN "
    "(SELECT objectId FROM Source WHERE psfFlux > 140))",  # nested
    # EXISTS
    "SELECT COUNT(*) FROM Object WHERE EXISTS (SELECT 1 FROM Source WHERE psfFlux > 99)",
    "SELECT COUNT(*) FROM Object WHERE NOT EXISTS (SELECT 1 FROM Source WHERE psfFlux > 100000)",
    # derived tables and CTEs, run at the czar over the inner results
    "SELECT MAX(n), MIN(n) FROM (SELECT flags, COUNT(*) AS n FROM Object GROUP BY flags) AS t",
    "SELECT t.f, t.n FROM (SELECT flags AS f, COUNT(DISTINCT name) AS n FROM Object GROUP BY flags) t "
    "ORDER BY t.n DESC, t.f LIMIT 3",
    "WITH b AS (SELECT flags, COUNT(*) AS n FROM Object GROUP BY flags) SELECT flags, n FROM b WHERE n > 100 "
    "ORDER BY n DESC",
    "WITH a AS (SELECT objectId FROM Object WHERE flags = 2), c AS (SELECT objectId FROM a WHERE objectId < 1500) "
    "SELECT COUNT(*) FROM Source WHERE objectId IN (SELECT objectId FROM c)",
    "WITH m AS (SELECT AVG(rFlux) AS mean FROM Object) SELECT COUNT(*) FROM Object WHERE rFlux > "
    "(SELECT mean FROM m)",
    "WITH x AS (SELECT objectId, flags FROM Object WHERE decl > 85), y AS (SELECT flags, COUNT(*) AS n "
    "FROM Object GROUP BY flags) SELECT x.objectId, y.n FROM x JOIN y ON x.flags = y.flags",
    "SELECT COUNT(*) FROM (SELECT DISTINCT name FROM Object) AS d",
    # derived tables and CTEs joined with catalog tables: their rows sent to the workers
    "SELECT COUNT(*) FROM (SELECT objectId FROM Object) AS t JOIN Source s ON s.objectId = t.objectId",
    "SELECT s.sourceId, t.n FROM Source s JOIN (SELECT flags AS f, COUNT(*) AS n FROM Object GROUP BY flags) AS t "
    "ON t.f = s.filterId WHERE s.psfFlux > 90",
    "WITH top AS (SELECT objectId, rMag FROM Object WHERE rMag IS NOT NULL ORDER BY rMag LIMIT 20) "
    "SELECT o.objectId, o.flags, top.rMag FROM Object o JOIN top ON top.objectId = o.objectId",
    "SELECT f.filterName, COUNT(*) FROM Source s JOIN (SELECT filterId, filterName FROM Filter) AS f "
    "ON f.filterId = s.filterId GROUP BY f.filterName",
    "WITH n AS (SELECT name, COUNT(*) AS c FROM Object GROUP BY name) SELECT o.objectId, n.c FROM Object o "
    "JOIN n ON n.name = o.name WHERE o.objectId < 1100",  # NULL names match nothing
    "WITH e AS (SELECT objectId FROM Object WHERE flags > 100) SELECT COUNT(*) FROM Source s JOIN e "
    "ON e.objectId = s.objectId",  # no rows shipped
    # BETWEEN on the director key, and on a child's key
    "SELECT objectId, ra FROM Object WHERE objectId BETWEEN 1000 AND 1010",
    "SELECT COUNT(*), SUM(psfFlux) FROM Source WHERE objectId BETWEEN 1100 AND 1120",
    "SELECT s.sourceId FROM Object o JOIN Source s ON s.objectId = o.objectId WHERE o.objectId BETWEEN 1500 "
    "AND 1530 AND o.objectId BETWEEN 1520 AND 1600",
    "SELECT COUNT(*) FROM Object WHERE objectId BETWEEN 0 AND 99999999",  # too wide: a full scan
    "SELECT COUNT(*) FROM Object WHERE objectId BETWEEN 1010 AND 1000",
    # COUNT(*) of a whole table from the row counts
    "SELECT COUNT(*) FROM Object",
    "SELECT COUNT(*) AS n, COUNT(1) FROM Source",
    "SELECT COUNT(*) FROM other.Star",
]


def test_corpus_is_large_enough() -> None:
    assert len(QUERIES) >= 40


@pytest.mark.parametrize("sql", QUERIES)
def test_same_answer_as_single_duckdb(cluster: FakeCluster, sql: str) -> None:
    assert not cluster.reference(sql).refused, sql
    assert cluster.check(sql) is not None


# (sql, SQLSTATE, exact message): answered by DuckDB, refused by the czar
REFUSALS = [
    (
        "SELECT o.objectId FROM Object o WHERE o.flags = (SELECT MAX(flags) FROM Object i "
        "WHERE i.objectId = o.objectId)",
        "0A000",
        'correlated sub-queries are not supported: the sub-query uses the outer query\'s column "o.objectId"',
    ),
    (
        "SELECT objectId FROM Object WHERE EXISTS (SELECT 1 FROM Filter WHERE filterId = flags)",
        "0A000",
        'correlated sub-queries are not supported: the sub-query uses the outer query\'s column "flags"',
    ),
    (
        "SELECT COUNT(*) FROM Source s WHERE s.psfFlux > (SELECT AVG(psfFlux) FROM Source t "
        "WHERE t.filterId = s.filterId)",
        "0A000",
        'correlated sub-queries are not supported: the sub-query uses the outer query\'s column "s.filterId"',
    ),
    (
        "SELECT COUNT(*) FROM Object WHERE objectId IN (SELECT objectId FROM Source WHERE Source.filterId = "
        "Object.flags)",
        "0A000",
        'correlated sub-queries are not supported: the sub-query uses the outer query\'s column "Object.flags"',
    ),
    (
        "WITH RECURSIVE t AS (SELECT 1 AS n) SELECT n FROM t",
        "0A000",
        "WITH RECURSIVE is not supported",
    ),
    (
        "SELECT COUNT(*) FROM Object WHERE objectId IN (SELECT objectId FROM Object UNION SELECT objectId "
        "FROM Source)",
        "0A000",
        "UNION in a sub-query is not supported yet: run the queries separately",
    ),
    (
        "SELECT COUNT(*) FROM (SELECT objectId FROM Object)",
        "0A000",
        "a sub-query in FROM must have an alias",
    ),
    (
        "SELECT MEDIAN(rFlux) FROM Object",
        "0A000",
        "aggregate MEDIAN cannot be split across chunks yet: use COUNT, SUM, MIN, MAX, AVG, STDDEV or VARIANCE",
    ),
]


@pytest.mark.parametrize(("sql", "sqlstate", "message"), REFUSALS)
def test_refused_with_its_message(cluster: FakeCluster, sql: str, sqlstate: str, message: str) -> None:
    assert not cluster.reference(sql).refused, sql  # DuckDB answers it: the refusal is ours
    with pytest.raises(QservError) as info:
        cluster.run(sql)
    assert (info.value.sqlstate, str(info.value)) == (sqlstate, message)
    assert_clean_refusal(info.value.sqlstate, str(info.value), cluster.reference(sql), sql=sql)


# refused as PostgreSQL refuses them (DuckDB fails while running the first one)
BOTH_REFUSE = [
    (
        "SELECT objectId FROM Object WHERE flags = (SELECT flags FROM Object WHERE decl > 0)",
        "21000",
        "more than one row returned by a subquery used as an expression",
    ),
    (
        "SELECT objectId FROM Object WHERE flags = (SELECT flags, objectId FROM Object WHERE objectId = 1003)",
        "42601",
        "subquery must return only one column",
    ),
    (
        "SELECT COUNT(*) FROM Object WHERE flags IN (SELECT flags, objectId FROM Object WHERE objectId = 1003)",
        "42601",
        "subquery has too many columns",
    ),
]


@pytest.mark.parametrize(("sql", "sqlstate", "message"), BOTH_REFUSE)
def test_refused_as_postgresql_refuses(cluster: FakeCluster, sql: str, sqlstate: str, message: str) -> None:
    with pytest.raises(QservError) as info:
        cluster.run(sql)
    assert (info.value.sqlstate, str(info.value)) == (sqlstate, message)


def test_in_list_past_its_bound_is_refused(cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(steps, "MAX_IN_ROWS", 10)
    sql = "SELECT COUNT(*) FROM Source WHERE objectId IN (SELECT objectId FROM Object WHERE flags = 1)"
    with pytest.raises(QservError) as info:
        cluster.run(sql)
    n = cluster.reference("SELECT COUNT(*) FROM Object WHERE flags = 1").full[0][0]
    assert info.value.sqlstate == "54001"
    assert str(info.value) == (
        f"sub-query result too large: IN (SELECT ...) gives {n} distinct values, above the bound of 10"
    )
    monkeypatch.setattr(steps, "MAX_IN_ROWS", 100_000)
    cluster.check(sql)


def test_derived_table_past_its_bound_is_refused(
    cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(steps, "MAX_TABLE_ROWS", 5)
    with pytest.raises(QservError) as info:
        cluster.run("SELECT COUNT(*) FROM (SELECT DISTINCT flags FROM Object) AS t")
    assert info.value.sqlstate == "54001"
    assert str(info.value) == (
        "sub-query result too large: a derived table or CTE has 8 rows, above the bound of 5"
    )


def test_shipped_table_past_its_bound_is_refused(
    cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shipped, "MAX_SHIPPED_ROWS", 7)
    sql = (
        "SELECT COUNT(*) FROM Source s JOIN (SELECT DISTINCT flags FROM Object) AS t ON t.flags = s.filterId"
    )
    with pytest.raises(QservError) as info:
        cluster.run(sql)
    assert info.value.sqlstate == "54001"
    assert str(info.value) == (
        "sub-query result too large: a derived table or CTE joined with catalog tables has 8 rows, "
        "above the bound of 7 sent to the workers"
    )
    monkeypatch.setattr(shipped, "MAX_SHIPPED_ROWS", 8)
    cluster.check(sql)


def test_in_sub_query_on_the_key_uses_the_director_index(cluster: FakeCluster) -> None:
    outcome = cluster.check(
        "SELECT s.sourceId FROM Source s WHERE s.objectId IN (SELECT objectId FROM Object WHERE decl > 85)"
    )
    assert outcome is not None and outcome.plan.strategy == "director-key"
    assert 0 < len(outcome.plan.chunk_ids) < 20
    assert outcome.program is not None and [s.use.value for s in outcome.program.steps] == ["in"]


def test_outer_query_over_a_cte_runs_at_the_czar(cluster: FakeCluster) -> None:
    outcome = cluster.check(
        "WITH b AS (SELECT flags, COUNT(*) AS n FROM Object GROUP BY flags) SELECT SUM(n) FROM b"
    )
    assert outcome is not None and outcome.program is not None
    assert outcome.program.final.local and outcome.plan is None
    assert outcome.table.column(0).to_pylist() == [2000]


def test_key_range_uses_the_director_index(cluster: FakeCluster) -> None:
    narrow = cluster.check("SELECT objectId FROM Object WHERE objectId BETWEEN 1000 AND 1010")
    assert narrow is not None and narrow.plan.strategy == "director-range"
    assert 1 <= len(narrow.plan.chunk_ids) <= 4
    child = cluster.check("SELECT sourceId FROM Source WHERE objectId BETWEEN 1000 AND 1010")
    assert child is not None and child.plan.strategy == "director-range"
    assert set(child.plan.chunk_ids) <= set(narrow.plan.chunk_ids)
    wide = cluster.check("SELECT COUNT(*) FROM Object WHERE objectId BETWEEN 0 AND 99999999")
    assert wide is not None and wide.plan.strategy == "full-scan"
    assert "lie in more than 512 chunks" in wide.plan.reasons[0]


def test_whole_table_count_is_answered_from_row_counts(cluster: FakeCluster) -> None:
    outcome = cluster.check("SELECT COUNT(*) FROM Source")
    assert outcome is not None and outcome.plan.strategy == "row-counts" and outcome.plan.batches == ()
    assert "answer from the chunks' recorded row counts" in outcome.plan.explain()
    restricted = cluster.check("SELECT COUNT(*) FROM Source WHERE psfFlux > 0")
    assert restricted is not None and restricted.plan.strategy == "full-scan"


def test_variance_merge_is_exact_on_a_large_mean(cluster: FakeCluster) -> None:
    """At a mean of 1e8 the merged variance is within 1e-7 of the exact variance of the very
    doubles DuckDB computes (truth from exact fractions), where the sum-of-squares formula
    in doubles is off by far more than that."""
    expression = "1e8 + rFlux * 1e-3"
    values = [
        r[0]
        for r in cluster.ref.conn.sql(
            f'SELECT {expression} FROM "sky"."Object" WHERE rFlux IS NOT NULL'
        ).fetchall()
    ]
    exact = [Fraction(v) for v in values]
    mean = sum(exact) / len(exact)
    m2 = sum((x - mean) ** 2 for x in exact)
    got = cluster.run(f"SELECT STDDEV({expression}), VAR_POP({expression}) FROM Object").table.to_pylist()[0]
    stddev, var_pop = got.values()
    assert math.isclose(stddev, math.sqrt(m2 / (len(exact) - 1)), rel_tol=1e-7)
    assert math.isclose(var_pop, float(m2 / len(exact)), rel_tol=1e-7)
    naive = (sum(v * v for v in values) - sum(values) ** 2 / len(values)) / len(values)
    assert not math.isclose(naive, float(m2 / len(exact)), rel_tol=1e-3)


def test_explain_lists_the_steps() -> None:
    from czar.analyze.guard import guard
    from czar.analyze.subqueries import decompose
    from czar.parse import parse
    from tests.differential.catalog import generate

    generated = generate(seed=3, n_objects=50)
    sql = "WITH b AS (SELECT objectId FROM Object) SELECT COUNT(*) FROM Source WHERE objectId IN (SELECT objectId FROM b)"
    program = decompose(guard(parse(sql)), generated.catalog, generated.database.name)
    assert program is not None
    assert program.explain().splitlines() == [
        "strategy: sub-queries",
        "step __qserv_sq_0 (table, distributed): SELECT objectId FROM Object",
        "step __qserv_sq_1 (in, czar): SELECT objectId FROM __qserv_sq_0 AS b",
        "step result (result, distributed): SELECT COUNT(*) FROM Source WHERE objectId IN $__qserv_sq_1",
    ]
