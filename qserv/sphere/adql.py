"""ADQL's shapes on the sphere: a BOX's vertices, a convex POLYGON's winding, exact areas.

ADQL 2.1 (after STC) defines a BOX by its centre and its width and height: a cross centred on
the centre has arms along the centre's east and north directions, each a great-circle arc of
half the width (height); the sides are the great circles through the arms' ends at right
angles to the arms. So a BOX is a spherical quadrilateral, not a longitude/latitude box: in
the frame where the centre is (1, 0, 0), east (0, 1, 0) and north (0, 0, 1), the side through
the east arm's end is the plane ``y = x tan(w/2)``, and the vertices are the directions
``(1, ±tan(w/2), ±tan(h/2))``. A box centred on a pole has no east: it is refused.

A POLYGON's sides are great-circle arcs between consecutive vertices. Only convex polygons are
accepted (``scisql_s2PtInCPoly`` keeps the points of a convex polygon); whichever way the
vertices wind, the polygon is the convex region they bound, and its vertices are returned
counter-clockwise (the interior on the left, seen from inside the sphere: every vertex on the
positive side of each edge's plane ``v_i x v_{i+1}``).

On the equator the east and west sides are meridians; the top and bottom sides are not
parallels (they bulge towards the pole at the box's middle):

>>> [tuple(round(x, 6) for x in v) for v in box_vertices(0.0, 0.0, 2.0, 2.0)]
[(359.0, -0.999848), (1.0, -0.999848), (1.0, 0.999848), (359.0, 0.999848)]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

Vertex = tuple[float, float]  # (lon, lat) in degrees

# Vertices closer than this (radians, ~2e-5 arcsec) are the same vertex; a polygon whose
# vertex lies this close to the plane of another edge is not strictly convex.
_EPS = 1e-10


class ShapeError(ValueError):
    """A shape ADQL cannot express here; the message says which and why."""


def unit_vector(lon: float, lat: float) -> npt.NDArray[np.float64]:
    lo, la = math.radians(lon), math.radians(lat)
    return np.array([math.cos(la) * math.cos(lo), math.cos(la) * math.sin(lo), math.sin(la)])


def lonlat(v: npt.NDArray[np.float64]) -> Vertex:
    """(lon in [0, 360), lat) of a direction."""
    x, y, z = (float(c) for c in v / np.linalg.norm(v))
    lon = math.degrees(math.atan2(y, x)) % 360.0
    return (0.0 if lon == 360.0 else lon), math.degrees(math.asin(max(-1.0, min(1.0, z))))


def box_vertices(lon: float, lat: float, width: float, height: float) -> tuple[Vertex, ...]:
    """The four vertices of ADQL's BOX (see the module doc), counter-clockwise."""
    if not (0.0 < width < 180.0 and 0.0 < height < 180.0):
        raise ShapeError(f"BOX width {width:g} and height {height:g} must be above 0 and below 180 degrees")
    if not -90.0 < lat < 90.0:
        raise ShapeError(
            f"BOX centred at latitude {lat:g} has no orientation (ADQL's box is aligned with "
            "the centre's east and north): centre it off the pole or use a CIRCLE or POLYGON"
        )
    centre = unit_vector(lon, lat)
    lo, la = math.radians(lon), math.radians(lat)
    east = np.array([-math.sin(lo), math.cos(lo), 0.0])
    north = np.array([-math.sin(la) * math.cos(lo), -math.sin(la) * math.sin(lo), math.cos(la)])
    ta, tb = math.tan(math.radians(width / 2)), math.tan(math.radians(height / 2))
    corners = ((-1, -1), (1, -1), (1, 1), (-1, 1))
    return tuple(lonlat(centre + i * ta * east + j * tb * north) for i, j in corners)


def convex_ccw(vertices: Sequence[Vertex]) -> tuple[Vertex, ...]:
    """The vertices of a convex spherical polygon, counter-clockwise; ShapeError if not convex."""
    if len(vertices) < 3:
        raise ShapeError(f"POLYGON needs at least 3 vertices, got {len(vertices)}")
    vectors = [unit_vector(lon, lat) for lon, lat in vertices]
    n = len(vectors)
    for i in range(n):
        if np.linalg.norm(np.cross(vectors[i], vectors[(i + 1) % n])) < _EPS:
            j = (i + 1) % n
            raise ShapeError(
                f"POLYGON vertices {i + 1} and {j + 1} coincide or are antipodal: the side between "
                "them is not defined"
            )
    for order in (list(range(n)), list(reversed(range(n)))):
        if _is_convex_ccw([vectors[i] for i in order]):
            return tuple(vertices[i] for i in order)
    raise ShapeError(
        "POLYGON is not convex (or its sides cross): only convex polygons are supported; "
        "split it into convex parts joined with OR"
    )


def _is_convex_ccw(vectors: Sequence[npt.NDArray[np.float64]]) -> bool:
    n = len(vectors)
    for i in range(n):
        normal = np.cross(vectors[i], vectors[(i + 1) % n])
        normal /= np.linalg.norm(normal)
        others = [vectors[k] for k in range(n) if k not in (i, (i + 1) % n)]
        if any(float(normal @ v) <= _EPS for v in others):
            return False
    return True


def polygon_area(vertices: Sequence[Vertex]) -> float:
    """Exact area in square degrees of a convex polygon: the sum of its fan triangles' spherical
    excesses, each from ``tan(E/2) = |a.(b x c)| / (1 + a.b + b.c + c.a)``."""
    vectors = [unit_vector(lon, lat) for lon, lat in vertices]
    a = vectors[0]
    total = 0.0
    for b, c in zip(vectors[1:-1], vectors[2:], strict=True):
        numerator = abs(float(a @ np.cross(b, c)))
        denominator = 1.0 + float(a @ b) + float(b @ c) + float(c @ a)
        total += 2.0 * math.atan2(numerator, denominator)
    return total * (180.0 / math.pi) ** 2


def circle_area_sql(radius: str) -> str:
    """A DuckDB expression for the area in square degrees of a cone of ``radius`` degrees:
    ``2 pi (1 - cos r)`` written as ``4 pi sin^2(r/2)``, exact also for small radii."""
    return f"(4.0 * pi() * pow(sin(radians({radius}) / 2.0), 2) * pow(180.0 / pi(), 2))"
