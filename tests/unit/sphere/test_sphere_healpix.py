"""HEALPix ids, neighbours and face geometry (qserv.sphere.healpix)."""

from __future__ import annotations

import healpy as hp
import numpy as np
import pytest
from sphere_truth import three_face_vertices

from qserv.errors import DataError, InvalidParameter
from qserv.sphere import healpix as H


def test_face_geometry_matches_healpy_boundaries() -> None:
    # Corners and the points at 1/4, 1/2, 3/4 of every edge, against healpy's own boundaries.
    for order in (0, 1, 4, 9):
        ns = H.nside(order)
        pix = (
            np.arange(H.n_chunks(order))
            if order < 4
            else np.random.default_rng(order).integers(0, H.n_chunks(order), 5000)
        )
        ix, iy, face = H.pixel_xyf(pix, order)
        expected = np.asarray(hp.boundaries(ns, pix, step=4, nest=True)).reshape(len(pix), 3, 16)
        # healpy walks x+y=max corner (N) first: (1,1) -> (0,1) -> (0,0) -> (1,0), 4 steps per edge.
        t = np.arange(4) / 4
        xs = np.concatenate([1 - t, np.zeros(4), t, np.ones(4)])
        ys = np.concatenate([np.ones(4), 1 - t, np.zeros(4), t])
        got = np.stack(H.face_to_vec(face[:, None], (ix[:, None] + xs) / ns, (iy[:, None] + ys) / ns), axis=1)
        assert np.abs(got - expected).max() < 1e-14, order
        centre = np.stack(H.face_to_vec(face, (ix + 0.5) / ns, (iy + 0.5) / ns), axis=1)
        assert np.abs(centre - np.asarray(hp.pix2vec(ns, pix, nest=True)).T).max() < 1e-14


def test_distortion_bounds_hold() -> None:
    # Singular values of the face map's Jacobian stay within [SIGMA_MIN, SIGMA_MAX].
    rng = np.random.default_rng(7)
    n = 200_000
    face = rng.integers(0, 12, n)
    x = rng.uniform(1e-6, 1 - 1e-6, n)
    y = rng.uniform(1e-6, 1 - 1e-6, n)
    # Points on the polar faces' meridian edges, where the minimum is attained.
    x[: n // 10] = 1 - 1e-6
    h = 1e-7
    jx = (np.stack(H.face_to_vec(face, x + h, y), -1) - np.stack(H.face_to_vec(face, x - h, y), -1)) / (2 * h)
    jy = (np.stack(H.face_to_vec(face, x, y + h), -1) - np.stack(H.face_to_vec(face, x, y - h), -1)) / (2 * h)
    s = np.linalg.svd(np.stack([jx, jy], -1), compute_uv=False)
    assert s[:, 1].min() > H.SIGMA_MIN
    assert s[:, 1].min() < H.SIGMA_MIN * 1.02  # and the bound is not loose
    assert s[:, 0].max() < H.SIGMA_MAX


def test_chunk_ids_one_million_rows() -> None:
    rng = np.random.default_rng(1)
    n = 1_000_000
    lon = rng.uniform(0, 360, n)
    lat = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    c = H.chunk_ids(lon, lat, 5)
    assert c.shape == (n,) and c.dtype == np.int64
    assert c.min() >= 0 and c.max() < H.n_chunks(5)
    # Uniform points fill every chunk about equally (12288 chunks, ~81 each).
    assert np.bincount(c, minlength=H.n_chunks(5)).min() > 30
    s = H.subchunk_ids(lon[:100_000], lat[:100_000], 8)
    assert np.array_equal(H.chunk_of_subchunk(s, 5, 8), c[:100_000])


def test_nesting_is_consistent_on_pixel_boundaries() -> None:
    # Points exactly on chunk corners and edges: the deeper pixel lies in the same chunk.
    b = np.asarray(hp.boundaries(H.nside(5), np.arange(0, H.n_chunks(5), 7), step=3, nest=True))
    v = np.transpose(b, (0, 2, 1)).reshape(-1, 3)
    lon, lat = hp.vec2ang(v, lonlat=True)
    lon = np.concatenate([lon, [0.0, 360.0 - 1e-12, 90.0, 45.0, 0.0, 0.0]])
    lat = np.concatenate([lat, [0.0, 0.0, 90.0, -90.0, 90.0, -90.0]])
    for sub in (6, 11, 20, 29):
        assert np.array_equal(H.subchunk_ids(lon, lat, sub) >> (2 * (sub - 5)), H.chunk_ids(lon, lat, 5))


def test_subchunks_of_chunk() -> None:
    subs = H.subchunks_of_chunk(77, 5, 7)
    assert len(subs) == 16 and np.all(H.chunk_of_subchunk(subs, 5, 7) == 77)
    with pytest.raises(InvalidParameter, match="sub-order"):
        H.chunk_of_subchunk([1], 5, 4)
    with pytest.raises(InvalidParameter, match="does not exist"):
        H.subchunks_of_chunk(H.n_chunks(5), 5, 7)


def test_neighbours() -> None:
    order = 4
    ids = np.arange(H.n_chunks(order))
    nb = H.neighbours(ids, order)
    assert nb.shape == (len(ids), 8) and nb.dtype == np.int64
    # Only the chunks touching the 8 three-face vertices lack one neighbour: 8 * 3 of them.
    missing = (nb < 0).sum(axis=1)
    assert missing.max() == 1 and missing.sum() == 24
    vertex_lon, vertex_lat = np.array(three_face_vertices()).T
    at_vertex = set(H.chunk_ids(vertex_lon, vertex_lat, order).tolist())
    assert at_vertex <= set(np.flatnonzero(missing).tolist())
    # Symmetric relation.
    pairs = {(a, b) for a in ids.tolist() for b in nb[a].tolist() if b >= 0}
    assert all((b, a) in pairs for a, b in pairs)
    assert H.neighbours([], order).shape == (0, 8)


def test_bad_arguments() -> None:
    with pytest.raises(InvalidParameter, match="order 30 is out of range"):
        H.check_order(30)
    with pytest.raises(InvalidParameter, match="integer"):
        H.check_order(2.5)  # type: ignore[arg-type]
    with pytest.raises(DataError, match="latitude 91"):
        H.chunk_ids([0.0, 1.0], [0.0, 91.0], 5)
    with pytest.raises(DataError, match="finite"):
        H.chunk_ids([np.nan], [0.0], 5)
    assert H.narrowest_width_deg(5) == pytest.approx(np.degrees(0.65 / 32))
