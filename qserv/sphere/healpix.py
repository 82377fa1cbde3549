"""HEALPix nested-scheme chunk and sub-chunk ids (vectorised)."""

from __future__ import annotations

import healpy as hp
import numpy as np
import numpy.typing as npt


def nside(order: int) -> int:
    return 1 << order


def n_chunks(order: int) -> int:
    """Number of chunks on the sky at ``order`` (12 * 4**order)."""
    return 12 << (2 * order)


def chunk_ids(lon: npt.ArrayLike, lat: npt.ArrayLike, order: int) -> npt.NDArray[np.int64]:
    """Nested HEALPix pixel at ``order`` of each (lon, lat) in degrees."""
    lon_a = np.asarray(lon, dtype=np.float64)
    lat_a = np.asarray(lat, dtype=np.float64)
    return np.asarray(hp.ang2pix(nside(order), lon_a, lat_a, nest=True, lonlat=True), dtype=np.int64)
