"""Rows -> chunks: validation, chunk/sub-chunk ids, overlap rows, routing to workers.

Pure functions over Arrow batches (no network), in the order the loader applies them::

    validate(batch, spec)                       # NULL ids/positions, latitude range
    director_rows(batch, spec, partitioning)    # -> Partitioned: rows + overlap rows + index
    child_rows(batch, spec, chunks, partitioning)   # chunks looked up in the director index
    match_rows(batch, table, left, right)       # loader/match.py: a pair in both sides' chunks
    Router(order).routes(rows, chunks)          # -> [Route(worker, forward, rows)] once placed

Chunks are nested HEALPix pixels, so one ``ang2pix`` gives every id a row needs: at the
overlap prefilter order ``F`` (the finest whose pixels are wider than the overlap; 11 for
order 5 and 1 arcmin), the sub-chunk and chunk are that pixel shifted right by
``2 * (F - sub_order)`` and ``2 * (F - order)`` bits, and only rows whose order-``F`` pixel
lies on the border ring of its chunk (~6%) can be in another chunk's overlap, so only those
are handed to :func:`qserv.sphere.overlap.overlap_rows` (which decides them exactly). Rows
are not sorted by chunk here: a worker sorts a transaction's rows by ``_chunk`` once, when it
commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from loader.read import Batch
from loader.spec import LoadSpec
from qserv.catalog import CHUNK_COLUMN, SUBCHUNK_COLUMN, Partitioning
from qserv.errors import DataError
from qserv.rpc.codec import MAX_FORWARD
from qserv.sphere.healpix import MAX_ORDER, SIGMA_MIN, chunk_ids, n_chunks, nside
from qserv.sphere.overlap import check_overlap, distance_to_chunk, overlap_rows

I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Partitioned:
    """One input batch, ready to send: rows and overlap rows carry ``_chunk`` (+ ``_subchunk``)."""

    rows: pa.Table
    chunks: I32  # chunk of each row of ``rows``
    overlap: pa.Table | None = None  # director overlap rows; ``_chunk`` = chunk whose overlap
    overlap_chunks: I32 | None = None
    index: pa.Table | None = None  # director index rows: (key, chunk, subchunk)


def _first_true(mask: pa.Array | pa.ChunkedArray) -> int:
    return int(pc.index(mask, True).as_py())


def validate(batch: Batch, spec: LoadSpec) -> None:
    """Refuse NULL keys/positions and latitudes outside [-90, 90], naming file, line, column."""
    data = batch.data
    for name in spec.required_columns:
        col = data.column(name)
        if col.null_count:
            row = _first_true(pc.is_null(col, nan_is_null=True))
            raise DataError(
                f"{batch.file.position(batch.first_row + row)}, column {name}: NULL value",
                hint=f"{name} is the table's {_role(spec, name)} and may not be NULL",
            )
    if spec.lat_column:
        for col in (spec.lon_column, spec.lat_column):
            assert col is not None
            name = col
            values = data.column(name).to_numpy(zero_copy_only=False)
            bad = ~np.isfinite(values)
            if name == spec.lat_column:
                bad |= (values < -90.0) | (values > 90.0)
            if bad.any():
                row = int(np.argmax(bad))
                raise DataError(
                    f"{batch.file.position(batch.first_row + row)}, column {name}: "
                    f"{float(values[row])!r} is not a valid {'latitude' if name == spec.lat_column else 'longitude'}",
                    hint="latitudes must lie in [-90, 90] degrees and positions be finite",
                )


def _role(spec: LoadSpec, name: str) -> str:
    if name == spec.id_column:
        return "director key (--id)"
    if name == spec.key_column:
        return "director key (--key)"
    return "position (--lon/--lat)"


def with_ids(data: pa.RecordBatch | pa.Table, chunks: I32, subchunks: I64 | None) -> pa.Table:
    table = pa.Table.from_batches([data]) if isinstance(data, pa.RecordBatch) else data
    table = table.append_column(CHUNK_COLUMN, pa.array(chunks, pa.int32()))
    if subchunks is not None:
        table = table.append_column(SUBCHUNK_COLUMN, pa.array(subchunks, pa.int64()))
    return table


def prefilter_order(order: int, overlap_deg: float) -> int:
    """Finest order whose pixels are all wider than the overlap (at least ``order``).

    The same rule as :mod:`qserv.sphere.overlap` uses for its own prefilter, so the border
    rows found here are a superset of the rows it would test (any order between ``order``
    and this one would be too, only with more candidates).
    """
    overlap_rad = float(np.radians(check_overlap(order, overlap_deg)))
    fine = order
    while fine < MAX_ORDER and SIGMA_MIN / nside(fine + 1) > overlap_rad:
        fine += 1
    return fine


def _border(pix: I64, shift: int) -> npt.NDArray[np.intp]:
    """Rows whose pixel (``shift`` bits finer than the chunk) is on its chunk's border ring."""
    if shift == 0:
        return np.arange(pix.size, dtype=np.intp)
    # The low bits of a nested id interleave the pixel's (x, y) inside its chunk: x in the
    # even bits, y in the odd ones. A border pixel has x or y all 0 or all 1.
    even = int("01" * (shift // 2), 2)
    odd = even << 1
    lx = pix & even
    ly = pix & odd
    return np.flatnonzero((lx == 0) | (lx == even) | (ly == 0) | (ly == odd))


def director_rows(batch: Batch, spec: LoadSpec, partitioning: Partitioning) -> Partitioned:
    """Chunk and sub-chunk of every row, the overlap rows, and the director index rows."""
    assert spec.lon_column and spec.lat_column and spec.id_column
    data = batch.data
    lon = data.column(spec.lon_column).to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    lat = data.column(spec.lat_column).to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    order, sub_order, overlap = partitioning.order, partitioning.sub_order, partitioning.overlap
    fine = max(sub_order, prefilter_order(order, overlap)) if overlap > 0 else sub_order
    # one ang2pix gives chunk, sub-chunk and the overlap prefilter (nested pixels)
    pix = chunk_ids(lon, lat, fine)
    subchunk = pix >> (2 * (fine - sub_order))
    chunk = (pix >> (2 * (fine - order))).astype(np.int32)
    rows = with_ids(data, chunk, subchunk)
    index = pa.table(
        {
            "key": data.column(spec.id_column),
            "chunk": pa.array(chunk, pa.int32()),
            "subchunk": pa.array(subchunk, pa.int64()),
        }
    )
    if overlap <= 0:
        return Partitioned(rows, chunk, None, None, index)
    border = _border(pix, 2 * (fine - order))
    overlap_table, overlap_chunks = _overlap(data, lon, lat, border, subchunk, partitioning)
    return Partitioned(rows, chunk, overlap_table, overlap_chunks, index)


def _overlap(
    data: pa.RecordBatch,
    lon: np.ndarray,
    lat: np.ndarray,
    border: npt.NDArray[np.intp],
    subchunk: I64,
    partitioning: Partitioning,
) -> tuple[pa.Table | None, I32 | None]:
    if border.size == 0:
        return None, None
    # only border rows can be near another chunk: the exact test runs on those alone
    found, chunk = overlap_rows(lon[border], lat[border], partitioning.order, partitioning.overlap)
    if len(found) == 0:
        return None, None
    row_index = border[np.asarray(found, dtype=np.int64)]
    ochunk = np.asarray(chunk, dtype=np.int32)
    taken = pa.Table.from_batches([data]).take(pa.array(row_index))
    return with_ids(taken, ochunk, subchunk[row_index]), ochunk


def child_rows(batch: Batch, spec: LoadSpec, chunks: pa.Array, partitioning: Partitioning) -> Partitioned:
    """Child rows with the chunk of their director row (``chunks``: null where none has the key).

    Without position columns a row whose director is unknown is refused. With them (``--lon
    --lat``) such a row goes to the chunk of its own position, and a row farther than the
    overlap from its director row's chunk is refused: a spatial restriction on the child
    covers its region grown by the overlap, which would miss that row.
    """
    assert spec.key_column
    if spec.lon_column is None or spec.lat_column is None:
        if chunks.null_count:
            row = _first_true(pc.is_null(chunks))
            key = batch.data.column(spec.key_column)[row].as_py()
            raise DataError(
                f"{batch.file.position(batch.first_row + row)}, column {spec.key_column}: "
                f"no {spec.director} row has key {key!r}",
                hint=f"load the director table {spec.director} first, fix the key, or give the "
                "child's own position columns (--lon --lat) to keep such rows",
            )
        chunk = chunks.to_numpy(zero_copy_only=False).astype(np.int32)
        return Partitioned(with_ids(batch.data, chunk, None), chunk)
    lon = batch.data.column(spec.lon_column).to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    lat = batch.data.column(spec.lat_column).to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    own = chunk_ids(lon, lat, partitioning.order).astype(np.int32)
    absent = pc.is_null(chunks).to_numpy(zero_copy_only=False)
    chunk = np.where(absent, own, pc.fill_null(chunks, 0).to_numpy(zero_copy_only=False)).astype(np.int32)
    elsewhere = np.flatnonzero(~absent & (chunk != own))
    if elsewhere.size:
        distance = distance_to_chunk(lon[elsewhere], lat[elsewhere], chunk[elsewhere], partitioning.order)
        far = np.flatnonzero(distance > partitioning.overlap)
        if far.size:
            i = int(far[0])
            row = int(elsewhere[i])
            key = batch.data.column(spec.key_column)[row].as_py()
            raise DataError(
                f"{batch.file.position(batch.first_row + row)}: child row with key {key!r} lies "
                f"{float(distance[i]):.6f}° from chunk {int(chunk[row])} of its {spec.director} row, "
                f"farther than the overlap {partitioning.overlap:.6f}°",
                hint="a spatial restriction on the child would miss it: fix its position, load it "
                "without --lon/--lat, or choose a larger --overlap (qserv database create)",
            )
    # the keys of rows without a director row, so that a later load of the director refuses them
    orphan = np.flatnonzero(
        absent & ~pc.is_null(batch.data.column(spec.key_column)).to_numpy(zero_copy_only=False)
    )
    index = None
    if orphan.size:
        index = pa.table(
            {
                "key": batch.data.column(spec.key_column).take(pa.array(orphan)),
                "chunk": pa.array(chunk[orphan], pa.int32()),
                "subchunk": pa.array(np.zeros(orphan.size, dtype=np.int64)),
            }
        )
    return Partitioned(with_ids(batch.data, chunk, None), chunk, index=index)


def chunk_counts(chunks: I32) -> dict[int, int]:
    """Rows per chunk."""
    counts = np.bincount(chunks) if chunks.size else np.zeros(0, dtype=np.int64)
    ids = np.flatnonzero(counts)
    return dict(zip(ids.tolist(), counts[ids].tolist(), strict=True))


@dataclass(frozen=True)
class Route:
    """Rows sent to ``worker``, which stages them and forwards them to ``forward``."""

    worker: str
    forward: tuple[str, ...]
    rows: pa.Table


class Router:
    """Sends each row once, to one replica's worker, as placement becomes known.

    A chunk's *route* is its replica workers with the one the loader sends to first (the
    others are staged by that worker, worker to worker); the first is rotated by chunk id so
    that every worker receives its share of the rows. Chunks with the same route form a
    *group*; :meth:`routes` orders a batch's rows by group and chunk (one ``take``) and hands
    each group a zero-copy slice, instead of filtering (copying) the batch once per worker.
    """

    def __init__(self, order: int) -> None:
        self._size = n_chunks(order)
        self._group = np.full(self._size, -1, dtype=np.int32)  # chunk -> group, -1: unplaced
        self._groups: dict[tuple[str, ...], int] = {}
        self._members: list[tuple[str, ...]] = []
        self.placement: dict[int, tuple[str, ...]] = {}

    def unplaced(self, chunks: I32) -> list[int]:
        """Chunks of ``chunks`` not placed yet."""
        missing = chunks[self._group[chunks] < 0]
        return np.unique(missing).tolist() if missing.size else []

    def add(self, placement: dict[int, tuple[str, ...]]) -> None:
        """Record placement (chunk -> workers) answered by the czar."""
        for chunk, workers in placement.items():
            members = tuple(workers)
            self.placement[chunk] = members
            first = chunk % len(members) if members else 0
            route = members[first:] + members[:first]
            group = self._groups.get(route)
            if group is None:
                group = self._groups[route] = len(self._members)
                self._members.append(route)
            self._group[chunk] = group

    def _order(self, group: npt.NDArray[np.int32], chunks: I32) -> npt.NDArray[np.intp]:
        """Row order by group, then chunk: each worker stages runs sorted by chunk, which makes
        its commit's ``ORDER BY _chunk`` a quarter cheaper than over rows in arrival order.

        Two stable radix passes (numpy sorts 16-bit keys by radix) where ids fit 16 bits, which
        costs what one sort by group alone did.
        """
        if self._size > 1 << 16 or len(self._members) > 1 << 15:
            return np.argsort(group.astype(np.int64) * self._size + chunks, kind="stable")
        by_chunk = np.argsort(chunks.astype(np.uint16), kind="stable")
        return by_chunk[np.argsort(group[by_chunk].astype(np.int16), kind="stable")]

    def routes(self, rows: pa.Table, chunks: I32) -> list[Route]:
        """Where each row goes: to its chunk's first replica, forwarded to the others."""
        if rows.num_rows == 0:
            return []
        group = self._group[chunks]
        if group.min() < 0:
            raise DataError(f"chunk {int(chunks[np.argmin(group)])} has no placement")
        counts = np.bincount(group, minlength=len(self._members))
        present = np.flatnonzero(counts)
        if present.size == 1:
            route = self._members[present[0]]
            return [Route(route[0], route[1:], rows.take(pa.array(self._order(group, chunks))))]
        ordered = rows.take(pa.array(self._order(group, chunks)))
        starts = np.concatenate([[0], np.cumsum(counts)])
        out = []
        for g in present.tolist():
            route = self._members[g]
            out.append(Route(route[0], route[1:], ordered.slice(int(starts[g]), int(counts[g]))))
        return out


def fan_out(workers: Sequence[str], turn: int) -> list[tuple[str, ...]]:
    """Workers in groups of at most ``1 + MAX_FORWARD``: each group's first is sent a regular
    table's batch and forwards it to the rest; ``turn`` rotates who is first, batch by batch."""
    if not workers:
        return []
    k = turn % len(workers)
    rotated = tuple(workers[k:]) + tuple(workers[:k])
    size = 1 + MAX_FORWARD
    return [rotated[i : i + size] for i in range(0, len(rotated), size)]
