"""Run one worker batch: a single SELECT over many chunks, streamed as Arrow IPC messages.

The czar renders the chunk filters into the SQL (``WHERE _chunk IN (1, 2, ...)``), so a batch
of many chunk tasks is one DuckDB pass; the ``_chunk`` zone maps skip row groups of other
chunks. The query runs on a fresh cursor inside a READ ONLY transaction and streams through
``to_arrow_reader``; rows are grouped into messages of about ``max_rows`` rows or ``max_bytes``
bytes, each a self-contained Arrow IPC stream. An empty result is one message with the schema.

:meth:`QueryRun.interrupt` may be called from any thread (the gRPC termination callback) and
makes the running DuckDB query fail with :class:`~qserv.errors.QueryCanceled`.

DuckDB errors become typed errors in PostgreSQL's words (:func:`translate`, qserv.sqlerrors):
permission -> 42501, interrupt -> 57014, unknown function/operator -> 42883, bad values -> 22P02.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator

import duckdb
import pyarrow as pa

from qserv import sqlerrors
from qserv.errors import AccessDenied, QservError, QueryCanceled, from_sqlstate
from qserv.rpc.codec import encode_ipc
from worker.damage import damaged
from worker.lockdown import check_select

BATCH_ROWS = 65536
BATCH_BYTES = 4 << 20
INTERRUPT_REPEAT_SECONDS = 0.05


def translate(exc: BaseException) -> QservError:
    """The typed qserv error for a DuckDB error raised by a worker query (maybe via Arrow).

    Worker-only refusals (interrupt, file access, writes, locked configuration) are named
    here; everything else is worded as PostgreSQL would by :func:`qserv.sqlerrors.translate`.
    Errors raised while a result streams through the Arrow C interface arrive as pyarrow's
    OSError with only DuckDB's text to go on.
    """
    broken = damaged(exc)
    if broken is not None:
        return broken
    text = str(exc).strip()
    kind, low = sqlerrors.kind(text), text.splitlines()[0].lower() if text else ""
    # what was refused, without DuckDB's "Permission Error:" prefix (``Cannot access file "x"``)
    what = re.sub(r"^[A-Za-z ]+ Error: ", "", text.splitlines()[0] if text else "").rstrip("!.")
    if kind == "interrupt" or isinstance(exc, duckdb.InterruptException):
        return QueryCanceled("worker query was cancelled")
    if kind == "permission":
        return AccessDenied(what, hint="workers refuse file, network and extension access")
    if kind == "transactioncontext" and "read-only" in low:
        return AccessDenied(what, hint="worker queries are read-only")
    if kind == "invalid input" and "configuration" in low:
        return AccessDenied(what, hint="worker configuration is locked")
    if kind == "out of memory":
        return from_sqlstate("53200", "out of memory", hint="narrow the query or raise memory_limit")
    return sqlerrors.translate(text)


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
