"""Regions: coverage is a superset of the chunks of their points; SQL keeps exactly their rows."""

from __future__ import annotations

import zlib

import duckdb
import healpy as hp
import numpy as np
import pyarrow as pa
import pytest

from qserv.errors import InvalidParameter
from qserv.sphere import healpix as H
from qserv.sphere.region import Box, Circle, Region
from qserv.sphere.scisql import install_macros

BOXES = [
    Box(10.0, -5.0, 20.0, 5.0),
    Box(350.0, -10.0, 10.0, 10.0),  # wraps through 0
    Box(-10.0, 40.0, 10.0, 50.0),  # negative lon_min: wraps too
    Box(300.0, 80.0, 60.0, 95.0),  # wraps, touches the north pole (lat clamped)
    Box(0.0, -90.0, 360.0, -85.0),  # polar cap, every longitude
    Box(100.0, 85.0, 110.0, 90.0),  # a sliver to the pole
    Box(42.0, -3.0, 42.0, 3.0),  # zero width
    Box(0.0, -90.0, 360.0, 90.0),  # whole sky
    Box(179.0, 41.0, 181.0, 42.5),  # around a three-face vertex latitude
]
CIRCLES = [
    Circle(10.0, 10.0, 1.0),
    Circle(0.0, 0.0, 0.5),  # across the seam
    Circle(359.9, 89.5, 2.0),  # around the north pole, across the seam
    Circle(180.0, -90.0, 5.0),  # centred on the south pole
    Circle(90.0, 41.8103148957786, 0.3),  # on a three-face vertex
    Circle(200.0, -30.0, 120.0),  # most of the sky
    Circle(1.0, 2.0, 1e-4),
]


def _points_in(region: Box | Circle, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Points of the region: random ones, and its edges and corners exactly."""
    if isinstance(region, Box):
        lo, hi = region.lon_interval()
        lon = np.concatenate([rng.uniform(lo, hi, n), [lo, hi, lo, hi, (lo + hi) / 2, (lo + hi) / 2]])
        z = rng.uniform(np.sin(np.radians(region.lat_min)), np.sin(np.radians(region.lat_max)), n)
        lat = np.concatenate(
            [np.degrees(np.arcsin(z)), [region.lat_min, region.lat_max, region.lat_max, region.lat_min]]
        )
        lat = np.concatenate([lat, [region.lat_min, region.lat_max]])
        lon = np.where(rng.random(lon.size) < 0.5, lon % 360.0, lon)
    else:
        # Uniform in the cap around the centre, plus its rim.
        r = np.radians(region.radius)
        cos_r = rng.uniform(np.cos(r), 1.0, n)
        ang = np.concatenate([np.arccos(cos_r), np.full(64, r * (1 - 1e-12))])
        bearing = rng.uniform(0, 2 * np.pi, ang.size)
        la0, lo0 = np.radians(region.lat), np.radians(region.lon)
        la1 = np.arcsin(
            np.clip(np.sin(la0) * np.cos(ang) + np.cos(la0) * np.sin(ang) * np.cos(bearing), -1, 1)
        )
        lo1 = lo0 + np.arctan2(
            np.sin(bearing) * np.sin(ang) * np.cos(la0), np.cos(ang) - np.sin(la0) * np.sin(la1)
        )
        lon, lat = np.degrees(lo1) % 360.0, np.degrees(la1)
    lat = np.clip(lat, -90.0, 90.0)
    keep = region.contains(lon, lat)
    return lon[keep], lat[keep]


@pytest.mark.parametrize("region", [*BOXES, *CIRCLES], ids=repr)
def test_coverage_contains_every_point(region: Box | Circle) -> None:
    rng = np.random.default_rng(zlib.crc32(repr(region).encode()))
    lon, lat = _points_in(region, rng, 20_000)
    assert lon.size > 1000 or isinstance(region, Box) and region.lon_min == region.lon_max
    for order in (0, 3, 5, 7):
        cover = region.chunks(order)
        missing = set(H.chunk_ids(lon, lat, order).tolist()) - cover
        assert not missing, (order, sorted(missing)[:5])


def test_circle_coverage_is_tight() -> None:
    # Exact: no chunk farther than the radius; and within healpy's own inclusive superset.
    for c in CIRCLES:
        for order in (3, 6):
            cover = c.chunks(order)
            healpy_cover = set(
                hp.query_disc(
                    H.nside(order),
                    hp.ang2vec(c.lon, c.lat, lonlat=True),
                    np.radians(c.radius),
                    inclusive=True,
                    fact=64,
                    nest=True,
                ).tolist()
            )
            assert cover <= healpy_cover
            assert len(cover) >= 0.9 * len(healpy_cover)


def test_box_coverage_is_reasonably_tight() -> None:
    # A box well inside one chunk covers only it; a box's coverage is not much more than its area.
    order = 5
    lon_c, lat_c = hp.pix2ang(H.nside(order), 5000, nest=True, lonlat=True)
    assert Box(lon_c - 0.1, lat_c - 0.1, lon_c + 0.1, lat_c + 0.1).chunks(order) == frozenset({5000})
    # Against the chunks of a dense grid of the box's points (a lower bound of the exact set).
    for box in (Box(10.0, -5.0, 20.0, 5.0), Box(350.0, 60.0, 20.0, 70.0), Box(0.0, 85.0, 360.0, 90.0)):
        lo, hi = box.lon_interval()
        grid_lon, grid_lat = np.meshgrid(
            np.linspace(lo, hi, 1001), np.linspace(box.lat_min, box.lat_max, 1001)
        )
        seen = set(H.chunk_ids(grid_lon.ravel() % 360.0, grid_lat.ravel(), order).tolist())
        cover = box.chunks(order)
        assert seen <= cover and len(cover) <= 1.1 * len(seen), (box, len(seen), len(cover))


def test_sql_predicate_agrees_with_numpy() -> None:
    rng = np.random.default_rng(5)
    n = 50_000
    lon = np.concatenate([rng.uniform(-20, 380, n), [0.0, 360.0, 10.0, 20.0, 350.0, -10.0, 42.0]])
    lat = np.concatenate(
        [np.degrees(np.arcsin(rng.uniform(-1, 1, n))), [0.0, 0.0, -5.0, 5.0, 10.0, 90.0, 0.0]]
    )
    lat = np.concatenate([lat, [-90.0]])
    lon = np.concatenate([lon, [7.0]])
    conn = duckdb.connect()
    install_macros(conn, temporary=True)
    table = pa.table({"id": np.arange(lon.size), "ra": lon, "decl": lat})
    conn.register("pts", table)
    conn.execute(
        "CREATE TEMP TABLE p AS SELECT * FROM pts UNION ALL SELECT -1, NULL, 0.0 UNION ALL SELECT -2, 0.0, NULL"
    )
    regions: list[Box | Circle] = [
        *BOXES,
        *CIRCLES,
        Circle(20.0, 0.0, 10.0),
        Box(15.0, -1.0, 15.0 + 1e-9, 1.0),
    ]
    for region in regions:
        sql = f"SELECT id FROM p WHERE {region.sql_predicate('ra', 'decl')} ORDER BY id"
        got = conn.sql(sql).to_arrow_table().column("id").to_numpy()
        want = np.flatnonzero(region.contains(lon, lat))
        assert np.array_equal(got, want), (region, np.setxor1d(got, want)[:5])
        assert got.size > 0 or region not in BOXES


def test_regions_satisfy_protocol() -> None:
    regions: list[Region] = [Box(0, 0, 1, 1), Circle(0, 0, 1)]
    assert all(isinstance(r.chunks(2), frozenset) for r in regions)
    assert Box(0, -100, 10, 100) == Box(0, -90, 10, 90)  # latitudes clamped


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Box(0, 10, 10, 5), "lat_min 10.0 exceeds lat_max 5.0"),
        (lambda: Box(float("nan"), 0, 10, 5), "lon_min must be a finite"),
        (lambda: Box("a", 0, 10, 5), "lon_min must be a number"),  # type: ignore[arg-type]
        (lambda: Circle(0, 95, 1), "latitude 95.0 is out of range"),
        (lambda: Circle(0, 0, 0), "radius 0.0 must be positive"),
        (lambda: Circle(0, 0, 180), "below 180"),
        (lambda: Circle(0, 0, float("inf")), "radius must be a finite"),
        (lambda: Circle(0, 0, 1).chunks(30), "order 30"),
    ],
)
def test_bad_arguments(make: object, message: str) -> None:
    with pytest.raises(InvalidParameter, match=message):
        make()  # type: ignore[operator]


def test_box_entirely_off_the_sphere_is_refused() -> None:
    with pytest.raises(InvalidParameter, match="outside -90..90"):
        Box(10, 95, 20, 100)
    with pytest.raises(InvalidParameter, match="outside -90..90"):
        Box(10, -100, 20, -91)
    assert Box(10, 89, 20, 90.0000001).lat_max == 90.0
