"""A family chunk leaves one worker and is installed on another: export, install, drop, checksum.

A replica is a *family chunk*: the rows of chunk ``c`` in every chunked table (directors with
their overlap tables, children, match tables) of the databases of one family. The replication
controller copies one by asking the target worker to pull it from a source worker
(``PullChunk``), so the rows travel worker to worker, never through the controller:

Several chunks are copied in one call (one stream, one transaction), so a recovery of thousands
of small chunks is not thousands of round trips.

1. **export** (on the source): one READ ONLY DuckDB transaction reads every chunked table's rows
   of the chunks, so the copy is one consistent snapshot even while loads commit; each
   (chunk, table) is streamed as Arrow batches and closed by its row count and checksum.
2. **install** (on the target): the stream is spooled into Arrow IPC files of the staging
   directory (no registry row names them, so a copy cut short by a crash leaves files the
   worker deletes when it starts: no trace); then one DuckDB transaction deletes the target's
   rows of the chunks in every chunked table of those databases, inserts the received rows,
   checksums what it inserted and compares with the source's checksums: any difference rolls
   the transaction back. Queries run in READ ONLY transactions, so they see the chunks as they
   were before or after the install, never half of them.

The checksum of a table's rows in a chunk is independent of row order: the sum, modulo 2**64,
of DuckDB's ``hash()`` of each row's stored columns, with the row count beside it. Both sides
compute it with the same DuckDB on the same stored column types (the tables are created from
one catalog), so equal rows give equal checksums.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import duckdb
import pyarrow as pa

from qserv.catalog import CHUNK_COLUMN
from qserv.durable import transaction
from qserv.errors import DataError, InvalidParameter, UndefinedTable
from qserv.rpc.client import ChunkPart, TableChecksum
from worker.storage import Storage, qualified, quote_ident

_COPY_PREFIX = "copy__"
_COPY_VIEW = "_qserv_copy"
BATCH_ROWS = 65_536


def chunked_tables(cur: duckdb.DuckDBPyConnection, databases: Sequence[str]) -> list[tuple[str, str]]:
    """(schema, table) of every stored table with a ``_chunk`` column in ``databases``."""
    if not databases:
        raise InvalidParameter("a chunk copy names at least one database")
    rows = cur.execute(
        "SELECT DISTINCT c.schema_name, c.table_name FROM duckdb_columns() c "
        "WHERE c.database_name = current_database() AND c.column_name = ? "
        "AND list_contains(?, lower(c.schema_name)) ORDER BY 1, 2",
        [CHUNK_COLUMN, [d.lower() for d in databases]],
    ).fetchall()
    return [(str(s), str(t)) for s, t in rows]


def column_list(cur: duckdb.DuckDBPyConnection, schema: str, table: str) -> str:
    names = cur.execute(
        "SELECT column_name FROM duckdb_columns() WHERE database_name = current_database() "
        "AND schema_name = ? AND table_name = ? ORDER BY column_index",
        [schema, table],
    ).fetchall()
    return ", ".join(quote_ident(str(n[0])) for n in names)


def _chunk_list(chunks: Sequence[int]) -> str:
    if not chunks:
        raise InvalidParameter("a chunk copy names at least one chunk")
    return ", ".join(str(int(c)) for c in sorted(set(chunks)))


def _checksums(
    cur: duckdb.DuckDBPyConnection, schema: str, table: str, chunks: Sequence[int]
) -> list[TableChecksum]:
    """One per chunk of ``chunks`` (a chunk without rows: 0 rows, checksum 0)."""
    rows = cur.execute(
        f"SELECT {quote_ident(CHUNK_COLUMN)}, count(*), sum(hash({column_list(cur, schema, table)})) "
        f"% 18446744073709551616 FROM {qualified(schema, table)} "
        f"WHERE {quote_ident(CHUNK_COLUMN)} IN ({_chunk_list(chunks)}) GROUP BY 1"
    ).fetchall()  # fetchall: this DuckDB refuses the next statement while a result is unread
    found = {int(c): (int(n), int(h)) for c, n, h in rows}
    return [
        TableChecksum(schema, table, c, found.get(c, (0, 0))[0], f"{found.get(c, (0, 0))[1]:016x}")
        for c in sorted(set(chunks))
    ]


def checksums(storage: Storage, databases: Sequence[str], chunks: Sequence[int]) -> list[TableChecksum]:
    """The checksum of every chunked table's rows in each of ``chunks`` (one snapshot)."""
    with storage.cursor() as cur:
        cur.execute("BEGIN TRANSACTION READ ONLY")
        try:
            return [x for s, t in chunked_tables(cur, databases) for x in _checksums(cur, s, t, chunks)]
        finally:
            cur.execute("ROLLBACK")


def export(storage: Storage, databases: Sequence[str], chunks: Sequence[int]) -> Iterator[ChunkPart]:
    """Every chunked table's rows of ``chunks``, each (chunk, table) closed by its checksum."""
    with storage.cursor() as cur:
        cur.execute("BEGIN TRANSACTION READ ONLY")  # one snapshot for every table and chunk
        try:
            for schema, table in chunked_tables(cur, databases):
                ends = _checksums(cur, schema, table, chunks)
                if any(e.rows for e in ends):
                    # one scan for all the chunks: a batch may hold rows of several (chunk_id -1)
                    reader = cur.sql(
                        f"SELECT * FROM {qualified(schema, table)} "
                        f"WHERE {quote_ident(CHUNK_COLUMN)} IN ({_chunk_list(chunks)})"
                    ).to_arrow_reader(BATCH_ROWS)
                    for batch in reader:
                        if batch.num_rows:
                            yield ChunkPart(schema, table, -1, batch=batch)
                for end in ends:
                    yield ChunkPart(schema, table, end.chunk_id, end=end)
        finally:
            cur.execute("ROLLBACK")


class Spool:
    """The received rows of one table (all chunks), in an Arrow IPC file of the staging directory."""

    def __init__(self, directory: Path, database: str, table: str, schema: pa.Schema) -> None:
        self.path = directory / f"{_COPY_PREFIX}{uuid.uuid4().hex[:12]}__{database}__{table}.arrow"
        self.schema = schema
        self._sink = pa.OSFile(str(self.path), "wb")
        self._writer = pa.ipc.new_file(self._sink, schema)
        self.rows = 0

    def write(self, batch: pa.RecordBatch) -> None:
        self._writer.write_batch(batch)
        self.rows += batch.num_rows

    def close(self) -> None:
        self._writer.close()
        self._sink.close()

    def read(self) -> pa.Table:
        return pa.ipc.open_file(pa.memory_map(str(self.path))).read_all()

    def insert_into(self, cur: duckdb.DuckDBPyConnection, schema: str, table: str) -> None:
        """Insert the spooled rows into ``schema.table`` (inside the caller's transaction)."""
        if not self.rows:
            return
        cur.register(_COPY_VIEW, self.read())
        try:
            cur.execute(
                f"INSERT INTO {qualified(schema, table)} SELECT {column_list(cur, schema, table)} FROM {_COPY_VIEW}"
            ).fetchall()
        finally:
            cur.unregister(_COPY_VIEW)


def receive(
    storage: Storage, parts: Iterable[ChunkPart], spools: dict[tuple[str, str], Spool]
) -> list[tuple[tuple[str, str], TableChecksum]]:
    """Spool the batches of an export into ``spools`` (the caller's, so that it removes them
    whatever happens); the (table key, checksum) ends, in the order received."""
    ends = []
    for part in parts:
        key = (part.database.lower(), part.table.lower())
        if part.batch is not None:
            spool = spools.get(key)
            if spool is None:
                spool = spools[key] = Spool(storage.staging_dir, part.database, part.table, part.batch.schema)
            spool.write(part.batch)
        if part.end is not None:
            ends.append((key, part.end))
    for spool in spools.values():
        spool.close()
    return ends


def install(
    storage: Storage,
    databases: Sequence[str],
    chunks: Sequence[int],
    parts: Iterable[ChunkPart],
    pause: float = 0.0,
) -> list[TableChecksum]:
    """Replace this worker's rows of ``chunks`` in ``databases`` by the exported ``parts``, atomically.

    Raises DataError (nothing changed) when the stream ends early, a table's rows do not
    match its checksum, or the source and this worker do not store the same tables.
    """
    wanted = sorted(set(chunks))
    _chunk_list(wanted)
    spools: dict[tuple[str, str], Spool] = {}
    ends: dict[tuple[str, str], dict[int, TableChecksum]] = {}
    try:
        for key, end in receive(storage, parts, spools):
            ends.setdefault(key, {})[end.chunk_id] = end
        unfinished = sorted(f"{d}.{t}" for (d, t), e in ends.items() if sorted(e) != wanted)
        unfinished += sorted(f"{d}.{t}" for d, t in spools.keys() - ends.keys())
        if unfinished:
            raise DataError(
                f"chunk copy of {len(wanted)} chunks ended before the end of {', '.join(unfinished)}"
            )
        if pause:
            time.sleep(pause)  # a test's window onto a copy in the middle (servicer.COPY_PAUSE_ENV)
        return _install(storage, databases, wanted, spools, ends)
    finally:
        for spool in spools.values():
            spool.path.unlink(missing_ok=True)


def _install(
    storage: Storage,
    databases: Sequence[str],
    chunks: list[int],
    spools: dict[tuple[str, str], Spool],
    ends: dict[tuple[str, str], dict[int, TableChecksum]],
) -> list[TableChecksum]:
    with storage.ddl_lock, storage.cursor() as cur, transaction(cur):
        tables = chunked_tables(cur, databases)
        here = {(s.lower(), t.lower()): (s, t) for s, t in tables}
        missing = sorted(f"{d}.{t}" for d, t in ends.keys() - here.keys())
        if missing:
            raise UndefinedTable(
                f"chunk copy: table {missing[0]} does not exist on this worker",
                hint="create the family's tables on the target before copying chunks to it",
            )
        absent = sorted(f"{d}.{t}" for d, t in here.keys() - ends.keys())
        if absent:
            raise DataError(f"chunk copy: the source sent no rows or checksum for {', '.join(absent)}")
        installed: list[TableChecksum] = []
        for key, (schema, table) in sorted(here.items()):
            target = qualified(schema, table)
            cur.execute(
                f"DELETE FROM {target} WHERE {quote_ident(CHUNK_COLUMN)} IN ({_chunk_list(chunks)})"
            ).fetchall()
            spool = spools.get(key)
            if spool is not None:
                spool.insert_into(cur, schema, table)
            for got in _checksums(cur, schema, table, chunks):
                sent = ends[key][got.chunk_id]
                if (got.rows, got.checksum) != (sent.rows, sent.checksum):
                    raise DataError(
                        f"chunk {got.chunk_id} copy of {schema}.{table}: received {got.rows} rows with checksum "
                        f"{got.checksum}, the source sent {sent.rows} rows with checksum {sent.checksum}",
                        hint="the copy was rolled back; copy again from a good replica",
                    )
                installed.append(got)
        return installed


def drop(storage: Storage, databases: Sequence[str], chunks: Sequence[int]) -> int:
    """Delete this worker's rows of ``chunks`` from every chunked table of ``databases``, atomically."""
    with storage.ddl_lock, storage.cursor() as cur, transaction(cur):
        total = 0
        for schema, table in chunked_tables(cur, databases):
            rows = cur.execute(
                f"DELETE FROM {qualified(schema, table)} WHERE {quote_ident(CHUNK_COLUMN)} IN ({_chunk_list(chunks)})"
            ).fetchall()
            total += int(rows[0][0]) if rows else 0
        return total
