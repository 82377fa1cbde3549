"""Spatial restrictors and sciSQL functions against the independent reference, and pruning.

The catalog's child (Source) declares its own positions, drawn up to 0.9 overlap away from
its director row (as the loader allows), so that many children lie in another chunk than the
one they are stored in (their director's). Chunk truth comes from healpy's ang2pix of
points sampled in the shapes here, never from the project's region code.
"""

from __future__ import annotations

import dataclasses
import math
import re

import healpy as hp
import numpy as np
import pyarrow as pa
import pytest

from czar.plan.explain import explain
from qserv.catalog import TableKind
from qserv.errors import QservError
from tests.differential.catalog import GeneratedCatalog, generate
from tests.differential.harness import FakeCluster

OVERLAP = 1.0 / 60.0


def _vec(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    lo, la = np.radians(lon), np.radians(lat)
    return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=-1)


def _lonlat(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.degrees(np.arctan2(v[:, 1], v[:, 0])) % 360.0, np.degrees(np.arcsin(np.clip(v[:, 2], -1, 1)))


def _move(rng: np.random.Generator, lon: np.ndarray, lat: np.ndarray, upto: float) -> tuple[np.ndarray, ...]:
    """Each position moved by up to ``upto`` degrees in a random direction."""
    p = _vec(lon, lat)
    east = np.stack([-np.sin(np.radians(lon)), np.cos(np.radians(lon)), np.zeros_like(lon)], axis=-1)
    north = np.cross(p, east)
    d = np.radians(rng.uniform(0, upto, len(lon)))[:, None]
    t = rng.uniform(0, 2 * np.pi, len(lon))[:, None]
    return _lonlat(np.cos(d) * p + np.sin(d) * (np.cos(t) * north + np.sin(t) * east))


def child_positions_catalog(seed: int = 11) -> GeneratedCatalog:
    """``generate`` with Source positions of its own, up to 0.9 overlap from their director."""
    base = generate(seed=seed, n_objects=3000, other=False)
    rng = np.random.default_rng(seed)
    objects = base.rows("Object")
    sources = base.rows("Source")
    by_id = dict(zip(objects.column("objectId").to_pylist(), range(objects.num_rows), strict=True))
    owner = np.array([by_id[k] for k in sources.column("objectId").to_pylist()])
    ra, decl = _move(
        rng, objects.column("ra").to_numpy()[owner], objects.column("decl").to_numpy()[owner], 0.9 * OVERLAP
    )
    sources = sources.set_column(sources.column_names.index("ra"), "ra", pa.array(ra))
    sources = sources.set_column(sources.column_names.index("decl"), "decl", pa.array(decl))
    tables = tuple(
        dataclasses.replace(t, lon_column="ra", lat_column="decl") if t.kind is TableKind.CHILD else t
        for t in base.tables
    )
    data = dict(base.data)
    data[(base.database.name, "Source")] = sources
    return GeneratedCatalog(base.databases, tables, data)


@pytest.fixture(scope="module")
def sky() -> FakeCluster:
    return FakeCluster(child_positions_catalog())


def _near_ids(sky: FakeCluster, lon: float, lat: float, radius: float, n: int) -> str:
    rows = sky.generated.rows("Object")
    v = _vec(rows.column("ra").to_numpy(), rows.column("decl").to_numpy())
    d = np.degrees(np.arccos(np.clip(v @ _vec(np.array([lon]), np.array([lat]))[0], -1, 1)))
    ids = np.array(rows.column("objectId").to_pylist())[d < radius][:n]
    return ", ".join(str(i) for i in ids)


CPOLY_SQUARE = "9, 4, 11, 4, 11, 6, 9, 6"
QUERIES = [
    # each restrictor form, as a top-level term: pruned
    "SELECT objectId FROM Object WHERE scisql_s2PtInBox(ra, decl, 355, -5, 5, 5) = 1",
    "SELECT objectId FROM Object WHERE 1 = scisql_s2PtInBox(ra, decl, -5, -5, 5, 5)",
    "SELECT objectId, ra FROM Object WHERE scisql_s2PtInCircle(ra, decl, 10, 5, 0.7)",
    "SELECT COUNT(*) FROM Object WHERE SCISQL_S2PTINCIRCLE(ra, decl, 10, 5, 0.7) = 1",
    "SELECT objectId FROM Object WHERE scisql_s2PtInBox(ra, decl, 0, 85, 360, 90) = 1",
    "SELECT objectId FROM Object WHERE scisql_s2PtInBox(ra, decl, 300, 80, 60, 90) = 1 AND flags > 1",
    "SELECT objectId FROM Object WHERE scisql_s2PtInCircle(ra, decl, 0, -90, 3) = 1",
    "SELECT objectId FROM Object WHERE scisql_s2PtInEllipse(ra, decl, 10, 5, 3600, 1800, 30) = 1",
    "SELECT objectId FROM Object WHERE scisql_s2PtInEllipse(ra, decl, 45, 88, 9000, 3000, 135) = 1",
    "SELECT objectId FROM Object WHERE Scisql_S2PtInEllipse(ra, decl, 0.2, 0.1, 1800, 900, 60) = 1",
    f"SELECT objectId FROM Object WHERE scisql_s2PtInCPoly(ra, decl, {CPOLY_SQUARE}) = 1",
    "SELECT objectId FROM Object WHERE scisql_s2PtInCPoly(ra, decl, 358, -1, 2, -1, 2.5, 1, 0, 2, 357.5, 1) = 1",
    "SELECT objectId FROM Object WHERE scisql_s2PtInCPoly(ra, decl, 9, 6, 11, 6, 11, 4, 9, 4) = 1",  # clockwise
    "SELECT objectId FROM Object WHERE scisql_s2PtInCPoly(ra, decl, 0, 85, 90, 85, 180, 85, 270, 85) = 1",
    "SELECT objectId FROM Object WHERE qserv_areaspec_ellipse(200, -30, 3600, 1200, 45)",
    "SELECT COUNT(*) FROM Object WHERE qserv_areaspec_poly(199, -31, 201, -31, 201, -29, 199, -29)",
    "SELECT objectId FROM Object WHERE qserv_areaspec_poly(359, -1, 1, -1, 1, 1, 359, 1) AND rFlux > 10",
    "SELECT objectId, decl FROM Object WHERE qserv_areaspec_ellipse(123, -89.5, 7200, 3600, 0)",
    "SELECT COUNT(*) FROM Object WHERE qserv_areaspec_ellipse(CAST(10.0 AS DOUBLE), 5, 3600::float8, 1800, 30)",
    # under OR / NOT / in the select list: row filters
    "SELECT objectId FROM Object WHERE scisql_s2PtInCircle(ra, decl, 10, 5, 0.5) = 1 OR flags = 7",
    "SELECT COUNT(*) FROM Object WHERE NOT scisql_s2PtInBox(ra, decl, 0, -80, 360, 80) = 1",
    "SELECT objectId FROM Object WHERE qserv_areaspec_circle(10, 5, 0.5) OR flags = 7",
    "SELECT COUNT(*) FROM Object WHERE NOT qserv_areaspec_box(0, -80, 360, 80)",
    "SELECT COUNT(*) FROM Object WHERE NOT (qserv_areaspec_ellipse(10, 5, 3600, 1800, 30) OR flags < 6)",
    "SELECT objectId, scisql_s2PtInEllipse(ra, decl, 10, 5, 3600, 1800, 30) AS e FROM Object "
    "WHERE qserv_areaspec_circle(10, 5, 1.2)",
    f"SELECT scisql_s2PtInCPoly(ra, decl, {CPOLY_SQUARE}), COUNT(*) FROM Object GROUP BY 1",
    "SELECT objectId, qserv_areaspec_circle(10, 5, 1), qserv_areaspec_poly(9, 4, 11, 4, 11, 6) AS p FROM Object "
    "WHERE decl > 80 OR qserv_areaspec_ellipse(10, 5, 7200, 3600, 0)",
    f"SELECT COUNT(*) FROM Object WHERE NOT scisql_s2PtInCPoly(ra, decl, {CPOLY_SQUARE}) = 1",
    # several ANDed: intersected
    "SELECT objectId FROM Object WHERE scisql_s2PtInCircle(ra, decl, 10, 5, 1) = 1 "
    "AND scisql_s2PtInBox(ra, decl, 10, 4, 12, 6) = 1",
    "SELECT objectId FROM Object WHERE qserv_areaspec_box(5, 0, 15, 10) "
    "AND scisql_s2PtInEllipse(ra, decl, 10, 5, 7200, 3600, 0) = 1",
    "SELECT objectId FROM Object WHERE qserv_areaspec_circle(10, 5, 1) AND qserv_areaspec_box(9, 4, 11, 6)",
    "SELECT COUNT(*) FROM Object WHERE qserv_areaspec_circle(10, 5, 0.5) AND qserv_areaspec_circle(200, -30, 0.5)",
    # children with their own positions, joins
    "SELECT o.objectId, s.sourceId FROM Object o JOIN Source s ON s.objectId = o.objectId "
    "WHERE scisql_s2PtInCircle(s.ra, s.decl, 10, 5, 0.5) = 1",
    "SELECT COUNT(*) FROM Source WHERE scisql_s2PtInBox(ra, decl, 359, -1, 1, 1) = 1",
    "SELECT sourceId FROM Source WHERE scisql_s2PtInCPoly(ra, decl, 199, -31, 201, -31, 201, -29, 199, -29) = 1 "
    "AND psfFlux > 40",
    "SELECT o.objectId, s.sourceId FROM Object o JOIN Source s ON s.objectId = o.objectId "
    "WHERE scisql_s2PtInCircle(o.ra, o.decl, 10, 5, 1) = 1 AND scisql_s2PtInCircle(s.ra, s.decl, 10, 5, 0.8) = 1",
    "SELECT f.filterName, COUNT(*) FROM Source s JOIN Filter f ON f.filterId = s.filterId "
    "WHERE scisql_s2PtInEllipse(s.ra, s.decl, 200, -30, 3600, 1800, 10) = 1 GROUP BY f.filterName",
    "SELECT o.objectId, s.sourceId FROM Object o LEFT JOIN Source s ON s.objectId = o.objectId "
    "WHERE qserv_areaspec_circle(10, 5, 0.3)",
    "SELECT s.sourceId, scisql_angSep(o.ra, o.decl, s.ra, s.decl) AS d FROM Object o JOIN Source s "
    "ON s.objectId = o.objectId WHERE qserv_areaspec_poly(199, -31, 201, -31, 201, -29, 199, -29)",
    "SELECT COUNT(*) FROM Source WHERE scisql_s2PtInCircle(ra, decl, 0, 90, 2) = 1 OR psfFlux < 0",
    # arguments that keep a restrictor from pruning (still exact row filters)
    "SELECT COUNT(*) FROM Object WHERE scisql_s2PtInCircle(decl, ra, 5, 10, 1) = 1",
    "SELECT COUNT(*) FROM Object WHERE scisql_s2PtInCircle(ra, decl, 10, 5, flags * 0.1) = 1",
    "SELECT COUNT(*) FROM Object WHERE scisql_s2PtInCircle(ra, decl, 10, 95, 1) = 1",
    "SELECT COUNT(*) FROM Object WHERE scisql_s2PtInCircle(ra, decl, 10, 95, 1) IS NULL",
    "SELECT COUNT(*) FROM Object WHERE scisql_s2PtInCPoly(ra, decl, 9, 4, 11, 4, NULL, 6) = 0",
    "SELECT COUNT(*) FROM Object WHERE scisql_s2PtInCPoly(ra, decl, 9, 4, 11, 6, 11, 4, 9, 6) = 1",  # bow tie
    "SELECT COUNT(*) FROM Object WHERE scisql_s2PtInEllipse(ra, decl, 10, 5, 1800, 3600, 0) IS NULL",
    # values
    "SELECT objectId, scisql_angSep(cos(radians(decl)) * cos(radians(ra)), cos(radians(decl)) * sin(radians(ra)), "
    "sin(radians(decl)), 0, 0, 2) AS d FROM Object WHERE qserv_areaspec_circle(0, 90, 3)",
    "SELECT COUNT(scisql_angSep(rFlux, gFlux, iFlux, 1, 0, 0)) FROM Object",
    "SELECT objectId, scisql_angSep(ra, decl, 0, 90) AS d FROM Object "
    "WHERE scisql_s2PtInBox(ra, decl, 0, 88, 360, 90) = 1 ORDER BY d LIMIT 10",
    "SELECT objectId, scisql_fluxToAbMag(gFlux * 1e-30) AS m, scisql_nanojanskyToAbMag(gFlux) AS n "
    "FROM Object WHERE qserv_areaspec_circle(10, 5, 0.5)",
    "SELECT AVG(scisql_nanojanskyToAbMag(rFlux)), MIN(scisql_nanojanskyToAbMagSigma(rFlux, gFlux)) FROM Object",
    "SELECT COUNT(*) FROM Object WHERE scisql_abMagToNanojansky(rMag) > 100",
    "SELECT SUM(scisql_abMagToFlux(rMag)) * 1e30, SUM(scisql_abMagToFluxSigma(rMag, 0.1)) * 1e30, "
    "SUM(scisql_abMagToNanojanskySigma(rMag, 0.05)), MAX(scisql_fluxToAbMagSigma(gFlux * 1e-32, rFlux * 1e-32)) "
    "FROM Object",
    "SELECT COUNT(scisql_nanojanskyToAbMag(iFlux)), COUNT(scisql_fluxToAbMagSigma(iFlux, -1)) FROM Object",
    "SELECT flags, MAX(scisql_nanojanskyToAbMag(gFlux)) FROM Object WHERE scisql_s2PtInCircle(ra, decl, 10, 5, 2) = 1 "
    "GROUP BY flags ORDER BY flags",
]


@pytest.mark.parametrize("sql", QUERIES)
def test_same_answer_as_single_duckdb(sky: FakeCluster, sql: str) -> None:
    sky.check(sql)


def test_keys_and_restrictors(sky: FakeCluster) -> None:
    ids = _near_ids(sky, 10.0, 5.0, 1.0, 6)
    sky.check(
        f"SELECT objectId, ra FROM Object WHERE objectId IN ({ids}) AND scisql_s2PtInCircle(ra, decl, 10, 5, 0.6) = 1"
    )
    sky.check(f"SELECT s.sourceId FROM Object o JOIN Source s ON s.objectId = o.objectId WHERE o.objectId IN ({ids}) "
              "AND qserv_areaspec_ellipse(10, 5, 3000, 1500, 80)")  # fmt: skip


# -- pruning: the plan's chunks against healpy -------------------------------------------------


def _sample(shape: str, args: tuple[float, ...], n: int = 200000) -> tuple[np.ndarray, np.ndarray]:
    """Points of a shape (numpy, independent): dense in a cap around it, kept by its own test."""
    rng = np.random.default_rng(1)
    if shape == "circle":
        lon0, lat0, r = args
        cap = r
    elif shape == "ellipse":
        lon0, lat0, major = args[0], args[1], args[2] / 3600.0
        cap = major * 1.01
    else:
        v = _vec(np.array(args[0::2]), np.array(args[1::2]))
        c = v.sum(axis=0) / np.linalg.norm(v.sum(axis=0))
        lon0, lat0 = (float(x[0]) for x in _lonlat(c[None, :]))
        cap = float(np.degrees(np.arccos(np.clip(v @ c, -1, 1)).max())) * 1.01
    c = _vec(np.array([lon0]), np.array([lat0]))[0]
    z = rng.uniform(math.cos(math.radians(cap)), 1.0, n)
    t = rng.uniform(0, 2 * np.pi, n)
    e1 = np.cross([0.0, 0.0, 1.0], c) if abs(c[2]) < 0.99 else np.array([1.0, 0.0, 0.0])
    e1 = e1 / np.linalg.norm(e1)
    e2 = np.cross(c, e1)
    s = np.sqrt(1 - z * z)[:, None]
    p = z[:, None] * c + s * (np.cos(t)[:, None] * e1 + np.sin(t)[:, None] * e2)
    lon, lat = _lonlat(p)
    if shape == "ellipse":
        lon0, lat0, major, minor, pa_deg = args
        east = np.array([-math.sin(math.radians(lon0)), math.cos(math.radians(lon0)), 0.0])
        north = np.cross(c, east)
        a = math.radians(pa_deg)
        x = p @ (math.cos(a) * north + math.sin(a) * east) / math.radians(major / 3600)
        y = p @ (-math.sin(a) * north + math.cos(a) * east) / math.radians(minor / 3600)
        keep = x * x + y * y <= 1
    elif shape == "poly":
        v = _vec(np.array(args[0::2]), np.array(args[1::2]))
        nrm = np.cross(v, np.roll(v, -1, axis=0))
        nrm = nrm if (nrm @ v.sum(axis=0))[0] > 0 else -nrm
        keep = (p @ nrm.T >= 0).all(axis=1)
    else:
        keep = np.ones(n, bool)
    return lon[keep], lat[keep]


PRUNED = [
    ("SELECT objectId FROM Object WHERE scisql_s2PtInCircle(ra, decl, 10, 5, 2) = 1", "circle", (10, 5, 2)),
    ("SELECT objectId FROM Object WHERE qserv_areaspec_ellipse(45, 88, 9000, 3000, 135)", "ellipse",
     (45, 88, 9000, 3000, 135)),
    ("SELECT objectId FROM Object WHERE 1 = scisql_s2PtInEllipse(ra, decl, 200, -30, 36000, 7200, 20)", "ellipse",
     (200, -30, 36000, 7200, 20)),
    ("SELECT objectId FROM Object WHERE qserv_areaspec_poly(355, -4, 5, -4, 6, 3, 0, 6, 354, 3)", "poly",
     (355, -4, 5, -4, 6, 3, 0, 6, 354, 3)),
    ("SELECT COUNT(*) FROM Object WHERE scisql_s2PtInCPoly(ra, decl, 0, 80, 120, 80, 240, 80)", "poly",
     (0, 80, 120, 80, 240, 80)),
]  # fmt: skip


@pytest.mark.parametrize(("sql", "shape", "args"), PRUNED)
def test_explain_shows_the_chunks_pruned(
    sky: FakeCluster, sql: str, shape: str, args: tuple[float, ...]
) -> None:
    order = sky.generated.database.partitioning.order
    lon, lat = _sample(shape, args)
    truth = set(hp.ang2pix(1 << order, lon, lat, nest=True, lonlat=True).tolist())
    near = set(truth)
    for c in truth:
        near.update(int(n) for n in hp.get_all_neighbours(1 << order, c, nest=True) if n >= 0)
    nonempty = sky.nonempty[("sky", "object")]
    outcome = sky.run(sql)
    text = explain(outcome.plan)
    assert text.startswith("strategy: region\n"), text
    shown = int(re.search(r"^chunks: (\d+)", text, re.M).group(1))  # type: ignore[union-attr]
    chunks = set(outcome.plan.chunk_ids)
    assert shown == len(chunks)
    assert truth & nonempty <= chunks <= near & nonempty
    assert len(chunks) < len(nonempty) / 4
    sky.check(sql)


def test_child_cover_grows_by_the_overlap(sky: FakeCluster) -> None:
    """Small boxes around children stored in another chunk than their own position's: the
    answer needs the director's chunk, which the box itself does not touch."""
    order = sky.generated.database.partitioning.order
    objects, sources = sky.generated.rows("Object"), sky.generated.rows("Source")
    home = dict(
        zip(
            objects.column("objectId").to_pylist(),
            hp.ang2pix(1 << order, objects.column("ra").to_numpy(), objects.column("decl").to_numpy(),
                       nest=True, lonlat=True).tolist(),
            strict=True,
        )
    )  # fmt: skip
    ra, decl = sources.column("ra").to_numpy(), sources.column("decl").to_numpy()
    own = hp.ang2pix(1 << order, ra, decl, nest=True, lonlat=True)
    stored = np.array([home[k] for k in sources.column("objectId").to_pylist()])
    tested = 0
    grid = np.linspace(-1.0, 1.0, 41)
    for i in np.flatnonzero((own != stored) & (np.abs(decl) < 80))[:60]:
        lon, lat, h = float(ra[i]), float(decl[i]), 0.001
        glon, glat = np.meshgrid(lon + h * grid, lat + h * grid)
        box_chunks = set(
            hp.ang2pix(1 << order, glon.ravel() % 360.0, glat.ravel(), nest=True, lonlat=True).tolist()
        )
        if stored[i] in box_chunks:
            continue  # the box reaches the director's chunk anyway
        sql = (
            f"SELECT sourceId, objectId FROM Source "
            f"WHERE scisql_s2PtInBox(ra, decl, {lon - h!r}, {lat - h!r}, {lon + h!r}, {lat + h!r}) = 1"
        )
        outcome = sky.check(sql)
        assert outcome is not None and outcome.table.num_rows >= 1
        assert int(stored[i]) in outcome.plan.chunk_ids
        assert outcome.plan.strategy == "region" and len(outcome.plan.chunk_ids) <= 4
        tested += 1
    assert tested >= 5


REFUSALS = [
    ("SELECT objectId FROM Object WHERE qserv_areaspec_ellipse(10, 5, 3600, 1800)", "22023",
     "qserv_areaspec_ellipse takes 5 numeric constant arguments (degrees), got 4"),
    ("SELECT objectId FROM Object WHERE qserv_areaspec_poly(1, 2, 3, 4)", "22023",
     "qserv_areaspec_poly takes 3 to 20 vertices: an even number of 6 to 40 numeric constant arguments "
     "(lon, lat pairs, degrees), got 4"),
    ("SELECT objectId FROM Object WHERE qserv_areaspec_poly(1, 2, 3, 4, 5, 6, 7)", "22023",
     "qserv_areaspec_poly takes 3 to 20 vertices: an even number of 6 to 40 numeric constant arguments "
     "(lon, lat pairs, degrees), got 7"),
    ("SELECT objectId FROM Object WHERE qserv_areaspec_ellipse(ra, 5, 3600, 1800, 30)", "22023",
     "qserv_areaspec_ellipse takes 5 numeric constant arguments (degrees)"),
    ("SELECT objectId FROM Object WHERE qserv_areaspec_poly(1, 2, 3, 4, 5, flags)", "22023",
     "qserv_areaspec_poly takes 6 to 40 numeric constant arguments (degrees)"),
    ("SELECT objectId FROM Object WHERE qserv_areaspec_ellipse(10, 5, 1800, 3600, 30)", "22023",
     "qserv_areaspec_ellipse: ellipse: semi-axes 1800.0, 3600.0 arcsec must satisfy 0 < semi-minor <= "
     "semi-major <= 36000 (10 degrees), as in sciSQL"),
    ("SELECT objectId FROM Object WHERE qserv_areaspec_ellipse(10, 95, 3600, 1800, 30)", "22023",
     "qserv_areaspec_ellipse: ellipse: centre latitude 95.0 is out of range: use [-90, 90] degrees"),
    ("SELECT objectId FROM Object WHERE qserv_areaspec_poly(0, 0, 1, 1, 1, 0, 0, 1)", "22023",
     "qserv_areaspec_poly: polygon: vertex 4 lies outside the edge from vertex 1 to vertex 2: the vertices "
     "must form a convex polygon, listed in order around it (either direction)"),
    ("SELECT objectId FROM Object WHERE qserv_areaspec_poly(0, 0, 120, 0, 240, 0)", "22023",
     "qserv_areaspec_poly: polygon: the vertices must lie within one hemisphere"),
    ("SELECT objectId FROM Object WHERE qserv_areaspec_poly(0, 0, 0, 0, 1, 1)", "22023",
     "qserv_areaspec_poly: polygon: vertices 1 and 2 coincide or are antipodal: no edge joins them"),
    ("SELECT scisql_s2PtInEllipse(ra, decl, 1, 2, 3, 4) FROM Object", "42883",
     "function scisql_s2PtInEllipse does not accept these arguments"),
    ("SELECT objectId FROM Object WHERE scisql_s2PtInCPoly(ra, decl, 1, 2, 3, 4) = 1", "42883",
     "function scisql_s2PtInCPoly does not accept these arguments"),
    ("SELECT objectId FROM Object WHERE scisql_s2PtInCPoly(ra, decl, ra, 2, 3, 4, 5, 6) = 1", "0A000",
     "scisql_s2PtInCPoly: vertex coordinates must be numeric constants (found ra)"),
    ("SELECT scisql_fluxToAbMag(gFlux, 1) FROM Object", "42883",
     "function scisql_fluxToAbMag does not accept these arguments"),
    ("SELECT COUNT(*) FROM Filter WHERE qserv_areaspec_ellipse(10, 5, 3600, 1800, 30)", "0A000",
     "qserv_areaspec_ellipse needs a director table (with positions) in FROM"),
]  # fmt: skip


@pytest.mark.parametrize(("sql", "sqlstate", "message"), REFUSALS)
def test_refusals(sky: FakeCluster, sql: str, sqlstate: str, message: str) -> None:
    with pytest.raises(QservError) as info:
        sky.run(sql)
    assert (info.value.sqlstate, info.value.message) == (sqlstate, message)
    assert info.value.position is not None


# -- generated: restrictors of every form, combined -----------------------------------------

CENTRES = [(10.0, 5.0), (200.0, -30.0), (0.2, 0.1), (359.8, -0.3), (45.0, 89.3), (123.0, -89.6)]


def _restrictor(rng: np.random.Generator, table: str) -> str:
    """One restrictor on ``table``'s positions (``o``: Object, ``s``: Source), of a random form."""
    lon, lat = CENTRES[rng.integers(len(CENTRES))]
    lon, lat = (
        round(lon + rng.normal(0, 0.3), 3),
        round(float(np.clip(lat + rng.normal(0, 0.3), -89.9, 89.9)), 3),
    )
    smaa = round(float(rng.uniform(600, 5400)), 1)
    smia, pa_deg = round(smaa * float(rng.uniform(0.1, 1.0)), 1), round(float(rng.uniform(-90, 270)), 1)
    h, w = round(float(rng.uniform(0.2, 1.5)), 3), round(float(rng.uniform(0.2, 1.5)), 3)
    lo, hi = max(lat - h, -89.99), min(lat + h, 89.99)
    quad = [lon - w, lo, lon + w, lo, lon + w, hi, lon - w, hi]
    if rng.random() < 0.5:
        quad = [v for i in range(3, -1, -1) for v in quad[2 * i : 2 * i + 2]]  # clockwise
    poly = ", ".join(f"{v:.3f}" for v in quad)
    args = {
        "Box": f"{lon - w:.3f}, {max(lat - h, -90):.3f}, {lon + w:.3f}, {min(lat + h, 90):.3f}",
        "Circle": f"{lon}, {lat}, {h}",
        "Ellipse": f"{lon}, {lat}, {smaa}, {smia}, {pa_deg}",
        "CPoly": poly,
    }
    kind = list(args)[int(rng.integers(4))]
    if table == "o" and rng.random() < 0.4:
        areaspec = {"CPoly": "poly"}.get(kind, kind.lower())
        return f"qserv_areaspec_{areaspec}({args[kind]})"
    call = f"scisql_s2PtIn{kind}({table}.ra, {table}.decl, {args[kind]})"
    return [f"{call} = 1", f"1 = {call}", call][int(rng.integers(3))]


def generated_query(seed: int) -> str:
    rng = np.random.default_rng(seed)
    joined = rng.random() < 0.5
    tables = "Object o JOIN Source s ON s.objectId = o.objectId" if joined else "Object o"
    terms = [
        _restrictor(rng, "s" if joined and rng.random() < 0.5 else "o")
        for _ in range(int(rng.integers(1, 3)))
    ]
    if rng.random() < 0.3:
        terms[0] = (
            f"(NOT {terms[0]})" if rng.random() < 0.5 else f"({terms[0]} OR o.flags = {rng.integers(8)})"
        )
    if rng.random() < 0.4:
        terms.append(f"o.rFlux > {rng.uniform(0, 40):.1f}")
    select = [
        "COUNT(*)",
        "o.objectId" + (", s.sourceId" if joined else ""),
        "o.flags, COUNT(*), MIN(scisql_nanojanskyToAbMag(o.gFlux))",
    ][int(rng.integers(3))]
    group = " GROUP BY o.flags" if select.startswith("o.flags") else ""
    return f"SELECT {select} FROM {tables} WHERE {' AND '.join(terms)}{group}"


@pytest.mark.parametrize("seed", range(60))
def test_generated_restrictors(sky: FakeCluster, seed: int) -> None:
    sql = generated_query(seed)
    outcome = sky.check(sql, seed=seed)
    assert outcome is not None
