"""A generated catalog for join tests: close pairs everywhere the partitioning can lose them.

On top of :func:`tests.differential.catalog.generate` (``sky``: Object, Source, Filter;
``other``: Star, Band, another family):

* ``sky.Pair`` (director): clumps of a few rows within arcseconds to arcminutes straddling chunk
  edges and corners and sub-chunk edges, at both poles, across ra = 0/360, exact duplicates, one
  dense clump, and rows close to Object rows;
* ``sky.PairMatch`` (match Object -> Pair): N-to-M pairs of nearby rows, across chunks;
* ``sky2`` (same partitioning as ``sky``: the same family) with director ``Nb`` (rows close to
  Pair and Object rows) and regular ``Kind``.

Offsets are drawn on the unit sphere (a 3-vector perturbed and normalised), so they stay
small at the poles.  :func:`near_pairs` is the test's pair truth (numpy, unit vectors).
"""

from __future__ import annotations

import dataclasses

import healpy as hp
import numpy as np
import pyarrow as pa

from qserv.catalog import FLAG_COLUMN, Column, Table, TableKind
from tests.differential.catalog import DATABASE, GeneratedCatalog, generate

SKY2 = "sky2"
TOLERANCE = 1e-9  # degrees: a pair this close to the radius has no sure answer


def _vec(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    lo, la = np.radians(lon), np.radians(lat)
    return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=-1)


def _lonlat(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    v = v / np.linalg.norm(v, axis=-1, keepdims=True)
    lon = np.degrees(np.arctan2(v[:, 1], v[:, 0])) % 360.0
    lat = np.degrees(np.arcsin(np.clip(v[:, 2], -1, 1)))
    return lon, lat


def _jitter(
    rng: np.random.Generator, lon: np.ndarray, lat: np.ndarray, sigma: float
) -> tuple[np.ndarray, np.ndarray]:
    """Positions moved by about ``sigma`` degrees in a random direction."""
    v = _vec(lon, lat) + rng.normal(0, np.radians(sigma), (len(lon), 3))
    return _lonlat(v)


def _pair_positions(rng: np.random.Generator, obj: pa.Table, order: int) -> tuple[np.ndarray, np.ndarray]:
    lon: list[np.ndarray] = []
    lat: list[np.ndarray] = []

    def clumps(cl: np.ndarray, ca: np.ndarray, per: int, sigma: float) -> None:
        a, b = _jitter(rng, np.repeat(cl, per), np.repeat(ca, per), sigma)
        lon.append(a)
        lat.append(b)

    for level, count in ((order, 120), (order + 3, 120)):  # chunk and sub-chunk edges/corners
        nside = 1 << level
        pix = rng.integers(0, hp.nside2npix(nside), count)
        bounds = hp.boundaries(nside, pix, step=2, nest=True)
        k = rng.integers(0, bounds.shape[2], count)
        bl, ba = hp.vec2ang(bounds[np.arange(count), :, k], lonlat=True)
        clumps(bl % 360.0, ba, 3, 0.004)
    clumps(np.array([0.0, 0.0]), np.array([90.0, -90.0]), 40, 0.006)  # the poles
    seam_lat = rng.uniform(-3, 3, 40)
    clumps(np.zeros(40), seam_lat, 3, 0.004)  # across ra = 0/360
    clumps(np.array([45.0]), np.array([30.0]), 150, 0.01)  # a dense clump
    pick = rng.choice(obj.num_rows, 300, replace=False)  # near Object rows
    clumps(obj.column("ra").to_numpy()[pick], obj.column("decl").to_numpy()[pick], 1, 0.004)
    out_lon, out_lat = np.concatenate(lon), np.concatenate(lat)
    dup = rng.choice(len(out_lon), 15, replace=False)  # exact duplicates
    return np.concatenate([out_lon, out_lon[dup]]), np.concatenate([out_lat, out_lat[dup]])


def near_pairs(a: pa.Table, b: pa.Table, radius: float, a_id: str, b_id: str) -> list[tuple[int, int]]:
    """(a key, b key) of every pair closer than ``radius`` degrees (numpy); asserts that no
    pair lies within TOLERANCE of the radius, where the answer would be uncertain."""
    va = _vec(a.column("ra").to_numpy(), a.column("decl").to_numpy())
    vb = _vec(b.column("ra").to_numpy(), b.column("decl").to_numpy())
    ia, ib = a.column(a_id).to_numpy(), b.column(b_id).to_numpy()
    out: list[tuple[int, int]] = []
    cos_cut = np.cos(np.radians(radius + 1e-6))
    for start in range(0, len(va), 512):
        dots = va[start : start + 512] @ vb.T
        rows, cols = np.nonzero(dots >= cos_cut)
        pa_, pb = va[start + rows], vb[cols]
        sep = np.degrees(np.arctan2(np.linalg.norm(np.cross(pa_, pb), axis=1), np.sum(pa_ * pb, axis=1)))
        assert not np.any(np.abs(sep - radius) < TOLERANCE), "a pair lies on the radius"
        keep = sep < radius
        out.extend(zip(ia[start + rows[keep]].tolist(), ib[cols[keep]].tolist(), strict=True))
    return out


def _far_pair(obj: pa.Table, pair: pa.Table, order: int, overlap: float) -> tuple[int, int]:
    """An (objectId, pairId) whose Pair row is not in the overlap of the Object row's chunk."""
    nside = 1 << order
    ra, dec = obj.column("ra").to_numpy(), obj.column("decl").to_numpy()
    pra, pdec = pair.column("ra").to_numpy(), pair.column("decl").to_numpy()
    for i in range(len(ra)):
        home = hp.ang2pix(nside, ra[i], dec[i], nest=True, lonlat=True)
        for j in range(len(pra)):
            near = hp.query_disc(
                nside,
                hp.ang2vec(pra[j], pdec[j], lonlat=True),
                np.radians(overlap),
                inclusive=True,
                nest=True,
            )
            if home not in near:
                return int(obj.column("objectId")[i].as_py()), int(pair.column("pairId")[j].as_py())
    raise AssertionError("no far pair")


def _far_pairs(
    rng: np.random.Generator, obj: pa.Table, pair: pa.Table, order: int, overlap: float, count: int
) -> list[tuple[int, int]]:
    """``count`` random (objectId, pairId) whose Pair row is not in the overlap of the Object
    row's chunk, N-to-M: some objects and some Pair rows in several, some pairs repeated."""
    nside = 1 << order
    ra, dec = obj.column("ra").to_numpy(), obj.column("decl").to_numpy()
    pra, pdec = pair.column("ra").to_numpy(), pair.column("decl").to_numpy()
    out: list[tuple[int, int]] = []
    lefts = rng.choice(len(ra), max(1, count // 3))
    rights = rng.choice(len(pra), max(1, count // 3))
    while len(out) < count:
        i, j = int(rng.choice(lefts)), int(rng.choice(rights))
        home = hp.ang2pix(nside, ra[i], dec[i], nest=True, lonlat=True)
        near = hp.query_disc(
            nside, hp.ang2vec(pra[j], pdec[j], lonlat=True), np.radians(overlap), inclusive=True, nest=True
        )
        if home not in near:
            out.append((int(obj.column("objectId")[i].as_py()), int(pair.column("pairId")[j].as_py())))
    return out + out[: count // 10]


def generate_joins(
    seed: int = 3, n_objects: int = 1500, far_match: bool = False, far_pairs: int = 0
) -> GeneratedCatalog:
    """The join catalog (``far_match``: one PairMatch row joins rows a degree apart;
    ``far_pairs``: that many more such rows, N-to-M)."""
    base = generate(seed=seed, n_objects=n_objects)
    rng = np.random.default_rng(seed + 77)
    part = base.database.partitioning
    obj = base.rows("Object")
    lon, lat = _pair_positions(rng, obj, part.order)
    n = len(lon)
    pair = pa.table(
        {
            "pairId": pa.array(rng.permutation(n).astype(np.int64) * 11 + 5, pa.int64()),
            "ra": pa.array(lon),
            "decl": pa.array(lat),
            "mag": pa.array(rng.normal(20, 2, n), mask=rng.uniform(size=n) < 0.1),
            "kind": pa.array(rng.integers(0, 5, n).astype(np.int32), pa.int32()),
        }
    )
    pick = rng.choice(n, 400, replace=False)
    nl, na = _jitter(rng, lon[pick], lat[pick], 0.003)
    nb = pa.table(
        {
            "nbId": pa.array(np.arange(400, dtype=np.int64) * 13 + 2, pa.int64()),
            "ra": pa.array(nl),
            "decl": pa.array(na),
            "kind": pa.array(rng.integers(0, 5, 400).astype(np.int32), pa.int32()),
        }
    )
    kind = pa.table(
        {"kind": pa.array(np.arange(4, dtype=np.int32)), "label": pa.array(["a", "b", "c", None])}
    )
    # N-to-M matches: every Object-Pair pair closer than 0.012 degrees, plus repeats
    close = near_pairs(obj, pair, 0.012, "objectId", "pairId")
    rows = close + [close[i] for i in rng.choice(len(close), len(close) // 5)]
    # pairs one of whose rows does not exist (stored once, in the chunk of the other)
    rows += [(a, 999_999) for a, _ in close[:6]] + [(888_888, b) for _, b in close[6:12]]
    if far_match:
        rows.append(_far_pair(obj, pair, part.order, part.overlap))
    if far_pairs:
        rows += _far_pairs(rng, obj, pair, part.order, part.overlap, far_pairs)
    match = pa.table(
        {
            "objectId": pa.array([r[0] for r in rows], pa.int64()),
            "pairId": pa.array([r[1] for r in rows], pa.int64()),
            "score": pa.array(rng.uniform(0, 1, len(rows))),
        }
    )
    sky2 = dataclasses.replace(base.database, name=SKY2)

    def cols(**types: str) -> tuple[Column, ...]:
        return tuple(Column(k, v) for k, v in types.items())

    tables = (
        Table(DATABASE, "Pair", TableKind.DIRECTOR,
              cols(pairId="BIGINT", ra="DOUBLE", decl="DOUBLE", mag="DOUBLE", kind="INTEGER"),
              id_column="pairId", lon_column="ra", lat_column="decl"),
        Table(DATABASE, "PairMatch", TableKind.MATCH, cols(objectId="BIGINT", pairId="BIGINT", score="DOUBLE"),
              left_director="sky.Object", left_column="objectId", right_director="sky.Pair",
              right_column="pairId", flag_column=FLAG_COLUMN),
        Table(SKY2, "Nb", TableKind.DIRECTOR, cols(nbId="BIGINT", ra="DOUBLE", decl="DOUBLE", kind="INTEGER"),
              id_column="nbId", lon_column="ra", lat_column="decl"),
        Table(SKY2, "Kind", TableKind.REGULAR, cols(kind="INTEGER", label="VARCHAR")),
    )  # fmt: skip
    data = {
        (DATABASE, "Pair"): pair,
        (DATABASE, "PairMatch"): match,
        (SKY2, "Nb"): nb,
        (SKY2, "Kind"): kind,
    }
    databases = (base.databases[0], sky2, *base.databases[1:])
    return GeneratedCatalog(databases, base.tables + tables, {**base.data, **data})
