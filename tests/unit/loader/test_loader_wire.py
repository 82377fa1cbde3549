"""The hand-serialised ingest messages: protobuf's own encoding, read back as protobuf writes them."""

from __future__ import annotations

import pyarrow as pa
import pytest

from qserv.errors import InvalidParameter
from qserv.rpc import codec
from qserv.rpc.ingest_wire import decode_ingest_request, encode_ingest_request
from qserv.rpc.v1 import worker_pb2


@pytest.mark.parametrize(
    ("txn", "database", "table", "overlap", "rows"),
    [(7, "sky", "Object", True, 1000), (0, "", "T", False, 0), (2**40, "däta", "x" * 300, False, 5)],
)
def test_encoded_request_equals_protobuf(
    txn: int, database: str, table: str, overlap: bool, rows: int
) -> None:
    data = pa.table({"a": pa.array(range(rows), pa.int64()), "b": pa.array([1.5] * rows)})
    batches = data.to_batches()
    ours = encode_ingest_request(txn, database, table, overlap, batches, data.schema)
    theirs = worker_pb2.IngestRequest(
        transaction_id=txn,
        database=database,
        table=table,
        overlap=overlap,
        arrow_ipc=codec.encode_ipc(batches, data.schema),
    ).SerializeToString()
    assert ours == theirs
    decoded = worker_pb2.IngestRequest.FromString(ours)
    assert codec.decode_ipc(decoded.arrow_ipc).equals(data)


def test_forward_addresses_are_field_six() -> None:
    data = pa.table({"a": pa.array([1, 2], pa.int64())})
    ours = encode_ingest_request(3, "sky", "Object", False, data.to_batches(), data.schema, ("h:1", "g:2"))
    theirs = worker_pb2.IngestRequest(
        transaction_id=3,
        database="sky",
        table="Object",
        arrow_ipc=codec.encode_ipc(data.to_batches(), data.schema),
        forward=["h:1", "g:2"],
    ).SerializeToString()
    assert ours == theirs


def test_decoded_request_reads_what_protobuf_writes() -> None:
    data = pa.table({"a": pa.array(range(10), pa.int64())})
    raw = worker_pb2.IngestRequest(
        transaction_id=-5,  # int64 two's complement on the wire
        database="däta",
        table="T",
        overlap=True,
        arrow_ipc=codec.encode_ipc(data.to_batches(), data.schema),
        forward=["127.0.0.1:5000"],
    ).SerializeToString()
    # unknown fields of every wire type (a newer sender), and fields out of order
    extra = b"\x78\x01" + b"\x81\x01" + bytes(8) + b"\x8d\x01" + bytes(4) + b"\x82\x01\x03abc"
    for message in (raw + extra, extra + raw[::1]):
        req = decode_ingest_request(message)
        assert (req.transaction_id, req.database, req.table, req.overlap) == (-5, "däta", "T", True)
        assert req.forward == ("127.0.0.1:5000",)
        assert req.rows().equals(data)
    empty = decode_ingest_request(b"")
    assert (empty.transaction_id, empty.database, empty.forward, len(empty.arrow_ipc)) == (0, "", (), 0)


@pytest.mark.parametrize(
    ("message", "why"),
    [
        (b"\x08", "truncated varint"),
        (b"\x08" + b"\xff" * 11, "longer than 10 bytes"),
        (b"\x2a\x05ab", "runs past the end"),
        (b"\x12\x02\xff\xfe", "not UTF-8"),
        (b"\x12\x82\x10" + b"x" * 2050, "longer than 1024 bytes"),
        (b"\x0b", "unsupported wire type 3"),
        (b"\x81\x01\x00", "truncated field"),
        (b"".join(b"\x32\x03h:1" for _ in range(codec.MAX_FORWARD + 1)), "more than 15 workers"),
    ],
)
def test_malformed_requests_are_refused(message: bytes, why: str) -> None:
    with pytest.raises(InvalidParameter, match=f"malformed ingest request: .*{why}"):
        decode_ingest_request(message)


def test_a_payload_that_is_not_arrow_is_refused() -> None:
    req = decode_ingest_request(b"\x1a\x01T\x2a\x03abc")
    with pytest.raises(InvalidParameter, match="ingest payload for .T is not an Arrow IPC stream"):
        req.rows()
