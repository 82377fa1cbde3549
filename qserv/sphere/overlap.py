"""Overlap: which director rows a chunk stores from outside its boundary, decided exactly.

A row at point P belongs to the overlap of every chunk ``c`` other than its own whose
distance ``min over X in c of angle(P, X)`` is at most ``overlap`` degrees. Pixel edges are
curves of constant face coordinate (see :mod:`qserv.sphere.healpix`), not great circles, so
the distance is minimised along those curves, never along a polygon of the corners.

Algorithm of :func:`overlap_rows` (1M random points, order 5, 1 arcmin: well under a second):

1. **Prefilter.** Pick the finest order ``F`` whose pixels are wider than the overlap:
   ``SIGMA_MIN / 2**F > overlap`` (radians). A point whose order-``F`` pixel ``q`` is not on
   the border ring of its chunk is more than one such width, hence more than ``overlap``,
   from outside the chunk (a path leaving the chunk must cross the ring inside the chunk's
   face). For a border point, every point within ``overlap`` lies in ``q`` or one of its
   (7 or 8) neighbours, since leaving that 3 x 3 block also means crossing one pixel width
   of face coordinate (across face edges the charts agree along the shared edge). So the
   only chunks to test are those of ``q``'s neighbours. At order 5 and 1 arcmin, ``F = 11``
   and ~6% of points are candidates, each with one chunk to test (three near corners).
2. **Exact distance, branch and bound.** For a (point, chunk) pair, the distance is the
   minimum over the chunk's 4 edges. Each edge is bounded first by its end points and an
   upper bound of its arc length (``SIGMA_MAX / nside``): by the triangle inequality no
   point of a curve of length ``L`` between end points at distances ``d0``, ``d1`` is closer
   than ``(d0 + d1 - L) / 2``. Edges are cut in halves, surviving halves into 8 pieces (more
   at coarse orders), each bounded the same way and dropped when it cannot beat the
   threshold (the overlap, or the best distance so far); surviving pieces are minimised by
   golden-section search (48 steps: ~1e-10 deg), and the sampled end points are kept too,
   so a piece whose minimum is at an end is exact as well. For the overlap test a pair
   leaves the search as soon as it is decided either way.
3. **Local decision.** Most pairs never need step 2. When the point lies on the chunk's
   face, more than ``overlap / SIGMA_MIN`` of face coordinate from the face's edges, every
   point within the overlap lies in the box of half-width ``overlap / SIGMA_MIN`` around the
   point's face coordinates (read exactly enough from its order-29 pixel). The chunk's point
   nearest in face coordinates (the point clamped into the chunk's square) is a point of the
   chunk, so a distance to it within the overlap decides "in"; otherwise only the parts of
   the 4 edges inside the box can be close enough: none decides "out", and the few left are
   searched as in step 2 (they are shorter than its pieces). Six times faster on the
   loader's rows; the other pairs (across faces, coarse orders, wide overlaps) take step 2.

Worked example (order 5, overlap 1 arcmin): the point (54.843, 18.21) lies in chunk 100
near one of its corners; ``overlap_rows([54.843], [18.21], 5, 1 / 60)`` returns rows
``[0, 0, 0]`` and chunks ``[78, 79, 101]``, and ``distance_to_chunk`` gives its (exact)
distance to each of them, 0.0007 deg to chunk 79.
"""

from __future__ import annotations

from dataclasses import dataclass

import healpy as hp
import numpy as np
import numpy.typing as npt

from qserv.errors import InvalidParameter
from qserv.sphere.healpix import (
    MAX_ORDER,
    SIGMA_MAX,
    SIGMA_MIN,
    check_coords,
    check_order,
    chunk_ids,
    face_to_vec,
    lonlat_to_vec,
    n_chunks,
    narrowest_width_deg,
    nside,
    pixel_xyf,
)

_GOLDEN = (np.sqrt(5.0) - 1.0) / 2.0
_GOLDEN_STEPS = 48

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def check_overlap(order: int, overlap_deg: float) -> float:
    """Return ``overlap_deg`` as float if it is usable at chunk ``order``, else InvalidParameter.

    The overlap must be positive and narrower than the narrowest chunk, so that only a
    chunk's neighbours can hold a point's overlap rows (as in Qserv).
    """
    check_order(order)
    value = float(overlap_deg)
    limit = narrowest_width_deg(order)
    if not np.isfinite(value) or value <= 0.0:
        raise InvalidParameter(f"overlap {overlap_deg!r} must be a positive number of degrees")
    if value >= limit:
        raise InvalidParameter(
            f"overlap {value:.6g} deg is not narrower than the narrowest chunk ({limit:.6g} deg) "
            f"at order {order}: use a smaller overlap or a lower chunk order"
        )
    return value


def _chord_angle(c2: FloatArray) -> FloatArray:
    """Angle (radians) subtended by a chord whose squared length is ``c2``."""
    return 2.0 * np.arcsin(np.minimum(1.0, np.sqrt(c2) / 2.0))


def _chord2(
    p: tuple[FloatArray, FloatArray, FloatArray], face: IntArray, x: FloatArray, y: FloatArray
) -> FloatArray:
    ex, ey, ez = face_to_vec(face, x, y)
    return (p[0] - ex) ** 2 + (p[1] - ey) ** 2 + (p[2] - ez) ** 2


@dataclass
class _Pieces:
    """Pieces of pixel edges: (x, y) = (x0 + t dx, y0 + t dy), t in [0, 1], on ``face``.

    ``da``/``db`` are the angles (radians) from the piece's point to its two ends; ``q`` is
    the index of the (point, pixel) query the piece belongs to.
    """

    q: IntArray
    face: IntArray
    x0: FloatArray
    y0: FloatArray
    dx: FloatArray
    dy: FloatArray
    da: FloatArray
    db: FloatArray

    def take(self, sel: npt.NDArray[np.intp] | npt.NDArray[np.bool_]) -> _Pieces:
        return _Pieces(*(getattr(self, name)[sel] for name in _Pieces.__dataclass_fields__))

    def lower_bound(self) -> FloatArray:
        """No point of the piece is closer than this (triangle inequality, arc length bound)."""
        return (self.da + self.db - SIGMA_MAX * (np.abs(self.dx) + np.abs(self.dy))) / 2.0

    def split(self, k: int, p: tuple[FloatArray, FloatArray, FloatArray]) -> _Pieces:
        """Each piece cut into ``k`` equal pieces (k - 1 new boundary points evaluated)."""
        j = np.arange(1, k) / k
        xs = self.x0[:, None] + j * self.dx[:, None]
        ys = self.y0[:, None] + j * self.dy[:, None]
        pq = (p[0][self.q][:, None], p[1][self.q][:, None], p[2][self.q][:, None])
        inner = _chord_angle(_chord2(pq, self.face[:, None], xs, ys))
        d = np.concatenate([self.da[:, None], inner, self.db[:, None]], axis=1)
        start = np.arange(k) / k
        return _Pieces(
            q=np.repeat(self.q, k),
            face=np.repeat(self.face, k),
            x0=(self.x0[:, None] + start * self.dx[:, None]).ravel(),
            y0=(self.y0[:, None] + start * self.dy[:, None]).ravel(),
            dx=np.repeat(self.dx / k, k),
            dy=np.repeat(self.dy / k, k),
            da=d[:, :-1].ravel(),
            db=d[:, 1:].ravel(),
        )


def _edges(
    p: tuple[FloatArray, FloatArray, FloatArray], pixels: IntArray, order: int
) -> tuple[_Pieces, FloatArray]:
    """The 4 edges of each pixel as pieces, and the distance to its nearest corner."""
    n = pixels.shape[0]
    ix, iy, face = pixel_xyf(pixels, order)
    inv = 1.0 / nside(order)
    # Corners counter-clockwise in (x, y): (0,0) (1,0) (1,1) (0,1); edge e runs corner e -> e+1.
    cx = np.stack([ix, ix + 1, ix + 1, ix], axis=1) * inv
    cy = np.stack([iy, iy, iy + 1, iy + 1], axis=1) * inv
    pq = (p[0][:, None], p[1][:, None], p[2][:, None])
    dc = _chord_angle(_chord2(pq, face[:, None], cx, cy))
    nxt = [1, 2, 3, 0]
    edges = _Pieces(
        q=np.repeat(np.arange(n), 4),
        face=np.repeat(face, 4),
        x0=cx.ravel(),
        y0=cy.ravel(),
        dx=(cx[:, nxt] - cx).ravel(),
        dy=(cy[:, nxt] - cy).ravel(),
        da=dc.ravel(),
        db=dc[:, nxt].ravel(),
    )
    return edges, dc.min(axis=1)


def _boundary_distance(
    p: tuple[FloatArray, FloatArray, FloatArray],
    pixels: IntArray,
    order: int,
    cap: float,
    exact: bool,
) -> FloatArray:
    """Distance (radians) from each point ``p[i]`` to the boundary of pixel ``pixels[i]``.

    With ``exact`` the result is the distance. Without, it is only guaranteed on which side
    of ``cap`` the distance lies: a value <= cap is the distance to some boundary point, a
    value > cap means the distance exceeds cap (queries are not refined once decided, which
    is what makes the overlap test cheap).
    """
    best = np.full(pixels.shape[0], np.inf)
    if pixels.shape[0] == 0:
        return best
    pieces, best = _edges(p, pixels, order)

    def survivors(pc: _Pieces) -> _Pieces:
        np.minimum.at(best, pc.q, np.minimum(pc.da, pc.db))
        thr = np.minimum(best, cap)
        if not exact:
            thr = np.where(best <= cap, -np.inf, thr)  # decided: refine no further
        return pc.take(pc.lower_bound() <= thr[pc.q])

    # Halves first (cheap, and they already drop the edges far from the point), then
    # 8 pieces per surviving half (more on the long, curved edges of coarse orders).
    pieces = survivors(pieces.split(2, p))
    pieces = survivors(pieces.split(8 << max(0, 3 - order), p))
    if pieces.q.size:
        _golden(pieces, p, best, cap, exact)
    return best


def _golden(
    pc: _Pieces, p: tuple[FloatArray, FloatArray, FloatArray], best: FloatArray, cap: float, exact: bool
) -> None:
    """Golden-section search of the squared chord on each piece; lowers ``best`` in place.

    Pieces are short (1/16 of an edge) and nearly geodesic, so the distance is unimodal on
    each one; the sampled ends are already in ``best``, so a minimum at an end is exact too.
    Without ``exact``, a piece leaves the search once it has a point within ``cap`` or its
    bracket's lower bound exceeds ``cap``.
    """
    cap2 = (2.0 * np.sin(min(cap, np.pi) / 2.0)) ** 2
    q, face, x0, y0, dx, dy = pc.q, pc.face, pc.x0, pc.y0, pc.dx, pc.dy
    length = SIGMA_MAX * (np.abs(dx) + np.abs(dy))
    pt = (p[0][q], p[1][q], p[2][q])
    a = np.zeros(q.size)
    b = np.ones(q.size)
    da, db = pc.da, pc.db

    def f(tt: FloatArray) -> FloatArray:
        return _chord2(pt, face, x0 + tt * dx, y0 + tt * dy)

    c = b - _GOLDEN * (b - a)
    e = a + _GOLDEN * (b - a)
    fc = f(c)
    fe = f(e)
    for step in range(_GOLDEN_STEPS):
        left = fc < fe  # the minimum is in [a, e]
        da = np.where(left, da, _chord_angle(fc))
        db = np.where(left, _chord_angle(fe), db)
        b = np.where(left, e, b)
        a = np.where(left, a, c)
        new_t = np.where(left, b - _GOLDEN * (b - a), a + _GOLDEN * (b - a))
        fn = f(new_t)
        c, e = np.where(left, new_t, e), np.where(left, c, new_t)
        fc, fe = np.where(left, fn, fe), np.where(left, fc, fn)
        if not exact and step % 4 == 3:
            low = np.minimum(fc, fe)
            done = (low <= cap2) | ((da + db - length * (b - a)) / 2.0 > cap)
            if done.any():
                np.minimum.at(best, q[done], _chord_angle(low[done]))
                keep = ~done
                q, face, x0, y0, dx, dy, length = (
                    q[keep],
                    face[keep],
                    x0[keep],
                    y0[keep],
                    dx[keep],
                    dy[keep],
                    length[keep],
                )
                pt = (pt[0][keep], pt[1][keep], pt[2][keep])
                a, b, c, e, fc, fe, da, db = (
                    a[keep],
                    b[keep],
                    c[keep],
                    e[keep],
                    fc[keep],
                    fe[keep],
                    da[keep],
                    db[keep],
                )
                if q.size == 0:
                    return
    np.minimum.at(best, q, _chord_angle(np.minimum(fc, fe)))


def distance_to_chunk(
    lon: npt.ArrayLike, lat: npt.ArrayLike, chunk_id: npt.ArrayLike, order: int
) -> FloatArray:
    """Exact angular distance (degrees) from each (lon, lat) to chunk ``chunk_id``; 0 inside.

    ``chunk_id`` is a scalar or an array broadcast against the points. The distance is the
    minimum over all points of the HEALPix pixel (its curved edges included), to ~1e-9 deg.
    """
    check_order(order)
    lon_a, lat_a = check_coords(lon, lat)
    lon_b, lat_b, cid = np.broadcast_arrays(lon_a, lat_a, np.asarray(chunk_id, dtype=np.int64))
    shape = lon_b.shape
    lon_f, lat_f, cid_f = lon_b.ravel(), lat_b.ravel(), cid.ravel()
    if cid_f.size and (cid_f.min() < 0 or cid_f.max() >= n_chunks(order)):
        raise InvalidParameter(f"chunk ids must lie in [0, {n_chunks(order)}) at order {order}")
    out = np.zeros(lon_f.shape, dtype=np.float64)
    outside = np.flatnonzero(chunk_ids(lon_f, lat_f, order) != cid_f)
    if outside.size:
        p = lonlat_to_vec(lon_f[outside], lat_f[outside])
        out[outside] = np.degrees(_boundary_distance(p, cid_f[outside], order, np.inf, exact=True))
    return out.reshape(shape)


def _prefilter_order(order: int, overlap_rad: float) -> int:
    """Finest order whose pixels are all wider than the overlap (at least ``order``)."""
    fine = order
    while fine < MAX_ORDER and SIGMA_MIN / nside(fine + 1) > overlap_rad:
        fine += 1
    return fine


def overlap_candidates(
    lon: npt.ArrayLike, lat: npt.ArrayLike, order: int, overlap_deg: float
) -> tuple[IntArray, IntArray]:
    """Conservative (row, chunk) pairs: a superset of :func:`overlap_rows` (prefilter only)."""
    check_order(order)
    overlap_rad = float(np.radians(check_overlap(order, overlap_deg)))
    lon_a, lat_a = check_coords(lon, lat)
    lon_a, lat_a = lon_a.ravel(), lat_a.ravel()
    fine = _prefilter_order(order, overlap_rad)
    shift = 2 * (fine - order)
    pix = np.asarray(hp.ang2pix(nside(fine), lon_a, lat_a, nest=True, lonlat=True), dtype=np.int64)
    if shift:
        # The low 2*(fine-order) bits of a nested id interleave the pixel's (x, y) inside its
        # chunk: x in the even bits, y in the odd ones. A border pixel has x or y all 0 or all 1.
        even = int("01" * (shift // 2), 2)
        odd = even << 1
        lx = pix & even
        ly = pix & odd
        cand = np.flatnonzero((lx == 0) | (lx == even) | (ly == 0) | (ly == odd))
    else:
        cand = np.arange(pix.size, dtype=np.int64)
    if cand.size == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    home = pix[cand] >> shift
    nb = np.asarray(hp.get_all_neighbours(nside(fine), pix[cand], nest=True), dtype=np.int64)
    nbc = np.where(nb >= 0, nb >> shift, -1)
    nbc[nbc == home] = -1
    nbc.sort(axis=0)
    nbc[1:][nbc[1:] == nbc[:-1]] = -1  # each other chunk once per row
    slot, col = np.nonzero(nbc >= 0)
    return cand[col], nbc[slot, col]


Vec3 = tuple[FloatArray, FloatArray, FloatArray]


def _take_p(p: Vec3, sel: npt.NDArray[np.intp] | IntArray) -> Vec3:
    return (p[0][sel], p[1][sel], p[2][sel])


def _within(
    p: Vec3,
    lon: FloatArray,
    lat: FloatArray,
    chunks: IntArray,
    order: int,
    cap: float,
) -> npt.NDArray[np.bool_]:
    """Whether each point ``p[i]`` is within ``cap`` radians of chunk ``chunks[i]``.

    Most pairs are decided locally (step 3 of the module's algorithm); the others by the
    branch and bound over the chunk's whole boundary.
    """
    near = np.zeros(chunks.shape[0], dtype=bool)
    n = nside(order)
    # Face-coordinate half-width of a box around the point holding every point within cap
    # (a curve of face length l is at least SIGMA_MIN * l long), plus the point's own
    # face-coordinate error (it is read as an order-29 pixel).
    half = cap / SIGMA_MIN * (1.0 + 1e-9) + 2.0**-28
    if 2.0 * half > 1.0 / (16.0 * n):  # long local pieces: not the regime of the search
        return _boundary_distance(p, chunks, order, cap, exact=False) <= cap
    fine = 1 << MAX_ORDER
    pix = np.asarray(hp.ang2pix(fine, lon, lat, nest=True, lonlat=True), dtype=np.int64)
    ix, iy, pface = pixel_xyf(pix, MAX_ORDER)
    px, py = (ix + 0.5) / fine, (iy + 0.5) / fine
    cx, cy, cface = pixel_xyf(chunks, order)
    x0, x1, y0, y1 = cx / n, (cx + 1) / n, cy / n, (cy + 1) / n
    edge_room = np.minimum(np.minimum(px, 1.0 - px), np.minimum(py, 1.0 - py))
    local = (cface == pface) & (edge_room > half)
    general = np.flatnonzero(~local)
    if general.size:
        near[general] = (
            _boundary_distance(_take_p(p, general), chunks[general], order, cap, exact=False) <= cap
        )
    idx = np.flatnonzero(local)
    if idx.size == 0:
        return near
    pl = _take_p(p, idx)
    face = cface[idx]
    qx, qy = np.clip(px[idx], x0[idx], x1[idx]), np.clip(py[idx], y0[idx], y1[idx])
    best = _chord_angle(_chord2(pl, face, qx, qy))  # a point of the chunk: an upper bound
    undecided = np.flatnonzero(best > cap)
    near[idx[best <= cap]] = True
    if undecided.size == 0:
        return near
    pieces = _local_pieces(
        undecided, face[undecided], px[idx][undecided], py[idx][undecided], half,
        (x0[idx][undecided], x1[idx][undecided], y0[idx][undecided], y1[idx][undecided]),
    )  # fmt: skip
    if pieces.q.size:
        pieces = _Pieces(
            pieces.q, pieces.face, pieces.x0, pieces.y0, pieces.dx, pieces.dy,
            _chord_angle(_chord2(_take_p(pl, pieces.q), pieces.face, pieces.x0, pieces.y0)),
            _chord_angle(_chord2(_take_p(pl, pieces.q), pieces.face, pieces.x0 + pieces.dx, pieces.y0 + pieces.dy)),
        )  # fmt: skip
        np.minimum.at(best, pieces.q, np.minimum(pieces.da, pieces.db))
        pieces = pieces.take(best[pieces.q] > cap)
        if pieces.q.size:
            _golden(pieces, pl, best, cap, exact=False)
    near[idx[undecided]] = best[undecided] <= cap
    return near


def _local_pieces(
    q: IntArray,
    face: IntArray,
    px: FloatArray,
    py: FloatArray,
    half: float,
    square: tuple[FloatArray, FloatArray, FloatArray, FloatArray],
) -> _Pieces:
    """The parts of each chunk square's 4 edges inside the box ``(px, py) +- half``."""
    x0, x1, y0, y1 = square
    bx0, bx1, by0, by1 = px - half, px + half, py - half, py + half
    parts = []
    for fixed, lo, hi, blo, bhi, cross_lo, cross_hi, vertical in (
        (y0, x0, x1, bx0, bx1, by0, by1, False),  # bottom: y = y0, x along
        (y1, x0, x1, bx0, bx1, by0, by1, False),  # top
        (x0, y0, y1, by0, by1, bx0, bx1, True),  # left: x = x0, y along
        (x1, y0, y1, by0, by1, bx0, bx1, True),  # right
    ):
        a, b = np.maximum(lo, blo), np.minimum(hi, bhi)
        ok = np.flatnonzero((fixed >= cross_lo) & (fixed <= cross_hi) & (a <= b))
        length = (b - a)[ok]
        zero = np.zeros(ok.size)
        xs, ys = (fixed[ok], a[ok]) if vertical else (a[ok], fixed[ok])
        dx, dy = (zero, length) if vertical else (length, zero)
        parts.append((q[ok], face[ok], xs, ys, dx, dy))
    cols = [np.concatenate([part[k] for part in parts]) for k in range(6)]
    empty = np.zeros(cols[0].size)
    return _Pieces(cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], empty, empty)


def overlap_rows(
    lon: npt.ArrayLike, lat: npt.ArrayLike, order: int, overlap_deg: float
) -> tuple[IntArray, IntArray]:
    """(row_index, chunk_id) pairs: row i is in the overlap of chunk c (not its own chunk).

    A row is in the overlap of every other chunk at most ``overlap_deg`` from its position,
    the distance being exact to ~1e-9 deg. Pairs are sorted by row, then chunk.
    Raises DataError on bad positions and InvalidParameter on a bad order or overlap.
    """
    rows, chunks = overlap_candidates(lon, lat, order, overlap_deg)
    if rows.size:
        lon_a, lat_a = check_coords(lon, lat)
        p = lonlat_to_vec(lon_a.ravel()[rows], lat_a.ravel()[rows])
        cap = float(np.radians(overlap_deg))
        near = _within(p, lon_a.ravel()[rows], lat_a.ravel()[rows], chunks, order, cap)
        rows, chunks = rows[near], chunks[near]
    order_idx = np.lexsort((chunks, rows))
    return rows[order_idx], chunks[order_idx]
