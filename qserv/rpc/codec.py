"""Encoding between Python values and the worker protocol: errors, Arrow IPC, table kinds.

Errors cross gRPC as a status code plus trailing metadata, one function per direction:

* server side, :func:`rpc_status` turns any exception into an :class:`RpcStatus` (a
  :class:`~qserv.errors.QservError` keeps its SQLSTATE; anything else becomes
  :class:`~qserv.errors.InternalError`, logged with its incident id) and :func:`abort` applies
  it to a servicer context;
* client side, :func:`rpc_error` turns a ``grpc.RpcError`` back into the typed error
  (``qserv.errors.from_sqlstate``); a worker that cannot be reached becomes
  :class:`~qserv.errors.WorkerUnavailable` (08006).

Metadata keys: ``qserv-sqlstate``, ``qserv-message``, ``qserv-position`` (plus
``qserv-detail`` and ``qserv-hint`` when set). Text values are percent-encoded because gRPC
ASCII metadata cannot carry characters such as ``°``.

Results travel as Arrow IPC streams (:func:`encode_ipc`, :func:`decode_ipc`): every message is
self-contained (schema + zero or more record batches), so a receiver needs no state between
messages and an empty result still carries its schema.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NoReturn
from urllib.parse import quote, unquote

import grpc
import pyarrow as pa

from qserv.catalog import TableKind
from qserv.errors import InternalError, InvalidParameter, QservError, WorkerUnavailable, from_sqlstate
from qserv.log import event
from qserv.rpc.v1 import worker_pb2

_log = logging.getLogger(__name__)

SQLSTATE_KEY = "qserv-sqlstate"
MESSAGE_KEY = "qserv-message"
POSITION_KEY = "qserv-position"
DETAIL_KEY = "qserv-detail"
HINT_KEY = "qserv-hint"

# Messages up to this size pass on every channel and server built by qserv (results are
# split into ~4 MB messages, so this is headroom, not the working size).
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# Workers one ingest request may be forwarded to (a worker fans out to these itself; a
# regular table on more workers is sent to several first workers).
MAX_FORWARD = 15
CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # A channel to a dead worker retries with a backoff that grows to 2 minutes by default, and
    # fails every call until its next attempt: a worker restarted after a minute would look
    # dead to the czar and the controller for up to two more. Retrying every 2 s at most costs
    # nothing and sees it back at once.
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 2000),
)


# ---------------------------------------------------------------------------------------------
# errors


@dataclass(frozen=True)
class RpcStatus:
    """What a servicer sends for a failed call: status code, details and trailing metadata."""

    code: grpc.StatusCode
    details: str
    metadata: tuple[tuple[str, str], ...]


def _status_code(sqlstate: str) -> grpc.StatusCode:
    if sqlstate == "42501":
        return grpc.StatusCode.PERMISSION_DENIED
    if sqlstate == "57014":
        return grpc.StatusCode.CANCELLED
    if sqlstate == "42710":
        return grpc.StatusCode.ALREADY_EXISTS
    if sqlstate.startswith("08"):
        return grpc.StatusCode.UNAVAILABLE
    if sqlstate.startswith("53"):
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    if sqlstate.startswith("XX"):
        return grpc.StatusCode.INTERNAL
    return grpc.StatusCode.INVALID_ARGUMENT


def _enc(text: str) -> str:
    # keep printable ASCII readable in logs and tools; escape the rest (and '%' itself)
    return quote(text, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~")


def rpc_status(exc: BaseException) -> RpcStatus:
    """Server side: the gRPC status that reports ``exc`` (non-qserv errors become XX000)."""
    if not isinstance(exc, QservError):
        internal = InternalError()
        event(
            _log,
            "internal error",
            logging.ERROR,
            incident=internal.incident,
            error=f"{type(exc).__name__}: {exc}",
        )
        _log.error("traceback of incident %s", internal.incident, exc_info=exc)
        exc = internal
    md: list[tuple[str, str]] = [(SQLSTATE_KEY, exc.sqlstate), (MESSAGE_KEY, _enc(exc.message))]
    if exc.position is not None:
        md.append((POSITION_KEY, str(exc.position)))
    if exc.detail:
        md.append((DETAIL_KEY, _enc(exc.detail)))
    if exc.hint:
        md.append((HINT_KEY, _enc(exc.hint)))
    return RpcStatus(_status_code(exc.sqlstate), exc.message, tuple(md))


def abort(context: grpc.ServicerContext, exc: BaseException) -> NoReturn:
    """Server side: end the call with the status for ``exc`` (raises, as ``context.abort``)."""
    status = rpc_status(exc)
    context.set_trailing_metadata(status.metadata)
    context.abort(status.code, status.details)
    raise AssertionError("unreachable: context.abort raises")  # pragma: no cover


def status_code(err: grpc.RpcError) -> grpc.StatusCode | None:
    """The status code of a failed call, sync or aio."""
    # sync errors are grpc.Call objects, aio errors (AioRpcError) only share its methods
    code_fn = getattr(err, "code", None)
    return code_fn() if callable(code_fn) else None


def rpc_error(err: grpc.RpcError, address: str = "") -> QservError:
    """Client side: the typed qserv error for a failed call (use as ``raise rpc_error(e) from e``)."""
    code = status_code(err)
    md: dict[str, str | bytes] = {}
    trailing_fn = getattr(err, "trailing_metadata", None)
    for key, value in (trailing_fn() if callable(trailing_fn) else None) or ():
        md[key] = value
    sqlstate = md.get(SQLSTATE_KEY)
    if isinstance(sqlstate, str):
        position = md.get(POSITION_KEY)
        detail, hint = md.get(DETAIL_KEY), md.get(HINT_KEY)
        return from_sqlstate(
            sqlstate,
            unquote(str(md.get(MESSAGE_KEY, ""))),
            detail=unquote(detail) if isinstance(detail, str) else None,
            hint=unquote(hint) if isinstance(hint, str) else None,
            position=int(position) if isinstance(position, str) and position.isdigit() else None,
        )
    details_fn = getattr(err, "details", None)
    details = details_fn() if callable(details_fn) else str(err)
    where = f"worker {address}" if address else "worker"
    if code is grpc.StatusCode.UNAVAILABLE:
        return WorkerUnavailable(
            f"{where} is unreachable: {details}", hint="the query is retried on another replica"
        )
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        # an admin call or health probe unanswered in time (Execute maps its own deadline in
        # client.py: a slow query is not a lost worker)
        return WorkerUnavailable(f"{where} did not answer before the deadline: {details}")
    if code is grpc.StatusCode.CANCELLED:
        # the caller's own cancel ends its coroutine (asyncio.CancelledError), never here: a
        # call cancelled without qserv's status is the worker stopping (its grace ran out),
        # which loses nothing the other replicas cannot answer
        return WorkerUnavailable(
            f"{where} ended the call (it is stopping): {details}",
            hint="the query is retried on another replica",
        )
    # no qserv status: the details are the worker's own text (maybe a Python exception), for
    # the log only; the client gets an incident id to quote
    name = code.name if code is not None else "no status"
    internal = InternalError(f"call to {where} failed ({name})")
    event(_log, "worker call failed", logging.ERROR, incident=internal.incident, code=name, details=details)
    return internal


# ---------------------------------------------------------------------------------------------
# Arrow IPC


def encode_ipc(
    table_or_batches: pa.Table | pa.RecordBatch | Iterable[pa.RecordBatch], schema: pa.Schema
) -> bytes:
    """One self-contained Arrow IPC stream: ``schema`` followed by the given rows (maybe none)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as writer:
        if isinstance(table_or_batches, pa.Table):
            writer.write_table(table_or_batches)
        elif isinstance(table_or_batches, pa.RecordBatch):
            writer.write_batch(table_or_batches)
        else:
            for batch in table_or_batches:
                writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def decode_ipc(data: bytes | memoryview) -> pa.Table:
    """The table held by one Arrow IPC stream (zero rows keeps the schema)."""
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()


def empty_batch(schema: pa.Schema) -> pa.RecordBatch:
    """A zero-row record batch of ``schema`` (how an empty result carries its columns)."""
    return pa.RecordBatch.from_arrays([pa.array([], type=f.type) for f in schema], schema=schema)


def split_batches(
    data: pa.Table | pa.RecordBatch, max_rows: int = 65536, max_bytes: int = 4 << 20
) -> list[pa.RecordBatch]:
    """Slice rows into batches of at most ``max_rows`` rows and about ``max_bytes`` bytes."""
    batches = data.to_batches() if isinstance(data, pa.Table) else [data]
    out: list[pa.RecordBatch] = []
    for batch in batches:
        if batch.num_rows == 0:
            continue
        row_bytes = max(1, batch.nbytes // batch.num_rows)
        step = max(1, min(max_rows, max_bytes // row_bytes))
        out.extend(batch.slice(start, step) for start in range(0, batch.num_rows, step))
    return out


# ---------------------------------------------------------------------------------------------
# table kinds

_KIND_TO_PB = {
    TableKind.DIRECTOR: worker_pb2.TABLE_KIND_DIRECTOR,
    TableKind.CHILD: worker_pb2.TABLE_KIND_CHILD,
    TableKind.MATCH: worker_pb2.TABLE_KIND_MATCH,
    TableKind.REGULAR: worker_pb2.TABLE_KIND_REGULAR,
}
_KIND_FROM_PB = {v: k for k, v in _KIND_TO_PB.items()}


def kind_to_pb(kind: TableKind) -> worker_pb2.TableKind.ValueType:
    """The protobuf enum value of a table kind."""
    return _KIND_TO_PB[kind]


def kind_from_pb(value: int) -> TableKind:
    """The table kind of a protobuf enum value (unspecified -> InvalidParameter)."""
    kind = _KIND_FROM_PB.get(value)  # type: ignore[call-overload]
    if kind is None:
        raise InvalidParameter(f"table kind {value} is not one of director, child, match, regular")
    return kind


__all__: Sequence[str] = (
    "CHANNEL_OPTIONS",
    "MAX_MESSAGE_BYTES",
    "RpcStatus",
    "abort",
    "decode_ipc",
    "empty_batch",
    "encode_ipc",
    "kind_from_pb",
    "kind_to_pb",
    "rpc_error",
    "rpc_status",
    "split_batches",
)
