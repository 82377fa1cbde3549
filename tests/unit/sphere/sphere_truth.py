"""Independent ground truth for the sphere tests: healpy's own pixel boundaries, sampled densely.

Nothing here uses qserv's distance code. A distance is bracketed: sampling a chunk's boundary
with consecutive samples at most ``gap`` apart gives ``min - gap/2 <= true <= min``.
"""

from __future__ import annotations

import math

import healpy as hp
import numpy as np
import numpy.typing as npt

Vec = npt.NDArray[np.float64]


def vec(lon: npt.ArrayLike, lat: npt.ArrayLike) -> Vec:
    """(n, 3) unit vectors."""
    return np.asarray(hp.ang2vec(np.asarray(lon), np.asarray(lat), lonlat=True)).reshape(-1, 3)


def lonlat(v: Vec) -> tuple[Vec, Vec]:
    lon, lat = hp.vec2ang(np.asarray(v).reshape(-1, 3), lonlat=True)
    return np.asarray(lon), np.asarray(lat)


def _angle(a: Vec, b: Vec) -> Vec:
    """Angle (deg) between rows of a (n, 3) and b (..., n, 3) or broadcastable, via the chord."""
    c = np.linalg.norm(a - b, axis=-1)
    return np.degrees(2 * np.arcsin(np.minimum(1.0, c / 2)))


def bracket(p: Vec, chunk: int, order: int, radius: float, fine: int, step: int = 32) -> tuple[float, float]:
    """(lower, upper) bounds (deg) of the distance from unit vector ``p`` to ``chunk``.

    Samples the boundaries of the order-``fine`` sub-pixels of ``chunk`` that meet the disc of
    ``radius`` around p. Returns (radius, inf) when none does (the chunk is farther).
    """
    sub = np.asarray(hp.query_disc(1 << fine, p, np.radians(radius), inclusive=True, fact=4, nest=True))
    sub = sub[(sub >> (2 * (fine - order))) == chunk]
    if sub.size == 0:
        return radius, np.inf
    b = np.asarray(hp.boundaries(1 << fine, sub, step=step, nest=True)).reshape(-1, 3, 4 * step)
    pts = np.transpose(b, (0, 2, 1))  # (m, 4*step, 3)
    d = _angle(p[None, None, :], pts)
    gap = _angle(pts, np.roll(pts, -1, axis=1)).max() * 1.01
    lo = float(d.min())
    return lo - gap / 2, lo


def whole_bracket(p: Vec, chunk: int, order: int, step: int) -> tuple[float, float]:
    """(lower, upper) bounds (deg) from the whole chunk boundary sampled ``step`` per edge."""
    b = np.asarray(hp.boundaries(1 << order, chunk, step=step, nest=True)).T  # (4*step, 3)
    d = _angle(p[None, :], b)
    gap = _angle(b, np.roll(b, -1, axis=0)).max() * 1.01
    lo = float(d.min())
    return lo - gap / 2, lo


def three_face_vertices() -> list[tuple[float, float]]:
    """(lon, lat) of the 8 vertices where only three base faces meet."""
    lat = float(np.degrees(np.arcsin(2.0 / 3.0)))
    return [(lon, s * lat) for s in (1.0, -1.0) for lon in (0.0, 90.0, 180.0, 270.0)]


# -- sciSQL's ellipse and convex polygon, with vectors (shared by the macro and shape tests) --


def unit(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    lo, la = np.radians(lon), np.radians(lat)
    return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=-1)


def scatter(
    rng: np.random.Generator, lon: float, lat: float, radius: float, n: int
) -> tuple[np.ndarray, ...]:
    """Random points within ``radius`` deg of (lon, lat) (some beyond), lon not reduced."""
    d = np.radians(radius) * np.sqrt(rng.uniform(0, 1.6, n))
    bearing = rng.uniform(0, 2 * np.pi, n)
    c = unit(np.array([lon]), np.array([lat]))[0]
    east = np.array([-math.sin(math.radians(lon)), math.cos(math.radians(lon)), 0.0])
    north = np.cross(c, east)
    v = np.cos(d)[:, None] * c + np.sin(d)[:, None] * (
        np.cos(bearing)[:, None] * north + np.sin(bearing)[:, None] * east
    )
    out_lat = np.degrees(np.arcsin(np.clip(v[:, 2], -1, 1)))
    out_lon = np.degrees(np.arctan2(v[:, 1], v[:, 0]))
    return out_lon + 360.0 * rng.integers(-1, 2, n), out_lat


def in_ellipse(lon: np.ndarray, lat: np.ndarray, e: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """sciSQL's ellipse test with vectors: orthographic (north, east) coordinates at the centre,
    rotated so that x runs along the major axis; returns (inside, distance to the rim in q)."""
    lon0, lat0, major, minor, pa_deg = e
    c = unit(np.array([lon0]), np.array([lat0]))[0]
    east = np.array([-math.sin(math.radians(lon0)), math.cos(math.radians(lon0)), 0.0])
    north = np.cross(c, east)
    pa = math.radians(pa_deg)
    u_major = math.cos(pa) * north + math.sin(pa) * east
    u_minor = -math.sin(pa) * north + math.cos(pa) * east
    v = unit(lon, lat)
    q = (v @ u_major / math.radians(major / 3600)) ** 2 + (v @ u_minor / math.radians(minor / 3600)) ** 2
    return (q <= 1.0) & (v @ c > 0), np.abs(q - 1.0)


def in_cpoly(
    lon: np.ndarray, lat: np.ndarray, verts: list[tuple[float, float]]
) -> tuple[np.ndarray, np.ndarray]:
    """Gnomonic projection at the vertices' mean (great circles become lines), then a 2D
    point-in-convex-polygon test by cross products; (inside, distance to an edge line)."""
    vv = unit(np.array([v[0] for v in verts]), np.array([v[1] for v in verts]))
    c = vv.sum(axis=0)
    c /= np.linalg.norm(c)
    e1 = np.cross([0.0, 0.0, 1.0], c) if abs(c[2]) < 0.9 else np.cross([1.0, 0.0, 0.0], c)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(c, e1)

    def project(v: np.ndarray) -> np.ndarray:
        return np.stack([(v @ e1) / (v @ c), (v @ e2) / (v @ c)], axis=-1)

    poly = project(vv)
    area = np.sum(poly[:, 0] * np.roll(poly[:, 1], -1) - np.roll(poly[:, 0], -1) * poly[:, 1])
    if area < 0:
        poly = poly[::-1]
    v = unit(lon, lat)
    p = project(v)
    inside = v @ c > 0
    margin = np.full(len(p), np.inf)
    for a, b in zip(poly, np.roll(poly, -1, axis=0), strict=True):
        edge = b - a
        cross = edge[0] * (p[:, 1] - a[1]) - edge[1] * (p[:, 0] - a[0])
        inside &= cross >= 0
        margin = np.minimum(margin, np.abs(cross) / np.linalg.norm(edge))
    return inside, margin
