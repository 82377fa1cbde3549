"""The asyncio shell of the PostgreSQL front end: sockets, startup, cancel keys.

``serve`` listens; each connection decodes packets with the pure :class:`~.protocol.Decoder`,
answers SSL/GSS requests with 'N', authenticates, announces ParameterStatus and BackendKeyData,
then hands messages to a :class:`~.connection.Connection`. A CancelRequest (a fresh connection
carrying a process id and secret key) calls ``handler.cancel``. Undecodable input gets an
ErrorResponse (08P01) and closes that connection only; nothing a client sends stops the server.

:class:`Limits` bound what one client can hold, as in PostgreSQL: a message length past
``max_message_length`` is refused before its body is read; a connection that has not finished
its startup within ``startup_timeout`` is closed (PostgreSQL's authentication_timeout); a
session beyond ``max_connections`` is refused with 53300. Sockets still in startup are not
sessions: they cost a small buffer each and the timeout ends them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from czar.pgwire import protocol as pw
from czar.pgwire.auth import Authenticator, TrustAuthenticator
from czar.pgwire.connection import Connection, error_fields
from czar.pgwire.handler import QueryHandler, SessionInfo
from qserv.errors import ProtocolViolation, QservError, TooManyConnections, from_sqlstate

log = logging.getLogger(__name__)

SERVER_VERSION = "16.0 (qserv)"
_READ_SIZE = 64 * 1024


@dataclass(frozen=True)
class Limits:
    """Per-server bounds (the czar fills them from :class:`qserv.config.CzarConfig`)."""

    max_connections: int = 100
    startup_timeout: float = 60.0
    max_message_length: int = pw.MAX_MESSAGE_LENGTH


@dataclass
class _Backends:
    """Process ids and secret keys of this server's live sessions (for CancelRequest)."""

    next_pid: int = field(default_factory=lambda: 10_000 + secrets.randbelow(50_000))
    keys: dict[int, int] = field(default_factory=dict)

    def register(self) -> tuple[int, int]:
        self.next_pid += 1
        secret = secrets.randbits(31)
        self.keys[self.next_pid] = secret
        return self.next_pid, secret


def parse_options(options: str) -> dict[str, str]:
    """The startup ``options`` string: ``-c name=value`` and ``--name=value`` settings."""
    settings: dict[str, str] = {}
    words = options.replace("\\ ", "\0").split()
    i = 0
    while i < len(words):
        word = words[i].replace("\0", " ")
        if word == "-c" and i + 1 < len(words):
            word = "--" + words[i + 1].replace("\0", " ")
            i += 1
        if word.startswith("--") and "=" in word:
            name, value = word[2:].split("=", 1)
            settings[name.replace("-", "_")] = value
        i += 1
    return settings


class _ClientStream:
    """Pulls decoded packets off one socket."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, max_message_length: int
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.decoder = pw.Decoder(max_message_length)
        self.pending: deque[pw.StartupPacket | pw.FrontendMessage] = deque()

    async def next(self) -> pw.StartupPacket | pw.FrontendMessage | None:
        while not self.pending:
            data = await self.reader.read(_READ_SIZE)
            if not data:
                return None
            self.decoder.feed(data)
            self.pending.extend(self.decoder.packets())
        return self.pending.popleft()

    # AuthExchange
    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def receive(self) -> pw.PasswordMessage:
        await self.writer.drain()
        msg = await self.next()
        if not isinstance(msg, pw.PasswordMessage):
            raise ProtocolViolation("expected a password message during authentication")
        return msg


class _Server:
    def __init__(self, handler: QueryHandler, authenticator: Authenticator, limits: Limits) -> None:
        self.handler = handler
        self.authenticator = authenticator
        self.limits = limits
        self.backends = _Backends()
        self.tasks: set[asyncio.Task[None]] = set()

    async def close_clients(self) -> None:
        """Cancel every client conversation (server shutdown) and wait for them to end."""
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stream = _ClientStream(reader, writer, self.limits.max_message_length)
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        try:
            await self._converse(stream)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away
        except asyncio.CancelledError:
            # Server shutdown. Ending quietly matters: asyncio's stream callback calls
            # task.exception() on a finished task and would log a cancelled one as an error.
            pass
        except QservError as exc:  # protocol violation or refused startup: tell, then close
            with contextlib.suppress(ConnectionError):
                writer.write(pw.encode_error_response(error_fields(exc)))
                await writer.drain()
        except Exception as exc:
            log.exception("connection failed")
            with contextlib.suppress(ConnectionError):
                writer.write(pw.encode_error_response(error_fields(exc)))
        finally:
            writer.close()
            # at shutdown the wait itself is cancelled: the connection is going away anyway
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await writer.wait_closed()

    async def _converse(self, stream: _ClientStream) -> None:
        try:
            async with asyncio.timeout(self.limits.startup_timeout):
                startup = await self._startup(stream)
                if startup is None:
                    return
                session, secret = await self._open_session(stream, startup)
        except TimeoutError:
            return  # as PostgreSQL: a client silent past the timeout is closed without a word
        conn = Connection(self.handler, session, stream.writer)
        try:
            await self.handler.open_session(session)  # a bad startup setting refuses the session
            conn.send(pw.encode_backend_key_data(session.process_id, secret))
            await conn.ready()
            while True:
                msg = await stream.next()
                if msg is None or not isinstance(msg, pw.FrontendMessage) or not await conn.handle(msg):
                    return
        except ProtocolViolation:
            await conn.flush()
            raise
        finally:
            self.backends.keys.pop(session.process_id, None)
            try:
                await self.handler.close_session(session)
            except Exception:
                log.exception("close_session failed for process %d", session.process_id)

    async def _startup(self, stream: _ClientStream) -> pw.StartupMessage | None:
        while True:
            packet = await stream.next()
            if packet is None:
                return None
            if isinstance(packet, pw.SSLRequest | pw.GSSENCRequest):
                stream.writer.write(b"N")  # no TLS/GSS here; the client continues in clear
                await stream.writer.drain()
            elif isinstance(packet, pw.CancelRequest):
                if self.backends.keys.get(packet.process_id) == packet.secret_key:
                    await self.handler.cancel(packet.process_id)
                return None
            elif isinstance(packet, pw.StartupMessage):
                return packet
            else:
                raise ProtocolViolation("expected a startup message")

    async def _open_session(
        self, stream: _ClientStream, startup: pw.StartupMessage
    ) -> tuple[SessionInfo, int]:
        params = startup.parameters
        if not params.get("user"):
            raise from_sqlstate("28000", "no PostgreSQL user name specified in startup packet")
        minor = startup.version & 0xFFFF
        unknown = [k for k in params if k.startswith("_pq_.")]
        if minor > 0 or unknown:
            stream.send(pw.encode_negotiate_protocol_version(0, unknown))
        user = await self.authenticator.authenticate(startup, stream)
        if len(self.backends.keys) >= self.limits.max_connections:
            raise TooManyConnections(
                "sorry, too many clients already",
                detail=f"the server accepts {self.limits.max_connections} sessions at once (max_connections)",
            )
        settings = {k: v for k, v in params.items() if k not in ("user", "database", "options")}
        settings.update(parse_options(params.get("options", "")))
        pid, secret = self.backends.register()
        session = SessionInfo(
            user=user,
            database=params.get("database") or user,
            application_name=settings.get("application_name", ""),
            process_id=pid,
            parameters=settings,
        )
        status = {
            "server_version": SERVER_VERSION,
            "server_encoding": "UTF8",
            "client_encoding": "UTF8",
            "DateStyle": "ISO, MDY",
            "IntervalStyle": "postgres",
            "integer_datetimes": "on",
            "standard_conforming_strings": "on",
            "TimeZone": "UTC",
            "is_superuser": "off",
            "session_authorization": user,
            "application_name": session.application_name,
        }
        for name, value in status.items():
            stream.send(pw.encode_parameter_status(name, value))
        return session, secret


class PgServer:
    """A listening front end: the asyncio server plus its live client conversations."""

    def __init__(self, listener: asyncio.Server, server: _Server) -> None:
        self.listener = listener
        self._server = server

    @property
    def port(self) -> int:
        return int(self.listener.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop listening and end every client connection."""
        self.listener.close()
        await self._server.close_clients()
        await self.listener.wait_closed()


async def start(
    handler: QueryHandler,
    host: str = "127.0.0.1",
    port: int = 4040,
    *,
    authenticator: Authenticator | None = None,
    limits: Limits | None = None,
) -> PgServer:
    """Start listening for PostgreSQL clients (``port=0``: any free port)."""
    server = _Server(handler, authenticator or TrustAuthenticator(), limits or Limits())
    return PgServer(await asyncio.start_server(server.client, host, port), server)


async def serve(
    handler: QueryHandler,
    host: str = "127.0.0.1",
    port: int = 4040,
    *,
    authenticator: Authenticator | None = None,
) -> asyncio.Server:
    """Start listening and return the bare ``asyncio.Server`` (see :func:`start` to also close clients)."""
    return (await start(handler, host, port, authenticator=authenticator)).listener


class ServerThread:
    """A server on its own event loop in a daemon thread (tests, embedding in sync code)."""

    def __init__(
        self, handler: QueryHandler, host: str = "127.0.0.1", port: int = 0, limits: Limits | None = None
    ) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="pgwire", daemon=True)
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(start(handler, host, port, limits=limits), self.loop)
        self.server = future.result(timeout=10)
        self.host = host
        self.port = self.server.port

    def stop(self) -> None:
        """Stop listening, end every connection and the loop, join the thread."""
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


@contextlib.contextmanager
def running_server(
    handler: QueryHandler, host: str = "127.0.0.1", port: int = 0, limits: Limits | None = None
) -> Iterator[ServerThread]:
    """``with running_server(handler) as srv: psycopg.connect(port=srv.port)``."""
    srv = ServerThread(handler, host, port, limits)
    try:
        yield srv
    finally:
        srv.stop()
