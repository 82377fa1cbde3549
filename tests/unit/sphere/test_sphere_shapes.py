"""Ellipse and Polygon regions: coverage (also grown by a margin) holds every chunk of their
points, stays tight, and bad shapes are refused; truth from numpy and healpy's ang2pix."""

from __future__ import annotations

import math

import healpy as hp
import numpy as np
import pytest
from sphere_truth import in_cpoly, in_ellipse, scatter, unit

from qserv.errors import InvalidParameter
from qserv.sphere.region import Box, Circle
from qserv.sphere.shapes import Ellipse, Polygon, polygon_from_args

ORDER = 5
ELLIPSES = [
    Ellipse(10.0, 5.0, 7200.0, 1800.0, 30.0),
    Ellipse(359.9, 0.0, 3600.0, 600.0, 90.0),  # across the seam
    Ellipse(45.0, 89.0, 9000.0, 3000.0, 135.0),  # over the north pole
    Ellipse(0.0, -90.0, 36000.0, 36000.0, 0.0),  # a 10-degree disc on the south pole
    Ellipse(120.0, 60.0, 36000.0, 600.0, 10.0),  # long and thin, high declination
]
POLYGONS = [
    Polygon(((10.0, 0.0), (12.0, 0.0), (12.0, 2.0), (10.0, 2.0))),
    Polygon(((10.0, 2.0), (12.0, 2.0), (12.0, 0.0), (10.0, 0.0))),  # clockwise
    Polygon(((358.0, -1.0), (2.0, -1.0), (3.0, 1.5), (0.0, 3.0), (357.0, 1.5))),  # seam
    Polygon(((0.0, 80.0), (90.0, 80.0), (180.0, 80.0), (270.0, 80.0))),  # around the pole
    Polygon(((20.0, -88.0), (140.0, -87.0), (260.0, -89.0))),
    Polygon(((100.0, 30.0), (130.0, 30.0), (115.0, 60.0))),  # large
]


def _inside(region: Ellipse | Polygon, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    if isinstance(region, Ellipse):
        e = (region.lon, region.lat, region.semi_major, region.semi_minor, region.position_angle)
        return in_ellipse(lon, lat, e)[0]
    return in_cpoly(lon, lat, list(region.vertices))[0]


def _around(region: Ellipse | Polygon) -> tuple[float, float, float]:
    if isinstance(region, Ellipse):
        return region.lon, region.lat, region.semi_major / 3600.0
    vs = unit(np.array([a for a, _ in region.vertices]), np.array([b for _, b in region.vertices]))
    v = vs.sum(axis=0) / np.linalg.norm(vs.sum(axis=0))
    radius = math.degrees(float(np.arccos(np.clip(vs @ v, -1, 1)).max()))
    return math.degrees(math.atan2(v[1], v[0])), math.degrees(math.asin(v[2])), radius * 1.1


def _displace(
    rng: np.random.Generator, lon: np.ndarray, lat: np.ndarray, dist: float
) -> tuple[np.ndarray, ...]:
    """Each point moved by up to ``dist`` degrees in a random direction."""
    out_lon, out_lat = [], []
    for a, b in zip(lon, lat, strict=True):
        x, y = scatter(rng, float(a), float(b), dist, 1)
        out_lon.append(x[0])
        out_lat.append(y[0])
    return np.array(out_lon), np.array(out_lat)


@pytest.mark.parametrize("region", ELLIPSES + POLYGONS, ids=repr)
@pytest.mark.parametrize("margin", [0.0, 0.5])
def test_coverage_holds_every_point(region: Ellipse | Polygon, margin: float) -> None:
    rng = np.random.default_rng(7)
    lon0, lat0, radius = _around(region)
    lon, lat = scatter(rng, lon0, lat0, radius, 40000)
    keep = _inside(region, lon, lat)
    lon, lat = lon[keep], lat[keep]
    assert lon.size > 200
    if margin:
        lon, lat = _displace(rng, lon[:3000], lat[:3000], margin * 0.999)
    truth = set(hp.ang2pix(1 << ORDER, np.mod(lon, 360.0), lat, nest=True, lonlat=True).tolist())
    covered = region.chunks(ORDER, margin)
    assert truth <= covered, sorted(truth - covered)
    # tight: beyond the chunks of the points, only chunks next to them (the refined sliver)
    near = set(truth)
    for c in truth:
        near.update(int(n) for n in hp.get_all_neighbours(1 << ORDER, c, nest=True) if n >= 0)
    assert covered <= near


def test_polygon_coverage_matches_query_polygon() -> None:
    """The refined cover lies between healpy's exact (centre) and inclusive polygon queries."""
    for region in POLYGONS:
        verts = unit(np.array([a for a, _ in region.vertices]), np.array([b for _, b in region.vertices]))
        if in_cpoly(np.array([0.0]), np.array([0.0]), list(region.vertices[::-1]))[0].any():
            continue
        ordered = verts if _ccw(verts) else verts[::-1]
        exact = set(hp.query_polygon(1 << ORDER, ordered, nest=True).tolist())
        inclusive = set(hp.query_polygon(1 << ORDER, ordered, inclusive=True, fact=64, nest=True).tolist())
        covered = region.chunks(ORDER)
        assert exact <= covered <= inclusive | covered
        assert len(covered) <= len(inclusive) + 2


def _ccw(v: np.ndarray) -> bool:
    return float(np.cross(v[0], v[1]) @ v.sum(axis=0)) > 0


def test_grown_box_and_circle_hold_points_within_the_margin() -> None:
    rng = np.random.default_rng(8)
    for box in [Box(350.0, -5.0, 10.0, 5.0), Box(10.0, 80.0, 20.0, 89.0), Box(0.0, -90.0, 360.0, -85.0)]:
        lo, hi = box.lon_interval()
        lon = rng.uniform(lo, hi, 3000)
        lat = rng.uniform(box.lat_min, box.lat_max, 3000)
        lon, lat = _displace(rng, lon, lat, 0.999)
        truth = set(hp.ang2pix(1 << ORDER, np.mod(lon, 360.0), lat, nest=True, lonlat=True).tolist())
        assert truth <= box.chunks(ORDER, 1.0)
    circle = Circle(0.0, 89.5, 1.0)
    lon, lat = scatter(rng, 0.0, 89.5, 1.0, 3000)
    lon, lat = _displace(rng, lon, lat, 0.999)
    truth = set(hp.ang2pix(1 << ORDER, np.mod(lon, 360.0), lat, nest=True, lonlat=True).tolist())
    assert truth <= circle.chunks(ORDER, 1.0)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Ellipse(0, 95, 10, 5, 0), "ellipse: centre latitude 95.0 is out of range"),
        (lambda: Ellipse(0, 0, 10, 20, 0), "must satisfy 0 < semi-minor <= semi-major <= 36000"),
        (lambda: Ellipse(0, 0, 40000, 20, 0), "must satisfy 0 < semi-minor <= semi-major <= 36000"),
        (lambda: Ellipse(0, 0, 10, 0, 0), "must satisfy 0 < semi-minor"),
        (lambda: Ellipse(0, 0, 10, 5, math.inf), "ellipse: position_angle must be a finite number"),
        (lambda: polygon_from_args([0, 0, 1, 0, 1]), "polygon: 5 coordinates; give (lon, lat) pairs"),
        (lambda: polygon_from_args([0, 0, 1, 0]), "polygon: 2 vertices; a polygon has 3 to 20"),
        (lambda: Polygon(((0, 0), (1, 1), (1, 0), (0, 1))), "vertex 4 lies outside the edge from vertex 1"),
        (lambda: Polygon(((0, 0), (0, 0), (1, 1))), "vertices 1 and 2 coincide or are antipodal"),
        (lambda: Polygon(((0, 0), (1, 0), (1, 95))), "vertex 3 latitude 95.0 is out of range"),
        (lambda: Polygon(((0, 0), (120, 0), (240, 0))), "within one hemisphere"),
    ],
)
def test_bad_shapes(make: object, message: str) -> None:
    with pytest.raises(InvalidParameter) as e:
        make()  # type: ignore[operator]
    assert message in str(e.value)
