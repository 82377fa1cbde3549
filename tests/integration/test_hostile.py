"""Hostile input against a real czar: one client must not be able to take it down.

Each probe speaks the raw frontend protocol (or raw HTTP) over a socket, as an attacker or a
broken driver would: garbage, impossible lengths, messages out of order, parameter numbers and
counts past PostgreSQL's 65535, nesting deeper than the parser recurses, statements by the
thousand, key lists of 200k, sockets by the hundred. After each one a fresh psycopg connection
must answer ``SELECT 1`` and the czar's memory stays bounded: its peak RSS (VmHWM) below its RSS
at the start plus :data:`RSS_HEADROOM`. ``pytest -s`` prints the probes with RSS before/after.
"""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from tests.cluster import LiveCluster, running_cluster
from tests.unit.pgwire.pgwire_helpers import RawClient, cstr

MAX_CONNECTIONS = 20
STARTUP_TIMEOUT = 3.0  # seconds; PostgreSQL's default is 60
RSS_HEADROOM = 300 << 20
MAX_STATEMENT_LENGTH = 64 << 10  # CzarConfig default


def _status_kib(pid: int, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field_name} for process {pid}")


@dataclass
class Czar:
    """The cluster under attack, the czar's pid, and the probe log."""

    tc: LiveCluster
    pid: int
    start_rss: int
    rows: list[tuple[str, int, int, int]] = field(default_factory=list)
    clients: list[RawClient] = field(default_factory=list)  # closed after each probe

    def rss(self) -> int:
        return _status_kib(self.pid, "VmRSS") << 10

    def peak(self) -> int:
        return _status_kib(self.pid, "VmHWM") << 10

    def raw(self) -> RawClient:
        client = RawClient(self.tc.spec.pg_port)
        self.clients.append(client)
        return client

    def session(self) -> RawClient:
        client = self.raw()
        client.startup()
        return client

    def select_1(self) -> list[tuple[int]]:
        """``SELECT 1`` on a fresh connection, once the server has seen closed sessions go."""
        for _ in range(100):
            try:
                return self.tc.query("SELECT 1")
            except psycopg.OperationalError as exc:
                if "too many clients" not in str(exc):
                    raise
                time.sleep(0.1)
        pytest.fail("the connection slots were not freed after the sessions closed")

    @contextmanager
    def probe(self, name: str) -> Iterator[None]:
        """Run one probe; then the czar must answer a fresh client and its memory stay bounded."""
        before = self.rss()
        try:
            yield
        finally:
            for client in self.clients:
                client.close()
            self.clients.clear()
        assert self.select_1() == [(1,)], f"after {name}: the czar does not answer SELECT 1"
        after, peak = self.rss(), self.peak()
        self.rows.append((name, before, after, peak))
        assert peak < self.start_rss + RSS_HEADROOM, (
            f"after {name}: czar peak RSS {peak >> 20} MiB, start {self.start_rss >> 20} MiB"
        )


@pytest.fixture(scope="module")
def czar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Czar]:
    args = ("--max-connections", str(MAX_CONNECTIONS), "--startup-timeout", str(STARTUP_TIMEOUT))
    with running_cluster(
        tmp_path_factory.mktemp("hostile"), workers=2, replicas=1, objects=2000, czar_args=args
    ) as tc:
        pid = tc.cluster.procs["czar"].pid
        assert tc.query("SELECT 1") == [(1,)]
        state = Czar(tc, pid, _status_kib(pid, "VmRSS") << 10)
        yield state
        print(f"\nczar RSS at start {state.start_rss >> 20} MiB; probes (MiB):")
        print(f"  {'probe':44} {'before':>7} {'after':>7} {'peak':>7}")
        for name, before, after, peak in state.rows:
            print(f"  {name:44} {before >> 20:7} {after >> 20:7} {peak >> 20:7}")


# --- frontend messages and error fields -----------------------------------------------------


def _parse(sql: str, name: str = "", oids: tuple[int, ...] = ()) -> bytes:
    return cstr(name) + cstr(sql) + struct.pack(f"!H{len(oids)}i", len(oids), *oids)


def _bind(statement: str = "", portal: str = "", formats: int = 0, values: int = 0) -> bytes:
    body = cstr(portal) + cstr(statement) + struct.pack("!H", formats & 0xFFFF) + b"\0\0" * formats
    body += struct.pack("!H", values) + b"\xff\xff\xff\xff" * values
    return body + struct.pack("!H", 0)


def _execute(portal: str = "") -> bytes:
    return cstr(portal) + struct.pack("!i", 0)


def _fields(body: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in body.split(b"\0"):
        if part:
            out[chr(part[0])] = part[1:].decode()
    return out


def _errors(messages: list[tuple[str, bytes]]) -> list[dict[str, str]]:
    return [_fields(body) for kind, body in messages if kind == "E"]


def _until_closed(client: RawClient) -> list[tuple[str, bytes]]:
    """Every message the server sends until it closes the connection."""
    out: list[tuple[str, bytes]] = []
    client.sock.settimeout(30)
    try:
        while (msg := client.recv()) is not None:
            out.append(msg)
    except ConnectionResetError:
        pass
    return out


def _closed_with(client: RawClient, sqlstate: str) -> dict[str, str]:
    errors = _errors(_until_closed(client))
    assert [e["C"] for e in errors] == [sqlstate], errors
    assert "Traceback" not in errors[0]["M"] and "<class" not in errors[0]["M"], errors
    return errors[0]


def _query(client: RawClient, sql: str) -> list[tuple[str, bytes]]:
    client.send(b"Q", cstr(sql))
    return client.until_ready()


def _one_error(messages: list[tuple[str, bytes]], sqlstate: str) -> dict[str, str]:
    errors = _errors(messages)
    assert [e["C"] for e in errors] == [sqlstate], errors
    return errors[0]


def _still_usable(client: RawClient) -> None:
    reply = _query(client, "SELECT 1")
    assert [k for k, _ in reply] == ["T", "D", "C", "Z"], reply


# --- framing --------------------------------------------------------------------------------


def test_garbage_before_startup(czar: Czar) -> None:
    with czar.probe("garbage before startup (64 KiB random)"):
        client = czar.raw()
        client.sock.sendall(random.Random(5).randbytes(64 << 10))
        _closed_with(client, "08P01")
        client = czar.raw()
        client.sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        _closed_with(client, "08P01")


def test_garbage_after_startup(czar: Czar) -> None:
    with czar.probe("garbage after startup (64 KiB random)"):
        client = czar.session()
        client.sock.sendall(b"?" + random.Random(6).randbytes(64 << 10))
        _closed_with(client, "08P01")


def test_startup_packet_of_2_gb(czar: Czar) -> None:
    with czar.probe("startup packet announcing 2 GB"):
        client = czar.raw()
        client.sock.sendall(struct.pack("!ii", 0x7FFFFFFF, 196608))
        _closed_with(client, "08P01")


@pytest.mark.parametrize("length", [0x7FFFFFFF, (64 << 20) + 1, -5, 2], ids=str)
def test_message_length_out_of_bounds(czar: Czar, length: int) -> None:
    with czar.probe(f"Query message length {length}"):
        client = czar.session()
        client.sock.sendall(b"Q" + struct.pack("!i", length) + b"SELECT 1\0")
        err = _closed_with(client, "08P01")  # refused at once: the 2 GB body is never awaited
        assert "invalid message length" in err["M"]


# --- extended protocol out of order, parameters past the limits ---------------------------


def test_bind_without_parse(czar: Czar) -> None:
    with czar.probe("Bind without Parse"):
        client = czar.session()
        client.send(b"B", _bind())
        client.send(b"E", _execute())
        client.send(b"S")
        _one_error(client.until_ready(), "26000")
        _still_usable(client)


def test_execute_of_unknown_portal(czar: Czar) -> None:
    with czar.probe("Execute of an unknown portal"):
        client = czar.session()
        client.send(b"E", _execute("nope"))
        client.send(b"S")
        err = _one_error(client.until_ready(), "34000")
        assert err["M"] == 'portal "nope" does not exist'
        _still_usable(client)


@pytest.mark.parametrize("number", ["2000000000", "65536", "9" * 5000])
def test_parse_of_a_parameter_number_too_large(czar: Czar, number: str) -> None:
    with czar.probe(f"Parse of SELECT ${number[:12]}"):
        client = czar.session()
        client.send(b"P", _parse(f"SELECT ${number}"))
        client.send(b"S")
        err = _one_error(client.until_ready(), "42P02")
        assert err["M"].startswith("there is no parameter $"), err
        _still_usable(client)


def test_parse_and_bind_of_65535_parameters(czar: Czar) -> None:
    with czar.probe("Parse/Bind of $65535 with 65535 NULLs"):
        client = czar.session()
        client.send(b"P", _parse("SELECT 1 WHERE $65535 IS NULL"))
        client.send(b"B", _bind(values=65535))
        client.send(b"E", _execute())
        client.send(b"S")
        reply = client.until_ready()
        assert not _errors(reply) and [k for k, _ in reply][:2] == ["1", "2"], _errors(reply)


def test_bind_with_70000_parameter_formats(czar: Czar) -> None:
    with czar.probe("Bind with 70000 parameter formats"):
        client = czar.session()
        client.send(b"P", _parse("SELECT 1"))
        client.send(b"B", _bind(formats=70_000))  # the count wraps: the formats overrun it
        _closed_with(client, "08P01")
        client = czar.session()
        client.send(b"P", _parse("SELECT 1"))
        client.send(b"B", cstr("") + cstr("") + struct.pack("!H", 65535))  # 65535 announced, 0 sent
        _closed_with(client, "08P01")


def test_bind_value_lengths_out_of_bounds(czar: Czar) -> None:
    with czar.probe("Bind values of length 2 GB and -7"):
        for length in (0x7FFFFFFF, -7):
            client = czar.session()
            client.send(b"P", _parse("SELECT $1"))
            client.send(b"B", cstr("") + cstr("") + struct.pack("!HHi", 0, 1, length) + b"xx\0\0")
            _closed_with(client, "08P01")


# --- statements the parser cannot afford ----------------------------------------------------


@pytest.mark.parametrize(
    ("name", "sql"),
    [
        ("((((1)))) 100k deep", "SELECT " + "(" * 100_000 + "1" + ")" * 100_000),
        ("((((1)))) 20k deep", "SELECT " + "(" * 20_000 + "1" + ")" * 20_000),
        ("NOT NOT ... 100k", "SELECT objectId FROM Object WHERE " + "NOT " * 100_000 + "objectId = 1"),
        ("NOT NOT ... 10k", "SELECT objectId FROM Object WHERE " + "NOT " * 10_000 + "objectId = 1"),
        ("-(-(-1)) 10k deep", "SELECT " + "-(" * 10_000 + "1" + ")" * 10_000),
    ],
)
def test_deep_nesting_is_refused(czar: Czar, name: str, sql: str) -> None:
    """Past the length limit it is refused unparsed; under it the parser's recursion ends it."""
    with czar.probe(f"deep nesting: {name}"):
        client = czar.session()
        err = _one_error(_query(client, sql), "54001")
        too_long = len(sql) > MAX_STATEMENT_LENGTH
        assert ("max_statement_length" if too_long else "nested too deeply") in err["M"], err
        _still_usable(client)


def test_thousands_of_statements_in_one_query(czar: Czar) -> None:
    with czar.probe("2000 statements in one Query"):
        client = czar.session()
        client.sock.settimeout(300)  # they run one after the other, as in PostgreSQL
        reply = _query(client, "SELECT 1;" * 2000)
        assert not _errors(reply)
        assert sum(1 for kind, _ in reply if kind == "C") == 2000


def _key_list(count: int) -> str:
    return (
        "SELECT objectId FROM Object WHERE objectId IN ("
        + ",".join(str(1000 + 3 * i) for i in range(count))
        + ")"
    )


def test_a_200k_key_in_list_is_refused_naming_the_limit(czar: Czar) -> None:
    with czar.probe("IN list of 200k keys"):
        client = czar.session()
        err = _one_error(_query(client, _key_list(200_000)), "54001")
        assert "max_statement_length" in err["M"] and str(MAX_STATEMENT_LENGTH) in err["M"], err
        _still_usable(client)


def test_a_7k_key_in_list_is_answered_in_bounded_memory(czar: Czar) -> None:
    with czar.probe("IN list of 7k keys (answered)"):
        sql = _key_list(7_000)
        assert len(sql) <= MAX_STATEMENT_LENGTH
        ref = czar.tc.reference()
        try:
            expected = sorted(ref.execute(sql).fetchall())
        finally:
            ref.close()
        assert expected and sorted(czar.tc.query(sql)) == expected


@pytest.mark.parametrize(
    ("name", "body"),
    [("IN (1,1,...) at the length limit", "objectId IN (1" + ",1" * 32_000 + ")")]
    + [("1+1+... at the length limit", "objectId = 1" + "+1" * 32_000)],
)
def test_the_densest_accepted_statements_stay_bounded(czar: Czar, name: str, body: str) -> None:
    """The most elements a statement under the length limit can hold (2 characters each):
    the worst case the default limit was chosen for. Answered, or refused cleanly."""
    with czar.probe(name):
        sql = f"SELECT objectId FROM Object WHERE {body}"
        assert len(sql) <= MAX_STATEMENT_LENGTH
        client = czar.session()
        client.sock.settimeout(300)
        reply = _query(client, sql)
        # (the workers' DuckDB refuses expressions deeper than 1000 in its own words: item 7)
        for err in _errors(reply):
            assert err["C"] != "XX000" and "<class" not in err["M"] and "Traceback" not in err["M"], err


def test_a_long_statement_does_not_block_other_sessions(czar: Czar) -> None:
    """While a long statement is parsed (a key list just under the length limit: a second or so
    of sqlglot, then refused for its unknown column, so nothing else follows), another
    session's ``SELECT 1`` is answered first. Parsed on the event loop, it would wait."""
    with czar.probe("long statement parsing, SELECT 1 meanwhile"):
        big = czar.session()
        big.sock.settimeout(300)
        other = czar.session()
        keys = ",".join(str(1000 + 3 * i) for i in range(MAX_STATEMENT_LENGTH // 7))
        sql = f"SELECT objectId FROM Object WHERE objectId IN ({keys}) AND no_such_column = 1"
        assert MAX_STATEMENT_LENGTH * 0.8 < len(sql) <= MAX_STATEMENT_LENGTH
        order: list[str] = []
        replies: list[list[tuple[str, bytes]]] = []

        def answer_big() -> None:
            replies.append(big.until_ready())
            order.append("long statement")

        big.send(b"Q", cstr(sql))
        thread = threading.Thread(target=answer_big)
        thread.start()
        time.sleep(0.1)  # let the czar read the long statement first (no timing is asserted)
        _still_usable(other)
        order.append("SELECT 1")
        thread.join(timeout=300)
        assert order == ["SELECT 1", "long statement"], order
        _one_error(replies[0], "42703")


# --- connections ----------------------------------------------------------------------------


def _open(czar: Czar, count: int, action: Callable[[RawClient], None] = lambda c: None) -> list[RawClient]:
    clients = []
    for _ in range(count):
        client = czar.raw()
        action(client)
        clients.append(client)
    return clients


def test_hundreds_of_idle_connections_are_closed_by_the_startup_timeout(czar: Czar) -> None:
    with czar.probe("300 idle sockets (say nothing)"):
        idle = _open(czar, 300)
        # sockets in startup are no sessions: a real client still gets in
        assert czar.tc.query("SELECT 1") == [(1,)]
        for client in idle:  # ... and the startup timeout closes every silent one
            assert _until_closed(client) == []
            client.close()


def test_the_connection_limit_answers_53300(czar: Czar) -> None:
    with czar.probe(f"{MAX_CONNECTIONS} sessions, then one more"):
        sessions = [czar.session() for _ in range(MAX_CONNECTIONS)]
        with pytest.raises(psycopg.OperationalError, match="sorry, too many clients already") as caught:
            czar.tc.connect()
        assert "53300" in str(caught.value) or "too many clients" in str(caught.value)
        extra = czar.raw()
        extra.sock.sendall(struct.pack("!ii", 8 + len("user\0qserv\0\0"), 196608) + b"user\0qserv\0\0")
        assert _closed_with(extra, "53300")["M"] == "sorry, too many clients already"
        for client in sessions:
            _still_usable(client)


# --- HTTP -------------------------------------------------------------------------------------


def _http(czar: Czar, content_length: str) -> bytes:
    with socket.create_connection(("127.0.0.1", czar.tc.spec.http_port), timeout=30) as sock:
        sock.sendall(
            b"POST /api/v1/databases HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {content_length}\r\n\r\n".encode()
        )  # no body follows: the server must answer from the header alone, not wait for it
        data = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                data += chunk
        return data


@pytest.mark.parametrize(("length", "status"), [("99999999999", 413), ("-5", 400), ("12abc", 400)])
def test_http_refuses_a_bad_or_huge_content_length_unread(czar: Czar, length: str, status: int) -> None:
    with czar.probe(f"HTTP Content-Length: {length}"):
        answer = _http(czar, length)
        assert answer.startswith(f"HTTP/1.1 {status} ".encode()), answer[:200]
