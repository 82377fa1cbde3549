"""Independent ground truth for the sphere tests: healpy's own pixel boundaries, sampled densely.

Nothing here uses qserv's distance code. A distance is bracketed: sampling a chunk's boundary
with consecutive samples at most ``gap`` apart gives ``min - gap/2 <= true <= min``.
"""

from __future__ import annotations

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
