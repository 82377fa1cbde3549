"""Rows -> chunks: validation, chunk/sub-chunk ids, overlap rows, routing to workers.

Pure functions over Arrow batches (no network), in the order the loader applies them::

    validate(batch, spec)                       # NULL ids/positions, latitude range
    director_rows(batch, spec, partitioning)    # -> Partitioned: rows + overlap rows + index
    child_rows(batch, spec, chunks)             # chunks looked up in the director index
    Router(order).split(rows, chunks)           # -> {worker: rows}, once placement is known

Chunks are nested HEALPix pixels, so one ``ang2pix`` at the sub-chunk order gives both ids:
the chunk is the sub-chunk id shifted right by ``2 * (sub_order - order)`` bits. Rows are
not sorted here: a worker sorts a transaction's rows by ``_chunk`` once, when it commits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from loader.read import Batch
from loader.spec import LoadSpec
from qserv.catalog import CHUNK_COLUMN, SUBCHUNK_COLUMN, Partitioning
from qserv.errors import DataError
from qserv.sphere.healpix import chunk_of_subchunk, n_chunks, subchunk_ids

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


def _with_ids(data: pa.RecordBatch | pa.Table, chunks: I32, subchunks: I64 | None) -> pa.Table:
    table = pa.Table.from_batches([data]) if isinstance(data, pa.RecordBatch) else data
    table = table.append_column(CHUNK_COLUMN, pa.array(chunks, pa.int32()))
    if subchunks is not None:
        table = table.append_column(SUBCHUNK_COLUMN, pa.array(subchunks, pa.int64()))
    return table


def director_rows(batch: Batch, spec: LoadSpec, partitioning: Partitioning) -> Partitioned:
    """Chunk and sub-chunk of every row, the overlap rows, and the director index rows."""
    assert spec.lon_column and spec.lat_column and spec.id_column
    data = batch.data
    lon = data.column(spec.lon_column).to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    lat = data.column(spec.lat_column).to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    # one ang2pix at the sub-chunk order gives both ids (nested pixels)
    sub = subchunk_ids(lon, lat, partitioning.sub_order)
    chunk = chunk_of_subchunk(sub, partitioning.order, partitioning.sub_order).astype(np.int32)
    subchunk = sub.astype(np.int64, copy=False)
    rows = _with_ids(data, chunk, subchunk)
    index = pa.table(
        {
            "key": data.column(spec.id_column),
            "chunk": pa.array(chunk, pa.int32()),
            "subchunk": pa.array(subchunk, pa.int64()),
        }
    )
    overlap, overlap_chunks = _overlap(data, lon, lat, subchunk, partitioning)
    return Partitioned(rows, chunk, overlap, overlap_chunks, index)


def _overlap(
    data: pa.RecordBatch, lon: np.ndarray, lat: np.ndarray, subchunk: I64, partitioning: Partitioning
) -> tuple[pa.Table | None, I32 | None]:
    if partitioning.overlap <= 0:
        return None, None
    from qserv.sphere.overlap import overlap_rows

    row_index, chunk = overlap_rows(lon, lat, partitioning.order, partitioning.overlap)
    row_index = np.asarray(row_index, dtype=np.int64)
    if len(row_index) == 0:
        return None, None
    ochunk = np.asarray(chunk, dtype=np.int32)
    taken = pa.Table.from_batches([data]).take(pa.array(row_index))
    return _with_ids(taken, ochunk, subchunk[row_index]), ochunk


def child_rows(batch: Batch, spec: LoadSpec, chunks: pa.Array) -> Partitioned:
    """Child rows with the chunk of their director row; refuse rows whose director is unknown."""
    assert spec.key_column
    if chunks.null_count:
        row = _first_true(pc.is_null(chunks))
        key = batch.data.column(spec.key_column)[row].as_py()
        raise DataError(
            f"{batch.file.position(batch.first_row + row)}, column {spec.key_column}: "
            f"no {spec.director} row has key {key!r}",
            hint=f"load the director table {spec.director} first, or fix the key",
        )
    chunk = chunks.to_numpy(zero_copy_only=False).astype(np.int32)
    return Partitioned(_with_ids(batch.data, chunk, None), chunk)


def chunk_counts(chunks: I32) -> dict[int, int]:
    """Rows per chunk."""
    ids, counts = np.unique(chunks, return_counts=True)
    return {int(i): int(c) for i, c in zip(ids, counts, strict=True)}


class Router:
    """Sends each row to the workers holding its chunk, as placement becomes known."""

    def __init__(self, order: int) -> None:
        self._size = n_chunks(order)
        self._masks: dict[str, npt.NDArray[np.bool_]] = {}
        self.placement: dict[int, tuple[str, ...]] = {}

    def unplaced(self, chunks: I32) -> list[int]:
        """Chunks of ``chunks`` not placed yet."""
        return [int(c) for c in np.unique(chunks) if int(c) not in self.placement]

    def add(self, placement: dict[int, tuple[str, ...]]) -> None:
        """Record placement (chunk -> workers) answered by the czar."""
        for chunk, workers in placement.items():
            self.placement[chunk] = tuple(workers)
            for w in workers:
                mask = self._masks.setdefault(w, np.zeros(self._size, dtype=np.bool_))
                mask[chunk] = True

    def split(self, rows: pa.Table, chunks: I32) -> dict[str, pa.Table]:
        """The rows each worker must receive (a row goes to every replica of its chunk)."""
        out: dict[str, pa.Table] = {}
        for worker, mask in self._masks.items():
            keep = mask[chunks]
            if keep.all():
                out[worker] = rows
            elif keep.any():
                out[worker] = rows.filter(pa.array(keep))
        return out
