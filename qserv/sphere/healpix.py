"""HEALPix nested-scheme chunk and sub-chunk ids, neighbours and face geometry (vectorised).

A chunk is the nested HEALPix pixel of a position at the family's chunk ``order``; a
sub-chunk is the nested pixel at the deeper ``sub_order``. Sub-chunk ids are therefore
globally unique, and the chunk of a sub-chunk is a bit shift::

    chunk_of_subchunk(s, order, sub_order) == s >> 2 * (sub_order - order)

Face geometry. Every pixel of order ``k`` is the square ``[ix, ix+1] x [iy, iy+1] / 2**k``
in the continuous coordinates ``(x, y) in [0, 1]**2`` of one of the 12 base faces, and
:func:`face_to_vec` maps those coordinates to the sphere (the formulas of HEALPix's
``xyf2loc``). Pixel edges are the images of lines of constant ``x`` or ``y``: they are not
great circles, which is why :mod:`qserv.sphere.overlap` measures distances along these
curves rather than along polygons of the corners.

Two constants bound the distortion of the map, i.e. the singular values of its Jacobian
(radians of arc per unit of face coordinate) over all faces: :data:`SIGMA_MIN` and
:data:`SIGMA_MAX`. A curve of face-coordinate length ``l`` has an arc length between
``SIGMA_MIN * l`` and ``SIGMA_MAX * l``. They were computed from the Jacobian on a
1201 x 1201 grid of every face type (minimum 0.65606, attained along the polar faces'
meridian edges; maximum 1.59619) and are rounded outward; ``tests/unit/sphere`` re-checks
them on random points.
"""

from __future__ import annotations

import healpy as hp
import numpy as np
import numpy.typing as npt

from qserv.errors import DataError, InvalidParameter

MAX_ORDER = 29
"""Deepest HEALPix order healpy supports (nside = 2**29)."""

SIGMA_MIN = 0.65
"""Lower bound of the smallest singular value of the face-coordinate -> sphere map."""

SIGMA_MAX = 1.6
"""Upper bound of the largest singular value of the face-coordinate -> sphere map."""

# Ring index of each face's northernmost corner and its longitude index (HEALPix jrll, jpll).
_JRLL = np.array([2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4], dtype=np.float64)
_JPLL = np.array([1, 3, 5, 7, 0, 2, 4, 6, 1, 3, 5, 7], dtype=np.float64)


def check_order(order: int, what: str = "order") -> int:
    """Return ``order`` if it is a valid HEALPix order, else raise InvalidParameter."""
    if isinstance(order, bool) or not isinstance(order, int | np.integer):
        raise InvalidParameter(f"HEALPix {what} must be an integer, got {order!r}")
    if not 0 <= order <= MAX_ORDER:
        raise InvalidParameter(f"HEALPix {what} {order} is out of range: use 0 to {MAX_ORDER}")
    return int(order)


def nside(order: int) -> int:
    """HEALPix nside (2**order) of ``order``."""
    return 1 << order


def n_chunks(order: int) -> int:
    """Number of chunks on the sky at ``order`` (12 * 4**order)."""
    return 12 << (2 * order)


def check_coords(lon: npt.ArrayLike, lat: npt.ArrayLike) -> tuple[npt.NDArray[np.float64], ...]:
    """(lon, lat) as float64 arrays of one shape; DataError on NaN/inf or |lat| > 90."""
    lon_a, lat_a = np.broadcast_arrays(np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64))
    if not (np.isfinite(lon_a).all() and np.isfinite(lat_a).all()):
        raise DataError("positions must be finite numbers: found NaN or infinite lon/lat")
    if lat_a.size and (lat_a.min() < -90.0 or lat_a.max() > 90.0):
        bad = float(lat_a[(lat_a < -90.0) | (lat_a > 90.0)][0])
        raise DataError(f"latitude {bad} is out of range: latitudes must lie in [-90, 90] degrees")
    return lon_a, lat_a


def chunk_ids(lon: npt.ArrayLike, lat: npt.ArrayLike, order: int) -> npt.NDArray[np.int64]:
    """Nested HEALPix pixel at ``order`` of each (lon, lat) in degrees."""
    lon_a, lat_a = check_coords(lon, lat)
    return np.asarray(hp.ang2pix(nside(order), lon_a, lat_a, nest=True, lonlat=True), dtype=np.int64)


def subchunk_ids(lon: npt.ArrayLike, lat: npt.ArrayLike, sub_order: int) -> npt.NDArray[np.int64]:
    """Globally unique sub-chunk id (nested pixel at ``sub_order``) of each (lon, lat)."""
    return chunk_ids(lon, lat, check_order(sub_order, "sub-order"))


def _shift(order: int, sub_order: int) -> int:
    check_order(order)
    check_order(sub_order, "sub-order")
    if sub_order < order:
        raise InvalidParameter(
            f"sub-order {sub_order} is coarser than chunk order {order}: sub_order must be >= order"
        )
    return 2 * (sub_order - order)


def chunk_of_subchunk(subchunk_id: npt.ArrayLike, order: int, sub_order: int) -> npt.NDArray[np.int64]:
    """Chunk id (at ``order``) containing each sub-chunk id (at ``sub_order``)."""
    return np.asarray(subchunk_id, dtype=np.int64) >> _shift(order, sub_order)


def subchunks_of_chunk(chunk_id: int, order: int, sub_order: int) -> npt.NDArray[np.int64]:
    """All sub-chunk ids (at ``sub_order``) inside chunk ``chunk_id`` (at ``order``), ascending."""
    shift = _shift(order, sub_order)
    if not 0 <= chunk_id < n_chunks(order):
        raise InvalidParameter(f"chunk id {chunk_id} does not exist at order {order}")
    return np.arange(chunk_id << shift, (chunk_id + 1) << shift, dtype=np.int64)


def neighbours(chunk_ids: npt.ArrayLike, order: int) -> npt.NDArray[np.int64]:
    """The 8 neighbours of each chunk, shape ``(n, 8)``, ``-1`` where there is none.

    Columns follow healpy's order (SW, W, NW, N, NE, E, SE, S). A chunk has 7 neighbours
    when it touches one of the 8 vertices where only three base faces meet.
    """
    ids = np.atleast_1d(np.asarray(chunk_ids, dtype=np.int64))
    if ids.size == 0:
        return np.empty((0, 8), dtype=np.int64)
    return np.asarray(hp.get_all_neighbours(nside(order), ids, nest=True), dtype=np.int64).T.copy()


def pixel_xyf(
    pixels: npt.ArrayLike, order: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(ix, iy, face) of nested pixels at ``order``: the pixel is [ix, ix+1] x [iy, iy+1] / nside."""
    ix, iy, face = hp.pix2xyf(nside(order), np.asarray(pixels, dtype=np.int64), nest=True)
    return (np.asarray(ix, dtype=np.int64), np.asarray(iy, dtype=np.int64), np.asarray(face, dtype=np.int64))


def face_to_zphi(
    face: npt.ArrayLike, x: npt.ArrayLike, y: npt.ArrayLike
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(z, sin(theta), phi) of continuous face coordinates ``(x, y) in [0, 1]**2`` on ``face``.

    ``phi`` (radians) is not wrapped: it increases continuously across a face, from
    ``pi/4 * (jpll - 1)`` to ``pi/4 * (jpll + 1)`` (face 4 spans [-pi/4, pi/4]). Polar caps
    use sin(theta) = sqrt(t (2 - t)) with t = nr**2 / 3 rather than sqrt(1 - z**2), which keeps
    full precision near the poles. Within a face, z decreases with x + y falling and phi
    increases with x and decreases with y, in every regime.
    """
    f = np.asarray(face, dtype=np.int64)
    xa = np.asarray(x, dtype=np.float64)
    ya = np.asarray(y, dtype=np.float64)
    jr = _JRLL[f] - xa - ya
    north = jr < 1.0
    south = jr > 3.0
    polar = north | south
    nr = np.where(north, jr, np.where(south, 4.0 - jr, 1.0))
    t = nr * nr / 3.0
    z = np.where(north, 1.0 - t, np.where(south, t - 1.0, (2.0 - jr) * (2.0 / 3.0)))
    sth = np.sqrt(np.where(polar, t * (2.0 - t), (1.0 - z) * (1.0 + z)))
    safe_nr = np.where(nr > 0.0, nr, 1.0)  # at a pole sin(theta) = 0, so phi does not matter
    phi = (np.pi / 4.0) * (_JPLL[f] * nr + xa - ya) / safe_nr
    return z, sth, phi


def face_to_vec(
    face: npt.ArrayLike, x: npt.ArrayLike, y: npt.ArrayLike
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Unit vectors (X, Y, Z) of continuous face coordinates ``(x, y) in [0, 1]**2`` on ``face``."""
    z, sth, phi = face_to_zphi(face, x, y)
    return sth * np.cos(phi), sth * np.sin(phi), z


def lonlat_to_vec(
    lon: npt.ArrayLike, lat: npt.ArrayLike
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Unit vectors (X, Y, Z) of (lon, lat) in degrees."""
    lon_r = np.radians(np.asarray(lon, dtype=np.float64))
    lat_r = np.radians(np.asarray(lat, dtype=np.float64))
    cl = np.cos(lat_r)
    return cl * np.cos(lon_r), cl * np.sin(lon_r), np.sin(lat_r)


def narrowest_width_deg(order: int) -> float:
    """Lower bound (degrees) of the width of one pixel at ``order``.

    Any path inside one base face whose face coordinates move by 1/nside (in x or in y) is
    at least SIGMA_MIN / nside radians long. So a point whose pixel is not on the border of
    a union of pixels (a chunk, or a pixel's 3 x 3 neighbourhood) is farther than this from
    anything outside it.
    """
    return float(np.degrees(SIGMA_MIN / nside(check_order(order))))
