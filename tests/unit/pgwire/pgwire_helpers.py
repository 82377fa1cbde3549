"""Test doubles for pgwire: a DuckDB-backed QueryHandler and a raw protocol client."""

from __future__ import annotations

import asyncio
import re
import socket
import struct
from collections.abc import AsyncIterator

import duckdb
import pyarrow as pa

from czar.pgwire import QueryResult, SessionInfo
from czar.pgwire.sqltext import first_keyword
from qserv.errors import QueryCanceled, SyntaxError_, UndefinedTable

_ROWS = {"SELECT", "WITH", "VALUES", "FROM", "SHOW", "DESCRIBE", "TABLE", "EXPLAIN", "SUMMARIZE"}


class DuckHandler:
    """Runs each statement on a per-session cursor of one in-memory DuckDB."""

    def __init__(self) -> None:
        self.db = duckdb.connect()
        self.db.execute("SET threads = 1")  # the machine is shared; keep the slow query polite
        self.db.execute("CREATE TABLE stars (id INTEGER, name VARCHAR, mag DOUBLE)")
        self.db.execute("INSERT INTO stars SELECT i, 'star' || i, i / 10 FROM range(1, 101) t(i)")
        self.sessions: dict[int, duckdb.DuckDBPyConnection] = {}
        self.seen: list[SessionInfo] = []
        self.closed: list[int] = []

    def _cursor(self, session: SessionInfo) -> duckdb.DuckDBPyConnection:
        if session.process_id not in self.sessions:
            self.sessions[session.process_id] = self.db.cursor()
            self.seen.append(session)
        return self.sessions[session.process_id]

    async def execute(self, session: SessionInfo, sql: str) -> QueryResult:
        missing = re.search(r"\bno_such_table\b", sql)
        if missing:
            raise UndefinedTable(
                "table no_such_table does not exist",
                detail="the catalog has no such table",
                hint="check the table name",
                position=missing.start() + 1,
            )
        cur = self._cursor(session)
        keyword = first_keyword(sql)
        try:
            if keyword not in _ROWS:
                await asyncio.to_thread(lambda: cur.execute(sql).fetchall())
                return QueryResult([], command_tag=keyword)
            reader = await asyncio.to_thread(lambda: cur.sql(sql).to_arrow_reader(1000))
        except duckdb.InterruptException as exc:
            raise QueryCanceled("canceling statement due to user request") from exc
        except duckdb.ParserException as exc:
            raise SyntaxError_(str(exc)) from exc
        return QueryResult([(f.name, f.type) for f in reader.schema], _batches(reader))

    async def cancel(self, process_id: int) -> None:
        cur = self.sessions.get(process_id)
        if cur is not None:
            cur.interrupt()

    async def open_session(self, session: SessionInfo) -> None:
        pass

    async def close_session(self, session: SessionInfo) -> None:
        self.closed.append(session.process_id)


def _read(reader: pa.RecordBatchReader) -> pa.RecordBatch | None:
    # StopIteration cannot cross asyncio.to_thread: turn it into None here.
    try:
        return reader.read_next_batch()
    except StopIteration:
        return None


async def _batches(reader: pa.RecordBatchReader) -> AsyncIterator[pa.RecordBatch]:
    while True:
        try:
            batch = await asyncio.to_thread(_read, reader)
        except duckdb.InterruptException as exc:
            raise QueryCanceled("canceling statement due to user request") from exc
        if batch is None:
            return
        yield batch


class RawClient:
    """Speaks the frontend side of the protocol by hand, for flows no driver exposes."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""

    def startup(self, **params: str) -> list[tuple[str, bytes]]:
        body = struct.pack("!i", 196608)
        for k, v in {"user": "qserv", "database": "sky", **params}.items():
            body += k.encode() + b"\0" + v.encode() + b"\0"
        body += b"\0"
        self.sock.sendall(struct.pack("!i", len(body) + 4) + body)
        return self.until_ready()

    def send(self, type_code: bytes, payload: bytes = b"") -> None:
        self.sock.sendall(type_code + struct.pack("!i", len(payload) + 4) + payload)

    def recv(self) -> tuple[str, bytes] | None:
        while len(self.buf) < 5 or len(self.buf) < 1 + struct.unpack("!i", self.buf[1:5])[0]:
            data = self.sock.recv(65536)
            if not data:
                return None
            self.buf += data
        length = struct.unpack("!i", self.buf[1:5])[0]
        msg = (self.buf[:1].decode(), self.buf[5 : length + 1])
        self.buf = self.buf[length + 1 :]
        return msg

    def until_ready(self) -> list[tuple[str, bytes]]:
        out: list[tuple[str, bytes]] = []
        while True:
            msg = self.recv()
            assert msg is not None, f"connection closed after {out}"
            out.append(msg)
            if msg[0] == "Z":
                return out

    def close(self) -> None:
        self.sock.close()


def cstr(s: str) -> bytes:
    return s.encode() + b"\0"
