"""The Ingest request on the wire, written and read by hand (no protobuf objects).

A request is mostly its Arrow payload (~4 MB). Protobuf objects would copy it three times on
the way out and once more on the way in; here the loader writes the payload once, straight
after the header, and a worker reads the header fields and takes the payload as a view of
the received bytes, which it also forwards untouched to the other replicas. The encoding is
byte for byte protobuf's own for ``qserv.rpc.v1.IngestRequest`` (fields in number order), and
the reader accepts anything protobuf would write for it (fields in any order, unknown fields
skipped), refusing malformed input with a clear error.

Example::

    raw = encode_ingest_request(7, "sky", "Object", False, table.to_batches(), table.schema)
    request = decode_ingest_request(raw)   # IngestRequestView(transaction_id=7, ...)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pyarrow as pa

from qserv.errors import InvalidParameter
from qserv.rpc import codec

# gRPC metadata of a stream a worker forwards: its receiver stages and forwards nothing
# (rows travel one hop, whatever the requests' ``forward`` fields say)
FORWARDED_KEY = "qserv-forwarded"

# (transaction_id, database, table, overlap, rows[, forward]): ``forward`` holds the addresses
# of the workers the receiving worker also stages the same rows on (the other replicas).
IngestItem = (
    tuple[int, str, str, bool, pa.Table | pa.RecordBatch]
    | tuple[int, str, str, bool, pa.Table | pa.RecordBatch, tuple[str, ...]]
)
_MAX_NAME_BYTES = 1024


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64: two's complement, as protobuf encodes it
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _text_field(tag: bytes, text: str) -> bytes:
    raw = text.encode()
    return tag + _varint(len(raw)) + raw


def encode_ingest_request(
    transaction_id: int,
    database: str,
    table: str,
    overlap: bool,
    batches: Sequence[pa.RecordBatch],
    schema: pa.Schema,
    forward: Sequence[str] = (),
) -> bytes:
    """A serialised ``IngestRequest`` whose ``arrow_ipc`` is an IPC stream of ``batches``.

    The Arrow stream is written straight after the header into one buffer (its length is
    measured first by a counting stream), so the rows are copied once.
    """
    header = bytearray()
    if transaction_id:
        header += b"\x08" + _varint(transaction_id)
    if database:
        header += _text_field(b"\x12", database)
    if table:
        header += _text_field(b"\x1a", table)
    if overlap:
        header += b"\x20\x01"

    def write(sink: pa.NativeFile) -> None:
        with pa.ipc.new_stream(sink, schema) as writer:
            for batch in batches:
                writer.write_batch(batch)

    counter = pa.MockOutputStream()
    write(counter)
    sink = pa.BufferOutputStream()
    sink.write(bytes(header) + b"\x2a" + _varint(counter.size()))
    write(sink)
    if forward:
        sink.write(b"".join(_text_field(b"\x32", address) for address in forward))
    return sink.getvalue().to_pybytes()


def ingest_requests(item: IngestItem) -> Iterator[bytes]:
    """The serialised requests of one ingest item: one ~4 MB message per batch (zero rows
    still send one, schema-only, message)."""
    txn, database, table, overlap, data = item[:5]
    forward: tuple[str, ...] = item[5] if len(item) > 5 else ()  # type: ignore[misc]
    groups: list[list[pa.RecordBatch]] = [[b] for b in codec.split_batches(data)] or [[]]
    for group in groups:
        yield encode_ingest_request(txn, database, table, overlap, group, data.schema, forward)


@dataclass(frozen=True)
class IngestRequestView:
    """A received ``IngestRequest``; ``arrow_ipc`` is a view of the received bytes."""

    transaction_id: int
    database: str
    table: str
    overlap: bool
    arrow_ipc: memoryview
    forward: tuple[str, ...]

    def rows(self) -> pa.Table:
        """The payload's rows (zero-copy over the received bytes)."""
        try:
            return codec.decode_ipc(self.arrow_ipc)
        except pa.ArrowInvalid as exc:
            raise InvalidParameter(
                f"ingest payload for {self.database}.{self.table} is not an Arrow IPC stream: {exc}"
            ) from exc


def _malformed(why: str) -> InvalidParameter:
    return InvalidParameter(f"malformed ingest request: {why}")


def _read_varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise _malformed("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift >= 70:
            raise _malformed("varint longer than 10 bytes")


def _text(value: memoryview, field: str) -> str:
    if len(value) > _MAX_NAME_BYTES:
        raise _malformed(f"{field} longer than {_MAX_NAME_BYTES} bytes")
    try:
        return bytes(value).decode()
    except UnicodeDecodeError as exc:
        raise _malformed(f"{field} is not UTF-8") from exc


def decode_ingest_request(raw: bytes) -> IngestRequestView:
    """Read one serialised ``IngestRequest`` (any field order; unknown fields skipped)."""
    buf = memoryview(raw)
    txn, database, table, overlap = 0, "", "", False
    payload = buf[0:0]
    forward: list[str] = []
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(buf, pos)
            if number == 1:
                txn = value - (1 << 64) if value >= 1 << 63 else value
            elif number == 4:
                overlap = value != 0
        elif wire == 2:
            size, pos = _read_varint(buf, pos)
            if size > len(buf) - pos:
                raise _malformed(f"field {number} runs past the end of the message")
            value_view = buf[pos : pos + size]
            pos += size
            if number == 2:
                database = _text(value_view, "database")
            elif number == 3:
                table = _text(value_view, "table")
            elif number == 5:
                payload = value_view
            elif number == 6:
                if len(forward) >= codec.MAX_FORWARD:
                    raise _malformed(f"forwards to more than {codec.MAX_FORWARD} workers")
                forward.append(_text(value_view, "forward address"))
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise _malformed(f"unsupported wire type {wire} (field {number})")
        if pos > len(buf):
            raise _malformed("truncated field")
    return IngestRequestView(txn, database, table, overlap, payload, tuple(forward))
