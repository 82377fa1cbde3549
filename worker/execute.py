"""Run one worker batch: a single SELECT over many chunks, streamed as Arrow IPC messages.

The czar renders the chunk filters into the SQL (``WHERE _chunk IN (1, 2, ...)``), so a batch
of many chunk tasks is one DuckDB pass; the ``_chunk`` zone maps skip row groups of other
chunks. The query runs on a fresh cursor inside a READ ONLY transaction and streams through
``to_arrow_reader``; rows are grouped into messages of about ``max_rows`` rows or ``max_bytes``
bytes, each a self-contained Arrow IPC stream. An empty result is one message with the schema.

:meth:`QueryRun.interrupt` may be called from any thread (the gRPC termination callback) and
makes the running DuckDB query fail with :class:`~qserv.errors.QueryCanceled`.

DuckDB errors become typed errors (:func:`translate`): parser -> 42601, missing table -> 42P01,
missing column -> 42703, permission -> 42501, interrupt -> 57014, bad values -> 22000.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator

import duckdb
import pyarrow as pa

from qserv.errors import (
    AccessDenied,
    AmbiguousColumn,
    DataError,
    QservError,
    QueryCanceled,
    SyntaxError_,
    UndefinedColumn,
    UndefinedFunction,
    UndefinedTable,
    from_sqlstate,
)
from qserv.rpc.codec import encode_ipc
from worker.lockdown import check_select

BATCH_ROWS = 65536
BATCH_BYTES = 4 << 20
INTERRUPT_REPEAT_SECONDS = 0.05


# DuckDB prefixes every message with its error kind; errors raised while a result streams
# through the Arrow C interface arrive as pyarrow's OSError with only that text to go on
_KIND = re.compile(r"^([A-Za-z ]+) Error: ")


def _kind(exc: BaseException, text: str) -> str:
    match = _KIND.match(text)
    if match:
        return match.group(1).lower()
    if isinstance(exc, duckdb.InterruptException):
        return "interrupt"
    return ""


def translate(exc: BaseException) -> QservError:
    """The typed qserv error for a DuckDB error raised by a worker query (maybe via Arrow)."""
    text = str(exc).strip()
    lines = text.splitlines() or [text]
    message, detail = lines[0], "\n".join(lines[1:]).strip() or None
    kind, low = _kind(exc, text), message.lower()
    if kind == "interrupt":
        return QueryCanceled("worker query was cancelled")
    if kind == "permission":
        return AccessDenied(message, detail=detail, hint="workers refuse file, network and extension access")
    if kind == "transactioncontext" and "read-only" in low:
        return AccessDenied(message, detail=detail, hint="worker queries are read-only")
    if kind == "parser":
        return SyntaxError_(message, detail=detail)
    if kind == "catalog":
        if "function" in low or "macro" in low:
            return UndefinedFunction(message, detail=detail)
        return UndefinedTable(message, detail=detail)
    if kind == "binder":
        if "ambiguous" in low:
            return AmbiguousColumn(message, detail=detail)
        if "column" in low and ("not found" in low or "referenced" in low):
            return UndefinedColumn(message, detail=detail)
        if "function" in low:
            return UndefinedFunction(message, detail=detail)
        return from_sqlstate("42000", message, detail=detail)
    if kind == "invalid input" and "configuration" in low:
        return AccessDenied(message, detail=detail, hint="worker configuration is locked")
    if kind == "out of memory":
        return from_sqlstate("53200", message, detail=detail, hint="narrow the query or raise memory_limit")
    if kind in ("conversion", "out of range", "invalid input", "constraint"):
        return DataError(message, detail=detail)
    return from_sqlstate("XX000", f"worker query failed: {message}", detail=detail)


class QueryRun:
    """One Execute call: checks the SQL up front, then streams its result as IPC messages."""

    def __init__(
        self,
        cursor: duckdb.DuckDBPyConnection,
        sql: str,
        max_rows: int = BATCH_ROWS,
        max_bytes: int = BATCH_BYTES,
    ) -> None:
        try:
            check_select(cursor, sql)
        except BaseException:
            cursor.close()
            raise
        self._cursor = cursor
        self._sql = sql
        self._max_rows = max_rows
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._interrupted = False
        self._closed = False

    def interrupt(self) -> None:
        """Stop the query (from any thread); it then fails with QueryCanceled.

        DuckDB forgets an interrupt that arrives while nothing executes yet (the query is
        being bound), so the interrupt is repeated until the run closes.
        """
        with self._lock:
            if self._interrupted or self._closed:
                return
            self._interrupted = True
            self._cursor.interrupt()
        threading.Thread(target=self._keep_interrupting, name="interrupt", daemon=True).start()

    def _keep_interrupting(self) -> None:
        while True:
            time.sleep(INTERRUPT_REPEAT_SECONDS)
            with self._lock:
                if self._closed:
                    return
                self._cursor.interrupt()

    def _check_interrupted(self) -> None:
        # an interrupt that arrives between two DuckDB calls would otherwise be lost
        if self._interrupted:
            raise QueryCanceled("worker query was cancelled")

    def messages(self) -> Iterator[bytes]:
        """Arrow IPC messages of the result (at least one, carrying the schema)."""
        try:
            self._check_interrupted()
            self._cursor.execute("BEGIN TRANSACTION READ ONLY")
            relation = self._cursor.sql(self._sql)
            self._check_interrupted()  # a cancel that arrived while binding
            reader = relation.to_arrow_reader(self._max_rows)
            schema = reader.schema
            pending: list[pa.RecordBatch] = []
            rows = size = 0
            sent = False
            for batch in reader:
                self._check_interrupted()
                if batch.num_rows == 0:
                    continue
                pending.append(batch)
                rows += batch.num_rows
                size += batch.nbytes
                if rows >= self._max_rows or size >= self._max_bytes:
                    yield from self._encode(pending, schema)
                    sent = True
                    pending, rows, size = [], 0, 0
            self._check_interrupted()
            if pending or not sent:
                yield from self._encode(pending, schema)
        except (duckdb.Error, pa.ArrowException, OSError) as exc:
            # Arrow exceptions and OSError: a DuckDB error raised while the result streamed
            raise (
                QueryCanceled("worker query was cancelled") if self._interrupted else translate(exc)
            ) from exc
        finally:
            with self._lock:
                self._closed = True
                self._cursor.close()

    def _encode(self, batches: list[pa.RecordBatch], schema: pa.Schema) -> Iterator[bytes]:
        """One message per ~max_bytes: a single huge batch is sliced, never sent whole."""
        group: list[pa.RecordBatch] = []
        size = 0
        for batch in batches:
            row_bytes = max(1, batch.nbytes // max(1, batch.num_rows))
            step = max(1, self._max_bytes // row_bytes)
            for start in range(0, batch.num_rows, step):
                piece = batch.slice(start, step)
                if group and size + piece.nbytes > self._max_bytes:
                    yield encode_ipc(group, schema)
                    group, size = [], 0
                group.append(piece)
                size += piece.nbytes
        yield encode_ipc(group, schema)
