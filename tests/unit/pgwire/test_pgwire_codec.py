"""Pure parts of pgwire, without a network: SQL lexing, parameters, type encodings, framing."""

from __future__ import annotations

import datetime as dt
import struct
from decimal import Decimal

import pyarrow as pa
import pytest

from czar.pgwire import protocol as pw
from czar.pgwire.params import decode_binary, render_literal
from czar.pgwire.sqltext import first_keyword, max_param_index, split_statements, substitute_params
from czar.pgwire.types import encode_column, format_float, format_interval, numeric_to_binary, pg_type_for
from qserv.errors import InvalidParameter, ProtocolViolation


def test_split_respects_literals_comments_and_dollar_quotes() -> None:
    sql = (
        "SELECT 'a;b'; SELECT \"x;y\" -- c;d\n; /* e; /* nested; */ f; */ SELECT $q$ g; $q$;; SELECT E'\\';'"
    )
    parts = split_statements(sql)
    assert [p.sql for p in parts] == [
        "SELECT 'a;b'",
        'SELECT "x;y" -- c;d',
        "/* e; /* nested; */ f; */ SELECT $q$ g; $q$",
        "SELECT E'\\';'",
    ]
    assert all(sql[p.offset : p.offset + len(p.sql)] == p.sql for p in parts)
    assert split_statements(" ; -- only a comment\n") == []


def test_first_keyword_and_param_count() -> None:
    assert first_keyword("/* hi */ -- x\n  (select 1)") == "SELECT"
    assert first_keyword("") == ""
    assert max_param_index("SELECT $2, '$9', \"$8\", a$7, $1") == 2


def test_substitution_skips_literals_and_maps_positions() -> None:
    sql = "SELECT x-$1, '$1', $2 FROM t WHERE bad"
    sub = substitute_params(sql, lambda n: render_literal(23 if n == 1 else 25, "-5" if n == 1 else "it's"))
    assert sub.sql == "SELECT x-(-5), '$1', 'it''s' FROM t WHERE bad"
    assert sub.original_position(sub.sql.index("bad") + 1) == sql.index("bad") + 1
    assert sub.original_position(sub.sql.index("'it") + 2) == sql.index("$2") + 1


@pytest.mark.parametrize(
    ("oid", "value", "literal"),
    [
        (20, "42", "42"),
        (701, "NaN", "CAST('NaN' AS DOUBLE)"),
        (701, -1.5, "CAST(-1.5 AS DOUBLE)"),
        (1700, "-0.10", "(-0.10)"),
        (16, "yes", "TRUE"),
        (17, "\\x00ff", "CAST(UNHEX('00FF') AS BLOB)"),
        (1082, dt.date(2024, 1, 2), "CAST('2024-01-02' AS DATE)"),
        (0, "a\\b", "CONCAT('a', CHR(92), 'b')"),  # read alike in MySQL sessions
        (0, "\\'", "CONCAT('', CHR(92), '''')"),
        (23, None, "CAST(NULL AS INTEGER)"),
        (0, None, "NULL"),
    ],
)
def test_render_literal(oid: int, value: object, literal: str) -> None:
    assert render_literal(oid, value) == literal


def test_render_literal_refuses_bad_input() -> None:
    with pytest.raises(InvalidParameter):
        render_literal(23, "1; DROP TABLE x")
    with pytest.raises(InvalidParameter):
        decode_binary(1007, b"\x00")


def test_binary_params() -> None:
    assert decode_binary(23, struct.pack("!i", -7)) == -7
    assert decode_binary(1114, struct.pack("!q", 86_400_000_000)) == dt.datetime(2000, 1, 2)
    for text in ("0", "-12.3400", "1e-20", "170141183460469231731687303715884105727"):
        assert decode_binary(1700, numeric_to_binary(Decimal(text))) == Decimal(text)


@pytest.mark.parametrize(
    ("value", "single", "text"),
    [
        (0.1, False, "0.1"),
        (1e15, False, "1e+15"),
        (1e14, False, "100000000000000"),
        (1e-5, False, "1e-05"),
        (-0.0, False, "-0"),
        (float("-inf"), False, "-Infinity"),
        (1e6, True, "1e+06"),
        (1 / 3, True, "0.33333334"),
    ],
)
def test_float_output_matches_postgres(value: float, single: bool, text: str) -> None:
    assert format_float(value, single=single) == text


def test_type_mapping_and_text_encoding() -> None:
    assert [pg_type_for(t).name for t in (pa.int8(), pa.uint16(), pa.uint32(), pa.uint64(), pa.null())] == [
        "int2",
        "int4",
        "int8",
        "numeric",
        "text",
    ]
    assert pg_type_for(pa.decimal128(38, 0)).name == "numeric"
    assert pg_type_for(pa.timestamp("us", "UTC")).name == "timestamptz"
    ts = pa.array([dt.datetime(2024, 1, 1, 12, 0, 0, 500000), None], pa.timestamp("ns"))
    assert encode_column(ts, pg_type_for(ts.type), False) == [b"2024-01-01 12:00:00.5", None]
    assert encode_column(pa.array([True, False]), pg_type_for(pa.bool_()), False) == [b"t", b"f"]
    assert format_interval(14, -3, 3_600_000_000) == "1 year 2 mons -3 days 01:00:00"
    assert format_interval(0, 0, 0) == "00:00:00"


def test_decoder_frames_and_rejects_garbage() -> None:
    dec = pw.Decoder()
    body = struct.pack("!i", pw.PROTOCOL_3_0) + b"user\0u\0\0"
    query = b"Q" + struct.pack("!i", 13) + b"SELECT 1\0"
    data = struct.pack("!i", len(body) + 4) + body + query
    dec.feed(data[:7])
    assert list(dec.packets()) == []
    dec.feed(data[7:-3])
    assert list(dec.packets()) == [pw.StartupMessage(pw.PROTOCOL_3_0, {"user": "u"})]
    dec.feed(data[-3:])
    assert list(dec.packets()) == [pw.Query("SELECT 1")]
    dec.feed(b"Z\x00\x00\x00\x04")
    with pytest.raises(ProtocolViolation):
        list(dec.packets())
    with pytest.raises(ProtocolViolation):
        pw.parse_message(b"Q", b"no terminator")
    with pytest.raises(ProtocolViolation):
        pw.parse_message(b"B", b"\0\0\x00\x01")


def test_error_response_fields() -> None:
    raw = pw.encode_error_response(pw.ErrorFields("42P01", "no table", detail="d", hint="h", position=7))
    assert (
        raw[0:1] == b"E"
        and b"C42P01\0" in raw
        and b"P7\0" in raw
        and b"Dd\0" in raw
        and raw.endswith(b"\0\0")
    )
