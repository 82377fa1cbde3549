"""Overlap rows and match-table copies in the worker layout, computed by the test with healpy.

Independent of the loader (loader/partition.py, qserv/sphere/overlap.py): a row belongs to the
overlap of every chunk other than its own that ``healpy.query_disc(..., inclusive=True)``
returns for a disc of the overlap radius around it. ``inclusive`` may return a few more
chunks than those truly within the overlap; extra overlap rows change no answer (the exact
angular separation is always applied), missing ones would, and a superset has none missing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import healpy as hp
import numpy as np
import pyarrow as pa

from qserv.catalog import CHUNK_COLUMN, Partitioning, Table


def overlap_rows(stored: pa.Table, lon: str, lat: str, partitioning: Partitioning) -> pa.Table:
    """The overlap table of a director stored with ``_chunk``/``_subchunk`` (same columns,
    ``_chunk`` the chunk whose overlap the row is in)."""
    nside = 1 << partitioning.order
    ra = stored.column(lon).to_numpy(zero_copy_only=False)
    dec = stored.column(lat).to_numpy(zero_copy_only=False)
    own = stored.column(CHUNK_COLUMN).to_numpy()
    rows: list[int] = []
    chunks: list[int] = []
    radius = np.radians(partitioning.overlap)
    for i in range(len(ra)):
        if np.isnan(ra[i]) or np.isnan(dec[i]):
            continue
        vec = hp.ang2vec(ra[i], dec[i], lonlat=True)
        for c in hp.query_disc(nside, vec, radius, inclusive=True, nest=True):
            if int(c) != int(own[i]):
                rows.append(i)
                chunks.append(int(c))
    taken = stored.take(pa.array(rows, pa.int64()))
    index = taken.column_names.index(CHUNK_COLUMN)
    return taken.set_column(index, CHUNK_COLUMN, pa.array(chunks, stored.schema.field(CHUNK_COLUMN).type))


def match_copies(
    rows: pa.Table, match: Table, index: Mapping[tuple[str, str], Mapping[Any, int]]
) -> pa.Table:
    """A match table's stored copies: each row in its left row's chunk (flag bit 1) and in its
    right row's chunk (bit 2), once with both bits when the two chunks are one; a row one of
    whose director rows is missing once, in the other's chunk, with its bit and bit 4."""
    sides = []
    for director, column in (
        (match.left_director, match.left_column),
        (match.right_director, match.right_column),
    ):
        db, name = (director or "").lower().split(".")
        chunks = index[(db, name)]
        sides.append([chunks.get(k) for k in rows.column(column or "").to_pylist()])
    take: list[int] = []
    chunk: list[int] = []
    flag: list[int] = []
    for i, (cl, cr) in enumerate(zip(*sides, strict=True)):
        copies = [(cl, 1 | 2)] if cl == cr else [(cl, 1), (cr, 2)]
        if cl is None or cr is None:
            copies = [(cl if cr is None else cr, (1 if cr is None else 2) | 4)]
        for c, f in copies:
            assert c is not None, "a match row without either director row"
            take.append(i)
            chunk.append(c)
            flag.append(f)
    out = rows.take(pa.array(take, pa.int64()))
    out = out.append_column(CHUNK_COLUMN, pa.array(chunk, pa.int32()))
    return out.append_column(match.flag_column or "_flag", pa.array(flag, pa.int32()))
