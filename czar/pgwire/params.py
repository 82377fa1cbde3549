"""Bound parameters -> SQL literals, typed by the parameter type OID from Parse.

The czar runs single SQL strings, so Bind values are substituted for ``$n`` (outside literals,
see :mod:`czar.pgwire.sqltext`) as literals the czar dialect and DuckDB both read the same way:
numbers bare (negatives parenthesized so ``x-$1`` never becomes a ``--`` comment), other typed
values as ``CAST('text' AS TYPE)``, strings with ``'`` doubled (standard_conforming_strings: a
backslash is an ordinary character), untyped (OID 0) values as string literals, which DuckDB casts
implicitly where a number is expected. Every value is validated or quoted, never pasted raw.
"""

from __future__ import annotations

import datetime as dt
import struct
import uuid
from decimal import Decimal, InvalidOperation

from qserv.errors import InvalidParameter

# OID -> SQL type name used in CAST (None: render as a plain string literal).
_CAST_NAMES: dict[int, str | None] = {
    16: "BOOLEAN",
    17: "BLOB",
    20: "BIGINT",
    21: "SMALLINT",
    23: "INTEGER",
    26: "BIGINT",
    700: "REAL",
    701: "DOUBLE",
    1700: "DECIMAL",
    1082: "DATE",
    1083: "TIME",
    1114: "TIMESTAMP",
    1184: "TIMESTAMPTZ",
    1186: "INTERVAL",
    2950: "UUID",
}
_INT_OIDS = {20, 21, 23, 26}
_FLOAT_OIDS = {700, 701}
_TEXT_OIDS = {0, 18, 19, 25, 114, 705, 1042, 1043, 3802}
_TRUE = {"t", "true", "y", "yes", "on", "1"}
_FALSE = {"f", "false", "n", "no", "off", "0"}
_PG_EPOCH = dt.datetime(2000, 1, 1)


def quote_string(text: str) -> str:
    """A standard SQL string literal, read alike in every session dialect: a backslash (an
    escape character in MySQL sessions' strings, not in PostgreSQL's) is spelled ``CHR(92)``."""
    if "\0" in text:
        raise InvalidParameter("parameter value contains a NUL character", hint="remove the NUL byte")
    pieces = ["'" + piece.replace("'", "''") + "'" for piece in text.split("\\")]
    return pieces[0] if len(pieces) == 1 else "CONCAT(" + ", CHR(92), ".join(pieces) + ")"


def _decode_numeric(data: bytes) -> Decimal:
    ndigits, weight, sign, dscale = struct.unpack_from("!hhHh", data)
    if sign == 0xC000:
        return Decimal("NaN")
    if sign in (0xD000, 0xF000):
        return Decimal("-Infinity" if sign == 0xF000 else "Infinity")
    groups = struct.unpack_from(f"!{ndigits}h", data, 8)
    # Built from a digit tuple, exactly: arithmetic would round at the context's 28 digits.
    digits = [int(c) for c in "".join(f"{g:04d}" for g in groups)] or [0]
    exponent = 4 * (weight - ndigits + 1) if ndigits else 0
    if exponent > -dscale:
        digits += [0] * (exponent + dscale)
    elif exponent < -dscale:
        del digits[len(digits) - (-dscale - exponent) :]
    return Decimal((1 if sign == 0x4000 else 0, tuple(digits) or (0,), -dscale))


def decode_binary(oid: int, data: bytes) -> object:
    """Decode one binary-format parameter of type ``oid`` into a Python value."""
    try:
        if oid in _TEXT_OIDS:
            return (data[1:] if oid == 3802 else data).decode("utf-8")
        if oid == 16:
            return data != b"\x00"
        if oid == 17:
            return bytes(data)
        if oid in _INT_OIDS:
            return int.from_bytes(data, "big", signed=oid != 26)
        if oid == 700:
            return float(struct.unpack("!f", data)[0])
        if oid == 701:
            return float(struct.unpack("!d", data)[0])
        if oid == 1700:
            return _decode_numeric(data)
        if oid == 1082:
            return dt.date(2000, 1, 1) + dt.timedelta(days=struct.unpack("!i", data)[0])
        if oid in (1114, 1184):
            ts = _PG_EPOCH + dt.timedelta(microseconds=struct.unpack("!q", data)[0])
            return ts.replace(tzinfo=dt.UTC) if oid == 1184 else ts
        if oid == 1083:
            us = struct.unpack("!q", data)[0]
            return (dt.datetime.min + dt.timedelta(microseconds=us)).time()
        if oid == 1186:
            micros, days, months = struct.unpack("!qii", data)
            return f"{months} months {days} days {micros} microseconds"
        if oid == 2950:
            return uuid.UUID(bytes=bytes(data))
    except (struct.error, ValueError, OverflowError, UnicodeDecodeError) as exc:
        raise InvalidParameter(f"invalid binary value for parameter of type OID {oid}") from exc
    raise InvalidParameter(
        f"binary format is not supported for parameters of type OID {oid}",
        hint="send this parameter in text format",
    )


def _number(text: str) -> str:
    return f"({text})" if text.startswith("-") else text


def render_literal(oid: int, value: object) -> str:
    """Render one parameter value (str from text format, or a decoded binary value) as SQL."""
    cast = _CAST_NAMES.get(oid)
    if value is None:
        return f"CAST(NULL AS {cast})" if cast else "NULL"
    try:
        if oid in _INT_OIDS:
            return _number(str(value if isinstance(value, int) else int(str(value).strip())))
        if oid in _FLOAT_OIDS:
            number = value if isinstance(value, float) else float(str(value).strip())
            text = repr(number) if number == number and abs(number) != float("inf") else None
            if text is None:
                text = "'NaN'" if number != number else ("'Infinity'" if number > 0 else "'-Infinity'")
            return f"CAST({text} AS {cast})"
        if oid == 1700:
            dec = value if isinstance(value, Decimal) else Decimal(str(value).strip())
            if not dec.is_finite():
                return f"CAST({quote_string(str(dec))} AS DOUBLE)"
            return _number(format(dec, "f"))
        if oid == 16:
            if isinstance(value, bool):
                return "TRUE" if value else "FALSE"
            word = str(value).strip().lower()
            if word in _TRUE or word in _FALSE:
                return "TRUE" if word in _TRUE else "FALSE"
            raise ValueError(word)
        if oid == 17:
            raw = value if isinstance(value, bytes) else _bytea_from_text(str(value))
            return f"CAST(UNHEX('{raw.hex().upper()}') AS BLOB)"  # no backslash: see quote_string
    except (ValueError, InvalidOperation) as exc:
        raise InvalidParameter(
            f"invalid input for parameter of type {cast}: {str(value)[:60]!r}",
            hint="pass a value of the declared type, or declare the parameter as text",
        ) from exc
    if isinstance(value, dt.datetime):
        text = value.isoformat(sep=" ")
    elif isinstance(value, dt.date | dt.time):
        text = value.isoformat()
    else:
        text = str(value)
    return f"CAST({quote_string(text)} AS {cast})" if cast else quote_string(text)


def _bytea_from_text(text: str) -> bytes:
    """PostgreSQL bytea text input: ``\\x`` hex, or the escape format (``\\\\``, ``\\ooo``)."""
    if text.startswith("\\x"):
        return bytes.fromhex(text[2:])
    out = bytearray()
    i = 0
    while i < len(text):
        if text[i] != "\\":
            out += text[i].encode("utf-8")
            i += 1
        elif text.startswith("\\\\", i):
            out.append(0x5C)
            i += 2
        else:
            out.append(int(text[i + 1 : i + 4], 8))
            i += 4
    return bytes(out)
