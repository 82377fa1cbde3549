"""Arrow -> PostgreSQL types: type OIDs and the text/binary wire encodings of result columns.

Text output follows what PostgreSQL 16 prints with the ParameterStatus values this server
announces (DateStyle ISO, TimeZone UTC, IntervalStyle postgres, extra_float_digits 1): floats
in shortest round-trip form ('Infinity', 'NaN', '1e+20'), bools as t/f, numeric without
exponent. Binary output exists for every mapped type, so psycopg's binary cursors work.
Columns are encoded a column at a time (Arrow compute where it prints like PostgreSQL).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

Encoded = list[bytes | None]
_PG_EPOCH_DAYS = 10_957  # 2000-01-01 - 1970-01-01
_PG_EPOCH_US = _PG_EPOCH_DAYS * 86_400 * 1_000_000


@dataclass(frozen=True)
class PgType:
    """A PostgreSQL type as RowDescription announces it."""

    name: str
    oid: int
    size: int  # pg_type.typlen: -1 for variable length


BOOL = PgType("bool", 16, 1)
BYTEA = PgType("bytea", 17, -1)
INT8 = PgType("int8", 20, 8)
INT2 = PgType("int2", 21, 2)
INT4 = PgType("int4", 23, 4)
TEXT = PgType("text", 25, -1)
JSON = PgType("json", 114, -1)
FLOAT4 = PgType("float4", 700, 4)
FLOAT8 = PgType("float8", 701, 8)
DATE = PgType("date", 1082, 4)
TIME = PgType("time", 1083, 8)
TIMESTAMP = PgType("timestamp", 1114, 8)
TIMESTAMPTZ = PgType("timestamptz", 1184, 8)
INTERVAL = PgType("interval", 1186, 16)
NUMERIC = PgType("numeric", 1700, -1)
UUID = PgType("uuid", 2950, 16)


def pg_type_for(arrow_type: pa.DataType) -> PgType:
    """The PostgreSQL type a column of ``arrow_type`` is announced as."""
    t = arrow_type
    if isinstance(t, pa.DictionaryType):
        return pg_type_for(t.value_type)
    if isinstance(t, pa.BaseExtensionType):
        return UUID if t.extension_name == "arrow.uuid" else pg_type_for(t.storage_type)
    if pa.types.is_boolean(t):
        return BOOL
    if pa.types.is_int8(t) or pa.types.is_int16(t) or pa.types.is_uint8(t):
        return INT2
    if pa.types.is_int32(t) or pa.types.is_uint16(t):
        return INT4
    if pa.types.is_int64(t) or pa.types.is_uint32(t):
        return INT8
    if pa.types.is_uint64(t) or pa.types.is_decimal(t):
        return NUMERIC  # uint64 does not fit int8: widen like DuckDB HUGEINT -> numeric
    if pa.types.is_float16(t) or pa.types.is_float32(t):
        return FLOAT4
    if pa.types.is_float64(t):
        return FLOAT8
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return TEXT
    if (
        pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_fixed_size_binary(t)
        or pa.types.is_binary_view(t)
    ):
        return BYTEA
    if pa.types.is_date(t):
        return DATE
    if pa.types.is_timestamp(t):
        return TIMESTAMPTZ if t.tz is not None else TIMESTAMP
    if pa.types.is_time(t):
        return TIME
    if pa.types.is_duration(t) or pa.types.is_interval(t):
        return INTERVAL
    return TEXT  # null, nested and anything else: printed as text


def _normalize(array: pa.Array) -> pa.Array:
    """Undo encodings the encoders need not know about (dictionary, extension, chunking)."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if isinstance(array.type, pa.DictionaryType):
        array = array.dictionary_decode()
    if isinstance(array, pa.ExtensionArray):
        array = array.storage
    return array


# --- text -------------------------------------------------------------------------------------


def format_float(value: float, *, single: bool = False) -> str:
    """PostgreSQL float4/float8 output: shortest round-trip digits, %g-like layout."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    shortest = np.format_float_scientific(np.float32(value), unique=True) if single else repr(float(value))
    sign, digit_tuple, exp = Decimal(shortest).as_tuple()
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    assert isinstance(exp, int)
    exp10 = exp + len(digit_tuple) - 1  # Decimal digits of a non-zero value have no leading 0
    digits = "".join(map(str, digit_tuple)).rstrip("0")
    precision = 6 if single else 15  # FLT_DIG / DBL_DIG, as PostgreSQL's ryu-based output
    prefix = "-" if sign else ""
    if -4 <= exp10 < precision:
        if exp10 >= 0:
            whole = digits[: exp10 + 1].ljust(exp10 + 1, "0")
            frac = digits[exp10 + 1 :]
            return prefix + whole + ("." + frac if frac else "")
        return prefix + "0." + "0" * (-exp10 - 1) + digits
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{prefix}{mantissa}e{'-' if exp10 < 0 else '+'}{abs(exp10):02d}"


def format_numeric(value: Decimal | int) -> str:
    if isinstance(value, int):
        return str(value)
    return "NaN" if value.is_nan() else format(value, "f")


def _trim_fraction(text: str) -> str:
    """PostgreSQL prints microseconds without trailing zeros: 12:00:00.5, 12:00:00."""
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def format_timestamp(value: dt.datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC)
        return _trim_fraction(value.replace(tzinfo=None).isoformat(sep=" ")) + "+00"
    return _trim_fraction(value.isoformat(sep=" "))


def format_interval(months: int, days: int, micros: int) -> str:
    """IntervalStyle postgres: '1 year 2 mons 3 days 04:05:06.5'."""
    parts: list[str] = []
    years, mons = int(months / 12), months - int(months / 12) * 12
    for amount, unit in ((years, "year"), (mons, "mon"), (days, "day")):
        if amount:
            parts.append(f"{amount} {unit}{'' if abs(amount) == 1 else 's'}")
    if micros or not parts:
        sign = "-" if micros < 0 else ""
        secs, frac = divmod(abs(micros), 1_000_000)
        clock = f"{sign}{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}"
        parts.append(clock + (f".{frac:06d}".rstrip("0") if frac else ""))
    return " ".join(parts)


def _interval_parts(array: pa.Array) -> list[tuple[int, int, int] | None]:
    if pa.types.is_duration(array.type):
        us = array.cast(pa.duration("us"), safe=False).cast(pa.int64()).to_pylist()
        return [None if v is None else (0, 0, v) for v in us]
    return [None if v is None else (v.months, v.days, v.nanoseconds // 1000) for v in array.to_pylist()]


def _utf8(values: list[Any], fmt: Callable[[Any], str]) -> Encoded:
    return [None if v is None else fmt(v).encode("utf-8") for v in values]


def _json_default(value: object) -> str:
    return value.hex() if isinstance(value, bytes) else str(value)


def _text_column(array: pa.Array, pg: PgType) -> Encoded:
    t = array.type
    if pg in (INT2, INT4, INT8) or pa.types.is_uint64(t) or pa.types.is_string(t):
        # Arrow prints integers exactly as PostgreSQL does; strings pass through.
        return [None if v is None else v.encode("utf-8") for v in pc.cast(array, pa.string()).to_pylist()]
    if pg is BOOL:
        return [None if v is None else (b"t" if v else b"f") for v in array.to_pylist()]
    if pg in (FLOAT4, FLOAT8):
        single = pg is FLOAT4
        return _utf8(array.to_pylist(), lambda v: format_float(v, single=single))
    if pg is NUMERIC:
        return _utf8(array.to_pylist(), format_numeric)
    if pg is BYTEA:
        return _utf8(array.to_pylist(), lambda v: "\\x" + bytes(v).hex())
    if pg is DATE:
        return _utf8(array.to_pylist(), lambda v: v.isoformat())
    if pg in (TIMESTAMP, TIMESTAMPTZ):
        return _utf8(array.cast(pa.timestamp("us", t.tz), safe=False).to_pylist(), format_timestamp)
    if pg is TIME:
        return _utf8(array.cast(pa.time64("us")).to_pylist(), lambda v: _trim_fraction(v.isoformat()))
    if pg is INTERVAL:
        return _utf8(_interval_parts(array), lambda p: format_interval(*p))
    if pg is UUID:
        return _utf8(array.to_pylist(), lambda v: str(v) if not isinstance(v, bytes) else _uuid_text(v))
    if pa.types.is_null(t):
        return [None] * len(array)
    if pa.types.is_nested(t):
        return _utf8(array.to_pylist(), lambda v: json.dumps(v, default=_json_default))
    return _utf8(array.to_pylist(), str)


def _uuid_text(raw: bytes) -> str:
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# --- binary -----------------------------------------------------------------------------------


def numeric_to_binary(value: Decimal | int) -> bytes:
    """PostgreSQL numeric binary form: base-10000 digits with weight, sign and display scale."""
    d = Decimal(value)
    if d.is_nan():
        return struct.pack("!hhHh", 0, 0, 0xC000, 0)
    if d.is_infinite():
        return struct.pack("!hhHh", 0, 0, 0xF000 if d < 0 else 0xD000, 0)
    exponent = d.as_tuple().exponent
    assert isinstance(exponent, int)
    dscale = max(0, -exponent)
    whole, _, frac = format(d.copy_abs(), "f").partition(".")  # abs() rounds to 28 digits
    whole = whole.lstrip("0")
    whole = whole.rjust((len(whole) + 3) // 4 * 4, "0")
    frac = frac.ljust((len(frac) + 3) // 4 * 4, "0")
    groups = [int(whole[i : i + 4]) for i in range(0, len(whole), 4)]
    weight = len(groups) - 1
    groups += [int(frac[i : i + 4]) for i in range(0, len(frac), 4)]
    while groups and groups[0] == 0:
        groups.pop(0)
        weight -= 1
    while groups and groups[-1] == 0:
        groups.pop()
    if not groups:
        weight = 0
    sign = 0x4000 if d < 0 and groups else 0
    head = struct.pack("!hhHh", len(groups), weight, sign, dscale)
    return head + struct.pack(f"!{len(groups)}h", *groups)


def _packed(values: list[Any], fmt: str) -> Encoded:
    s = struct.Struct(fmt)
    return [None if v is None else s.pack(v) for v in values]


def _binary_column(array: pa.Array, pg: PgType) -> Encoded:
    t = array.type
    if pg in (INT2, INT4, INT8):
        return _packed(array.to_pylist(), {"int2": "!h", "int4": "!i", "int8": "!q"}[pg.name])
    if pg is BOOL:
        return [None if v is None else (b"\x01" if v else b"\x00") for v in array.to_pylist()]
    if pg is FLOAT4:
        return _packed(array.cast(pa.float32()).to_pylist(), "!f")
    if pg is FLOAT8:
        return _packed(array.to_pylist(), "!d")
    if pg is NUMERIC:
        return [None if v is None else numeric_to_binary(v) for v in array.to_pylist()]
    if pg is BYTEA:
        return [None if v is None else bytes(v) for v in array.to_pylist()]
    if pg is DATE:
        days = array.cast(pa.date32()).cast(pa.int32()).to_pylist()
        return _packed([None if v is None else v - _PG_EPOCH_DAYS for v in days], "!i")
    if pg in (TIMESTAMP, TIMESTAMPTZ):
        us = array.cast(pa.timestamp("us", t.tz), safe=False).cast(pa.int64()).to_pylist()
        return _packed([None if v is None else v - _PG_EPOCH_US for v in us], "!q")
    if pg is TIME:
        return _packed(array.cast(pa.time64("us")).cast(pa.int64()).to_pylist(), "!q")
    if pg is INTERVAL:
        return [None if p is None else struct.pack("!qii", p[2], p[1], p[0]) for p in _interval_parts(array)]
    if pg is UUID and pa.types.is_fixed_size_binary(t):
        return [None if v is None else bytes(v) for v in array.to_pylist()]
    if pg is UUID:
        return [None if v is None else bytes.fromhex(str(v).replace("-", "")) for v in array.to_pylist()]
    return _text_column(array, pg)  # text's binary form is its UTF-8 bytes


def encode_column(array: pa.Array | pa.ChunkedArray, pg: PgType, binary: bool) -> Encoded:
    """Encode one result column for DataRow messages (None = SQL NULL)."""
    arr = _normalize(array)
    return _binary_column(arr, pg) if binary else _text_column(arr, pg)


def encode_batch(batch: pa.RecordBatch, types: list[PgType], formats: list[int]) -> list[Encoded]:
    """Encode every column of ``batch``; the caller zips the columns into rows."""
    return [encode_column(batch.column(i), pg, formats[i] == 1) for i, pg in enumerate(types)]
