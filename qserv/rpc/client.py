"""Client of one worker: sync calls for admin and ingest, async streaming for queries.

``WorkerClient`` holds a sync channel (health, DDL, ingest, transactions, stats; used by the
loader, the replication controller and tests) and a ``grpc.aio`` channel for ``execute``
(used by the czar's dispatcher, which runs on an event loop). The aio channel is created
lazily inside the running loop, because an aio channel belongs to the loop that made it.

Every failure is raised as a typed :class:`~qserv.errors.QservError` (``codec.rpc_error``):
the worker's own error with its SQLSTATE, or :class:`~qserv.errors.WorkerUnavailable` when
the worker cannot be reached. An ``execute`` that runs past its deadline is a
:class:`~qserv.errors.QueryCanceled` (57014), not an unreachable worker: a long scan is slow,
not dead.

Example::

    client = WorkerClient("127.0.0.1:5040")
    client.create_table("sky", "Object", TableKind.DIRECTOR, [Column("objectId", "BIGINT")])
    client.ingest([(7, "sky", "Object", False, rows)])
    client.commit(7)
    async for batch in client.execute("q1", 'SELECT count(*) FROM sky."Object"', [1, 2]):
        ...
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass

import grpc
import grpc.aio
import pyarrow as pa

from qserv.catalog import Column, TableKind
from qserv.errors import QueryCanceled
from qserv.rpc import codec
from qserv.rpc.ingest_wire import FORWARDED_KEY, IngestItem, ingest_requests
from qserv.rpc.v1 import common_pb2, worker_pb2, worker_pb2_grpc

_INGEST_METHOD = "/qserv.rpc.v1.Worker/Ingest"


@dataclass(frozen=True)
class TableChecksum:
    """Rows and order-independent checksum of one stored table's rows in one chunk."""

    database: str
    table: str
    chunk_id: int
    rows: int
    checksum: str  # 16 hex digits


@dataclass(frozen=True)
class ChunkPart:
    """One piece of exported chunks: a batch of a table's rows, or the end of a (chunk, table)."""

    database: str
    table: str
    chunk_id: int  # of the end; -1 for a batch (which may hold rows of several chunks)
    batch: pa.RecordBatch | None = None
    end: TableChecksum | None = None  # set on the last part of each (chunk, table)


@dataclass(frozen=True)
class WorkerHealth:
    name: str
    version: str
    queries_running: int


@dataclass(frozen=True)
class ChunkStat:
    """Committed rows of one stored table (``T``, ``T__overlap``) in one chunk (-1: regular)."""

    table: str
    chunk_id: int
    rows: int


class WorkerClient:
    """gRPC client of one worker (``address`` is ``host:port``)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._channel = grpc.insecure_channel(address, options=list(codec.CHANNEL_OPTIONS))
        self._stub = worker_pb2_grpc.WorkerStub(self._channel)
        # Ingest requests arrive already serialised (see qserv.rpc.ingest_wire): the payload
        # is copied once into the message instead of three times through protobuf objects.
        self._ingest = self._channel.stream_unary(
            _INGEST_METHOD,
            request_serializer=lambda message: message,
            response_deserializer=worker_pb2.IngestReply.FromString,
        )
        self._aio_channel: grpc.aio.Channel | None = None
        self._aio_stub: worker_pb2_grpc.WorkerStub | None = None
        self._aio_loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        """Close the sync channel (the aio channel is closed by :meth:`aclose`)."""
        self._channel.close()

    async def aclose(self) -> None:
        """Close the aio channel (call from the event loop that ran :meth:`execute`)."""
        if self._aio_channel is not None and self._aio_loop is asyncio.get_running_loop():
            await self._aio_channel.close()
        self._aio_channel = self._aio_stub = self._aio_loop = None

    def __enter__(self) -> WorkerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _aio(self) -> worker_pb2_grpc.WorkerStub:
        loop = asyncio.get_running_loop()
        if self._aio_stub is None or self._aio_loop is not loop:
            # a channel made on another (maybe closed) loop cannot be used from this one
            self._aio_channel = grpc.aio.insecure_channel(self.address, options=list(codec.CHANNEL_OPTIONS))
            self._aio_stub = worker_pb2_grpc.WorkerStub(self._aio_channel)
            self._aio_loop = loop
        return self._aio_stub

    # -- sync calls ---------------------------------------------------------------------------

    def health(self, timeout: float | None = 5.0) -> WorkerHealth:
        """Name, version and number of running queries of the worker."""
        try:
            reply = self._stub.Health(worker_pb2.HealthRequest(), timeout=timeout)
        except grpc.RpcError as exc:
            raise codec.rpc_error(exc, self.address) from exc
        return WorkerHealth(reply.name, reply.version, reply.queries_running)

    def create_table(
        self,
        database: str,
        table: str,
        kind: TableKind,
        columns: Sequence[Column],
        timeout: float | None = 60.0,
    ) -> None:
        """Create ``database.table`` on the worker (same columns again: no-op)."""
        request = worker_pb2.CreateTableRequest(
            database=database,
            table=table,
            kind=codec.kind_to_pb(kind),
            columns=[common_pb2.Column(name=c.name, type=c.type) for c in columns],
        )
        try:
            self._stub.CreateTable(request, timeout=timeout)
        except grpc.RpcError as exc:
            raise codec.rpc_error(exc, self.address) from exc

    def ingest(self, items: Iterable[IngestItem], timeout: float | None = None) -> int:
        """Stage rows in one stream (all or nothing); the number of rows staged.

        Each item is (transaction_id, database, table, overlap, rows[, forward]); rows carry
        the user columns plus ``_chunk`` (and ``_subchunk`` for directors); the worker also
        stages them on the workers at the ``forward`` addresses before it answers. Large
        tables are split into messages of ~4 MB.
        """

        return self.ingest_messages((m for item in items for m in ingest_requests(item)), timeout)

    def ingest_messages(
        self, messages: Iterable[bytes], timeout: float | None = None, forwarded: bool = False
    ) -> int:
        """:meth:`ingest` of requests already serialised; ``forwarded``: a worker forwarding
        rows it received (the receiver stages them and forwards nothing)."""
        metadata = ((FORWARDED_KEY, "1"),) if forwarded else None
        try:
            reply = self._ingest(iter(messages), timeout=timeout, metadata=metadata)
        except grpc.RpcError as exc:
            raise codec.rpc_error(exc, self.address) from exc
        return int(reply.rows)

    def commit(self, transaction_id: int, timeout: float | None = None) -> None:
        """Publish the transaction's staged rows (idempotent)."""
        try:
            self._stub.CommitTransaction(
                worker_pb2.TransactionRequest(transaction_id=transaction_id), timeout=timeout
            )
        except grpc.RpcError as exc:
            raise codec.rpc_error(exc, self.address) from exc

    def abort(self, transaction_id: int, timeout: float | None = 60.0) -> None:
        """Drop the transaction's staged rows (idempotent)."""
        try:
            self._stub.AbortTransaction(
                worker_pb2.TransactionRequest(transaction_id=transaction_id), timeout=timeout
            )
        except grpc.RpcError as exc:
            raise codec.rpc_error(exc, self.address) from exc

    def chunk_stats(self, database: str, timeout: float | None = 60.0) -> list[ChunkStat]:
        """Committed rows per (stored table, chunk) of ``database`` on this worker."""
        try:
            reply = self._stub.ChunkStats(worker_pb2.ChunkStatsRequest(database=database), timeout=timeout)
        except grpc.RpcError as exc:
            raise codec.rpc_error(exc, self.address) from exc
        return [ChunkStat(s.table, s.chunk_id, s.rows) for s in reply.stats]

    # -- chunk copy ---------------------------------------------------------------------------

    def export_chunks(
        self, databases: Sequence[str], chunk_ids: Sequence[int], timeout: float | None = None
    ) -> Iterator[ChunkPart]:
        """The parts of family chunks as the worker exports them (rows, then each table's checksum)."""
        return self._export(
            worker_pb2.ChunkRequest(databases=list(databases), chunk_ids=list(chunk_ids)), timeout
        )

    def _export(self, request: worker_pb2.ChunkRequest, timeout: float | None) -> Iterator[ChunkPart]:
        try:
            for message in self._stub.ExportChunk(request, timeout=timeout):
                batches = codec.decode_ipc(message.arrow_ipc).to_batches() if message.arrow_ipc else []
                end = checksum_from_pb(message.end) if message.HasField("end") else None
                for batch in batches:
                    yield ChunkPart(message.database, message.table, message.chunk_id, batch=batch)
                if end is not None:
                    yield ChunkPart(message.database, message.table, message.chunk_id, end=end)
        except grpc.RpcError as exc:
            raise codec.rpc_error(exc, self.address) from exc

    def export_tables(
        self, tables: Sequence[tuple[str, str]], timeout: float | None = None
    ) -> Iterator[ChunkPart]:
        """The parts of whole regular tables (database, table) as the worker exports them."""
        return self._export(worker_pb2.ChunkRequest(regular_tables=_table_names(tables)), timeout)

    def pull_tables(
        self, source: str, tables: Sequence[tuple[str, str]], timeout: float | None = 600.0
    ) -> list[TableChecksum]:
        """Have this worker replace whole regular tables by those of the worker at ``source``."""
        return self._pull(
            worker_pb2.PullChunkRequest(source=source, regular_tables=_table_names(tables)), timeout
        )

    def table_checksums(
        self, tables: Sequence[tuple[str, str]], timeout: float | None = 60.0
    ) -> list[TableChecksum]:
        """Row count and checksum of whole regular tables on the worker."""
        return self._checksums(worker_pb2.ChunkRequest(regular_tables=_table_names(tables)), timeout)

    def pull_chunks(
        self, source: str, databases: Sequence[str], chunk_ids: Sequence[int], timeout: float | None = 600.0
    ) -> list[TableChecksum]:
        """Have this worker copy family chunks from the worker at ``source`` (installed atomically)."""
        request = worker_pb2.PullChunkRequest(
            source=source, databases=list(databases), chunk_ids=list(chunk_ids)
        )
        return self._pull(request, timeout)

    def _pull(self, request: worker_pb2.PullChunkRequest, timeout: float | None) -> list[TableChecksum]:
        try:
            reply = self._stub.PullChunk(request, timeout=timeout)
        except grpc.RpcError as exc:
            raise codec.rpc_error(exc, self.address) from exc
        return [checksum_from_pb(t) for t in reply.tables]

    def drop_chunks(
        self, databases: Sequence[str], chunk_ids: Sequence[int], timeout: float | None = 60.0
    ) -> None:
        """Delete the worker's rows of family chunks."""
        request = worker_pb2.ChunkRequest(databases=list(databases), chunk_ids=list(chunk_ids))
        try:
            self._stub.DropChunk(request, timeout=timeout)
        except grpc.RpcError as exc:
            raise codec.rpc_error(exc, self.address) from exc

    def chunk_checksums(
        self, databases: Sequence[str], chunk_ids: Sequence[int], timeout: float | None = 60.0
    ) -> list[TableChecksum]:
        """Row count and checksum of every chunked table of the family chunks on the worker."""
        return self._checksums(
            worker_pb2.ChunkRequest(databases=list(databases), chunk_ids=list(chunk_ids)), timeout
        )

    def _checksums(self, request: worker_pb2.ChunkRequest, timeout: float | None) -> list[TableChecksum]:
        try:
            reply = self._stub.ChunkChecksum(request, timeout=timeout)
        except grpc.RpcError as exc:
            raise codec.rpc_error(exc, self.address) from exc
        return [checksum_from_pb(t) for t in reply.tables]

    # -- async query --------------------------------------------------------------------------

    async def execute(
        self, query_id: str, sql: str, chunk_ids: Sequence[int], timeout: float | None = None
    ) -> AsyncIterator[pa.RecordBatch]:
        """Run one worker batch and yield its record batches as they arrive.

        Every result yields at least one batch: an empty result yields one zero-row batch that
        carries the schema. Closing the iterator early (or cancelling the task) cancels the
        call, and the worker interrupts DuckDB.
        """
        request = worker_pb2.ExecuteRequest(query_id=query_id, sql=sql, chunk_ids=list(chunk_ids))
        call = self._aio().Execute(request, timeout=timeout)
        try:
            async for message in call:
                table = codec.decode_ipc(message.arrow_ipc)
                batches = table.to_batches()
                if not batches:
                    yield codec.empty_batch(table.schema)
                for batch in batches:
                    yield batch
        except grpc.RpcError as exc:
            if codec.status_code(exc) is grpc.StatusCode.DEADLINE_EXCEEDED:
                # slow is not dead: a batch past its deadline fails the statement (the worker
                # interrupts DuckDB when the deadline passes) and is neither retried on other
                # replicas nor taken for a lost worker
                raise QueryCanceled(
                    f"canceling statement due to worker timeout: worker {self.address} did not finish "
                    f"its batch of {len(chunk_ids)} chunk queries within {timeout:g} s",
                    hint="narrow the query, or raise the czar's worker_timeout (qserv czar --worker-timeout)",
                ) from exc
            raise codec.rpc_error(exc, self.address) from exc
        finally:
            # no-op when the call finished; otherwise stops the worker's query
            call.cancel()


def checksum_to_pb(t: TableChecksum) -> worker_pb2.TableChecksum:
    return worker_pb2.TableChecksum(
        database=t.database, table=t.table, chunk_id=t.chunk_id, rows=t.rows, checksum=t.checksum
    )


def checksum_from_pb(t: worker_pb2.TableChecksum) -> TableChecksum:
    return TableChecksum(t.database, t.table, int(t.chunk_id), int(t.rows), t.checksum)


def _table_names(tables: Sequence[tuple[str, str]]) -> list[worker_pb2.TableName]:
    return [worker_pb2.TableName(database=d, table=t) for d, t in tables]
