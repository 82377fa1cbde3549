"""The gRPC shell of a worker: decode a request, call storage or execute, encode the answer.

No decisions are made here; every failure goes through :func:`qserv.rpc.codec.abort`, so the
client always receives a typed error (SQLSTATE, message, position in trailing metadata).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator
from typing import NoReturn

import grpc

import qserv
from qserv.catalog import Column
from qserv.log import event
from qserv.rpc import codec
from qserv.rpc.client import WorkerClient, checksum_to_pb
from qserv.rpc.ingest_wire import FORWARDED_KEY
from qserv.rpc.v1 import common_pb2, worker_pb2, worker_pb2_grpc
from worker import chunk_copy, forward, table_copy
from worker.damage import damaged
from worker.execute import QueryRun
from worker.storage import Storage

_log = logging.getLogger(__name__)


class WorkerServicer(worker_pb2_grpc.WorkerServicer):
    """Implements qserv.rpc.v1.Worker over one :class:`~worker.storage.Storage`."""

    def __init__(self, name: str, storage: Storage) -> None:
        self._name = name
        self._storage = storage
        self._lock = threading.Lock()
        self._running = 0

    @property
    def queries_running(self) -> int:
        with self._lock:
            return self._running

    def _abort(self, context: grpc.ServicerContext, exc: BaseException) -> NoReturn:
        """End the call with ``exc``'s status; a damaged data file is logged loudly first."""
        broken = damaged(exc)
        if broken is not None:
            event(
                _log,
                "data file damaged",
                logging.ERROR,
                worker=self._name,
                error=str(exc.__cause__ or exc).splitlines()[0],
            )
            exc = broken
        codec.abort(context, exc)

    def Health(
        self, request: worker_pb2.HealthRequest, context: grpc.ServicerContext
    ) -> worker_pb2.HealthReply:
        return worker_pb2.HealthReply(
            name=self._name, version=qserv.__version__, queries_running=self.queries_running
        )

    def Execute(
        self, request: worker_pb2.ExecuteRequest, context: grpc.ServicerContext
    ) -> Iterator[worker_pb2.ResultBatch]:
        start = time.monotonic()
        try:
            run = QueryRun(self._storage.cursor(), request.sql)
        except Exception as exc:
            codec.abort(context, exc)
        # runs when the call ends for any reason: client cancel, deadline, server stop, done
        context.add_callback(run.interrupt)
        with self._lock:
            self._running += 1
        messages = nbytes = 0
        try:
            for data in run.messages():
                messages += 1
                nbytes += len(data)
                yield worker_pb2.ResultBatch(arrow_ipc=data)
        except Exception as exc:
            event(
                _log,
                "query failed",
                query_id=request.query_id,
                chunks=len(request.chunk_ids),
                error=f"{type(exc).__name__}: {exc}",
            )
            self._abort(context, exc)
        finally:
            with self._lock:
                self._running -= 1
        event(
            _log,
            "query done",
            logging.DEBUG,
            query_id=request.query_id,
            chunks=len(request.chunk_ids),
            messages=messages,
            bytes=nbytes,
            seconds=f"{time.monotonic() - start:.3f}",
        )

    def CreateTable(
        self, request: worker_pb2.CreateTableRequest, context: grpc.ServicerContext
    ) -> common_pb2.Empty:
        try:
            self._storage.create_table(
                request.database,
                request.table,
                codec.kind_from_pb(request.kind),
                [Column(c.name, c.type) for c in request.columns],
            )
        except Exception as exc:
            codec.abort(context, exc)
        event(_log, "table ready", database=request.database, table=request.table)
        return common_pb2.Empty()

    def Ingest(
        self, request_iterator: Iterator[bytes], context: grpc.ServicerContext
    ) -> worker_pb2.IngestReply:
        """Stage a stream of serialised ``IngestRequest``s (raw bytes: see
        :mod:`qserv.rpc.ingest_wire`), forwarding them to the workers they name."""
        txns: set[int] = set()
        was_forwarded = any(key == FORWARDED_KEY for key, _ in context.invocation_metadata())
        forwards = None if was_forwarded else forward.new_forwards()
        try:
            rows = self._storage.stage(forward.staged_parts(request_iterator, forwards, txns))
        except BaseException as exc:
            if forwards is not None:
                forwards.cancel()
            if not isinstance(exc, Exception):
                raise
            codec.abort(context, exc)
        forwarded = sum(forwards.rows.values()) if forwards is not None else 0
        event(
            _log,
            "rows staged",
            transactions=sorted(txns),
            rows=rows,
            forwarded=forwarded,
            sender="worker" if was_forwarded else "client",
        )
        return worker_pb2.IngestReply(rows=rows)

    def CommitTransaction(
        self, request: worker_pb2.TransactionRequest, context: grpc.ServicerContext
    ) -> common_pb2.Empty:
        try:
            rows = self._storage.commit(request.transaction_id)
        except Exception as exc:
            codec.abort(context, exc)
        event(_log, "transaction committed", transaction_id=request.transaction_id, rows=rows)
        return common_pb2.Empty()

    def AbortTransaction(
        self, request: worker_pb2.TransactionRequest, context: grpc.ServicerContext
    ) -> common_pb2.Empty:
        try:
            self._storage.abort(request.transaction_id)
        except Exception as exc:
            codec.abort(context, exc)
        event(_log, "transaction aborted", transaction_id=request.transaction_id)
        return common_pb2.Empty()

    def ChunkStats(
        self, request: worker_pb2.ChunkStatsRequest, context: grpc.ServicerContext
    ) -> worker_pb2.ChunkStatsReply:
        try:
            stats = self._storage.chunk_stats(request.database)
        except Exception as exc:
            self._abort(context, exc)
        return worker_pb2.ChunkStatsReply(
            stats=[worker_pb2.ChunkStat(table=s.table, chunk_id=s.chunk_id, rows=s.rows) for s in stats]
        )

    # -- chunk copy (worker/chunk_copy.py) ---------------------------------------------------

    def ExportChunk(
        self, request: worker_pb2.ChunkRequest, context: grpc.ServicerContext
    ) -> Iterator[worker_pb2.ChunkPart]:
        tables = _table_names(request.regular_tables)
        try:
            parts = (
                table_copy.export(self._storage, tables)
                if tables
                else chunk_copy.export(self._storage, list(request.databases), list(request.chunk_ids))
            )
            for part in parts:
                yield worker_pb2.ChunkPart(
                    database=part.database,
                    table=part.table,
                    chunk_id=part.chunk_id,
                    arrow_ipc=codec.encode_ipc([part.batch], part.batch.schema)
                    if part.batch is not None
                    else b"",
                    end=checksum_to_pb(part.end) if part.end is not None else None,
                )
        except Exception as exc:
            self._abort(context, exc)

    def PullChunk(
        self, request: worker_pb2.PullChunkRequest, context: grpc.ServicerContext
    ) -> worker_pb2.ChunkChecksums:
        databases, chunks = list(request.databases), list(request.chunk_ids)
        tables = _table_names(request.regular_tables)
        try:
            with WorkerClient(request.source) as source:
                remaining = context.time_remaining()
                if tables:
                    parts = source.export_tables(tables, timeout=remaining)
                    installed = table_copy.install(self._storage, tables, parts)
                else:
                    parts = source.export_chunks(databases, chunks, timeout=remaining)
                    installed = chunk_copy.install(
                        self._storage, databases, chunks, parts, pause=_copy_pause()
                    )
        except Exception as exc:
            self._abort(context, exc)
        event(
            _log,
            "chunks installed",
            chunks=len(chunks),
            databases=databases,
            tables=len(tables),
            source=request.source,
            rows=sum(t.rows for t in installed),
        )
        return worker_pb2.ChunkChecksums(tables=[checksum_to_pb(t) for t in installed])

    def DropChunk(self, request: worker_pb2.ChunkRequest, context: grpc.ServicerContext) -> common_pb2.Empty:
        try:
            rows = chunk_copy.drop(self._storage, list(request.databases), list(request.chunk_ids))
        except Exception as exc:
            self._abort(context, exc)
        event(
            _log,
            "chunks dropped",
            chunks=len(request.chunk_ids),
            databases=list(request.databases),
            rows=rows,
        )
        return common_pb2.Empty()

    def ChunkChecksum(
        self, request: worker_pb2.ChunkRequest, context: grpc.ServicerContext
    ) -> worker_pb2.ChunkChecksums:
        names = _table_names(request.regular_tables)
        try:
            tables = (
                table_copy.checksums(self._storage, names)
                if names
                else chunk_copy.checksums(self._storage, list(request.databases), list(request.chunk_ids))
            )
        except Exception as exc:
            self._abort(context, exc)
        return worker_pb2.ChunkChecksums(tables=[checksum_to_pb(t) for t in tables])


# seconds (tests only): a chunk copy waits this long between receiving its rows and installing
# them, so a test can kill a worker or the controller in the middle of a copy
COPY_PAUSE_ENV = "QSERV_TEST_COPY_PAUSE"


def _copy_pause() -> float:
    try:
        return max(0.0, float(os.environ.get(COPY_PAUSE_ENV, "0") or 0))
    except ValueError:
        return 0.0


def _table_names(names: Iterable[worker_pb2.TableName]) -> list[tuple[str, str]]:
    return [(n.database, n.table) for n in names]


_SERVICE = "qserv.rpc.v1.Worker"


class _Collected:
    """Stands in for a server to collect the generated code's method handlers."""

    def __init__(self) -> None:
        self.handlers: dict[str, grpc.RpcMethodHandler] = {}

    def add_generic_rpc_handlers(self, handlers: object) -> None:
        pass

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        self.handlers = dict(handlers)


def add_to_server(servicer: WorkerServicer, server: grpc.Server) -> None:
    """Register ``servicer`` as the generated code would, except that Ingest receives its
    requests as raw bytes (read by :mod:`qserv.rpc.ingest_wire`, forwarded untouched)."""
    collected = _Collected()
    worker_pb2_grpc.add_WorkerServicer_to_server(servicer, collected)
    handlers = collected.handlers
    handlers["Ingest"] = grpc.stream_unary_rpc_method_handler(
        servicer.Ingest,
        request_deserializer=None,
        response_serializer=worker_pb2.IngestReply.SerializeToString,
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(_SERVICE, handlers),))
    server.add_registered_method_handlers(_SERVICE, handlers)
