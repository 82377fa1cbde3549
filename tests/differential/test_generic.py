"""Generic plans (czar/generic.py): a rebound plan is exactly the plan full planning gives.

Each case plans one query in full, keeps its template, then plans queries of the same shape
with other keys and regions both ways: the plans (chunks, worker batches, merge) must be equal, and the
rebound plan's answer must equal one DuckDB's.
"""

from __future__ import annotations

import numpy as np
import pytest

from czar.analyze import analyze
from czar.generic import Template, rebind, shape_of, template
from czar.merge import merge
from czar.parse import parse
from czar.plan import QueryPlan, plan
from tests.differential.harness import FakeCluster, assert_matches

# {k0}.. are director keys, {ra} {dec} {r} a circle, {lon1} {lat1} {lon2} {lat2} a box (latitudes
# non-negative: a minus sign is a token of the shape, so it is written in the query)
CASES = [
    "SELECT * FROM Object WHERE objectId = {k0}",
    "SELECT objectId, ra FROM Object WHERE objectId IN ({k0}, {k1}, {k2}) ORDER BY objectId",
    "SELECT COUNT(*), AVG(rFlux) FROM Object WHERE objectId IN ({k0}, {k1}) AND flags > 2",
    "SELECT o.objectId, s.sourceId FROM Object o JOIN Source s ON s.objectId = o.objectId WHERE o.objectId = {k0}",
    "SELECT s.sourceId, f.filterName FROM Source s JOIN Filter f ON f.filterId = s.filterId WHERE s.objectId = {k0}",
    "SELECT objectId FROM Object WHERE objectId IN ({k0}, {k1}) AND objectId = {k2}",
    "SELECT objectId, name FROM Object WHERE name = 'obj1' AND objectId = {k0}",
    "SELECT objectId, ra, decl FROM Object WHERE qserv_areaspec_circle({ra}, {dec}, {r})",
    "SELECT COUNT(*), AVG(rFlux) FROM Object WHERE qserv_areaspec_circle(CAST({ra} AS DOUBLE), "
    "CAST(-{dec} AS DOUBLE), CAST({r} AS DOUBLE))",
    "SELECT objectId FROM Object WHERE qserv_areaspec_box({lon1}, {lat1}, {lon2}, {lat2}) AND flags > 2",
    "SELECT flags, COUNT(*) FROM Object WHERE qserv_areaspec_box({lon1}, -{lat2}, {lon2}, -{lat1}) GROUP BY flags",
    "SELECT o.objectId, s.sourceId FROM Object o JOIN Source s ON s.objectId = o.objectId "
    "WHERE qserv_areaspec_circle({ra}, {dec}, {r}) ORDER BY s.sourceId LIMIT 20",
    "SELECT objectId FROM Object WHERE objectId IN ({k0}, {k1}) AND qserv_areaspec_circle({ra}, {dec}, {r})",
    "SELECT objectId, ra FROM Object WHERE qserv_areaspec_ellipse({ra}, {dec}, {smaa}, {smia}, {pa})",
    "SELECT COUNT(*) FROM Object WHERE qserv_areaspec_poly({ra}, {pdec}, {ra2}, {pdec}, {ra2}, {pdec2}, {ra}, {pdec2})",
]


def _values(cluster: FakeCluster, rng: np.random.Generator) -> dict[str, object]:
    ids = cluster.generated.rows("Object").column("objectId").to_pylist()
    # mostly existing keys, sometimes one no row has
    keys = {
        f"k{i}": int(rng.choice(ids)) if rng.random() < 0.85 else int(rng.integers(10**9, 10**10))
        for i in range(3)
    }
    lat1 = float(rng.uniform(0, 60))
    values: dict[str, object] = {
        **keys,
        "ra": round(float(rng.uniform(0, 360)), 4),
        "dec": round(float(rng.uniform(0, 89)), 4),
        "r": round(float(rng.uniform(0.05, 8)), 3),
        "lon1": round(float(rng.uniform(0, 360)), 3),
        "lon2": round(float(rng.uniform(0, 360)), 3),  # below lon1: the box wraps the seam
        "lat1": round(lat1, 3),
        "lat2": round(lat1 + float(rng.uniform(0.5, 29)), 3),
        **_shapes(rng),
    }
    values["ra2"] = round(float(values["ra"]) + float(values.pop("width")), 3)  # type: ignore[arg-type]
    return values


def _shapes(rng: np.random.Generator) -> dict[str, object]:
    """Ellipse axes (arcsec) and position angle, a lon/lat quadrilateral's corners."""
    smaa = float(rng.uniform(600, 36000))
    pdec = float(rng.uniform(0, 70))
    return {
        "smaa": round(smaa, 1),
        "smia": round(smaa * float(rng.uniform(0.05, 1.0)) - 0.1, 1),
        "pa": round(float(rng.uniform(0, 360)), 2),
        "width": float(rng.uniform(0.5, 10)),
        "pdec": round(pdec, 3),
        "pdec2": round(pdec + float(rng.uniform(0.5, 10)), 3),
    }


def _plan(cluster: FakeCluster, sql: str) -> QueryPlan:
    return plan(analyze(parse(sql), cluster.catalog, cluster.database, sql=sql), cluster.context())


def _template(cluster: FakeCluster, sql: str) -> Template | None:
    shape = shape_of(sql)
    assert shape is not None
    return template(analyze(parse(sql), cluster.catalog, cluster.database, sql=sql), shape)


@pytest.mark.parametrize("sql", CASES)
def test_rebound_plan_equals_full_plan(cluster: FakeCluster, sql: str) -> None:
    rng = np.random.default_rng(7)
    first = sql.format(**_values(cluster, rng))
    generic = _template(cluster, first)
    assert generic is not None, first
    for _ in range(25):
        query = sql.format(**_values(cluster, rng))
        shape = shape_of(query)
        assert shape is not None
        rebound = rebind(generic, shape, cluster.context())
        assert rebound == _plan(cluster, query), query


@pytest.mark.parametrize("sql", CASES[1:4] + CASES[8:])
def test_rebound_plan_answers_like_duckdb(cluster: FakeCluster, sql: str) -> None:
    rng = np.random.default_rng(11)
    generic = _template(cluster, sql.format(**_values(cluster, rng)))
    assert generic is not None
    for _ in range(5):
        query = sql.format(**_values(cluster, rng))
        shape = shape_of(query)
        assert shape is not None
        rebound = rebind(generic, shape, cluster.context())
        assert rebound is not None
        batches = []
        schema = None
        for batch in rebound.batches:
            table = cluster.conns[batch.worker].sql(batch.sql).to_arrow_table()
            schema = schema or table.schema
            batches.extend(table.cast(schema).to_batches())
        assert schema is not None
        got = merge(rebound, batches, schema)
        assert_matches(got, cluster.reference(query), sql=query)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT objectId FROM Object WHERE scisql_s2PtInCircle(ra, decl, 10, 5, 1) = 1",
        "SELECT objectId FROM Object WHERE objectId = 1003 AND scisql_s2PtInBox(ra, decl, 1, 2, 3, 4) = 1",
        "SELECT objectId FROM Object WHERE qserv_areaspec_circle(10, 5, 1) AND qserv_areaspec_box(9, 4, 11, 6)",
    ],
)
def test_no_template_for_sciSQL_or_several_restrictors(cluster: FakeCluster, sql: str) -> None:
    """Only one director areaspec is rebound; these are planned in full each time."""
    assert _template(cluster, sql) is None


def test_restrictor_constants_are_fixed_where_they_do_not_restrict(cluster: FakeCluster) -> None:
    """Source declares no positions here: its sciSQL filter is no restrictor, and a query of the
    same shape with other filter constants is planned in full (its chunks come from its key)."""
    sql = "SELECT s.sourceId FROM Source s WHERE s.objectId = {k} AND scisql_s2PtInCircle(s.ra, s.decl, {r}, 5, 1) = 1"
    ids = cluster.generated.rows("Object").column("objectId").to_pylist()
    generic = _template(cluster, sql.format(k=ids[0], r=10))
    assert generic is not None and generic.region is None
    for k, r in ((ids[1], 10), (ids[2], 11)):
        shape = shape_of(sql.format(k=k, r=r))
        assert shape is not None
        rebound = rebind(generic, shape, cluster.context())
        assert rebound is None if r != 10 else rebound == _plan(cluster, sql.format(k=k, r=r))


def test_string_keys_are_quoted_as_the_full_path_quotes_them(cluster: FakeCluster) -> None:
    sql = "SELECT objectId FROM Object WHERE name = 'x' AND objectId = 1003"
    generic = _template(cluster, sql)
    assert generic is not None
    # the string constant is not a key: another value must not reuse the plan
    other = shape_of("SELECT objectId FROM Object WHERE name = 'o''b;--' AND objectId = 1003")
    assert other is not None and rebind(generic, other, cluster.context()) is None


@pytest.mark.parametrize(
    ("first", "second"),
    [
        # a non-key constant differs
        ("SELECT objectId FROM Object WHERE objectId = 1003 AND flags > 2",
         "SELECT objectId FROM Object WHERE objectId = 1003 AND flags > 3"),
        ("SELECT objectId + 1 FROM Object WHERE objectId = 1003",
         "SELECT objectId + 2 FROM Object WHERE objectId = 1006"),
        # the new key is no integer: the full path plans a scan, never a key lookup
        ("SELECT objectId FROM Object WHERE objectId = 1003",
         "SELECT objectId FROM Object WHERE objectId = 1003.5"),
        ("SELECT objectId FROM Object WHERE objectId = 1003",
         "SELECT objectId FROM Object WHERE objectId = 1e3"),
        # invalid regions: the full path reports the error
        ("SELECT objectId FROM Object WHERE qserv_areaspec_circle(10, 5, 1)",
         "SELECT objectId FROM Object WHERE qserv_areaspec_circle(10, 95, 1)"),
        ("SELECT objectId FROM Object WHERE qserv_areaspec_box(10, 5, 20, 10)",
         "SELECT objectId FROM Object WHERE qserv_areaspec_box(10, 95, 20, 100)"),
    ],
)  # fmt: skip
def test_other_constants_plan_in_full(cluster: FakeCluster, first: str, second: str) -> None:
    generic = _template(cluster, first)
    assert generic is not None
    shape = shape_of(second)
    assert shape is not None
    assert rebind(generic, shape, cluster.context()) is None


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT objectId FROM Object",  # no keys
        "SELECT objectId FROM Object WHERE objectId = -1003",  # a negated key: its text is not one token
        "SELECT objectId FROM Object WHERE objectId = 1003 OR flags = 1",  # not a conjunct: no key
        "SELECT COUNT(*) FROM Filter",
    ],
)
def test_no_template_where_keys_cannot_vary(cluster: FakeCluster, sql: str) -> None:
    assert _template(cluster, sql) is None


def test_shape_ignores_spacing_and_masks_only_constants() -> None:
    a = shape_of("SELECT ra FROM Object WHERE objectId = 1")
    b = shape_of("select  ra\nFROM Object WHERE objectId=22")
    c = shape_of("SELECT decl FROM Object WHERE objectId = 1")
    d = shape_of("SELECT ra FROM Object WHERE objectId = '1'")
    assert a is not None and b is not None and c is not None and d is not None
    assert a.key != b.key  # keywords keep their spelling: `select` is another text
    assert shape_of("SELECT ra FROM Object WHERE objectId=22") is not None
    assert a.key == shape_of("SELECT ra FROM Object WHERE  objectId =\t22").key  # type: ignore[union-attr]
    assert a.key != c.key and a.key != d.key
    assert shape_of("SELECT 'unterminated") is None
