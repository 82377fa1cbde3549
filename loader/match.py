"""Match rows -> chunks: each N-to-M pair stored in the chunks of both its sides.

The layout (see :mod:`qserv.catalog`): a pair whose left row is in chunk L and right row in
chunk R is stored once in L with flag 1 and once in R with flag 2, or once with flag 3 when
L = R. A pair one of whose sides has no director row (a NULL key, or a key no row has) is
stored once, in the chunk of the side that exists, with that side's bit plus 4 (it is the
pair's only copy); a pair with neither side is refused. Each pair once: ``flag & 5 <> 0``::

    left key -> chunk 7, right key -> chunk 9   =>  (…, _chunk 7, flag 1), (…, _chunk 9, flag 2)
    left key -> chunk 7, right key -> chunk 7   =>  (…, _chunk 7, flag 3)
    left key absent,     right key -> chunk 9   =>  (…, _chunk 9, flag 6)

A pair stored once because a side had no director row would be missed by a join to that
director once its row is loaded (the copy is not in that row's chunk): its key is staged in the
director index, under the match table's side (:func:`absent_keys`), and a later load of the
director refuses such a key (czar/http/ingest.py), as for a child's rows without a director.

The flag column is the one ``--flag`` names (its input values are replaced, as Qserv's
partitioner replaces them), else the hidden ``_flag``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from loader.partition import Partitioned, with_ids
from loader.read import Batch
from qserv.catalog import (
    FLAG_ALONE,
    FLAG_COLUMN,
    FLAG_LEFT,
    FLAG_RIGHT,
    MATCH_SIDE_LEFT,
    MATCH_SIDE_RIGHT,
    Table,
)
from qserv.errors import DataError


def match_rows(batch: Batch, table: Table, left: pa.Array, right: pa.Array) -> Partitioned:
    """Both copies of each match row; ``left``/``right``: chunk of each side's row, null if none."""
    assert table.flag_column and table.left_column and table.right_column
    lnull = pc.is_null(left).to_numpy(zero_copy_only=False)
    rnull = pc.is_null(right).to_numpy(zero_copy_only=False)
    neither = np.flatnonzero(lnull & rnull)
    if neither.size:
        row = int(neither[0])
        lkey = batch.data.column(table.left_column)[row].as_py()
        rkey = batch.data.column(table.right_column)[row].as_py()
        raise DataError(
            f"{batch.file.position(batch.first_row + row)}: match row has neither side: no "
            f"{table.left_director} row has key {lkey!r} and no {table.right_director} row has key {rkey!r}",
            hint="load the director rows first, or drop the row",
        )
    lchunk = pc.fill_null(left, -1).to_numpy(zero_copy_only=False).astype(np.int32)
    rchunk = pc.fill_null(right, -1).to_numpy(zero_copy_only=False).astype(np.int32)
    same = lchunk == rchunk
    at_left = np.flatnonzero(~lnull)
    at_right = np.flatnonzero(~rnull & ~same)
    left_flag = FLAG_LEFT | np.where(same, FLAG_RIGHT, 0) | np.where(rnull, FLAG_ALONE, 0)
    right_flag = FLAG_RIGHT | np.where(lnull, FLAG_ALONE, 0)
    take = np.concatenate([at_left, at_right])
    chunk = np.concatenate([lchunk[at_left], rchunk[at_right]]).astype(np.int32)
    flag = np.concatenate([left_flag[at_left], right_flag[at_right]])
    rows = pa.Table.from_batches([batch.data]).take(pa.array(take))
    if table.hidden_flag:
        rows = rows.append_column(FLAG_COLUMN, pa.array(flag, pa.int32()))
    else:
        i = rows.schema.get_field_index(table.flag_column)
        rows = rows.set_column(i, table.flag_column, pa.array(flag).cast(rows.schema.field(i).type))
    return Partitioned(with_ids(rows, chunk, None), chunk)


def absent_keys(batch: Batch, table: Table, left: pa.Array, right: pa.Array) -> list[pa.Table]:
    """Director index rows (key, chunk of the copy, side) of the keys whose director row is
    absent, one table per side that has some (the sides' key types may differ)."""
    assert table.left_column and table.right_column
    out = []
    for side, column, own, other in (
        (MATCH_SIDE_LEFT, table.left_column, left, right),
        (MATCH_SIDE_RIGHT, table.right_column, right, left),
    ):
        keys = batch.data.column(column)
        absent = pc.and_(pc.is_null(own), pc.is_valid(keys))
        if not pc.any(absent).as_py():
            continue
        rows = pc.filter(pa.table({"key": keys, "chunk": other.cast(pa.int32())}), absent)
        out.append(rows.append_column("subchunk", pa.array(np.full(rows.num_rows, side, np.int64))))
    return out
