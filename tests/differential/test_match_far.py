"""Director-match-director joins with pairs farther apart than the overlap, against the
independent reference: each pair once, whether its right row is in the left row's chunk, in
its overlap, or far away (answered as a virtual chunk at the czar: czar/plan/match.py).

The catalog adds N-to-M PairMatch rows between random Object and Pair rows a chunk or more
apart (some repeated) to the close pairs across chunk edges of tests/differential/joins_catalog.py.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pytest

from qserv.catalog import FLAG_COLUMN, Column, Table, TableKind
from qserv.errors import QservError, StatementTooComplex
from tests.differential.catalog import DATABASE, GeneratedCatalog
from tests.differential.harness import FakeCluster
from tests.differential.joins_catalog import _far_pairs, generate_joins, near_pairs

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


# a match table with one director on both sides: Object's rows in the virtual chunk are both
# the far pairs' left rows and (as overlap rows) their right rows
S = "FROM Object a JOIN SelfMatch m ON m.o1 = a.objectId JOIN Object b ON b.objectId = m.o2"
SELF = [
    f"SELECT COUNT(*) {S}",
    f"SELECT a.objectId, b.objectId, m.w {S} WHERE a.objectId <> b.objectId",
    f"SELECT a.objectId, COUNT(*), MAX(b.rFlux) {S} GROUP BY a.objectId ORDER BY 2 DESC, 1 LIMIT 8",
]


def far_catalog() -> GeneratedCatalog:
    """The join catalog with 60 far PairMatch rows, FlagMatch (PairMatch's rows and a user flag
    column, 0 in the input) and SelfMatch (Object to Object: close pairs, far pairs, self pairs)."""
    generated = generate_joins(far_pairs=60)
    match = generated.rows("PairMatch")
    flagged = match.append_column("flags", pa.array(np.zeros(match.num_rows, np.int32)))
    base = next(t for t in generated.tables if t.name == "PairMatch")
    flag_table = dataclasses.replace(
        base, name="FlagMatch", columns=(*base.columns, Column("flags", "INTEGER")), flag_column="flags"
    )
    obj = generated.rows("Object")
    part = generated.database.partitioning
    rng = np.random.default_rng(5)
    close = near_pairs(obj, obj, 0.01, "objectId", "objectId")
    far = _far_pairs(
        rng, obj, obj.rename_columns(["pairId", *obj.column_names[1:]]), part.order, part.overlap, 40
    )
    pairs = close[::3] + far
    self_match = pa.table(
        {
            "o1": pa.array([a for a, _ in pairs], pa.int64()),
            "o2": pa.array([b for _, b in pairs], pa.int64()),
            "w": pa.array(np.arange(len(pairs), dtype=np.int64)),
        }
    )
    self_table = Table(DATABASE, "SelfMatch", TableKind.MATCH,
                       (Column("o1", "BIGINT"), Column("o2", "BIGINT"), Column("w", "BIGINT")),
                       left_director=f"{DATABASE}.Object", left_column="o1", right_director=f"{DATABASE}.Object",
                       right_column="o2", flag_column=FLAG_COLUMN)  # fmt: skip
    return dataclasses.replace(
        generated,
        tables=(*generated.tables, flag_table, self_table),
        data={**generated.data, (DATABASE, "FlagMatch"): flagged, (DATABASE, "SelfMatch"): self_match},
    )


@pytest.fixture(scope="module")
def far() -> FakeCluster:
    return FakeCluster(far_catalog())


@pytest.mark.parametrize("sql", QUERIES + SELF)
def test_far_pairs_answered_once(far: FakeCluster, sql: str) -> None:
    outcome = far.check(sql)
    assert outcome is not None, f"{sql}\nrefused"


def test_the_catalog_has_far_pairs(far: FakeCluster) -> None:
    """The join is planned with a far part and the far copies are found (the test can fail)."""
    outcome = far.run(f"SELECT COUNT(*) {J}")
    assert outcome.plan.far is not None
    assert far._far_rows(outcome.plan, outcome.plan.far, None) is not None
    assert (
        "far match pairs: pairs of PairMatch farther apart than the overlap, fetched from these chunks "
        "and both sides' chunks, joined at the czar" in outcome.plan.explain()
    )


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
