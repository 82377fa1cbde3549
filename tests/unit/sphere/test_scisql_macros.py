"""sciSQL macros against numpy written here: values, NULL and invalid arguments, poles, 0/360.

The numpy side is an independent formulation (unit vectors, gnomonic projection), following
sciSQL's documented semantics: predicates give 0 for a NULL argument and NULL for an invalid
one; conversions give NULL for NULL/invalid input.
"""

from __future__ import annotations

import math

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from sphere_truth import in_cpoly, in_ellipse, scatter, unit

from qserv.sphere.scisql import cpoly_sql, install_macros

TOL = 1e-9


@pytest.fixture(scope="module")
def conn() -> duckdb.DuckDBPyConnection:
    c = duckdb.connect(":memory:", config={"threads": 1})
    install_macros(c)
    return c


def _sep(lon1: np.ndarray, lat1: np.ndarray, lon2: float, lat2: float) -> np.ndarray:
    a, b = unit(lon1, lat1), unit(np.array([lon2]), np.array([lat2]))[0]
    return np.degrees(np.arctan2(np.linalg.norm(np.cross(a, b), axis=-1), a @ b))


def _run(conn: duckdb.DuckDBPyConnection, expr: str, **cols: np.ndarray) -> list[object]:
    conn.register("t", pa.table({k: pa.array(v) for k, v in cols.items()}))
    try:
        return [r[0] for r in conn.sql(f"SELECT {expr} FROM t").fetchall()]
    finally:
        conn.unregister("t")


# -- angSep, circle, box ----------------------------------------------------------------------


@pytest.mark.parametrize("centre", [(10.0, 5.0), (0.0, 89.99), (359.5, -90.0), (180.0, 0.0)])
def test_angsep_and_circle(conn: duckdb.DuckDBPyConnection, centre: tuple[float, float]) -> None:
    rng = np.random.default_rng(1)
    lon, lat = scatter(rng, *centre, 2.0, 500)
    truth = _sep(lon, lat, *centre)
    got = np.array(_run(conn, f"scisql_angSep(lon, lat, {centre[0]}, {centre[1]})", lon=lon, lat=lat))
    assert np.allclose(got, truth, atol=1e-7)
    inside = _run(conn, f"scisql_s2PtInCircle(lon, lat, {centre[0]}, {centre[1]}, 1.5)", lon=lon, lat=lat)
    sure = np.abs(truth - 1.5) > TOL
    assert (np.array(inside)[sure] == (truth <= 1.5)[sure].astype(int)).all()


def test_box_seam_and_poles(conn: duckdb.DuckDBPyConnection) -> None:
    rng = np.random.default_rng(2)
    lon = rng.uniform(-720, 720, 4000)
    lat = rng.uniform(-90, 90, 4000)
    for box in [
        (350, -10, 10, 10),
        (-10, -10, 10, 10),
        (0, 80, 360, 90),
        (10, -90, 20, -80),
        (100, 0, 100, 5),
    ]:
        lo, la_lo, hi, la_hi = box
        got = np.array(
            _run(conn, f"scisql_s2PtInBox(lon, lat, {lo}, {la_lo}, {hi}, {la_hi})", lon=lon, lat=lat)
        )
        x = np.mod(lon, 360.0)
        a, b = lo % 360.0, hi % 360.0
        if hi - lo >= 360:
            in_lon = np.ones(x.size, bool)
        elif a <= b:
            in_lon = (x >= a) & (x <= b)
        else:
            in_lon = (x >= a) | (x <= b)
        truth = in_lon & (lat >= la_lo) & (lat <= la_hi)
        assert (got == truth.astype(int)).all(), box


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("scisql_s2PtInBox(NULL, 0, 0, 0, 1, 1)", 0),
        ("scisql_s2PtInBox(0.5, 0.5, 0, 0, 1, NULL)", 0),
        ("scisql_s2PtInBox(0.5, 95, 0, 0, 1, 1)", None),  # latitude out of range
        ("scisql_s2PtInBox(0.5, 0.5, 0, 0, 1, 91)", None),
        ("scisql_s2PtInBox(0.5, 0.5, 10, 0, -5, 1)", None),  # lonMax < lonMin, one outside [0, 360]
        ("scisql_s2PtInBox(0.5, 0.5, 0, 1, 1, 0)", 0),  # latMin > latMax: empty
        ("scisql_s2PtInBox(cast('nan' as double), 0.5, 0, 0, 1, 1)", None),
        ("scisql_s2PtInBox(cast('inf' as double), 0.5, 0, 0, 1, 1)", None),
        ("scisql_s2PtInBox(725, 0.5, -5, 0, 5, 1)", 1),
        ("scisql_s2PtInCircle(NULL, 0, 0, 0, 1)", 0),
        ("scisql_s2PtInCircle(0, 0, 0, 0, NULL)", 0),
        ("scisql_s2PtInCircle(0, 0, 0, 0, -1)", None),
        ("scisql_s2PtInCircle(0, 0, 0, 0, 181)", None),
        ("scisql_s2PtInCircle(0, 0, 0, 91, 1)", None),
        ("scisql_s2PtInCircle(0, 0, 0, 0, cast('nan' as double))", None),
        ("scisql_s2PtInCircle(10, 89.5, 190, 89.5, 1.01)", 1),  # over the pole
        ("scisql_angSep(NULL, 0, 0, 0)", None),
        ("scisql_angSep(0, 91, 0, 0)", None),
        ("scisql_angSep(cast('inf' as double), 0, 0, 0)", None),
        ("scisql_angSep(0, 90, 180, 90)", 0.0),
        ("scisql_angSep(359.5, 0, 0.5, 0)", 1.0),
        ("scisql_angSep(1, 0, 0, 0, 3, 0)", 90.0),  # vectors, any length
        ("scisql_angSep(1, 1, 0, -2, -2, 0)", 180.0),
        ("scisql_angSep(0, 0, 0, 1, 0, 0)", 0.0),  # a zero vector: 0, as sciSQL
        ("scisql_angSep(1, NULL, 0, 1, 0, 0)", None),
        ("scisql_angSep(1, cast('nan' as double), 0, 1, 0, 0)", None),
    ],
)
def test_null_and_invalid(conn: duckdb.DuckDBPyConnection, expr: str, expected: object) -> None:
    got = conn.sql(f"SELECT {expr}").fetchall()[0][0]
    assert got == pytest.approx(expected) if expected is not None else got is None


# -- ellipse -----------------------------------------------------------------------------------


ELLIPSES = [
    (10.0, 5.0, 3600.0, 1800.0, 0.0),  # major axis north-south
    (10.0, 5.0, 3600.0, 1800.0, 90.0),  # east-west
    (359.8, -20.0, 7200.0, 600.0, 30.0),  # across the seam
    (45.0, 88.5, 9000.0, 3000.0, 135.0),  # high declination, over the pole
    (0.0, 90.0, 3600.0, 3600.0, 0.0),  # a circle on the pole
    (200.0, -89.0, 36000.0, 900.0, -60.0),  # the largest, thin, near the south pole
]


@pytest.mark.parametrize("ellipse", ELLIPSES)
def test_ellipse_agrees_with_numpy(conn: duckdb.DuckDBPyConnection, ellipse: tuple[float, ...]) -> None:
    rng = np.random.default_rng(3)
    lon, lat = scatter(rng, ellipse[0], ellipse[1], ellipse[2] / 3600.0, 3000)
    # the antipode of the ellipse: sciSQL's test accepts it, ours (and this reference) do not
    lon = np.append(lon, ellipse[0] + 180.0)
    lat = np.append(lat, -ellipse[1])
    args = ", ".join(str(a) for a in ellipse)
    got = np.array(_run(conn, f"scisql_s2PtInEllipse(lon, lat, {args})", lon=lon, lat=lat))
    truth, rim = in_ellipse(lon, lat, ellipse)
    sure = rim > TOL
    assert truth.sum() > 50
    assert (got[sure] == truth[sure].astype(int)).all()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ("NULL, 0, 0, 0, 10, 5, 0", 0),
        ("0, 0, 0, 0, 10, 5, NULL", 0),
        ("0, 0, 0, 0, 10, 20, 0", None),  # minor > major
        ("0, 0, 0, 0, 10, -1, 0", None),  # negative axis
        ("0, 0, 0, 0, 36001, 5, 0", None),  # semi-major above 10 degrees
        ("0, 0, 0, 95, 10, 5, 0", None),
        ("0, 0, 0, 0, 10, 5, cast('inf' as double)", None),
        ("0, 0, 0, 0, 10, 0, 0", 0),  # a zero minor axis holds nothing (as sciSQL)
        ("0, 0.002, 0, 0, 10, 5, 0", 1),  # 7.2 arcsec north, major axis north
        ("0, 0.002, 0, 0, 10, 5, 90", 0),  # ... with the major axis east
        ("0.002, 0, 0, 0, 10, 5, 90", 1),
    ],
)
def test_ellipse_null_and_invalid(conn: duckdb.DuckDBPyConnection, args: str, expected: object) -> None:
    assert conn.sql(f"SELECT scisql_s2PtInEllipse({args})").fetchall()[0][0] == expected


# -- convex polygon ----------------------------------------------------------------------------


POLYGONS = [
    [(10.0, 0.0), (12.0, 0.0), (12.0, 2.0), (10.0, 2.0)],  # counter-clockwise
    [(10.0, 2.0), (12.0, 2.0), (12.0, 0.0), (10.0, 0.0)],  # clockwise: sciSQL turns it around
    [(358.0, -1.0), (2.0, -1.0), (3.0, 1.5), (0.0, 3.0), (357.0, 1.5)],  # across the seam
    [(0.0, 85.0), (90.0, 85.0), (180.0, 85.0), (270.0, 85.0)],  # around the north pole
    [(20.0, -88.0), (140.0, -87.0), (260.0, -89.0)],  # a triangle around the south pole
]


@pytest.mark.parametrize("verts", POLYGONS)
def test_cpoly_agrees_with_numpy(conn: duckdb.DuckDBPyConnection, verts: list[tuple[float, float]]) -> None:
    rng = np.random.default_rng(4)
    vv = unit(np.array([v[0] for v in verts]), np.array([v[1] for v in verts])).sum(axis=0)
    lon0 = math.degrees(math.atan2(vv[1], vv[0]))
    lat0 = math.degrees(math.asin(vv[2] / np.linalg.norm(vv)))
    lon, lat = scatter(rng, lon0, lat0, 6.0, 4000)
    got = np.array(_run(conn, cpoly_sql("lon", "lat", verts), lon=lon, lat=lat))
    truth, margin = in_cpoly(lon, lat, verts)
    sure = margin > TOL
    assert truth.sum() > 50
    assert (got[sure] == truth[sure].astype(int)).all()


@pytest.mark.parametrize(
    ("point", "verts", "expected"),
    [
        (("NULL", "0"), [(0, 0), (1, 0), (1, 1)], 0),
        (("0.5", "0.2"), [(0, 0), (1, 0), (None, 1)], 0),  # a NULL vertex
        (("0.5", "95"), [(0, 0), (1, 0), (1, 1)], None),
        (("0.5", "0.2"), [(0, 0), (1, 0), (1, 91)], None),
        (("0.5", "0.2"), [(0, 0), (1, 0)], None),  # two vertices are no polygon
        (("1", "0"), [(0, 0), (1, 0), (1, 1)], 1),  # on a vertex: inside
    ],
)
def test_cpoly_null_and_invalid(
    conn: duckdb.DuckDBPyConnection,
    point: tuple[str, str],
    verts: list[tuple[float | None, float | None]],
    expected: object,
) -> None:
    assert conn.sql(f"SELECT {cpoly_sql(point[0], point[1], verts)}").fetchall()[0][0] == expected


# -- photometry --------------------------------------------------------------------------------

_LN10 = math.log(10.0)


def _photometry(name: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        if name == "scisql_fluxToAbMag":
            v = np.where(a > 0, -2.5 * np.log10(a) - 48.6, np.nan)
        elif name == "scisql_nanojanskyToAbMag":
            v = np.where(a > 0, -2.5 * np.log10(a) + 31.4, np.nan)
        elif name in ("scisql_fluxToAbMagSigma", "scisql_nanojanskyToAbMagSigma"):
            v = np.where((a > 0) & (b >= 0), 2.5 / _LN10 * b / a, np.nan)
        elif name == "scisql_abMagToFlux":
            v = 10.0 ** (-(a + 48.6) / 2.5)
        elif name == "scisql_abMagToNanojansky":
            v = 10.0 ** (-(a - 31.4) / 2.5)
        elif name == "scisql_abMagToFluxSigma":
            v = np.where(b >= 0, b * 10.0 ** (-(a + 48.6) / 2.5) * _LN10 / 2.5, np.nan)
        else:
            v = np.where(b >= 0, b * 10.0 ** (-(a - 31.4) / 2.5) * _LN10 / 2.5, np.nan)
    return np.where(np.isfinite(a) & np.isfinite(b) & np.isfinite(v), v, np.nan)


@pytest.mark.parametrize(
    "name",
    [
        "scisql_fluxToAbMag",
        "scisql_fluxToAbMagSigma",
        "scisql_abMagToFlux",
        "scisql_abMagToFluxSigma",
        "scisql_nanojanskyToAbMag",
        "scisql_nanojanskyToAbMagSigma",
        "scisql_abMagToNanojansky",
        "scisql_abMagToNanojanskySigma",
    ],
)
def test_photometry(conn: duckdb.DuckDBPyConnection, name: str) -> None:
    rng = np.random.default_rng(5)
    flux_like = name.startswith(("scisql_flux", "scisql_nanojansky"))
    n = 600
    a = (
        rng.lognormal(-60 if name.startswith("scisql_flux") else 5, 3, n)
        if flux_like
        else rng.normal(20, 5, n)
    )
    special = [0.0, -1.0, np.nan, np.inf, -np.inf, -1e4, 1e4]
    a = np.concatenate([a, special, [1.0] * 7])
    b = np.concatenate([np.abs(rng.normal(0, 1, n)) * (a[:n] if flux_like else 0.1), [0.1] * 7, special])
    mask = np.zeros(a.size, bool)
    mask[::37] = True  # NULLs
    unary = "Sigma" not in name
    expr = f"{name}(a)" if unary else f"{name}(a, b)"
    conn.register("t", pa.table({"a": pa.array(a, mask=mask), "b": pa.array(b, mask=mask[::-1])}))
    try:
        got = np.array(
            [np.nan if r[0] is None else r[0] for r in conn.sql(f"SELECT {expr} FROM t").fetchall()]
        )
    finally:
        conn.unregister("t")
    truth = _photometry(name, a, np.ones_like(b) if unary else b)
    truth[mask] = np.nan
    if not unary:
        truth[mask[::-1]] = np.nan
    assert np.array_equal(np.isnan(got), np.isnan(truth)), name
    ok = ~np.isnan(truth)
    assert np.allclose(got[ok], truth[ok], rtol=1e-12, atol=0.0), name


def test_nanojansky_is_flux_scaled(conn: duckdb.DuckDBPyConnection) -> None:
    """1 nJy = 1e-32 erg/cm^2/s/Hz: both scales give one magnitude (3631 Jy is magnitude 0)."""
    row = conn.sql(
        "SELECT scisql_nanojanskyToAbMag(3631e9), scisql_fluxToAbMag(3631e-23), "
        "scisql_abMagToNanojansky(20) * 1e-32 / scisql_abMagToFlux(20)"
    ).fetchall()[0]
    assert row[0] == pytest.approx(0.0, abs=1e-3) and row[1] == pytest.approx(0.0, abs=1e-3)
    assert row[2] == pytest.approx(1.0)
