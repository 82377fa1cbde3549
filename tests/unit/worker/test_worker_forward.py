"""Rows sent once and forwarded worker to worker: three real workers over gRPC."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import grpc
import pyarrow as pa
import pytest
from worker_helpers import OBJECT_COLUMNS, collect, objects, worker_config

from qserv.catalog import TableKind
from qserv.errors import InvalidParameter, WorkerUnavailable
from qserv.rpc.client import WorkerClient
from qserv.rpc.ingest_wire import FORWARDED_KEY, encode_ingest_request
from worker.service import RunningWorker, start

Trio = tuple[list[RunningWorker], list[WorkerClient]]


@pytest.fixture
def trio(tmp_path: Path) -> Iterator[Trio]:
    workers = [start(worker_config(tmp_path / name)) for name in "abc"]
    clients = [WorkerClient(w.address) for w in workers]
    for c in clients:
        c.create_table("Sky", "Object", TableKind.DIRECTOR, OBJECT_COLUMNS)
    yield workers, clients
    for c in clients:
        c.close()
    for w in workers:
        w.stop()


def rows_of(client: WorkerClient, table: str = "Object") -> list[int]:
    got = collect(client, f'SELECT objectId FROM "Sky"."{table}" ORDER BY 1')
    return got.column(0).to_pylist()


def dead_address() -> str:
    with socket.socket() as s:  # a port nobody listens on (bound, then released)
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def test_rows_sent_once_reach_every_replica_at_commit(trio: Trio) -> None:
    (_, b, c), (ca, cb, cc) = trio
    first, second = objects(3000, chunks=30), objects(500, chunks=5, start=5000)
    overlap = objects(20, chunks=3, start=9000)
    staged = ca.ingest(
        [
            (1, "Sky", "Object", False, first, (b.address, c.address)),
            (1, "Sky", "Object", False, second, (b.address,)),
            (1, "Sky", "Object", True, overlap, (c.address,)),
        ]
    )
    assert staged == 3520  # the rows staged on the worker the loader sent them to
    for client in (ca, cb, cc):
        assert rows_of(client) == []  # staged, not visible
        client.commit(1)
    ids = first.column("objectId").to_pylist()
    assert rows_of(ca) == sorted(ids + second.column("objectId").to_pylist())
    assert rows_of(cb) == rows_of(ca)
    assert rows_of(cc) == ids
    assert rows_of(cc, "Object__overlap") == overlap.column("objectId").to_pylist()
    assert rows_of(cb, "Object__overlap") == []


def test_a_failed_forward_fails_the_stream_and_stages_nothing(trio: Trio) -> None:
    (_, b, _), (ca, cb, _) = trio
    with pytest.raises(WorkerUnavailable):
        ca.ingest([(2, "Sky", "Object", False, objects(100), (b.address, dead_address()))])
    ca.commit(2)  # the worker the rows were sent to kept none of them
    assert rows_of(ca) == []
    # b's forward may have finished first; the loader aborts the transaction on every worker
    for client in (ca, cb):
        client.abort(2)
    # the same stream again, to live workers, works (nothing was left half-staged)
    assert ca.ingest([(2, "Sky", "Object", False, objects(100), (b.address,))]) == 100
    ca.commit(2)
    cb.commit(2)
    assert rows_of(ca) == rows_of(cb) == list(range(100))


def test_a_forward_that_the_replica_refuses_fails_the_stream(trio: Trio) -> None:
    (_, b, _), (ca, cb, _) = trio
    cb.create_table("Sky", "Lonely", TableKind.REGULAR, OBJECT_COLUMNS)
    ca.create_table("Sky", "Only", TableKind.REGULAR, OBJECT_COLUMNS)  # not on b
    data = objects(10).select(["objectId", "ra", "decl"])
    with pytest.raises(Exception, match="does not exist"):
        ca.ingest([(3, "Sky", "Only", False, data, (b.address,))])
    ca.commit(3)
    assert collect(ca, 'SELECT count(*) FROM "Sky"."Only"').column(0).to_pylist() == [0]


@pytest.mark.parametrize(
    ("forward", "why"),
    [
        (("no-port",), "is not host:port"),
        (("127.0.0.1:70000",), "is not host:port"),
        (("h;rm:1",), "is not host:port"),
        (("127.0.0.1:1", "127.0.0.1:1"), "same worker twice"),
        (tuple(f"127.0.0.1:{p}" for p in range(1, 18)), "more than 15 workers"),
    ],
)
def test_bad_forward_lists_are_refused(trio: Trio, forward: tuple[str, ...], why: str) -> None:
    _, (ca, _, _) = trio
    with pytest.raises(InvalidParameter, match=why):
        ca.ingest([(4, "Sky", "Object", False, objects(10), forward)])
    ca.commit(4)
    assert rows_of(ca) == []


def test_a_forwarded_stream_is_not_forwarded_again(trio: Trio) -> None:
    (_, b, _), (ca, cb, _) = trio
    data = objects(50)
    message = encode_ingest_request(5, "Sky", "Object", False, data.to_batches(), data.schema, (b.address,))
    with grpc.insecure_channel(ca.address) as channel:
        ingest = channel.stream_unary("/qserv.rpc.v1.Worker/Ingest", request_serializer=lambda m: m)
        ingest(iter([message]), metadata=((FORWARDED_KEY, "1"),))
    ca.commit(5)
    cb.commit(5)
    assert rows_of(ca) == list(range(50))
    assert rows_of(cb) == []


def test_an_empty_stream_with_forwards_stages_an_empty_table_everywhere(trio: Trio) -> None:
    (_, b, _), (ca, cb, _) = trio
    empty = objects(0)
    assert ca.ingest([(6, "Sky", "Object", False, empty, (b.address,))]) == 0
    assert isinstance(empty, pa.Table)
    ca.commit(6)
    cb.commit(6)
    assert rows_of(ca) == rows_of(cb) == []
