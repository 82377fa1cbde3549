"""Director-match-director joins with pairs farther apart than the overlap, against the
independent reference: each pair once, whether its right row is in the left row's chunk, in
its overlap, or far away (answered as a virtual chunk at the czar: czar/plan/match.py).

The catalog adds N-to-M PairMatch rows between random Object and Pair rows a chunk or more
apart (some repeated) to the close pairs across chunk edges of tests/differential/joins_catalog.py.
"""

from __future__ import annotations

import pytest

from qserv.errors import QservError, StatementTooComplex
from tests.differential.harness import FakeCluster
from tests.differential.joins_catalog import generate_joins

J = "FROM Object o JOIN PairMatch m ON m.objectId = o.objectId JOIN Pair p ON p.pairId = m.pairId"

QUERIES = [
    f"SELECT COUNT(*) {J}",
    f"SELECT COUNT(*), SUM(m.score), AVG(p.mag), MIN(o.ra), MAX(p.decl) {J}",
    f"SELECT o.objectId, p.pairId, m.score {J}",
    f"SELECT o.*, p.* {J} WHERE o.ra > 10 AND p.mag < 21",
    f"SELECT o.objectId, COUNT(*), SUM(m.score), AVG(p.mag) {J} GROUP BY o.objectId HAVING COUNT(*) > 1",
    f"SELECT p.pairId, COUNT(*) AS n {J} GROUP BY p.pairId ORDER BY n DESC, p.pairId LIMIT 5",
    f"SELECT p.kind, COUNT(DISTINCT o.objectId) {J} GROUP BY p.kind",
    f"SELECT DISTINCT p.kind {J}",
    f"SELECT DISTINCT o.objectId {J} WHERE p.kind = 2",
    f"SELECT o.objectId, p.pairId {J} WHERE o.ra > 10 AND p.mag < 21 ORDER BY m.score DESC, o.objectId, p.pairId LIMIT 10",
    f"SELECT o.objectId, p.pairId, scisql_angSep(o.ra, o.decl, p.ra, p.decl) AS d {J} ORDER BY d DESC LIMIT 3",
    f"SELECT o.objectId, p.pairId {J} WHERE o.objectId IN (SELECT objectId FROM Object WHERE ra < 30)",
    f"SELECT o.objectId, p.pairId {J} WHERE o.objectId < 2600 ORDER BY 1, 2",
    # director keys of left rows of far pairs (and others): the plan reads their chunks only
    f"SELECT o.objectId, p.pairId, m.score {J} WHERE o.objectId IN (1141, 2569, 4231, 4480, 1000, 1001)",
    f"SELECT COUNT(*) {J} WHERE o.objectId = 2569",
    f"SELECT COUNT(*), SUM(m.score) {J} WHERE qserv_areaspec_box(0, -60, 180, 60)",
    f"SELECT o.objectId, p.pairId {J} WHERE scisql_s2PtInCircle(o.ra, o.decl, 30, 0, 40) = 1 "
    "AND scisql_s2PtInCircle(p.ra, p.decl, 60, 10, 50) = 1",
    # the join written in WHERE, the match table first
    "SELECT o.objectId, p.pairId FROM PairMatch m, Object o, Pair p "
    "WHERE m.objectId = o.objectId AND p.pairId = m.pairId AND p.mag IS NOT NULL",
]


@pytest.fixture(scope="module")
def far() -> FakeCluster:
    return FakeCluster(generate_joins(far_pairs=60))


@pytest.mark.parametrize("sql", QUERIES)
def test_far_pairs_answered_once(far: FakeCluster, sql: str) -> None:
    outcome = far.check(sql)
    assert outcome is not None, f"{sql}\nrefused"


def test_the_catalog_has_far_pairs(far: FakeCluster) -> None:
    """The join is planned with a far part and the far copies are found (the test can fail)."""
    outcome = far.run(f"SELECT COUNT(*) {J}")
    assert outcome.plan.far is not None
    assert far._far_rows(outcome.plan, outcome.plan.far, None) is not None


def test_restrictor_on_the_right_side_searches_every_chunk(far: FakeCluster) -> None:
    """A region on the right director does not say where the far pairs' left rows are."""
    sql = f"SELECT o.objectId, p.pairId {J} WHERE scisql_s2PtInBox(p.ra, p.decl, 0, -40, 90, 40) = 1"
    outcome = far.check(sql)
    assert outcome is not None and outcome.plan.far is not None and outcome.plan.far.everywhere
    sql = f"SELECT COUNT(*) {J} WHERE scisql_s2PtInBox(o.ra, o.decl, 0, -40, 90, 40) = 1"
    outcome = far.check(sql)
    assert outcome is not None and outcome.plan.far is not None and not outcome.plan.far.everywhere


def test_more_far_pairs_than_the_bound_are_refused(far: FakeCluster) -> None:
    """Past CzarConfig.max_far_pairs the query is refused, never answered in part."""
    outcome = far.run(f"SELECT COUNT(*) {J}")
    assert outcome.plan.far is not None
    with pytest.raises(StatementTooComplex) as err:
        far._far_rows(outcome.plan, outcome.plan.far, None, bound=5)
    assert err.value.sqlstate == "54001"
    assert str(err.value).startswith(
        "match join has 66 pairs whose rows are farther apart than the overlap, above the bound of 5 "
        "(qserv czar --max-far-pairs)"
    )


def test_left_join_with_far_pairs_is_refused(far: FakeCluster) -> None:
    """A LEFT JOIN would give a far pair's left row without its right row: still refused."""
    sql = (
        "SELECT o.objectId, p.pairId FROM Object o LEFT JOIN PairMatch m ON m.objectId = o.objectId "
        "LEFT JOIN Pair p ON p.pairId = m.pairId"
    )
    try:
        far.run(sql)
    except QservError:
        return
    except Exception as e:  # the fake workers run DuckDB directly: a worker translates its errors
        assert "farther than the overlap" in str(e)
        return
    raise AssertionError("answered")
