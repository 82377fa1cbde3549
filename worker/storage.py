"""The worker's tables in its DuckDB database: creation, transactional ingest, chunk stats.

Layout (see :mod:`qserv.catalog`): one schema per qserv database; a director ``T`` is table
``T`` with ``_chunk INTEGER, _subchunk BIGINT`` and its overlap rows in ``T__overlap``; a child
or match table is ``T`` with ``_chunk INTEGER``; a regular table is stored as is.

Ingest is two-phase:

1. **stage**: one Ingest stream writes its rows, converted to the target's exact column types,
   into Arrow IPC files of its own in the staging directory (``staging/`` next to the
   database file), named ``"t<txn>__<db>__<table>[__overlap]__<stream>.arrow"``. When the
   stream ends the files are fsynced and recorded in ``_staging._tables`` in one DuckDB
   transaction: a failed stream records nothing (its files are deleted) and can simply be
   sent again; separate streams never touch the same file. Staging writes Arrow as it came
   off the wire (no compression, no DuckDB row groups): the rows are written into DuckDB
   once, at commit, instead of twice.
2. **commit**: one DuckDB transaction inserts every staged file of the transaction
   (memory-mapped) into its target, ordered by ``_chunk`` so each row group covers few chunks
   and the ``_chunk`` zone map prunes well, and deletes their registry rows; the files are
   removed after the commit. The registry lives in the database file, so a commit interrupted
   by a crash or restart is simply called again; a commit with nothing staged is a no-op,
   which makes a repeated commit idempotent. Files no registry row names (a stream or commit
   cut short by a crash) are removed when the worker starts.

Example: ``stage(StagedRows(7, "sky", "Object", False, rows))`` writes
``staging/t7__sky__Object__3f2a….arrow``; ``commit(7)`` runs
``INSERT INTO "sky"."Object" SELECT * FROM <staged files> ORDER BY "_chunk"``.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from qserv.catalog import CHUNK_COLUMN, OVERLAP_SUFFIX, SUBCHUNK_COLUMN, Column, TableKind
from qserv.durable import fsync_path, start_writeback, transaction
from qserv.errors import DataError, DuplicateObject, InvalidParameter, UndefinedTable
from qserv.log import event
from worker.lockdown import STAGING_SCHEMA

_log = logging.getLogger(__name__)
REGISTRY_TABLE = "_tables"
REGULAR_CHUNK_ID = -1  # chunk_id reported by chunk_stats for whole (regular) tables
_INGEST_VIEW = "_qserv_ingest"
STAGING_DIR = "staging"  # staged ingest files, next to the database file
_STAGED_SUFFIX = ".arrow"
_WRITEBACK_BYTES = 32 << 20


def quote_ident(name: str) -> str:
    """A DuckDB quoted identifier (case preserved, embedded quotes doubled)."""
    return '"' + name.replace('"', '""') + '"'


def qualified(schema: str, table: str) -> str:
    return f"{quote_ident(schema)}.{quote_ident(table)}"


@dataclass(frozen=True)
class StagedRows:
    """Rows of one transaction for one stored table (a director's overlap table if ``overlap``)."""

    transaction_id: int
    database: str
    table: str
    overlap: bool
    data: pa.Table


@dataclass(frozen=True)
class ChunkRows:
    """Committed rows of one stored table in one chunk (``REGULAR_CHUNK_ID`` for regular)."""

    table: str
    chunk_id: int
    rows: int


def stored_columns(kind: TableKind, columns: Sequence[Column]) -> tuple[Column, ...]:
    """User columns plus the partitioning columns the kind needs."""
    reserved = {CHUNK_COLUMN, SUBCHUNK_COLUMN}
    clash = [c.name for c in columns if c.name.lower() in reserved]
    if clash:
        raise InvalidParameter(
            f"column names {clash} are reserved for partitioning", hint="rename these columns"
        )
    extra: tuple[Column, ...] = ()
    if kind is TableKind.DIRECTOR:
        extra = (Column(CHUNK_COLUMN, "INTEGER"), Column(SUBCHUNK_COLUMN, "BIGINT"))
    elif kind in (TableKind.CHILD, TableKind.MATCH):
        extra = (Column(CHUNK_COLUMN, "INTEGER"),)
    return tuple(columns) + extra


class Storage:
    """Owns the worker's DuckDB connection; every operation runs on a fresh cursor."""

    def __init__(self, conn: duckdb.DuckDBPyConnection, staging_dir: Path | None = None) -> None:
        self._conn = conn
        # DuckDBPyConnection is not thread-safe; only cursor creation touches it directly
        self._conn_lock = threading.Lock()
        # catalog changes (create table, commit, abort) are serialised: rare, and DuckDB would
        # otherwise fail concurrent ones with write-write conflicts
        self._ddl_lock = threading.Lock()
        with self.cursor() as cur:
            cur.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(STAGING_SCHEMA)}")
            cur.execute(
                f"CREATE TABLE IF NOT EXISTS {qualified(STAGING_SCHEMA, REGISTRY_TABLE)} ("
                "transaction_id BIGINT, database VARCHAR, table_name VARCHAR, "
                "overlap BOOLEAN, staging VARCHAR)"
            )
            self._staging_dir, self._own_staging_dir = _staging_dir(cur, staging_dir)
        self._remove_orphans()

    @property
    def ddl_lock(self) -> threading.Lock:
        """Held by every change of stored rows or tables (commit, abort, chunk install and drop)."""
        return self._ddl_lock

    @property
    def staging_dir(self) -> Path:
        """Where staged and spooled files live; a file no registry row names is removed at start."""
        return self._staging_dir

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A new DuckDB connection to the worker's database (use one per thread / call)."""
        with self._conn_lock:
            return self._conn.cursor()

    def close(self) -> None:
        """Checkpoint (fold the WAL into the file) and close the database."""
        with self._conn_lock:
            try:
                self._conn.execute("CHECKPOINT")
            except duckdb.Error as exc:
                # not fatal: the WAL is replayed when the database is opened again
                event(_log, "checkpoint on close failed", logging.WARNING, error=str(exc))
            finally:
                self._conn.close()
        if self._own_staging_dir:
            shutil.rmtree(self._staging_dir, ignore_errors=True)

    # -- tables -------------------------------------------------------------------------------

    def create_table(self, database: str, table: str, kind: TableKind, columns: Sequence[Column]) -> None:
        """Create ``database.table`` (and a director's overlap table); same columns: no-op."""
        if not columns:
            raise InvalidParameter(f"table {database}.{table} needs at least one column")
        with self._ddl_lock, self.cursor() as cur:
            wanted = tuple(
                Column(c.name, _normalize_type(cur, c.type, f"{database}.{table}.{c.name}"))
                for c in stored_columns(kind, columns)
            )
            names = [table, table + OVERLAP_SUFFIX] if kind is TableKind.DIRECTOR else [table]
            existing = {n: _columns(cur, database, n) for n in names}
            for name, have in existing.items():
                if have is not None and not _same_columns(have, wanted):
                    raise DuplicateObject(
                        f"table {database}.{name} exists with columns {_show(have)}, not {_show(wanted)}",
                        hint="drop the table first or load with the existing schema",
                    )
            missing = [n for n, have in existing.items() if have is None]
            if not missing:
                return
            body = ", ".join(f"{quote_ident(c.name)} {c.type}" for c in wanted)
            with transaction(cur):
                cur.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(database)}")
                for name in missing:
                    cur.execute(f"CREATE TABLE {qualified(database, name)} ({body})")

    # -- ingest -------------------------------------------------------------------------------

    def stage(self, parts: Iterable[StagedRows]) -> int:
        """Stage ``parts`` (all or nothing) until commit or abort; the number of rows staged."""
        stream = uuid.uuid4().hex[:12]
        files: dict[tuple[int, str, str, bool], _StagingFile] = {}
        total = 0
        try:
            with self.cursor() as cur:
                for part in parts:
                    key = (part.transaction_id, part.database, part.table, part.overlap)
                    staged = files.get(key)
                    if staged is None:
                        staged = files[key] = self._new_staging(cur, part, stream)
                    _check_ingest_columns(part, staged.columns)
                    if part.data.num_rows == 0:
                        continue
                    staged.write(_conform(cur, part, staged))
                    total += part.data.num_rows
                for staged in files.values():
                    staged.finish()
                if files:
                    fsync_path(self._staging_dir)
                    self._record(cur, files.values())
        except BaseException:
            for staged in files.values():
                staged.discard()
            raise
        return total

    def _new_staging(self, cur: duckdb.DuckDBPyConnection, part: StagedRows, stream: str) -> _StagingFile:
        target = part.table + (OVERLAP_SUFFIX if part.overlap else "")
        columns = _columns(cur, part.database, target)
        if columns is None:
            raise UndefinedTable(
                f"table {part.database}.{target} does not exist on this worker",
                hint="create the table (CreateTable) before ingesting into it",
            )
        # the Arrow form of the stored columns: what DuckDB reads back without a conversion
        schema = cur.sql(f"SELECT * FROM {qualified(part.database, target)} LIMIT 0").to_arrow_table().schema
        name = f"t{part.transaction_id}__{part.database}__{target}__{stream}{_STAGED_SUFFIX}"
        return _StagingFile(part, name, self._staging_dir / name, columns, schema)

    def _record(self, cur: duckdb.DuckDBPyConnection, files: Iterable[_StagingFile]) -> None:
        with transaction(cur):
            cur.executemany(
                f"INSERT INTO {qualified(STAGING_SCHEMA, REGISTRY_TABLE)} VALUES (?, ?, ?, ?, ?)",
                [
                    [f.part.transaction_id, f.part.database, f.part.table, f.part.overlap, f.name]
                    for f in files
                ],
            )

    def commit(self, transaction_id: int) -> int:
        """Publish every staged row of the transaction atomically; the number of rows published."""
        with self._ddl_lock, self.cursor() as cur, transaction(cur):
            groups = self._staged(cur, transaction_id)
            total = 0
            for (database, table, overlap), names in sorted(groups.items()):
                target = table + (OVERLAP_SUFFIX if overlap else "")
                columns = _columns(cur, database, target) or ()
                data = pa.concat_tables([self._read_staged(n) for n in names])
                if data.num_rows == 0:
                    continue
                order = (
                    f" ORDER BY {quote_ident(CHUNK_COLUMN)}"
                    if any(c.name == CHUNK_COLUMN for c in columns)
                    else ""
                )
                names_sql = ", ".join(quote_ident(c.name) for c in columns)
                cur.register(_INGEST_VIEW, data)
                row = cur.execute(
                    f"INSERT INTO {qualified(database, target)} SELECT {names_sql} FROM {_INGEST_VIEW}{order}"
                ).fetchone()
                cur.unregister(_INGEST_VIEW)
                total += int(row[0]) if row else 0
            self._drop_staged(cur, transaction_id)
        self._remove_files(groups)
        return total

    def abort(self, transaction_id: int) -> None:
        """Drop every staged row of the transaction (nothing staged: no-op)."""
        with self._ddl_lock, self.cursor() as cur, transaction(cur):
            groups = self._staged(cur, transaction_id)
            self._drop_staged(cur, transaction_id)
        self._remove_files(groups)

    def _read_staged(self, name: str) -> pa.Table:
        path = self._staging_dir / name
        try:
            # memory-mapped: the rows are read once, by the INSERT
            return pa.ipc.open_file(pa.memory_map(str(path))).read_all()
        except (OSError, pa.ArrowInvalid) as exc:
            raise DataError(
                f"staged ingest file {path} is missing or damaged: {exc}",
                hint="abort the transaction and load again",
            ) from exc

    def _staged(
        self, cur: duckdb.DuckDBPyConnection, transaction_id: int
    ) -> dict[tuple[str, str, bool], list[str]]:
        rows = cur.execute(
            f"SELECT database, table_name, overlap, staging FROM {qualified(STAGING_SCHEMA, REGISTRY_TABLE)} "
            "WHERE transaction_id = ? ORDER BY staging",
            [transaction_id],
        ).fetchall()
        groups: dict[tuple[str, str, bool], list[str]] = {}
        for database, table, overlap, name in rows:
            groups.setdefault((database, table, bool(overlap)), []).append(name)
        return groups

    def _drop_staged(self, cur: duckdb.DuckDBPyConnection, transaction_id: int) -> None:
        cur.execute(
            f"DELETE FROM {qualified(STAGING_SCHEMA, REGISTRY_TABLE)} WHERE transaction_id = ?",
            [transaction_id],
        )

    def _remove_files(self, groups: dict[tuple[str, str, bool], list[str]]) -> None:
        # after the registry no longer names them; a file left by a crash here is an orphan
        for names in groups.values():
            for name in names:
                (self._staging_dir / name).unlink(missing_ok=True)

    def _remove_orphans(self) -> None:
        """Delete staged files no registry row names (a stream or commit cut short)."""
        with self.cursor() as cur:
            known = {
                r[0]
                for r in cur.execute(
                    f"SELECT staging FROM {qualified(STAGING_SCHEMA, REGISTRY_TABLE)}"
                ).fetchall()
            }
        for path in self._staging_dir.iterdir():
            if path.name not in known:
                event(_log, "removing orphaned staging file", file=path.name)
                path.unlink(missing_ok=True)

    def staged_transactions(self) -> list[int]:
        """Transactions with staged, uncommitted rows (to resume or abort after a restart)."""
        with self.cursor() as cur:
            rows = cur.execute(
                f"SELECT DISTINCT transaction_id FROM {qualified(STAGING_SCHEMA, REGISTRY_TABLE)} ORDER BY 1"
            ).fetchall()
        return [int(r[0]) for r in rows]

    # -- stats --------------------------------------------------------------------------------

    def chunk_stats(self, database: str) -> list[ChunkRows]:
        """Committed rows per (stored table, chunk) of ``database``; unknown database: empty."""
        out: list[ChunkRows] = []
        with self.cursor() as cur:
            tables = cur.execute(
                "SELECT schema_name, table_name FROM duckdb_tables() "
                "WHERE database_name = current_database() AND lower(schema_name) = lower(?) "
                "ORDER BY table_name",
                [database],
            ).fetchall()
            for schema, table in tables:
                columns = _columns(cur, schema, table) or ()
                if any(c.name == CHUNK_COLUMN for c in columns):
                    rows = cur.execute(
                        f"SELECT {quote_ident(CHUNK_COLUMN)}, count(*) FROM {qualified(schema, table)} "
                        "GROUP BY 1 ORDER BY 1"
                    ).fetchall()
                    out.extend(ChunkRows(table, int(c), int(n)) for c, n in rows if c is not None)
                else:
                    row = cur.execute(f"SELECT count(*) FROM {qualified(schema, table)}").fetchone()
                    out.append(ChunkRows(table, REGULAR_CHUNK_ID, int(row[0]) if row else 0))
        return out


def _target_name(part: StagedRows) -> str:
    return f"{part.database}.{part.table}{OVERLAP_SUFFIX if part.overlap else ''}"


def _columns(cur: duckdb.DuckDBPyConnection, schema: str, table: str) -> tuple[Column, ...] | None:
    """Columns of a stored table, or None if it does not exist (names match case-insensitively)."""
    rows = cur.execute(
        "SELECT column_name, data_type FROM duckdb_columns() "
        "WHERE database_name = current_database() AND lower(schema_name) = lower(?) "
        "AND lower(table_name) = lower(?) ORDER BY column_index",
        [schema, table],
    ).fetchall()
    return tuple(Column(n, t) for n, t in rows) if rows else None


def _normalize_type(cur: duckdb.DuckDBPyConnection, type_: str, where: str) -> str:
    try:
        return str(cur.type(type_))
    except duckdb.Error as exc:
        raise InvalidParameter(f"column {where} has unknown type {type_!r}") from exc


def _same_columns(a: Sequence[Column], b: Sequence[Column]) -> bool:
    return [(c.name.lower(), c.type) for c in a] == [(c.name.lower(), c.type) for c in b]


def _show(columns: Sequence[Column]) -> str:
    return "(" + ", ".join(f"{c.name} {c.type}" for c in columns) + ")"


def _check_ingest_columns(part: StagedRows, columns: Sequence[Column]) -> None:
    have = {n.lower() for n in part.data.column_names}
    want = {c.name.lower() for c in columns}
    if have == want and len(part.data.column_names) == len(have):
        return
    missing = sorted(c.name for c in columns if c.name.lower() not in have)
    extra = sorted(n for n in part.data.column_names if n.lower() not in want)
    raise InvalidParameter(
        f"rows for {_target_name(part)} have the wrong columns"
        + (f"; missing {missing}" if missing else "")
        + (f"; unexpected {extra}" if extra else "")
        + ("; duplicate column names" if not missing and not extra else ""),
        hint=f"send exactly the stored columns {_show(columns)}",
    )


class _StagingFile:
    """One stream's staged rows for one stored table: an Arrow IPC file being written."""

    def __init__(
        self, part: StagedRows, name: str, path: Path, columns: tuple[Column, ...], schema: pa.Schema
    ) -> None:
        self.part = part
        self.name = name
        self.path = path
        self.columns = columns
        self.schema = schema
        self._sink = pa.OSFile(str(path), "wb")
        self.writer = pa.ipc.new_file(self._sink, schema)
        self._open = True
        self._flushed = 0  # bytes handed to the disk so far

    def write(self, rows: pa.Table) -> None:
        """Append rows; every few MB, the disk starts writing them (the fsync comes at the end)."""
        self.writer.write_table(rows)
        written = self._sink.tell()
        if written - self._flushed >= _WRITEBACK_BYTES:
            start_writeback(self._sink.fileno(), self._flushed, written - self._flushed)
            self._flushed = written

    def finish(self) -> None:
        """Close the file and make it durable (the registry row that names it comes next)."""
        self.writer.close()
        self._sink.close()
        self._open = False
        fsync_path(self.path)

    def discard(self) -> None:
        if self._open:
            try:
                self.writer.close()
            except (OSError, pa.ArrowException):
                pass
            self._sink.close()
            self._open = False
        self.path.unlink(missing_ok=True)


def _staging_dir(cur: duckdb.DuckDBPyConnection, given: Path | None) -> tuple[Path, bool]:
    """The staging directory (created) and whether it is private to this Storage (in-memory)."""
    if given is None:
        row = cur.execute(
            "SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
        ).fetchone()
        if row and row[0]:
            given = Path(row[0]).parent / STAGING_DIR
    if given is None:  # an in-memory database: staged rows need not outlive it
        return Path(tempfile.mkdtemp(prefix="qserv-staging-")), True
    given.mkdir(parents=True, exist_ok=True)
    return given, False


def _conform(cur: duckdb.DuckDBPyConnection, part: StagedRows, staged: _StagingFile) -> pa.Table:
    """``part``'s rows in the stored column order, names and exact Arrow types.

    Rows whose types already match (what the loader sends) pass through untouched; others are
    converted by DuckDB exactly as an INSERT would, so a value that does not fit fails here,
    in the stream, and never at commit.
    """
    data = part.data
    if isinstance(data, pa.RecordBatch):
        data = pa.Table.from_batches([data])
    by_lower = {n.lower(): n for n in data.column_names}
    data = data.select([by_lower[c.name.lower()] for c in staged.columns])
    if data.schema.types == staged.schema.types:
        return data.rename_columns(staged.schema.names).cast(staged.schema)
    select = ", ".join(
        f"CAST({quote_ident(n)} AS {c.type}) AS {quote_ident(c.name)}"
        for n, c in zip(data.column_names, staged.columns, strict=True)
    )
    cur.register(_INGEST_VIEW, data)
    try:
        converted = cur.sql(f"SELECT {select} FROM {_INGEST_VIEW}").to_arrow_table()
    except (duckdb.ConversionException, duckdb.ConstraintException, duckdb.InvalidInputException) as exc:
        raise DataError(
            f"rows for {_target_name(part)} do not fit its column types: {exc}",
            hint="check the column types of the input",
        ) from exc
    finally:
        cur.unregister(_INGEST_VIEW)
    return converted.cast(staged.schema)
