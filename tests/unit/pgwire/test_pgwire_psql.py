"""The real ``psql`` binary against the pgwire server, and clients that misbehave."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess

import psycopg
import pytest
from pgwire_helpers import RawClient, cstr

from czar.pgwire import ServerThread

PSQL = shutil.which("psql") or "/usr/bin/psql"
needs_psql = pytest.mark.skipif(not os.path.exists(PSQL), reason="psql is not installed")


def _psql(server: ServerThread, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PGCONNECT_TIMEOUT": "10", "PGAPPNAME": "psql-test"}
    cmd = [PSQL, "-X", "-w", "-h", "127.0.0.1", "-p", str(server.port), "-U", "qserv", "sky", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)


@needs_psql
def test_psql_unaligned_tuples_only(server: ServerThread) -> None:
    out = _psql(server, "-A", "-t", "-c", "SELECT id, name, mag FROM stars WHERE id <= 3 ORDER BY id")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["1|star1|0.1", "2|star2|0.2", "3|star3|0.3"]


@needs_psql
def test_psql_multi_statement(server: ServerThread) -> None:
    out = _psql(server, "-A", "-t", "-c", "SELECT 1; SELECT 'a;b' AS s; SELECT NULL IS NULL")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["1", "a;b", "t"]


@needs_psql
def test_psql_error_is_reported(server: ServerThread) -> None:
    out = _psql(server, "-A", "-t", "-v", "VERBOSITY=verbose", "-c", "SELECT * FROM no_such_table")
    assert out.returncode == 1
    assert "42P01" in out.stderr and "no_such_table" in out.stderr and "Traceback" not in out.stderr


def test_garbage_startup_does_not_kill_server(server: ServerThread, dsn: str) -> None:
    for junk in (b"\x00\x00\x00\x05x", b"GET / HTTP/1.1\r\n\r\n", os.urandom(300), b"\xff" * 16):
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            s.sendall(junk)
            s.shutdown(socket.SHUT_WR)
            data = b""
            while chunk := s.recv(4096):
                data += chunk
        assert data == b"" or data.startswith(b"E")  # an ErrorResponse, then closed
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_garbage_after_startup_closes_only_that_connection(raw: RawClient, dsn: str) -> None:
    raw.startup()
    raw.sock.sendall(b"\x7f\x00\x00\x00\x08junk")
    msg = raw.recv()
    assert msg is not None and msg[0] == "E" and b"08P01" in msg[1]
    assert raw.recv() is None
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_ssl_request_refused_then_startup(server: ServerThread) -> None:
    client = RawClient(server.port)
    client.sock.sendall(struct.pack("!ii", 8, 80877103))
    assert client.sock.recv(1) == b"N"
    kinds = [m[0] for m in client.startup()]
    assert kinds[0] == "R" and "S" in kinds and "K" in kinds and kinds[-1] == "Z"
    client.close()


def test_empty_query_and_comment_only(raw: RawClient) -> None:
    raw.startup()
    for sql in ("", "  ;  ", "-- nothing\n"):
        raw.send(b"Q", cstr(sql))
        assert [m[0] for m in raw.until_ready()] == ["I", "Z"]


def test_extended_row_limit_and_portal_suspended(raw: RawClient) -> None:
    raw.startup()
    raw.send(
        b"P", cstr("s1") + cstr("SELECT id FROM stars WHERE id <= $1 ORDER BY id") + struct.pack("!hi", 1, 23)
    )
    raw.send(b"B", cstr("") + cstr("s1") + struct.pack("!hhi", 0, 1, 1) + b"5" + struct.pack("!h", 0))
    raw.send(b"D", b"P" + cstr(""))
    raw.send(b"E", cstr("") + struct.pack("!i", 2))
    raw.send(b"E", cstr("") + struct.pack("!i", 2))
    raw.send(b"E", cstr("") + struct.pack("!i", 2))
    raw.send(b"S")
    msgs = raw.until_ready()
    assert [m[0] for m in msgs] == ["1", "2", "T", "D", "D", "s", "D", "D", "s", "D", "C", "Z"]
    assert msgs[-2][1] == cstr("SELECT 5") and msgs[-1][1] == b"I"


def test_describe_statement_and_error_skips_to_sync(raw: RawClient) -> None:
    raw.startup()
    raw.send(
        b"P",
        cstr("q")
        + cstr("SELECT name, $1::INTEGER + 1 AS nxt FROM stars WHERE id = $2")
        + struct.pack("!h", 0),
    )
    raw.send(b"D", b"S" + cstr("q"))
    raw.send(b"P", cstr("set") + cstr("SET threads = 1") + struct.pack("!h", 0))
    raw.send(b"D", b"S" + cstr("set"))
    raw.send(b"S")
    msgs = raw.until_ready()
    assert [m[0] for m in msgs] == ["1", "t", "T", "1", "t", "n", "Z"]
    assert msgs[1][1] == struct.pack("!hII", 2, 25, 25)
    # An error in extended mode discards everything up to Sync.
    raw.send(b"B", cstr("") + cstr("nope") + struct.pack("!hhh", 0, 0, 0))
    raw.send(b"E", cstr("") + struct.pack("!i", 0))
    raw.send(b"S")
    msgs = raw.until_ready()
    assert [m[0] for m in msgs] == ["E", "Z"] and b"26000" in msgs[0][1]
