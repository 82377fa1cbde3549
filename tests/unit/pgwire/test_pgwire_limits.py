"""Bounds on what one client can make the server hold: lengths, counts, parameter numbers,
sessions and silent sockets (the cluster-level probes are tests/integration/test_hostile.py)."""

from __future__ import annotations

import struct
from collections.abc import Iterator

import psycopg
import pytest
from pgwire_helpers import DuckHandler, RawClient, cstr

from czar.http.app import Response, body_length
from czar.pgwire import Limits, ServerThread, running_server
from czar.pgwire import protocol as pw
from czar.pgwire.sqltext import HUGE_PARAM_NUMBER, max_param_index, param_number
from qserv.errors import ProtocolViolation


def _fields(body: bytes) -> dict[str, str]:
    return {chr(p[0]): p[1:].decode() for p in body.split(b"\0") if p}


def test_decoder_refuses_a_length_past_its_limit_before_the_body() -> None:
    dec = pw.Decoder(max_message_length=1000)
    dec.startup = False
    dec.feed(b"Q" + struct.pack("!i", 1001))  # only the header: the refusal does not wait
    with pytest.raises(ProtocolViolation, match="invalid message length 1001"):
        list(dec.packets())
    dec = pw.Decoder()
    dec.feed(struct.pack("!i", 0x7FFFFFFF))
    with pytest.raises(ProtocolViolation, match="startup packet"):
        list(dec.packets())


def test_counts_are_checked_against_the_bytes_left() -> None:
    with pytest.raises(ProtocolViolation, match="count 65535 exceeds"):
        pw.parse_message(b"B", cstr("") + cstr("") + struct.pack("!H", 65535))
    with pytest.raises(ProtocolViolation, match="count 40000 exceeds"):
        pw.parse_message(b"P", cstr("") + cstr("SELECT 1") + struct.pack("!H", 40000))
    # counts are unsigned as in PostgreSQL: 40000 declared types are read, not "negative"
    parse = pw.parse_message(b"P", cstr("") + cstr("SELECT 1") + struct.pack("!H", 40000) + b"\0" * 160000)
    assert isinstance(parse, pw.Parse) and len(parse.param_oids) == 40000
    with pytest.raises(ProtocolViolation, match="invalid parameter length -7"):
        pw.parse_message(b"B", cstr("") + cstr("") + struct.pack("!HHi", 0, 1, -7) + b"\0\0")
    with pytest.raises(ProtocolViolation, match="truncated"):
        pw.parse_message(b"B", cstr("") + cstr("") + struct.pack("!HHi", 0, 1, 0x7FFFFFFF) + b"\0\0")


def test_parameter_numbers_are_never_converted_past_18_digits() -> None:
    assert param_number("0042") == 42
    assert param_number("2000000000") == 2_000_000_000
    assert param_number("9" * 5000) == HUGE_PARAM_NUMBER  # int() would refuse 5000 digits
    assert max_param_index("SELECT $2, $" + "9" * 5000) == HUGE_PARAM_NUMBER


@pytest.mark.parametrize(
    ("header", "expected"),
    [(None, 0), ("", 0), ("17", 17), ("1000", 1000), ("1001", 413), ("99999999999", 413), ("-5", 400)]
    + [("1e3", 400), (" 12 ", 12), ("1 2", 400), ("9" * 5000, 400)],
)
def test_http_body_length(header: str | None, expected: int) -> None:
    got = body_length(header, limit=1000)
    assert (got.status if isinstance(got, Response) else got) == expected


@pytest.fixture
def limited() -> Iterator[ServerThread]:
    with running_server(DuckHandler(), limits=Limits(max_connections=3, startup_timeout=0.5)) as srv:
        yield srv


def test_parse_of_a_huge_parameter_number_is_42P02(server: ServerThread) -> None:
    client = RawClient(server.port)
    client.startup()
    client.send(b"P", cstr("") + cstr("SELECT $2000000000") + b"\0\0")
    client.send(b"S")
    errors = [_fields(body) for kind, body in client.until_ready() if kind == "E"]
    assert [(e["C"], e["M"]) for e in errors] == [("42P02", "there is no parameter $2000000000")]
    client.close()


def test_sessions_past_the_limit_get_53300(limited: ServerThread) -> None:
    dsn = f"host=127.0.0.1 port={limited.port} user=qserv dbname=sky"
    sessions = [psycopg.connect(dsn) for _ in range(3)]
    with pytest.raises(psycopg.OperationalError, match="sorry, too many clients already"):
        psycopg.connect(dsn)
    sessions.pop().close()
    for _ in range(50):  # the slot frees once the server has seen the socket close
        try:
            sessions.append(psycopg.connect(dsn))
            break
        except psycopg.OperationalError:
            pass
    assert [s.execute("SELECT 1").fetchone() for s in sessions] == [(1,)] * 3
    for s in sessions:
        s.close()


def test_a_silent_socket_is_closed_after_the_startup_timeout(limited: ServerThread) -> None:
    client = RawClient(limited.port)
    client.sock.settimeout(30)
    assert client.sock.recv(10) == b""  # closed by the server, without a word
    client.close()
