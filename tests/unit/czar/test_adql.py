"""ADQL 2.1 sessions: refusals with their exact messages, and BOX/POLYGON rewrites checked by
meaning (the scisql_s2PtInCPoly text against ADQL's shape, both computed with numpy)."""

from __future__ import annotations

import numpy as np
import pytest
from sqlglot import exp

from czar.analyze import analyze
from czar.analyze.geometry import rewrite_geometry
from czar.analyze.restrictors import number
from czar.dialects.adql import parse_adql
from qserv.errors import QservError
from qserv.sphere.adql import polygon_area
from tests.differential import adql_reference as ref
from tests.differential.catalog import generate

GENERATED = generate(n_objects=4000)

REFUSALS = [
    (
        "SELECT objectId FROM Object WHERE CONTAINS(POINT('GALACTIC', ra, decl), CIRCLE(1, 2, 3)) = 1",
        "22023",
        "coordinate system 'GALACTIC' of POINT is not supported: the catalogs are ICRS; write 'ICRS', '' or leave it out",
        50,
    ),
    (
        "SELECT objectId FROM Object WHERE CONTAINS(POINT(ra, decl), CIRCLE('FK5', 1, 2, 3)) = 1",
        "22023",
        "coordinate system 'FK5' of CIRCLE is not supported: the catalogs are ICRS; write 'ICRS', '' or leave it out",
        68,
    ),
    (
        "SELECT objectId FROM Object WHERE INTERSECTS(POLYGON(0, 0, 1, 0, 0, 1), POLYGON(0, 0, 2, 0, 0, 2)) = 1",
        "0A000",
        "INTERSECTS(POLYGON, POLYGON) cannot be computed exactly: supported are a POINT in any region, CIRCLE-CIRCLE",
        35,
    ),
    (
        "SELECT objectId FROM Object WHERE INTERSECTS(CIRCLE(ra, decl, 1), BOX(10, 5, 1, 1)) = 1",
        "0A000",
        "INTERSECTS(CIRCLE, BOX) cannot be computed exactly: supported are a POINT in any region, CIRCLE-CIRCLE",
        35,
    ),
    (
        "SELECT objectId FROM Object WHERE POINT(ra, decl) = POINT(1, 2)",
        "0A000",
        "a POINT value cannot be used here: use it as a result column or as an argument of CONTAINS, "
        "INTERSECTS, DISTANCE, COORD1, COORD2 or AREA",
        35,
    ),
    (
        "SELECT objectId FROM Object ORDER BY CIRCLE(ra, decl, 1)",
        "0A000",
        "a CIRCLE value cannot be used here: use it as a result column or as an argument of CONTAINS, "
        "INTERSECTS, DISTANCE, COORD1, COORD2 or AREA",
        38,
    ),
    (
        "SELECT objectId FROM Object WHERE CONTAINS(POINT(ra, decl, 3), CIRCLE(1, 2, 3)) = 1",
        "42883",
        "POINT takes (lon, lat), after an optional coordinate system; got 3 arguments",
        44,
    ),
    (
        "SELECT DISTANCE(ra, decl, 3) FROM Object",
        "42883",
        "DISTANCE takes two POINTs or four numbers (lon1, lat1, lon2, lat2); got 3 arguments",
        8,
    ),
    (
        "SELECT objectId FROM Object WHERE CONTAINS(CIRCLE(1, 2, 3), POINT(ra, decl)) = 1",
        "0A000",
        "CONTAINS(..., POINT): a point contains nothing; the contained geometry comes first: "
        "CONTAINS(POINT(lon, lat), region)",
        35,
    ),
    (
        "SELECT objectId FROM Object WHERE INTERSECTS(POINT(ra, decl), POINT(1, 2)) = 1",
        "0A000",
        "INTERSECTS(POINT, POINT) cannot be computed exactly: supported are a POINT in any region, CIRCLE-CIRCLE",
        35,
    ),
    (
        "SELECT objectId FROM Object WHERE CONTAINS(POINT(ra, decl), POLYGON(0, 0, 1, 1, 0, 1, 1, 0)) = 1",
        "22023",
        "POLYGON is not convex (or its sides cross): only convex polygons are supported; split it "
        "into convex parts joined with OR",
        61,
    ),
    (
        "SELECT objectId FROM Object WHERE CONTAINS(POINT(ra, decl), BOX(0, 90, 1, 1)) = 1",
        "22023",
        "BOX centred at latitude 90 has no orientation (ADQL's box is aligned with the centre's east "
        "and north): centre it off the pole or use a CIRCLE or POLYGON",
        61,
    ),
    (
        "SELECT objectId FROM Object WHERE CONTAINS(POINT(ra, decl), BOX(ra, 0, 1, 1)) = 1",
        "0A000",
        "BOX arguments must be numeric constants (degrees), not ra",
        65,
    ),
    (
        "SELECT AREA(POINT(1, 2)) FROM Object",
        "0A000",
        "AREA(POINT): a point has no area",
        8,
    ),
    (
        "SELECT COORD1(CIRCLE(1, 2, 3)) FROM Object",
        "0A000",
        "argument 1 of COORD1 must be a POINT, not a CIRCLE",
        15,
    ),
    (
        "SELECT objectId FROM Object WHERE CONTAINS(name, 'obj') = 1",
        "0A000",
        "argument 1 of CONTAINS must be a POINT, CIRCLE, BOX or POLYGON, not name",
        44,
    ),
    (
        "SELECT COORD1(CENTROID(CIRCLE(1, 2, 3))) FROM Object",
        "0A000",
        "ADQL's CENTROID is not supported: use the CIRCLE's centre or the POLYGON's vertices",
        15,
    ),
    (
        "SELECT objectId FROM Object WHERE CONTAINS(POINT(ra, decl), REGION('Circle ICRS 1 2 3')) = 1",
        "0A000",
        "ADQL's REGION is not supported: write the region with CIRCLE, BOX or POLYGON",
        61,
    ),
    (
        "SELECT objectId FROM Object LIMIT 3",
        "42601",
        'ADQL has no LIMIT: write "SELECT TOP n ..." (with OFFSET m after ORDER BY to skip rows)',
        29,
    ),
    ("SELECT flags::float FROM Object", "42601", "ADQL has no :: casts: write CAST(x AS type)", 13),
    (
        "SELECT RAND(7) FROM Object",
        "0A000",
        "RAND(seed) is not supported: the query runs in parallel on many workers, so no seeded "
        "sequence can match one database's; use RAND()",
        8,
    ),
    (
        "SELECT LOG(2, rFlux) FROM Object",
        "0A000",
        "LOG takes one argument in ADQL (the natural logarithm): write LOG(x) / LOG(b) for another "
        "base, or LOG10(x)",
        8,
    ),
]


@pytest.mark.parametrize(("sql", "sqlstate", "message", "position"), REFUSALS)
def test_refusals(sql: str, sqlstate: str, message: str, position: int) -> None:
    with pytest.raises(QservError) as caught:
        analyze(parse_adql(sql), GENERATED.catalog, GENERATED.database.name)
    assert (caught.value.sqlstate, str(caught.value), caught.value.position) == (sqlstate, message, position)


def _in_cpoly(lon: np.ndarray, lat: np.ndarray, flat: list[float]) -> np.ndarray:
    """sciSQL's meaning of scisql_s2PtInCPoly(lon, lat, v1, ..., vn): inside a convex polygon
    whose vertices are given counter-clockwise (on the left of every edge v_i -> v_i+1)."""
    vertices = ref._vec(np.array(flat[0::2]), np.array(flat[1::2]))
    p = ref._vec(lon, lat)
    inside = np.ones(len(lon), dtype=bool)
    for i in range(len(vertices)):
        inside &= p @ np.cross(vertices[i], vertices[(i + 1) % len(vertices)]) >= 0
    return inside


SHAPES = [
    "BOX(10, 5, 1, 1)",
    "BOX(0, 0, 2, 4)",  # through 0/360
    "BOX(359.5, -3, 3, 1)",
    "BOX(0, 88, 6, 6)",  # over the north pole
    "BOX(180, -89, 10, 4)",  # over the south pole
    "BOX(200, -30, 150, 100)",  # large
    "POLYGON(9, 4, 11, 4, 11, 6, 9, 6)",
    "POLYGON(9, 6, 11, 6, 11, 4, 9, 4)",  # clockwise
    "POLYGON(359, -1, 1, -1, 0.5, 1.5)",
    "POLYGON(0, 85, 120, 85, 240, 85)",  # around the pole
    "POLYGON(POINT(10, -80), POINT(100, -80), POINT(190, -80), POINT(280, -80))",
]


@pytest.mark.parametrize("shape", SHAPES)
def test_polygon_rewrite_means_the_adql_shape(shape: str) -> None:
    """The rewritten scisql_s2PtInCPoly keeps exactly the points ADQL's shape holds."""
    tree = rewrite_geometry(parse_adql(f"SELECT ra FROM Object WHERE CONTAINS(POINT(ra, decl), {shape}) = 1"))
    call = tree.find(exp.Anonymous)
    assert call is not None and call.name == "scisql_s2PtInCPoly"
    flat = [float(number(a) or 0.0) for a in call.expressions[2:]]
    rows = GENERATED.rows("Object")
    rng = np.random.default_rng(3)
    lon = np.concatenate([rows.column("ra").to_numpy(), rng.uniform(0, 360, 20000)])
    lat = np.concatenate([rows.column("decl").to_numpy(), np.degrees(np.arcsin(rng.uniform(-1, 1, 20000)))])
    shape_tree = ref.AdqlReference._parse(None, f"SELECT {shape}")  # type: ignore[arg-type]
    marked = shape_tree.find(exp.Anonymous)
    assert marked is not None
    kind, args = ref._shape(marked, {id(a): np.array([float(a.sql())]) for a in ref._leaves(marked)})
    try:
        expected = ref._contains([lon, lat], kind, args)
    except ref.ReferenceUnavailable:
        pytest.skip("a point on the shape's edge")
    np.testing.assert_array_equal(_in_cpoly(lon, lat, flat), expected)
    assert expected.sum() > 0


def test_area_is_exact() -> None:
    """AREA of polygons: the fan-of-triangles sum equals Girard's theorem (the reference's)."""
    for vertices in (
        [(0, 0), (10, 0), (0, 10)],
        [(0, 85), (120, 85), (240, 85)],
        [(9, 4), (11, 4), (11, 6), (9, 6)],
    ):
        v = ref._vec(
            np.array([x for x, _ in vertices], dtype=float), np.array([y for _, y in vertices], dtype=float)
        )
        assert polygon_area(vertices) == pytest.approx(ref._girard(v), rel=1e-10)
    # an octant is an eighth of the sphere
    assert polygon_area([(0, 0), (90, 0), (0, 90)]) == pytest.approx(
        4 * np.pi * (180 / np.pi) ** 2 / 8, rel=1e-12
    )


FORMS = [
    (
        "CONTAINS(POINT(ra, decl), CIRCLE(10, 5, 0.5)) = 1",
        "scisql_s2PtInCircle(ra, decl, 10, 5, 0.5) = 1",
    ),
    (
        "1 = CONTAINS(POINT('ICRS', ra, decl), CIRCLE('ICRS', POINT(10, -5), 0.5))",
        "1 = scisql_s2PtInCircle(ra, decl, 10, -5, 0.5)",
    ),
    (
        # ``= 0`` keeps ADQL's NULL for a NULL point (sciSQL's predicate would give 0)
        "CONTAINS(POINT(ra, decl), CIRCLE(10, 5, 0.5)) = 0",
        "CASE WHEN ra IS NULL OR decl IS NULL THEN NULL ELSE scisql_s2PtInCircle(ra, decl, 10, 5, 0.5) END = 0",
    ),
    (
        "INTERSECTS(CIRCLE(NULL, 10, 5, 0.5), POINT(ra, decl)) = 1",
        "scisql_s2PtInCircle(ra, decl, 10, 5, 0.5) = 1",
    ),
    ("DISTANCE(POINT(ra, decl), POINT(10, 5)) < 0.1", "scisql_angSep(ra, decl, 10, 5) < 0.1"),
    ("DISTANCE(ra, decl, 10, 5) <= 0.1", "scisql_angSep(ra, decl, 10, 5) <= 0.1"),
    (
        "INTERSECTS(CIRCLE(ra, decl, 0.1), CIRCLE(10, 5, 0.5)) = 1",
        "CAST((scisql_angSep(ra, decl, 10, 5) <= 0.1 + 0.5) AS INT) = 1",
    ),
    (
        "CONTAINS(POINT(ra, decl), POLYGON(9, 4, 11, 4, 10, 6)) = 1",
        "scisql_s2PtInCPoly(ra, decl, 9.00000000000000000e+00, 4.00000000000000000e+00, "
        "1.10000000000000000e+01, 4.00000000000000000e+00, 1.00000000000000000e+01, 6.00000000000000000e+00) = 1",
    ),
    (  # written clockwise: given counter-clockwise
        "CONTAINS(POINT(ra, decl), POLYGON(10, 6, 11, 4, 9, 4)) = 1",
        "scisql_s2PtInCPoly(ra, decl, 9.00000000000000000e+00, 4.00000000000000000e+00, "
        "1.10000000000000000e+01, 4.00000000000000000e+00, 1.00000000000000000e+01, 6.00000000000000000e+00) = 1",
    ),
]


@pytest.mark.parametrize(("adql", "scisql"), FORMS)
def test_rewrite_forms(adql: str, scisql: str) -> None:
    """The forms the restrictor pass prunes by: sciSQL calls with constant regions."""
    tree = rewrite_geometry(parse_adql(f"SELECT ra FROM Object WHERE {adql}"))
    where = tree.args["where"].this
    assert where.sql().upper() == scisql.upper()


DIALECT = [
    ("SELECT TOP 3 a FROM t ORDER BY a", "SELECT a FROM t ORDER BY a LIMIT 3"),
    ("SELECT TOP 3 a FROM t ORDER BY a OFFSET 6", "SELECT a FROM t ORDER BY a LIMIT 3 OFFSET 6"),
    ("SELECT DISTINCT TOP 2 a FROM t", "SELECT DISTINCT a FROM t LIMIT 2"),
    ("SELECT LOG(x), LOG10(x), EXP(x) FROM t", "SELECT LN(x), LOG(10, x), EXP(x) FROM t"),
    (
        "SELECT TRUNCATE(x, 2), ROUND(x, 1), MOD(a, 3), POWER(x, 2) FROM t",
        "SELECT TRUNC(x, 2), ROUND(x, 1), a % 3, POWER(x, 2) FROM t",
    ),
    (
        "SELECT RAND(), PI(), SQRT(x), CEILING(x), FLOOR(x) FROM t",
        "SELECT RANDOM(), PI(), SQRT(x), CEIL(x), FLOOR(x) FROM t",
    ),
    ("SELECT a || 'x' || b FROM t WHERE a ILIKE 'A%'", "SELECT a || 'x' || b FROM t WHERE a ILIKE 'A%'"),
    (
        "SELECT LOWER(a), UPPER(a), COALESCE(a, b), CAST(x AS INTEGER) FROM t",
        "SELECT LOWER(a), UPPER(a), COALESCE(a, b), CAST(x AS INT) FROM t",
    ),
]


@pytest.mark.parametrize(("adql", "duckdb"), DIALECT)
def test_dialect_reads_adql(adql: str, duckdb: str) -> None:
    """ADQL's meaning as DuckDB SQL: TOP is a LIMIT, LOG the natural logarithm, TRUNCATE to n places."""
    assert parse_adql(adql).sql(dialect="duckdb") == duckdb
