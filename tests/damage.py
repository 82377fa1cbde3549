"""Damaging a DuckDB data file on disk as a failing disk would: bytes of one data block flipped.

DuckDB's file is three 4 KiB headers then fixed-size blocks, each starting with an 8-byte
checksum of the rest (its storage format); ``pragma_storage_info`` says which block holds
each column segment and at what offset. Flipping bytes inside a segment of one column leaves
the catalog and every other block readable, so the damage surfaces only on reads of the rows
whose values lie in that block.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

HEADERS = 3 * 4096
CHECKSUM = 8


def damage_column(path: Path, schema: str, table: str, column: str, nth: int = 0) -> set[int]:
    """Flip 64 bytes of the ``nth`` on-disk block holding ``column`` of ``schema.table`` (the
    database must be closed); the chunks whose rows may lie in that block."""
    db = duckdb.connect(str(path))
    try:
        db.execute("CHECKPOINT")  # a killed worker's WAL into the file: the blocks are on disk
        block_size = int(db.execute("SELECT block_size FROM pragma_database_size()").fetchone()[0])  # type: ignore[index]
        info = f'pragma_storage_info(\'"{schema}"."{table}"\')'
        blocks = db.execute(
            f"SELECT DISTINCT block_id FROM {info} WHERE column_name = ? AND block_id >= 0 "
            "AND segment_type <> 'VALIDITY' ORDER BY block_id",
            [column],
        ).fetchall()
        block = int(blocks[nth][0])
        offset = int(
            db.execute(
                f"SELECT min(block_offset) FROM {info} WHERE column_name = ? AND block_id = ?",
                [column, block],
            ).fetchone()[0]  # type: ignore[index]
        )
        groups = [
            int(g[0])
            for g in db.execute(
                f"SELECT DISTINCT row_group_id FROM {info} WHERE block_id = ?", [block]
            ).fetchall()
        ]
        stats = db.execute(
            f"SELECT stats FROM {info} WHERE column_name = '_chunk' AND segment_type <> 'VALIDITY' "
            f"AND row_group_id IN ({', '.join(map(str, groups))})"
        ).fetchall()
    finally:
        db.close()
    chunks: set[int] = set()
    for (value,) in stats:
        low, high = _bounds(value)
        chunks.update(range(low, high + 1))
    where = HEADERS + block * block_size + CHECKSUM + offset + 16
    with open(path, "r+b") as f:
        f.seek(where)
        data = f.read(64)
        f.seek(where)
        f.write(bytes(b ^ 0xFF for b in data))
    return chunks


def _bounds(stats: object) -> tuple[int, int]:
    """(min, max) of a segment's statistics (a mapping in the pinned DuckDB)."""
    assert isinstance(stats, dict), stats
    return int(stats["min"]), int(stats["max"])
