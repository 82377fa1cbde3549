"""PostgreSQL frontend/backend protocol 3.0: a pure codec, no sockets.

:class:`Decoder` turns bytes from a client into typed frontend messages (bytes in, messages
out); the ``encode_*`` functions build backend messages. Malformed input raises
:class:`~qserv.errors.ProtocolViolation`; the server answers it with an ErrorResponse and closes
that connection only. Reference: PostgreSQL docs, "Frontend/Backend Protocol" > "Message Formats".
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from qserv.errors import ProtocolViolation

PROTOCOL_3_0 = 3 << 16
SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102
# PostgreSQL caps startup packets at 10000 bytes; other messages here at 64 MiB by default
# (CzarConfig.max_message_bytes), far above any SQL text or parameter a client sends to a
# read-mostly catalog. Counts are unsigned 16-bit on the wire: at most 65535 parameters.
MAX_STARTUP_LENGTH = 10_000
MAX_MESSAGE_LENGTH = 64 << 20


# --- frontend messages ----------------------------------------------------------------------


@dataclass(frozen=True)
class SSLRequest:
    pass


@dataclass(frozen=True)
class GSSENCRequest:
    pass


@dataclass(frozen=True)
class CancelRequest:
    process_id: int
    secret_key: int


@dataclass(frozen=True)
class StartupMessage:
    version: int
    parameters: dict[str, str]


@dataclass(frozen=True)
class Query:
    sql: str


@dataclass(frozen=True)
class Parse:
    statement: str
    sql: str
    param_oids: tuple[int, ...]


@dataclass(frozen=True)
class Bind:
    portal: str
    statement: str
    param_formats: tuple[int, ...]
    params: tuple[bytes | None, ...]
    result_formats: tuple[int, ...]


@dataclass(frozen=True)
class Describe:
    kind: str  # "S" statement or "P" portal
    name: str


@dataclass(frozen=True)
class Execute:
    portal: str
    max_rows: int  # 0 = no limit


@dataclass(frozen=True)
class Close:
    kind: str
    name: str


@dataclass(frozen=True)
class Sync:
    pass


@dataclass(frozen=True)
class Flush:
    pass


@dataclass(frozen=True)
class Terminate:
    pass


@dataclass(frozen=True)
class PasswordMessage:
    """'p': password, SASLInitialResponse or SASLResponse; the authenticator interprets it."""

    data: bytes


@dataclass(frozen=True)
class Unsupported:
    """A well-formed message this server does not implement (FunctionCall, COPY messages)."""

    type_code: str


StartupPacket = SSLRequest | GSSENCRequest | CancelRequest | StartupMessage
FrontendMessage = (
    Query
    | Parse
    | Bind
    | Describe
    | Execute
    | Close
    | Sync
    | Flush
    | Terminate
    | PasswordMessage
    | Unsupported
)


class _Body:
    """Cursor over one message body; every read checks bounds."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data = data
        self.pos = 0
        self.what = what

    def _fail(self, why: str) -> ProtocolViolation:
        return ProtocolViolation(f"invalid {self.what} message: {why}")

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise self._fail("truncated")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def int16(self) -> int:
        return int(struct.unpack("!h", self.take(2))[0])

    def int32(self) -> int:
        return int(struct.unpack("!i", self.take(4))[0])

    def cstring(self) -> str:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise self._fail("string without terminator")
        raw = self.data[self.pos : end]
        self.pos = end + 1
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self._fail("string is not valid UTF-8") from exc

    def count(self, item_size: int) -> int:
        """An unsigned 16-bit count of items of at least ``item_size`` bytes, checked against
        the bytes left before anything is allocated for them."""
        count = int(struct.unpack("!H", self.take(2))[0])
        if count * item_size > len(self.data) - self.pos:
            raise self._fail(f"count {count} exceeds the message length")
        return count

    def int16_list(self) -> tuple[int, ...]:
        return tuple(self.int16() for _ in range(self.count(2)))

    def done(self) -> None:
        if self.pos != len(self.data):
            raise self._fail("trailing bytes")


def parse_startup(body: bytes) -> StartupPacket:
    """Decode a startup-phase packet (the body after its length word)."""
    b = _Body(body, "startup")
    code = b.int32()
    if code == SSL_REQUEST:
        b.done()
        return SSLRequest()
    if code == GSSENC_REQUEST:
        b.done()
        return GSSENCRequest()
    if code == CANCEL_REQUEST:
        pid = b.int32()
        # Protocol 3.2 allows secret keys up to 256 bytes; 3.0 clients send 4.
        key = b.take(len(body) - b.pos)
        if len(key) != 4:
            raise ProtocolViolation("invalid cancel request: unsupported secret key length")
        return CancelRequest(pid, int(struct.unpack("!i", key)[0]))
    if code >> 16 != 3:
        raise ProtocolViolation(
            f"unsupported frontend protocol {code >> 16}.{code & 0xFFFF}",
            hint="this server speaks protocol 3.0",
        )
    params: dict[str, str] = {}
    while True:
        key_name = b.cstring()
        if not key_name:
            break
        params[key_name] = b.cstring()
    b.done()
    return StartupMessage(code, params)


def parse_message(type_code: bytes, body: bytes) -> FrontendMessage:
    """Decode one regular frontend message from its type byte and body."""
    t = type_code.decode("latin-1")
    b = _Body(body, repr(t))
    msg: FrontendMessage
    if t == "Q":
        msg = Query(b.cstring())
    elif t == "P":
        name, sql = b.cstring(), b.cstring()
        msg = Parse(name, sql, tuple(b.int32() & 0xFFFFFFFF for _ in range(b.count(4))))
    elif t == "B":
        portal, statement = b.cstring(), b.cstring()
        formats = b.int16_list()
        params: list[bytes | None] = []
        for _ in range(b.count(4)):
            length = b.int32()
            if length < -1:
                raise b._fail(f"invalid parameter length {length}")
            params.append(None if length == -1 else b.take(length))
        msg = Bind(portal, statement, formats, tuple(params), b.int16_list())
    elif t in ("D", "C"):
        kind = b.take(1).decode("latin-1")
        if kind not in ("S", "P"):
            raise b._fail(f"unknown kind {kind!r}")
        msg = Describe(kind, b.cstring()) if t == "D" else Close(kind, b.cstring())
    elif t == "E":
        msg = Execute(b.cstring(), b.int32())
    elif t == "S":
        msg = Sync()
    elif t == "H":
        msg = Flush()
    elif t == "X":
        msg = Terminate()
    elif t == "p":
        return PasswordMessage(body)
    elif t in ("F", "d", "c", "f"):
        return Unsupported(t)
    else:
        raise ProtocolViolation(f"invalid frontend message type {t!r}")
    b.done()
    return msg


class Decoder:
    """Incremental framer: ``feed`` bytes, then iterate ``packets()``; pure and resumable.

    The first packet (and any after an SSL/GSS refusal) has no type byte; ``startup`` is True
    until the caller switches it off after a StartupMessage. A length word past the limit
    (``max_message_length``; 10000 bytes for startup packets) raises before its body is read,
    so what a client announces is never allocated.
    """

    def __init__(self, max_message_length: int = MAX_MESSAGE_LENGTH) -> None:
        self.buffer = bytearray()
        self.startup = True
        self.max_message_length = max_message_length

    def feed(self, data: bytes) -> None:
        self.buffer += data

    def packets(self) -> Iterator[StartupPacket | FrontendMessage]:
        """Yield every complete packet buffered so far."""
        while True:
            header = 4 if self.startup else 5
            if len(self.buffer) < header:
                return
            if self.startup:
                length = int.from_bytes(self.buffer[0:4], "big", signed=True)
                if not 8 <= length <= MAX_STARTUP_LENGTH:
                    raise ProtocolViolation("invalid length of startup packet")
                if len(self.buffer) < length:
                    return
                body = bytes(self.buffer[4:length])
                del self.buffer[:length]
                packet = parse_startup(body)
                if isinstance(packet, StartupMessage):
                    self.startup = False
                yield packet
            else:
                length = int.from_bytes(self.buffer[1:5], "big", signed=True)
                if not 4 <= length <= self.max_message_length:
                    raise ProtocolViolation(
                        f"invalid message length {length}",
                        detail=f"messages are limited to {self.max_message_length} bytes",
                    )
                if len(self.buffer) < length + 1:
                    return
                type_code = bytes(self.buffer[0:1])
                body = bytes(self.buffer[5 : length + 1])
                del self.buffer[: length + 1]
                yield parse_message(type_code, body)


# --- backend messages -----------------------------------------------------------------------


def _msg(type_code: bytes, payload: bytes = b"") -> bytes:
    return type_code + struct.pack("!i", len(payload) + 4) + payload


def _cstr(value: str) -> bytes:
    return value.replace("\0", "").encode("utf-8") + b"\0"


def encode_authentication_ok() -> bytes:
    return _msg(b"R", struct.pack("!i", 0))


def encode_authentication_sasl(mechanisms: Sequence[str]) -> bytes:
    """AuthenticationSASL: the first step of SCRAM (used by a future SCRAM authenticator)."""
    return _msg(b"R", struct.pack("!i", 10) + b"".join(_cstr(m) for m in mechanisms) + b"\0")


def encode_authentication_sasl_continue(data: bytes, final: bool = False) -> bytes:
    return _msg(b"R", struct.pack("!i", 12 if final else 11) + data)


def encode_parameter_status(name: str, value: str) -> bytes:
    return _msg(b"S", _cstr(name) + _cstr(value))


def encode_backend_key_data(process_id: int, secret_key: int) -> bytes:
    return _msg(b"K", struct.pack("!ii", process_id, secret_key))


def encode_negotiate_protocol_version(minor: int, unrecognized: Sequence[str]) -> bytes:
    payload = struct.pack("!ii", minor, len(unrecognized)) + b"".join(_cstr(o) for o in unrecognized)
    return _msg(b"v", payload)


def encode_ready_for_query(status: str) -> bytes:
    return _msg(b"Z", status.encode("ascii"))


@dataclass(frozen=True)
class FieldDescription:
    """One RowDescription column."""

    name: str
    type_oid: int
    type_size: int
    format: int = 0
    type_modifier: int = -1


def encode_row_description(fields: Sequence[FieldDescription]) -> bytes:
    parts = [struct.pack("!h", len(fields))]
    for f in fields:
        parts.append(_cstr(f.name))
        parts.append(struct.pack("!ihihih", 0, 0, f.type_oid, f.type_size, f.type_modifier, f.format))
    return _msg(b"T", b"".join(parts))


def encode_data_row(values: Sequence[bytes | None]) -> bytes:
    parts = [struct.pack("!h", len(values))]
    for v in values:
        if v is None:
            parts.append(b"\xff\xff\xff\xff")
        else:
            parts.append(struct.pack("!i", len(v)))
            parts.append(v)
    return _msg(b"D", b"".join(parts))


def encode_command_complete(tag: str) -> bytes:
    return _msg(b"C", _cstr(tag))


def encode_empty_query_response() -> bytes:
    return _msg(b"I")


def encode_parse_complete() -> bytes:
    return _msg(b"1")


def encode_bind_complete() -> bytes:
    return _msg(b"2")


def encode_close_complete() -> bytes:
    return _msg(b"3")


def encode_no_data() -> bytes:
    return _msg(b"n")


def encode_portal_suspended() -> bytes:
    return _msg(b"s")


def encode_parameter_description(oids: Sequence[int]) -> bytes:
    return _msg(b"t", struct.pack("!h", len(oids)) + b"".join(struct.pack("!I", o) for o in oids))


@dataclass(frozen=True)
class ErrorFields:
    """The fields of an ErrorResponse/NoticeResponse that this server fills."""

    sqlstate: str
    message: str
    severity: str = "ERROR"
    detail: str | None = None
    hint: str | None = None
    position: int | None = None


def encode_error_response(err: ErrorFields, *, notice: bool = False) -> bytes:
    parts = [b"S" + _cstr(err.severity), b"V" + _cstr(err.severity), b"C" + _cstr(err.sqlstate)]
    parts.append(b"M" + _cstr(err.message))
    if err.detail:
        parts.append(b"D" + _cstr(err.detail))
    if err.hint:
        parts.append(b"H" + _cstr(err.hint))
    if err.position is not None:
        parts.append(b"P" + _cstr(str(err.position)))
    return _msg(b"N" if notice else b"E", b"".join(parts) + b"\0")
