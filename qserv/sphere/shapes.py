"""Ellipses and convex polygons: regions inside a cap, covered by refining pixels.

Both keep the rows sciSQL keeps (``scisql_s2PtInEllipse``, ``scisql_s2PtInCPoly``; see
:mod:`qserv.sphere.scisql`) and cover them conservatively-but-tightly:

1. candidates: the pixels at chunk order + 3 that healpy's inclusive ``query_disc`` returns
   for the region's bounding cap (grown by the margin);
2. a candidate is dropped only when no point within its radius ``r`` (``max_pixrad`` plus
   slack) of its centre can be in the region grown by ``margin``: for a polygon, when its
   centre is farther than ``chord(r) + chord(margin)`` outside one edge plane; for an ellipse,
   when its centre's orthographic projection at the ellipse centre (which shrinks distances)
   lies outside the support lines, in 32 directions, of the ellipse grown by that much;
3. the chunks of the survivors.

Example::

    >>> sorted(Polygon(((10.0, 0.0), (12.0, 0.0), (12.0, 2.0), (10.0, 2.0))).chunks(5))
    [4495, 4506, 4517, 4528, 4529, 4530]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import healpy as hp
import numpy as np
import numpy.typing as npt

from qserv.errors import InvalidParameter
from qserv.sphere.healpix import check_order, nside
from qserv.sphere.region import _finite, _lit
from qserv.sphere.scisql import CPOLY_MAX_VERTICES, cpoly_edges, cpoly_sql

_EXTRA_ORDERS = 3
_SLACK = 1e-9  # radians: above float round-off in the tests below and in the SQL
_DIRECTIONS = 32

Vectors = npt.NDArray[np.float64]


def _chord(angle: float) -> float:
    return 2.0 * math.sin(min(angle, math.pi) / 2.0)


def _unit(lon: float, lat: float) -> Vectors:
    lo, la = math.radians(lon), math.radians(lat)
    return np.array([math.cos(la) * math.cos(lo), math.cos(la) * math.sin(lo), math.sin(la)])


def _refine(
    centre: Vectors,
    cap: float,
    order: int,
    margin: float,
    may_meet: Callable[[Vectors, float], npt.NDArray[np.bool_]],
) -> frozenset[int]:
    """Chunks of the deep pixels in the cap (radians) that ``may_meet`` keeps (see the module doc)."""
    check_order(order)
    deep = min(order + _EXTRA_ORDERS, 29)
    ns = nside(deep)
    radius = min(cap + math.radians(max(margin, 0.0)), math.pi)
    cand = np.asarray(
        hp.query_disc(ns, centre, radius + _SLACK, inclusive=True, fact=4, nest=True), dtype=np.int64
    )
    if cand.size == 0:
        return frozenset()
    centres = np.asarray(hp.pix2vec(ns, cand, nest=True), dtype=np.float64).T
    # max_pixrad is the centre-to-corner distance; edges are curves, so allow 10% more
    reach = _chord(hp.max_pixrad(ns) * 1.1) + _chord(math.radians(max(margin, 0.0))) + _SLACK
    keep = may_meet(centres, reach)
    return frozenset((cand[keep] >> (2 * (deep - order))).tolist())


@dataclass(frozen=True)
class Ellipse:
    """sciSQL's ellipse: centre (degrees), semi-axes (arcsec), position angle (degrees east of north)."""

    lon: float
    lat: float
    semi_major: float  # arcsec
    semi_minor: float  # arcsec
    position_angle: float  # degrees east of north

    def __post_init__(self) -> None:
        values = [
            _finite(n, getattr(self, n), "ellipse")
            for n in ("lon", "lat", "semi_major", "semi_minor", "position_angle")
        ]
        for name, value in zip(
            ("lon", "lat", "semi_major", "semi_minor", "position_angle"), values, strict=True
        ):
            object.__setattr__(self, name, value)
        if not -90.0 <= self.lat <= 90.0:
            raise InvalidParameter(
                f"ellipse: centre latitude {self.lat} is out of range: use [-90, 90] degrees"
            )
        if not 0.0 < self.semi_minor <= self.semi_major <= 36000.0:
            raise InvalidParameter(
                f"ellipse: semi-axes {self.semi_major}, {self.semi_minor} arcsec must satisfy "
                "0 < semi-minor <= semi-major <= 36000 (10 degrees), as in sciSQL"
            )

    def sql_predicate(self, lon: str, lat: str) -> str:
        """``scisql_s2PtInEllipse(lon, lat, ...) = 1`` (NULL positions are not kept)."""
        args = (self.lon, self.lat, self.semi_major, self.semi_minor, self.position_angle)
        return f"(scisql_s2PtInEllipse({lon}, {lat}, {', '.join(_lit(v) for v in args)}) = 1)"

    def chunks(self, order: int, margin: float = 0.0) -> frozenset[int]:
        """Chunks meeting the ellipse grown by ``margin`` (see the module doc)."""
        major = math.radians(self.semi_major / 3600.0)
        minor = math.radians(self.semi_minor / 3600.0)
        centre = _unit(self.lon, self.lat)
        east = np.array([-math.sin(math.radians(self.lon)), math.cos(math.radians(self.lon)), 0.0])
        north = np.cross(centre, east)
        pa = math.radians(self.position_angle)
        u = math.cos(pa) * north + math.sin(pa) * east  # along the major axis
        w = -math.sin(pa) * north + math.cos(pa) * east
        theta = np.linspace(0.0, 2.0 * math.pi, _DIRECTIONS, endpoint=False)
        cos_t, sin_t = np.cos(theta), np.sin(theta)
        support = np.sqrt((major * cos_t) ** 2 + (minor * sin_t) ** 2)

        def may_meet(v: Vectors, reach: float) -> npt.NDArray[np.bool_]:
            x, y = v @ u, v @ w
            # the projection of the pixel's centre within `reach` of the ellipse: inside every
            # support line grown by `reach` (the polygon of 32 tangents circumscribes it)
            inside = (np.outer(x, cos_t) + np.outer(y, sin_t) <= support + reach).all(axis=1)
            return np.asarray(inside & (v @ centre > -reach))

        cap = math.asin(min(1.0, major))  # sin(distance) <= semi-major inside the ellipse
        return _refine(centre, cap, order, margin, may_meet)


@dataclass(frozen=True)
class Polygon:
    """A convex spherical polygon (sciSQL ``s2PtInCPoly``): 3 to 20 (lon, lat) vertices.

    Vertices may be listed counter-clockwise or clockwise (as in sciSQL); they must form a
    convex polygon smaller than a hemisphere, listed in order around it. Edges are great
    circle arcs; a point on an edge is inside.
    """

    vertices: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        n = len(self.vertices)
        if not 3 <= n <= CPOLY_MAX_VERTICES:
            raise InvalidParameter(f"polygon: {n} vertices; a polygon has 3 to {CPOLY_MAX_VERTICES}")
        verts = tuple(
            (_finite(f"lon{i + 1}", a, "polygon"), _finite(f"lat{i + 1}", b, "polygon"))
            for i, (a, b) in enumerate(self.vertices)
        )
        object.__setattr__(self, "vertices", verts)
        for i, (_, lat) in enumerate(verts):
            if not -90.0 <= lat <= 90.0:
                raise InvalidParameter(
                    f"polygon: vertex {i + 1} latitude {lat} is out of range: use [-90, 90]"
                )
        edges = cpoly_edges(verts)
        assert edges is not None
        norms = np.linalg.norm(edges, axis=1)
        if (norms < 1e-12).any():
            i = int(np.argmax(norms < 1e-12))
            raise InvalidParameter(
                f"polygon: vertices {i + 1} and {(i + 1) % n + 1} coincide or are antipodal: no edge joins them"
            )
        vecs = np.array([_unit(a, b) for a, b in verts])
        side = (edges / norms[:, None]) @ vecs.T  # side[i, j]: vertex j against edge i
        if (side < -1e-12).any():
            i, j = (int(k) for k in np.argwhere(side < -1e-12)[0])
            raise InvalidParameter(
                f"polygon: vertex {j + 1} lies outside the edge from vertex {i + 1} to vertex "
                f"{(i + 1) % n + 1}: the vertices must form a convex polygon, listed in order "
                "around it (either direction)"
            )
        centre = vecs.sum(axis=0)
        if np.linalg.norm(centre) < 1e-12 or (vecs @ centre <= 0.0).any():
            raise InvalidParameter("polygon: the vertices must lie within one hemisphere")

    def sql_predicate(self, lon: str, lat: str) -> str:
        """sciSQL's ``s2PtInCPoly`` test written out (NULL positions are not kept)."""
        return f"(({cpoly_sql(lon, lat, self.vertices)}) = 1)"

    def chunks(self, order: int, margin: float = 0.0) -> frozenset[int]:
        """Chunks meeting the polygon grown by ``margin`` (see the module doc)."""
        edges = cpoly_edges(self.vertices)
        assert edges is not None
        normals = edges / np.linalg.norm(edges, axis=1)[:, None]
        vecs = np.array([_unit(a, b) for a, b in self.vertices])
        centre = vecs.sum(axis=0)
        centre /= np.linalg.norm(centre)
        cap = float(np.arccos(np.clip(vecs @ centre, -1.0, 1.0)).max())

        def may_meet(v: Vectors, reach: float) -> npt.NDArray[np.bool_]:
            return np.asarray((v @ normals.T >= -reach).all(axis=1))

        return _refine(centre, cap, order, margin, may_meet)


def polygon_from_args(values: Sequence[float]) -> Polygon:
    """A polygon from a flat (lon1, lat1, lon2, lat2, ...) argument list."""
    if len(values) % 2:
        raise InvalidParameter(f"polygon: {len(values)} coordinates; give (lon, lat) pairs")
    return Polygon(tuple((values[i], values[i + 1]) for i in range(0, len(values), 2)))
