"""The czar process: PostgreSQL wire front end and HTTP API around the query pipeline.

A thin shell: it builds the pieces from :class:`~qserv.config.Config` (metadata store,
director index, worker clients, the pipeline), answers session statements itself, and hands
every query to :class:`~czar.pipeline.Pipeline`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pyarrow as pa

from czar.director_index import DirectorIndex
from czar.http.app import make_http_server
from czar.http.ingest import resume_transactions
from czar.merge import MergeEngine
from czar.pgwire.handler import QueryResult, SessionInfo
from czar.pgwire.server import Limits
from czar.pgwire.server import start as start_pgwire
from czar.pipeline import Pipeline
from czar.session import (
    STATEMENT_TIMEOUT,
    SessionState,
    explain_target,
    format_duration_ms,
    handle_session_statement,
    session_defaults,
)
from czar.view import ViewCache
from qserv.config import Config
from qserv.errors import QueryCanceled, StatementTooComplex, WorkerUnavailable
from qserv.log import event
from qserv.metadata import MetadataStore, open_store
from qserv.rpc.client import WorkerClient

log = logging.getLogger(__name__)


async def _stream(table: pa.Table) -> AsyncIterator[pa.RecordBatch]:
    for batch in table.to_batches(max_chunksize=8192):
        yield batch


async def _empty() -> AsyncIterator[pa.RecordBatch]:
    return
    yield  # pragma: no cover  (makes this an async generator)


def _rows(column: str, values: list[str]) -> QueryResult:
    table = pa.table({column: pa.array(values, pa.string())})
    return QueryResult(columns=[(column, pa.string())], batches=_stream(table), command_tag=None)


@dataclass
class _Connection:
    state: SessionState
    running: asyncio.Task[object] | None = None


@dataclass
class Czar:
    """Implements :class:`czar.pgwire.handler.QueryHandler` over the cluster."""

    config: Config
    store: MetadataStore
    director_index: DirectorIndex
    views: ViewCache = field(init=False)
    merger: MergeEngine = field(init=False)
    pipeline: Pipeline = field(init=False)
    _clients: dict[str, WorkerClient] = field(default_factory=dict, init=False)
    _connections: dict[int, _Connection] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.views = ViewCache(self.store)
        self.merger = MergeEngine(temp_directory=self.config.czar.data_dir / "spill")
        self.pipeline = Pipeline(
            self.views,
            self.director_index,
            self._execute_batch,
            self.merger,
            max_far_pairs=self.config.czar.max_far_pairs,
        )

    # -- worker I/O ---------------------------------------------------------------------------
    def _client(self, worker: str) -> WorkerClient:
        client = self._clients.get(worker)
        if client is None:
            info = self.views.get().worker(worker) or self.views.get(refresh=True).worker(worker)
            if info is None:
                raise WorkerUnavailable(f"unknown worker {worker!r}")
            client = self._clients[worker] = WorkerClient(info.address)
        return client

    async def _execute_batch(
        self, worker: str, query_id: str, sql: str, chunk_ids: tuple[int, ...]
    ) -> tuple[pa.Schema | None, list[pa.RecordBatch]]:
        schema: pa.Schema | None = None
        batches: list[pa.RecordBatch] = []
        async for batch in self._client(worker).execute(
            query_id, sql, list(chunk_ids), timeout=self.config.czar.worker_timeout
        ):
            schema = schema or batch.schema
            batches.append(batch)
        return schema, batches

    # -- QueryHandler -------------------------------------------------------------------------
    def _connection(self, session: SessionInfo) -> _Connection:
        conn = self._connections.get(session.process_id)
        if conn is None:
            # the client's startup settings (``options='-c statement_timeout=5s'``, PGOPTIONS)
            # are its session's defaults: RESET returns to them, as in PostgreSQL
            defaults = session_defaults(self._server_defaults(), session.parameters)
            state = SessionState(user=session.user, database=session.database, defaults=defaults)
            conn = self._connections[session.process_id] = _Connection(state)
        return conn

    def _server_defaults(self) -> dict[str, str]:
        timeout_ms = round(self.config.czar.statement_timeout * 1000)
        return {STATEMENT_TIMEOUT: format_duration_ms(timeout_ms)}

    async def open_session(self, session: SessionInfo) -> None:
        self._connection(session)  # checks the startup settings (22023 refuses the session)

    async def execute(self, session: SessionInfo, sql: str) -> QueryResult:
        limit = self.config.czar.max_statement_length
        if len(sql) > limit:
            # refused before any parsing: sqlglot holds ~150 bytes per character of an IN list
            raise StatementTooComplex(
                f"statement too complex: {len(sql)} characters, above max_statement_length ({limit})",
                hint="split a long key list into several queries, or raise czar.max_statement_length",
            )
        try:
            return await self._execute(session, sql)
        except RecursionError:
            # sqlglot parses and walks trees recursively: a statement nested thousands deep
            # (``((((1))))``, ``NOT NOT ... x``) ends there, a clean refusal as PostgreSQL's
            raise StatementTooComplex(
                "stack depth limit exceeded: the statement is nested too deeply",
                hint="simplify the expression nesting",
            ) from None

    async def _execute(self, session: SessionInfo, sql: str) -> QueryResult:
        conn = self._connection(session)
        reply = handle_session_statement(sql, conn.state)
        if reply is not None:
            if reply.column is not None:
                return _rows(reply.column, [reply.value or ""])
            return QueryResult(columns=[], batches=_empty(), command_tag=reply.command_tag)
        target = explain_target(sql)
        if target is not None:
            text = await asyncio.to_thread(
                self.pipeline.explain, target, conn.state.database, conn.state.dialect()
            )
            return _rows("QUERY PLAN", text.splitlines())
        query_id = uuid.uuid4().hex[:16]
        timeout_ms = conn.state.statement_timeout_ms()
        task = asyncio.ensure_future(
            self.pipeline.run(sql, conn.state.database, query_id, conn.state.dialect())
        )
        conn.running = task
        # past the timeout the task is cancelled exactly as a CancelRequest cancels it: its
        # worker calls are cancelled and the workers interrupt DuckDB
        deadline = asyncio.timeout(timeout_ms / 1000 if timeout_ms else None)
        try:
            async with deadline:
                answer = await task
        except TimeoutError:
            if not deadline.expired():
                raise
            event(log, "statement timeout", query_id=query_id, statement_timeout_ms=timeout_ms)
            raise QueryCanceled("canceling statement due to statement timeout") from None
        except asyncio.CancelledError:
            if task.cancelled():
                raise QueryCanceled("canceling statement due to user request") from None
            raise
        finally:
            conn.running = None
        table = answer.table
        return QueryResult(
            columns=[(f.name, f.type) for f in table.schema],
            batches=_stream(table),
            command_tag=f"SELECT {table.num_rows}",
        )

    async def cancel(self, process_id: int) -> None:
        conn = self._connections.get(process_id)
        if conn is not None and conn.running is not None:
            event(log, "cancel requested", process_id=process_id)
            conn.running.cancel()

    async def close_session(self, session: SessionInfo) -> None:
        conn = self._connections.pop(session.process_id, None)
        if conn is not None and conn.running is not None:
            conn.running.cancel()  # the client is gone: stop its query on the workers too


def serve(config: Config) -> None:
    """Run the czar until SIGINT/SIGTERM: PostgreSQL wire and HTTP front ends."""
    store = open_store(config.metadata_url())
    config.czar.data_dir.mkdir(parents=True, exist_ok=True)
    director_index = DirectorIndex(config.czar.data_dir / "director_index.duckdb")
    resume_transactions(store, director_index)
    czar = Czar(config, store, director_index)
    http = make_http_server(
        config.czar.host,
        config.czar.http_port,
        store,
        director_index,
        config.replication.level,
        on_change=czar.views.invalidate,
        max_body_bytes=config.czar.max_http_body_bytes,
    )
    http_thread = threading.Thread(target=http.serve_forever, name="http", daemon=True)
    http_thread.start()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        limits = Limits(
            max_connections=config.czar.max_connections,
            startup_timeout=config.czar.startup_timeout,
            max_message_length=config.czar.max_message_bytes,
        )
        server = await start_pgwire(czar, config.czar.host, config.czar.pg_port, limits=limits)
        event(
            log,
            "czar ready",
            pg=f"{config.czar.host}:{config.czar.pg_port}",
            http=f"{config.czar.host}:{config.czar.http_port}",
            metadata=config.metadata_url(),
        )
        await stop.wait()
        await server.close()

    try:
        asyncio.run(main())
    finally:
        http.shutdown()
        director_index.close()
        store.close()
        event(log, "czar stopped")
