"""The independent reference itself: its geometry, its refusals, its tie handling, no fallback."""

from __future__ import annotations

import duckdb
import numpy as np
import pytest

from tests.differential.catalog import generate
from tests.differential.harness import assert_valid_answer
from tests.differential.reference import (
    Answer,
    Reference,
    ReferenceUnavailable,
    angular_separation,
)


@pytest.fixture(scope="module")
def ref() -> Reference:
    return Reference(generate(seed=3, n_objects=300))


def test_angular_separation_is_exact_at_known_points() -> None:
    lon = np.array([90.0, 123.0, 10.0 + 1e-7, 180.0])
    lat = np.array([0.0, 89.0, 5.0, 0.0])
    got = angular_separation(lon, lat, 0.0, 0.0)
    assert got[0] == pytest.approx(90.0, rel=1e-12)
    assert got[3] == pytest.approx(180.0, rel=1e-12)
    assert angular_separation(lon[1:2], lat[1:2], 0.0, 90.0)[0] == pytest.approx(1.0, rel=1e-12)
    tiny = angular_separation(lon[2:3], lat[2:3], 10.0, 5.0)[0]
    assert tiny == pytest.approx(1e-7 * np.cos(np.radians(5.0)), rel=1e-6)


def test_the_reference_has_no_project_macros(ref: Reference) -> None:
    with pytest.raises(duckdb.Error):
        ref.conn.execute("SELECT scisql_angSep(0, 0, 1, 1)").fetchall()


def test_box_wraps_through_zero_and_counts_like_numpy(ref: Reference) -> None:
    rows = ref.generated.rows("Object")
    ra = rows.column("ra").to_numpy()
    decl = rows.column("decl").to_numpy()
    want = int((((ra >= 359.0) | (ra <= 1.0)) & (decl >= -5.0) & (decl <= 5.0)).sum())
    answer = ref.answer("SELECT COUNT(*) FROM Object WHERE qserv_areaspec_box(359, -5, 1, 5)")
    assert answer.table is not None and answer.table.to_pylist() == [{"count_star()": want}]
    assert want > 0


def test_areaspec_restricts_the_first_director(ref: Reference) -> None:
    sql = (
        "SELECT COUNT(*) FROM Object o JOIN Source s ON s.objectId = o.objectId "
        "WHERE qserv_areaspec_circle(10, 5, 2)"
    )
    answer = ref.answer(sql)
    rows = ref.generated.rows("Object")
    inside = angular_separation(rows.column("ra").to_numpy(), rows.column("decl").to_numpy(), 10, 5) <= 2
    ids = set(np.asarray(rows.column("objectId"))[inside].tolist())
    want = sum(1 for k in ref.generated.rows("Source").column("objectId").to_pylist() if k in ids)
    assert answer.table is not None and answer.table.column(0).to_pylist() == [want]


@pytest.mark.parametrize(
    ("sql", "sqlstate"),
    [
        ("SELECT DISTINCT flags FROM Object ORDER BY ra LIMIT 3", "42P10"),
        ("SELECT objectId FROM Object ORDER BY 0", "42P10"),
        ("SELECT objectId, ra FROM Object ORDER BY 3", "42P10"),
        ("SELECT objectId AS ra, ra FROM Object ORDER BY ra", "42702"),
        ("SELECT FROM WHERE", "42601"),
    ],
)
def test_refuses_as_postgresql(ref: Reference, sql: str, sqlstate: str) -> None:
    answer = ref.answer(sql)
    assert answer.refused and answer.sqlstate == sqlstate, answer


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT DISTINCT flags AS f FROM Object ORDER BY f",
        "SELECT DISTINCT flags, ra AS x FROM Object ORDER BY ra",  # the expression is selected
        "SELECT objectId, ra AS decl FROM Object ORDER BY decl LIMIT 3",
    ],
)
def test_answers_what_postgresql_answers(ref: Reference, sql: str) -> None:
    assert not ref.answer(sql).refused


def test_order_by_binds_output_names_first(ref: Reference) -> None:
    answer = ref.answer("SELECT objectId, ra AS decl FROM Object ORDER BY decl LIMIT 3")
    assert answer.table is not None
    ra = sorted(ref.generated.rows("Object").column("ra").to_pylist())[:3]
    assert answer.table.column("decl").to_pylist() == ra


def test_no_fallback_where_no_independent_reference(ref: Reference) -> None:
    sql = "SELECT COUNT(*) FROM Object WHERE qserv_areaspec_circle(ra, 2, 3)"
    with pytest.raises(ReferenceUnavailable):
        ref.answer(sql)


def test_ties_under_limit_accept_any_valid_answer(ref: Reference) -> None:
    answer = ref.answer("SELECT flags FROM Object ORDER BY flags DESC LIMIT 4")
    top = max(r[0] for r in answer.full)
    assert_valid_answer([(top,)] * 4, answer)
    with pytest.raises(AssertionError):
        assert_valid_answer([(top,)] * 3 + [(top - 1,)], answer)


def test_a_cut_tie_group_takes_any_of_its_rows() -> None:
    answer = Answer(
        "q",
        full=[(1, "a"), (2, "b"), (2, "c"), (2, "d"), (3, "e")],
        ranks=[1, 2, 2, 2, 3],
        limit=3,
    )
    assert_valid_answer([(1, "a"), (2, "d"), (2, "b")], answer)
    with pytest.raises(AssertionError):
        assert_valid_answer([(2, "b"), (1, "a"), (2, "c")], answer)  # out of order
    with pytest.raises(AssertionError):
        assert_valid_answer([(1, "a"), (2, "b"), (3, "e")], answer)  # skips the tie group


def test_rowid_is_the_generated_row_position(ref: Reference) -> None:
    """Spatial values are looked up by ``rowid``: it must be the Arrow row's position."""
    ids = ref.conn.execute('SELECT objectId FROM "sky"."Object" ORDER BY rowid').fetchall()
    assert [i for (i,) in ids] == ref.generated.rows("Object").column("objectId").to_pylist()
