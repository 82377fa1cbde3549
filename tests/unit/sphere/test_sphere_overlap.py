"""Exact overlap membership and point-to-chunk distance (qserv.sphere.overlap).

Ground truth never comes from the code under test: either by construction (a point walked
a known distance along the outward normal of an edge) or from healpy's boundaries sampled
densely with an error bound, skipping the rare cases the bound cannot decide.
"""

from __future__ import annotations

import healpy as hp
import numpy as np
import pytest
from sphere_truth import bracket, lonlat, three_face_vertices, vec, whole_bracket

from qserv.errors import DataError, InvalidParameter
from qserv.sphere import healpix as H
from qserv.sphere.overlap import check_overlap, distance_to_chunk, overlap_candidates, overlap_rows

ARCMIN = 1.0 / 60.0


def _special_chunks(order: int, rng: np.random.Generator, n_random: int) -> np.ndarray:
    """Random chunks plus chunks at the poles, on the 0/360 seam and at three-face vertices."""
    lon = [0.0, 359.999, 0.0, 359.999, 45.0, 135.0, 225.0, 315.0, 0.0, 180.0]
    lat = [0.0, 0.0, 30.0, -30.0, 89.99, 89.99, -89.99, -89.99, 60.0, -60.0]
    for vlon, vlat in three_face_vertices():
        for dlon, dlat in ((0.5, 0.0), (-0.5, 0.0), (0.0, 0.5), (0.0, -0.5), (0.0, 0.0)):
            lon.append((vlon + dlon) % 360.0)
            lat.append(vlat + dlat)
    # Chunks along the polar faces' meridian edges, where pixels are narrowest.
    for m in (0.0, 90.0, 180.0, 270.0):
        for la in np.linspace(45.0, 89.9, 12):
            lon += [m + 1e-6, (m - 1e-6) % 360.0, m + 1e-6]
            lat += [la, la, -la]
    special = H.chunk_ids(lon, lat, order)
    return np.unique(np.concatenate([special, rng.integers(0, H.n_chunks(order), n_random)]))


def _normal_walk(
    chunks: np.ndarray, order: int, rng: np.random.Generator, h: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Points at distance ``h`` outside ``chunks``: from a point inside an edge, along its normal.

    The edge point is at least 10% of the edge from its ends, so for h far below the chunk
    size its foot is the nearest point of the chunk: the distance to the chunk is exactly h.
    """
    ns = H.nside(order)
    ix, iy, face = H.pixel_xyf(chunks, order)
    edge = rng.integers(0, 4, chunks.size)
    t = rng.uniform(0.1, 0.9, chunks.size)
    # Edge points: x = ix or ix+1 with y along, or y = iy or iy+1 with x along.
    along_y = edge < 2
    x = np.where(along_y, ix + (edge == 1), ix + t) / ns
    y = np.where(along_y, iy + t, iy + (edge == 3)) / ns
    eps = 1e-7 / ns
    dx = np.where(along_y, 0.0, eps)
    dy = np.where(along_y, eps, 0.0)
    p = np.stack(H.face_to_vec(face, x, y), -1)
    tangent = np.stack(H.face_to_vec(face, x + dx, y + dy), -1) - np.stack(
        H.face_to_vec(face, x - dx, y - dy), -1
    )
    normal = np.cross(p, tangent)
    normal /= np.linalg.norm(normal, axis=1)[:, None]
    centre = np.asarray(hp.pix2vec(ns, chunks, nest=True)).T
    normal *= np.where(np.einsum("ij,ij->i", normal, centre - p) > 0, -1.0, 1.0)[:, None]
    hr = np.radians(h)[:, None]
    q = np.cos(hr) * p + np.sin(hr) * normal
    return lonlat(q)


def _pairs(rows: np.ndarray, chunks: np.ndarray) -> set[tuple[int, int]]:
    return set(zip(rows.tolist(), chunks.tolist(), strict=True))


@pytest.mark.parametrize(
    ("order", "overlap"),
    [(3, ARCMIN), (5, ARCMIN), (7, ARCMIN), (3, 0.5), (5, 0.5), (7, 0.25), (10, 1e-3), (5, 0.019)],
)
def test_walked_points_at_overlap_plus_minus_1e6(order: int, overlap: float) -> None:
    rng = np.random.default_rng(order * 1000 + int(overlap * 1e4))
    chunks = np.repeat(_special_chunks(order, rng, 150), 2)
    h = overlap + np.where(np.arange(chunks.size) % 2 == 0, -1e-6, 1e-6)
    lon, lat = _normal_walk(chunks, order, rng, h)
    assert not np.any(H.chunk_ids(lon, lat, order) == chunks)  # all walked out of their chunk
    # Exact distance, to 1e-9 deg.
    d = distance_to_chunk(lon, lat, chunks, order)
    assert np.abs(d - h).max() < 1e-9
    # Membership exactly when h <= overlap.
    got = _pairs(*overlap_rows(lon, lat, order, overlap))
    for i, c in enumerate(chunks.tolist()):
        assert ((i, c) in got) == (h[i] <= overlap), (order, overlap, i, c, h[i], d[i])


def _near_points(
    order: int, overlap: float, rng: np.random.Generator, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Points within ~2 overlaps of chunk boundaries, poles, the seam and three-face vertices."""
    chunks = _special_chunks(order, rng, n)
    b = np.asarray(hp.boundaries(H.nside(order), chunks, step=8, nest=True))
    corners = np.transpose(b, (0, 2, 1)).reshape(-1, 3)
    base = corners[rng.integers(0, len(corners), n)]
    extra = np.array([vec(lo, la)[0] for lo, la in three_face_vertices()] + [[0, 0, 1.0], [0, 0, -1.0]])
    base = np.concatenate([base, np.repeat(extra, 12, axis=0)])
    lon0, lat0 = lonlat(base)
    # Random offsets up to 2.5 overlaps in a random direction (a random rotation step).
    step = np.radians(rng.uniform(0, 2.5 * overlap, len(base)))
    bearing = rng.uniform(0, 2 * np.pi, len(base))
    la0, lo0 = np.radians(lat0), np.radians(lon0)
    la1 = np.arcsin(np.sin(la0) * np.cos(step) + np.cos(la0) * np.sin(step) * np.cos(bearing))
    lo1 = lo0 + np.arctan2(
        np.sin(bearing) * np.sin(step) * np.cos(la0), np.cos(step) - np.sin(la0) * np.sin(la1)
    )
    lon = np.degrees(lo1) % 360.0
    lat = np.clip(np.degrees(la1), -90.0, 90.0)
    # Exactly on the seam and at the poles, too.
    lon = np.concatenate([lon, [0.0, 360.0 - 1e-13, 0.0, 123.0, 0.0]])
    lat = np.concatenate([lat, [0.0, 10.0, 90.0, -90.0, -41.8103148957786]])
    return lon, lat


@pytest.mark.parametrize(("order", "overlap"), [(3, ARCMIN), (5, ARCMIN), (7, ARCMIN), (3, 0.5), (5, 0.5)])
def test_overlap_matches_brute_force(order: int, overlap: float) -> None:
    rng = np.random.default_rng(17 + order)
    lon, lat = _near_points(order, overlap, rng, 150)
    home = H.chunk_ids(lon, lat, order)
    got = _pairs(*overlap_rows(lon, lat, order, overlap))
    assert all(home[i] != c for i, c in got)
    # Fine order for the brute force: sub-pixels ~1/4 of the overlap.
    fine = min(29, order + int(np.ceil(np.log2(H.narrowest_width_deg(order) / overlap))) + 2)
    decided = 0
    for i in range(len(lon)):
        ring1 = H.neighbours([home[i]], order)[0]
        ring2 = H.neighbours(ring1[ring1 >= 0], order).ravel()
        cands = set(ring2[ring2 >= 0].tolist()) | set(ring1[ring1 >= 0].tolist())
        cands.discard(int(home[i]))
        p = vec(lon[i], lat[i])[0]
        for c in cands:
            lo, hi = bracket(p, c, order, 2 * overlap, fine)
            if hi <= overlap:
                assert (i, c) in got, (i, c, lo, hi)
                decided += 1
            elif lo > overlap:
                assert (i, c) not in got, (i, c, lo, hi)
                decided += 1
            if hi < np.inf:
                d = float(distance_to_chunk(lon[i], lat[i], c, order))
                assert lo - 1e-9 <= d <= hi + 1e-9, (i, c, lo, d, hi)
    assert decided > len(lon)


@pytest.mark.parametrize("order", [0, 1, 3])
def test_distance_to_far_chunks(order: int) -> None:
    # Whole-sky distances, against the whole boundary sampled densely.
    rng = np.random.default_rng(order)
    n = 40
    lon = rng.uniform(0, 360, n)
    lat = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    lat[:4] = [90.0, -90.0, 89.9999, -89.9999]
    chunks = rng.integers(0, H.n_chunks(order), n)
    d = distance_to_chunk(lon, lat, chunks, order)
    home = H.chunk_ids(lon, lat, order)
    for i in range(n):
        if home[i] == chunks[i]:
            assert d[i] == 0.0
            continue
        lo, hi = whole_bracket(vec(lon[i], lat[i])[0], int(chunks[i]), order, step=6000)
        assert lo - 1e-9 <= d[i] <= hi + 1e-9, (i, lo, d[i], hi)


def test_distance_inside_is_zero_and_broadcasts() -> None:
    lon = np.array([[10.0, 20.0], [30.0, 40.0]])
    lat = np.zeros((2, 2))
    home = H.chunk_ids(lon, lat, 5)
    assert np.array_equal(distance_to_chunk(lon, lat, home, 5), np.zeros((2, 2)))
    d = distance_to_chunk(lon, lat, int(home[0, 0]), 5)
    assert d.shape == (2, 2) and d[0, 0] == 0.0 and (d.ravel()[1:] > 5).all()


def test_one_million_uniform_points() -> None:
    rng = np.random.default_rng(3)
    n = 1_000_000
    lon = rng.uniform(0, 360, n)
    lat = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    rows, chunks = overlap_rows(lon, lat, 5, ARCMIN)
    assert rows.dtype == np.int64 and chunks.dtype == np.int64
    assert np.all(np.diff(rows) >= 0)
    assert not np.any(H.chunk_ids(lon[rows], lat[rows], 5) == chunks)
    # A point within 1' of another chunk: ~ perimeter * 1' / area of a chunk ~ 4%.
    assert 0.02 * n < rows.size < 0.06 * n
    cand_rows, cand_chunks = overlap_candidates(lon, lat, 5, ARCMIN)
    assert _pairs(rows, chunks) <= _pairs(cand_rows, cand_chunks)
    # Spot check the kept and the dropped candidates against the exact distance.
    assert (distance_to_chunk(lon[rows[:2000]], lat[rows[:2000]], chunks[:2000], 5) <= ARCMIN).all()


def test_bad_arguments() -> None:
    with pytest.raises(InvalidParameter, match="narrowest chunk"):
        overlap_rows([0.0], [0.0], 7, 0.5)
    with pytest.raises(InvalidParameter, match="positive"):
        check_overlap(5, 0.0)
    with pytest.raises(DataError, match="latitude"):
        overlap_rows([0.0], [-90.5], 5, ARCMIN)
    with pytest.raises(InvalidParameter, match="chunk ids"):
        distance_to_chunk([0.0], [0.0], [H.n_chunks(3)], 3)
    rows, chunks = overlap_rows([], [], 5, ARCMIN)
    assert rows.size == 0 and chunks.size == 0


def _corner_points(
    order: int, rng: np.random.Generator, n: int, reach_deg: float
) -> tuple[np.ndarray, np.ndarray]:
    """Points scattered within ``reach_deg`` of random chunk corners (where two edges count)."""
    ns = H.nside(order)
    chunks = rng.integers(0, H.n_chunks(order), n)
    ix, iy, face = H.pixel_xyf(chunks, order)
    cx = (ix + rng.integers(0, 2, n)) / ns
    cy = (iy + rng.integers(0, 2, n)) / ns
    corner = np.stack(H.face_to_vec(face, np.clip(cx, 0, 1), np.clip(cy, 0, 1)), -1)
    step = np.radians(reach_deg) * rng.uniform(0, 1, n)[:, None] * rng.normal(size=(n, 3))
    return lonlat(corner + step)


@pytest.mark.parametrize(("order", "overlap"), [(3, ARCMIN), (5, ARCMIN), (7, ARCMIN), (9, 1e-3), (12, 1e-4)])
def test_local_decisions_equal_the_whole_boundary_search(order: int, overlap: float) -> None:
    """Most pairs are decided from the chunk edges near the point: same answer as the search
    over the whole boundary, for uniform points and points crowding chunk corners."""
    from qserv.sphere.overlap import _boundary_distance, _within

    rng = np.random.default_rng(order)
    lon = rng.uniform(0, 360, 200_000)
    lat = np.degrees(np.arcsin(rng.uniform(-1, 1, 200_000)))
    clon, clat = _corner_points(order, rng, 50_000, 2 * overlap)
    lon, lat = np.concatenate([lon, clon]), np.concatenate([lat, clat])
    rows, chunks = overlap_candidates(lon, lat, order, overlap)
    assert rows.size > 10_000
    p = H.lonlat_to_vec(lon[rows], lat[rows])
    cap = float(np.radians(overlap))
    fast = _within(p, lon[rows], lat[rows], chunks, order, cap)
    whole = _boundary_distance(p, chunks, order, cap, exact=False) <= cap
    differ = np.flatnonzero(fast != whole)
    if differ.size:  # only a tie at the overlap itself may go either way
        d = distance_to_chunk(lon[rows[differ]], lat[rows[differ]], chunks[differ], order)
        assert np.abs(d - overlap).max() < 1e-9, (d, overlap)
    assert 0.2 < fast.mean() < 0.9
