"""A whole regular table leaves one worker and replaces its copy on another (a resync).

Every worker holds every regular table whole. A worker that was down while a regular table was
loaded (or that joined later) lacks those rows; the replication controller has it pull the
table from a worker holding a complete copy (``PullChunk`` with ``regular_tables``), as it
pulls family chunks (:mod:`worker.chunk_copy`, whose spooling and checksums this reuses):

1. **export** (on the source): one READ ONLY transaction streams each table's rows, closed by
   its row count and order-independent checksum (chunk id -1);
2. **install** (on the target): the rows are spooled to the staging directory, then one
   DuckDB transaction replaces each table's rows and compares checksums; any difference rolls
   it back. Queries see the table as it was before or after, never half of it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import duckdb

from qserv.durable import transaction
from qserv.errors import DataError, InvalidParameter, UndefinedTable
from qserv.rpc.client import ChunkPart, TableChecksum
from worker.chunk_copy import BATCH_ROWS, Spool, column_list, receive
from worker.storage import Storage, qualified

WHOLE_TABLE = -1  # the chunk id of a regular table's parts and checksum

TableName = tuple[str, str]
"""(database, table)."""


def _stored(cur: duckdb.DuckDBPyConnection, tables: Sequence[TableName]) -> list[TableName]:
    """The stored (schema, table) of each regular table, names matched case-insensitively."""
    if not tables:
        raise InvalidParameter("a table copy names at least one table")
    rows = cur.execute(
        "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = current_database()"
    ).fetchall()
    here = {(str(s).lower(), str(t).lower()): (str(s), str(t)) for s, t in rows}
    out = []
    for db, table in tables:
        found = here.get((db.lower(), table.lower()))
        if found is None:
            raise UndefinedTable(
                f"table copy: table {db}.{table} does not exist on this worker",
                hint="create the table on the worker before copying it",
            )
        out.append(found)
    return sorted(set(out))


def _checksum(cur: duckdb.DuckDBPyConnection, schema: str, table: str) -> TableChecksum:
    n, h = cur.execute(
        f"SELECT count(*), coalesce(sum(hash({column_list(cur, schema, table)})) % 18446744073709551616, 0) "
        f"FROM {qualified(schema, table)}"
    ).fetchall()[0]
    return TableChecksum(schema, table, WHOLE_TABLE, int(n), f"{int(h):016x}")


def checksums(storage: Storage, tables: Sequence[TableName]) -> list[TableChecksum]:
    """Rows and checksum of each whole table (one snapshot)."""
    with storage.cursor() as cur:
        cur.execute("BEGIN TRANSACTION READ ONLY")
        try:
            return [_checksum(cur, s, t) for s, t in _stored(cur, tables)]
        finally:
            cur.execute("ROLLBACK")


def export(storage: Storage, tables: Sequence[TableName]) -> Iterator[ChunkPart]:
    """Each table's rows, then its checksum, from one snapshot."""
    with storage.cursor() as cur:
        cur.execute("BEGIN TRANSACTION READ ONLY")
        try:
            for schema, table in _stored(cur, tables):
                end = _checksum(cur, schema, table)
                if end.rows:
                    reader = cur.sql(f"SELECT * FROM {qualified(schema, table)}").to_arrow_reader(BATCH_ROWS)
                    for batch in reader:
                        if batch.num_rows:
                            yield ChunkPart(schema, table, WHOLE_TABLE, batch=batch)
                yield ChunkPart(schema, table, WHOLE_TABLE, end=end)
        finally:
            cur.execute("ROLLBACK")


def install(storage: Storage, tables: Sequence[TableName], parts: Iterable[ChunkPart]) -> list[TableChecksum]:
    """Replace this worker's rows of ``tables`` by the exported ``parts``, atomically.

    Raises DataError (nothing changed) when the stream ends early or a checksum differs.
    """
    spools: dict[TableName, Spool] = {}
    ends: dict[TableName, TableChecksum] = {}
    try:
        ends.update(receive(storage, parts, spools))
        with storage.ddl_lock, storage.cursor() as cur, transaction(cur):
            installed = []
            for schema, table in _stored(cur, tables):
                key = (schema.lower(), table.lower())
                sent = ends.get(key)
                if sent is None:
                    raise DataError(f"table copy of {schema}.{table} ended before its checksum")
                target = qualified(schema, table)
                cur.execute(f"DELETE FROM {target}").fetchall()
                spool = spools.get(key)
                if spool is not None:
                    spool.insert_into(cur, schema, table)
                got = _checksum(cur, schema, table)
                if (got.rows, got.checksum) != (sent.rows, sent.checksum):
                    raise DataError(
                        f"table copy of {schema}.{table}: received {got.rows} rows with checksum {got.checksum}, "
                        f"the source sent {sent.rows} rows with checksum {sent.checksum}",
                        hint="the copy was rolled back; copy again from a complete copy",
                    )
                installed.append(got)
            return installed
    finally:
        for spool in spools.values():
            spool.path.unlink(missing_ok=True)
