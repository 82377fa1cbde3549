"""The loader's hand-serialised ingest messages equal protobuf's own encoding."""

from __future__ import annotations

import pyarrow as pa
import pytest

from qserv.rpc import codec
from qserv.rpc.client import encode_ingest_request
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
