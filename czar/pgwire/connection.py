"""One authenticated client session: simple and extended query flows over a QueryHandler.

The server feeds decoded frontend messages to :meth:`Connection.handle`; replies are buffered
and flushed on Sync, Flush, ReadyForQuery and every ~256 KiB of rows. Extended protocol choices:

* ``Describe`` portal runs the statement (``handler.execute``) and keeps the result for the
  following ``Execute``, so a query runs once (what psycopg sends: Parse/Bind/Describe/Execute).
* ``Describe`` statement answers ParameterDescription (declared OIDs, text for undeclared) and,
  for row-returning statements, the RowDescription of a dry run with every parameter NULL whose
  rows are never read; other statements (SET, BEGIN...) answer NoData and are not run.
* ``Execute`` with a row limit stops there and answers PortalSuspended if rows remain.
* After an error, messages are discarded until Sync. Transaction status follows command tags.
"""

from __future__ import annotations

import functools
import itertools
import logging
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import pyarrow as pa

from czar.pgwire import protocol as pw
from czar.pgwire.handler import QueryHandler, QueryResult, SessionInfo
from czar.pgwire.params import decode_binary, render_literal
from czar.pgwire.sqltext import (
    HUGE_PARAM_NUMBER,
    MAX_PARAM_NUMBER,
    first_keyword,
    iter_statements,
    max_param_index,
    substitute_params,
)
from czar.pgwire.types import PgType, encode_batch, pg_type_for
from qserv.errors import (
    InternalError,
    ProtocolViolation,
    QservError,
    UndefinedParameter,
    Unsupported,
    from_sqlstate,
)
from qserv.sqlerrors import scrub

log = logging.getLogger(__name__)

_ROW_KEYWORDS = {"SELECT", "WITH", "VALUES", "TABLE", "SHOW", "EXPLAIN", "DESCRIBE", "FROM", "SUMMARIZE"}
_END_KEYWORDS = {"COMMIT", "ROLLBACK", "ABORT", "END"}
_FLUSH_BYTES = 256 * 1024
_DEALLOCATE = re.compile(r'\s*DEALLOCATE\s+(?:PREPARE\s+)?(?:"((?:[^"]|"")+)"|(\w+))\s*;?\s*$', re.I)


class Output(Protocol):
    """The byte sink (an asyncio StreamWriter in the server)."""

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...


def error_fields(exc: BaseException, position: Callable[[int], int] = lambda p: p) -> pw.ErrorFields:
    """ErrorResponse fields for any exception; non-Qserv errors are logged and become XX000."""
    if not isinstance(exc, QservError):
        internal = InternalError()
        log.error("internal error, incident %s", internal.incident, exc_info=exc)
        exc = internal
    exc = scrub(exc)  # the last guard: no internal wording reaches a client
    pos = position(exc.position) if exc.position is not None else None
    return pw.ErrorFields(exc.sqlstate, exc.message, detail=exc.detail, hint=exc.hint, position=pos)


def _protocol_error(message: str) -> QservError:
    # Reported like any error (the connection stays up), unlike undecodable bytes.
    return from_sqlstate("08P01", message)


@dataclass
class PreparedStatement:
    sql: str  # "" for an empty statement
    param_oids: tuple[int, ...]


@dataclass
class Portal:
    statement: PreparedStatement
    sql: str
    position: Callable[[int], int]
    result_formats: tuple[int, ...]
    result: QueryResult | None = None
    types: list[PgType] = field(default_factory=list)
    formats: list[int] = field(default_factory=list)
    remainder: pa.RecordBatch | None = None
    rows: int = 0
    done: bool = False


async def _close_batches(result: QueryResult | None) -> None:
    aclose = getattr(result.batches, "aclose", None) if result is not None else None
    if aclose is not None:
        await aclose()


class Connection:
    """Session state between ReadyForQuery messages, driven by :meth:`handle`."""

    def __init__(self, handler: QueryHandler, session: SessionInfo, out: Output) -> None:
        self.handler = handler
        self.session = session
        self.out = out
        self.buffer = bytearray()
        self.status = "I"  # ReadyForQuery: I idle, T in transaction, E failed transaction
        self.skipping = False
        self.statements: dict[str, PreparedStatement] = {}
        self.portals: dict[str, Portal] = {}

    def send(self, data: bytes) -> None:
        self.buffer += data

    async def flush(self) -> None:
        if self.buffer:
            self.out.write(bytes(self.buffer))
            self.buffer.clear()
        await self.out.drain()

    async def ready(self) -> None:
        self.send(pw.encode_ready_for_query(self.status))
        await self.flush()

    async def handle(self, msg: pw.FrontendMessage) -> bool:
        """Process one message; False when the client said Terminate."""
        if isinstance(msg, pw.Terminate):
            return False
        if isinstance(msg, pw.Query):
            await self._simple_query(msg.sql)
        elif isinstance(msg, pw.Sync):
            self.skipping = False
            if self.status == "I":  # the implicit transaction ends: portals go with it
                await self._drop_portals()
            await self.ready()
        elif isinstance(msg, pw.Flush):
            await self.flush()
        elif isinstance(msg, pw.PasswordMessage):
            raise ProtocolViolation("unexpected password message after authentication")
        elif not self.skipping:
            try:
                await self._extended(msg)
            except ConnectionError:
                raise  # the client is gone: nothing to report to
            except Exception as exc:
                self._fail(exc, self._position_for(msg))
                self.skipping = True
        return True

    def _fail(self, exc: BaseException, position: Callable[[int], int] = lambda p: p) -> None:
        self.send(pw.encode_error_response(error_fields(exc, position)))
        if self.status == "T":
            self.status = "E"

    def _position_for(self, msg: pw.FrontendMessage) -> Callable[[int], int]:
        name = getattr(msg, "portal", getattr(msg, "name", None))
        portal = self.portals.get(name) if isinstance(name, str) else None
        return portal.position if portal is not None else (lambda p: p)

    async def _drop_portals(self) -> None:
        for portal in self.portals.values():
            await _close_batches(portal.result)
        self.portals.clear()

    # --- statements -----------------------------------------------------------------------

    async def _execute(self, sql: str) -> QueryResult:
        if self.status == "E" and first_keyword(sql) not in _END_KEYWORDS:
            raise from_sqlstate(
                "25P02",
                "current transaction is aborted, commands ignored until end of transaction block",
                hint="send ROLLBACK",
            )
        if first_keyword(sql) == "DEALLOCATE":
            return self._deallocate(sql)
        return await self.handler.execute(self.session, sql)

    def _deallocate(self, sql: str) -> QueryResult:
        """``DEALLOCATE [PREPARE] name|ALL`` acts on this layer's prepared statements (psycopg
        sends ``DEALLOCATE ALL`` after DDL), so it never reaches the handler."""
        m = _DEALLOCATE.match(sql)
        if m is None:
            raise from_sqlstate("42601", "syntax error in DEALLOCATE", hint="DEALLOCATE name | ALL")
        name = m.group(2) or m.group(1).replace('""', '"')
        if name.upper() == "ALL" and m.group(2):
            self.statements.clear()
            return QueryResult([], command_tag="DEALLOCATE ALL")
        if self.statements.pop(name, None) is None:
            raise from_sqlstate("26000", f'prepared statement "{name}" does not exist')
        return QueryResult([], command_tag="DEALLOCATE")

    def _finish(self, result: QueryResult, sql: str, rows: int) -> str:
        """The command tag; also moves the transaction status."""
        tag = result.command_tag or (f"SELECT {rows}" if result.columns else first_keyword(sql) or "OK")
        word = tag.split(" ", 1)[0].upper()
        if word in ("BEGIN", "START"):
            self.status = "T"
        elif word in _END_KEYWORDS:
            if self.status == "E" and word == "COMMIT":
                tag = "ROLLBACK"  # as PostgreSQL: COMMIT of a failed transaction rolls back
            self.status = "I"
        return tag

    def _describe_rows(self, portal: Portal) -> None:
        assert portal.result is not None
        cols = portal.result.columns
        fmts = portal.result_formats
        if len(fmts) not in (0, 1, len(cols)):
            raise _protocol_error(
                f"bind message has {len(fmts)} result formats but query has {len(cols)} columns"
            )
        portal.types = [pg_type_for(t) for _, t in cols]
        portal.formats = [fmts[0] if len(fmts) == 1 else (fmts[i] if fmts else 0) for i in range(len(cols))]
        if any(f not in (0, 1) for f in portal.formats):
            raise _protocol_error("unsupported result format code")

    def _row_description(self, portal: Portal) -> bytes:
        assert portal.result is not None
        fields = [
            pw.FieldDescription(name, pg.oid, pg.size, fmt)
            for (name, _), pg, fmt in zip(portal.result.columns, portal.types, portal.formats, strict=True)
        ]
        return pw.encode_row_description(fields)

    async def _start(self, portal: Portal) -> None:
        if portal.result is None:
            portal.result = await self._execute(portal.sql)
            self._describe_rows(portal)

    async def _next_batch(self, portal: Portal) -> pa.RecordBatch | None:
        assert portal.result is not None
        while True:
            try:
                batch = await anext(portal.result.batches)
            except StopAsyncIteration:
                return None
            if batch.num_rows:
                return batch

    async def _stream(self, portal: Portal, max_rows: int) -> bool:
        """Send up to ``max_rows`` rows (0: all); True if the portal is suspended."""
        sent = 0
        while True:
            batch = portal.remainder or await self._next_batch(portal)
            portal.remainder = None
            if batch is None:
                return False
            if max_rows and sent == max_rows:
                portal.remainder = batch
                return True
            if max_rows and batch.num_rows > max_rows - sent:
                portal.remainder = batch.slice(max_rows - sent)
                batch = batch.slice(0, max_rows - sent)
            columns = encode_batch(batch, portal.types, portal.formats)
            encode_row = pw.encode_data_row
            for row in zip(*columns, strict=True):
                self.send(encode_row(row))
            sent += batch.num_rows
            portal.rows += batch.num_rows
            if len(self.buffer) >= _FLUSH_BYTES:
                await self.flush()

    async def _run_portal(self, portal: Portal, max_rows: int) -> None:
        """Execute: rows, then CommandComplete or PortalSuspended."""
        if not portal.statement.sql:
            self.send(pw.encode_empty_query_response())
            return
        await self._start(portal)
        assert portal.result is not None
        if not portal.done:
            if portal.result.columns and await self._stream(portal, max_rows):
                self.send(pw.encode_portal_suspended())
                return
            await _close_batches(portal.result)
            portal.done = True
        self.send(pw.encode_command_complete(self._finish(portal.result, portal.sql, portal.rows)))

    # --- simple query ---------------------------------------------------------------------

    async def _simple_query(self, sql: str) -> None:
        self.skipping = False
        self.statements.pop("", None)
        await self._drop_portals()
        empty = True
        for stmt in iter_statements(sql):
            empty = False
            if len(self.buffer) >= _FLUSH_BYTES:  # thousands of statements: replies go as they come
                await self.flush()
            shift = functools.partial(operator.add, stmt.offset)  # positions count from the whole text
            portal = Portal(PreparedStatement(stmt.sql, ()), stmt.sql, shift, ())
            try:
                await self._start(portal)
                assert portal.result is not None
                if portal.result.columns:
                    self.send(self._row_description(portal))
                await self._run_portal(portal, 0)
            except ConnectionError:
                await _close_batches(portal.result)
                raise
            except Exception as exc:
                await _close_batches(portal.result)
                self._fail(exc, portal.position)
                break
        if empty:
            self.send(pw.encode_empty_query_response())
        await self.ready()

    # --- extended query -------------------------------------------------------------------

    async def _extended(self, msg: pw.FrontendMessage) -> None:
        if isinstance(msg, pw.Parse):
            self._parse(msg)
        elif isinstance(msg, pw.Bind):
            await self._bind(msg)
        elif isinstance(msg, pw.Describe):
            await self._describe(msg)
        elif isinstance(msg, pw.Execute):
            portal = self.portals.get(msg.portal)
            if portal is None:
                raise from_sqlstate("34000", f'portal "{msg.portal}" does not exist')
            await self._run_portal(portal, max(msg.max_rows, 0))
        elif isinstance(msg, pw.Close):
            if msg.kind == "S":
                self.statements.pop(msg.name, None)
            else:
                await _close_batches(getattr(self.portals.pop(msg.name, None), "result", None))
            self.send(pw.encode_close_complete())
        elif isinstance(msg, pw.Unsupported) and msg.type_code == "F":
            raise Unsupported("the fast-path function call protocol is not supported", hint="use SQL")
        # CopyData/CopyDone/CopyFail outside COPY are ignored, as PostgreSQL does.

    def _parse(self, msg: pw.Parse) -> None:
        if msg.statement and msg.statement in self.statements:
            raise from_sqlstate("42P05", f'prepared statement "{msg.statement}" already exists')
        parts = list(itertools.islice(iter_statements(msg.sql), 2))
        if len(parts) > 1:
            raise from_sqlstate("42601", "cannot insert multiple commands into a prepared statement")
        sql = parts[0].sql if parts else ""
        highest = max_param_index(sql)
        if highest > MAX_PARAM_NUMBER:
            # checked before the parameter types are sized by it: ``$2000000000`` once made a
            # tuple of two billion OIDs. PostgreSQL answers the same for a ``$n`` it cannot hold.
            number = str(highest) if highest < HUGE_PARAM_NUMBER else "n: parameter number too large"
            raise UndefinedParameter(
                f"there is no parameter ${number}",
                detail=f"a statement takes at most {MAX_PARAM_NUMBER} parameters",
            )
        count = max(len(msg.param_oids), highest)
        oids = msg.param_oids + (0,) * (count - len(msg.param_oids))
        self.statements[msg.statement] = PreparedStatement(sql, oids)
        self.send(pw.encode_parse_complete())

    def _statement(self, name: str) -> PreparedStatement:
        stmt = self.statements.get(name)
        if stmt is None:
            raise from_sqlstate("26000", f'prepared statement "{name}" does not exist')
        return stmt

    async def _bind(self, msg: pw.Bind) -> None:
        stmt = self._statement(msg.statement)
        n = len(stmt.param_oids)
        if len(msg.params) != n:
            raise _protocol_error(
                f"bind message supplies {len(msg.params)} parameters, but prepared statement requires {n}"
            )
        if len(msg.param_formats) not in (0, 1, n):
            raise _protocol_error(
                f"bind message has {len(msg.param_formats)} parameter formats but {n} parameters"
            )
        values: list[object] = []
        for i, (oid, raw) in enumerate(zip(stmt.param_oids, msg.params, strict=True)):
            fmt = msg.param_formats[0 if len(msg.param_formats) == 1 else i] if msg.param_formats else 0
            if raw is None:
                values.append(None)
            elif fmt == 1:
                values.append(decode_binary(oid, raw))
            else:
                values.append(raw.decode("utf-8", errors="replace"))
        sub = substitute_params(stmt.sql, lambda k: render_literal(stmt.param_oids[k - 1], values[k - 1]))
        if msg.portal in self.portals:
            if msg.portal:
                raise from_sqlstate("42P03", f'cursor "{msg.portal}" already exists')
            await _close_batches(self.portals.pop("").result)
        self.portals[msg.portal] = Portal(stmt, sub.sql, sub.original_position, msg.result_formats)
        self.send(pw.encode_bind_complete())

    async def _describe(self, msg: pw.Describe) -> None:
        if msg.kind == "P":
            portal = self.portals.get(msg.name)
            if portal is None:
                raise from_sqlstate("34000", f'portal "{msg.name}" does not exist')
            if not portal.statement.sql:
                self.send(pw.encode_no_data())
                return
            await self._start(portal)
            assert portal.result is not None
            self.send(self._row_description(portal) if portal.result.columns else pw.encode_no_data())
            return
        stmt = self._statement(msg.name)
        self.send(pw.encode_parameter_description([oid or 25 for oid in stmt.param_oids]))
        if first_keyword(stmt.sql) not in _ROW_KEYWORDS:
            self.send(pw.encode_no_data())
            return
        sub = substitute_params(stmt.sql, lambda k: render_literal(stmt.param_oids[k - 1], None))
        dry = Portal(stmt, sub.sql, sub.original_position, ())
        try:
            await self._start(dry)
        finally:
            await _close_batches(dry.result)
        assert dry.result is not None
        self.send(self._row_description(dry) if dry.result.columns else pw.encode_no_data())
