"""MySQL's text escapes, as ``SELECT ... INTO OUTFILE`` writes them (and Qserv's catalogs hold them).

MySQL writes a field's bytes raw, except that a backslash precedes the backslash itself, the
field delimiter and the newline (``\\<TAB>``, ``\\<LF>``), and NUL is written ``\\0``; NULL is
``\\N``. Reading takes ``\\0 \\b \\n \\r \\t \\Z`` as NUL, backspace, LF, CR, TAB and 0x1A, and a
backslash before any other byte as that byte.

Two uses here:

* binary (BLOB) columns of any CSV/TSV file are unescaped (:func:`unescape_binary`);
* a file without a header line (``--no-header``: a MySQL or Qserv dump) is read through
  :class:`DumpStream`, which turns an escaped delimiter or newline into a two-byte escape the
  CSV parser does not split on, and every text and binary column of it is unescaped
  (:func:`unescape_columns`); its fields are never quoted, and its BIT(1) values are raw
  bytes (:func:`bits_to_bool`).
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from qserv.errors import DataError

if TYPE_CHECKING:  # loader.read imports this module
    from loader.read import InputFile

_ESCAPES = {b"0": b"\0", b"b": b"\b", b"n": b"\n", b"r": b"\r", b"t": b"\t", b"Z": b"\x1a"}
_ESCAPED = re.compile(rb"\\(.)", re.DOTALL)
_DUMP_SPECIAL = re.compile(rb"\\(.)|\r", re.DOTALL)  # an escape pair, or a raw CR (data in a dump)
# MySQL never writes a backslash before 0x1F: a DumpStream spells an escaped delimiter so
_DELIMITER_MARK = b"\x1f"
_QUOTE_MARK = b"\x1e"  # and an escaped enclosing quote (``--enclosed-by``) so


def unescape(value: bytes, delimiter: bytes = b"", quote: bytes = b"") -> bytes:
    """A field's bytes with MySQL's escapes undone (``delimiter``: what ``\\<0x1F>`` stands for,
    ``quote``: what ``\\<0x1E>`` stands for)."""
    if b"\\" not in value:
        return value
    table = {**_ESCAPES, _DELIMITER_MARK: delimiter} if delimiter else _ESCAPES
    if quote:
        table = {**table, _QUOTE_MARK: quote}
    return _ESCAPED.sub(lambda m: table.get(m.group(1), m.group(1)), value)


def _unescaped(column: pa.Array, delimiter: bytes, quote: bytes = b"") -> pa.Array:
    text = pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
    escaped = pc.fill_null(pc.match_substring(column.cast(pa.binary()) if not text else column, "\\"), False)
    if not pc.any(escaped).as_py():
        return column  # the usual case: nothing to undo, no per-value work
    values = []
    for v, has in zip(column.to_pylist(), escaped.to_pylist(), strict=True):
        if v is None or not has:
            values.append(v)
        elif text:
            values.append(unescape(v.encode(), delimiter, quote).decode("utf-8", errors="replace"))
        else:
            values.append(unescape(v, delimiter, quote))
    return pa.array(values, column.type)


def unescape_binary(rb: pa.RecordBatch) -> pa.RecordBatch:
    """``rb`` with its binary columns unescaped."""
    return _unescape_where(rb, lambda t: pa.types.is_binary(t) or pa.types.is_large_binary(t), b"")


def unescape_columns(rb: pa.RecordBatch, delimiter: str, quote: str | None = None) -> pa.RecordBatch:
    """``rb`` (of a dump) with its text and binary columns unescaped."""

    def textual(t: pa.DataType) -> bool:
        return bool(pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_string(t)
                    or pa.types.is_large_string(t))  # fmt: skip

    return _unescape_where(rb, textual, delimiter.encode(), (quote or "").encode())


def _unescape_where(
    rb: pa.RecordBatch, which: Callable[[pa.DataType], bool], delimiter: bytes, quote: bytes = b""
) -> pa.RecordBatch:
    columns = [_unescaped(c, delimiter, quote) if which(c.type) else c for c in rb.columns]
    return pa.RecordBatch.from_arrays(columns, schema=rb.schema)


_BITS = {b"\x00": False, b"\x01": True, b"0": False, b"1": True, b"false": False, b"true": True,
         b"f": False, b"t": True}  # fmt: skip


def bits_to_bool(rb: pa.RecordBatch, columns: set[str], f: InputFile, first_row: int) -> pa.RecordBatch:
    """``rb`` (rows ``first_row``... of ``f``) with the unescaped bytes of ``columns`` as booleans:
    MySQL writes a BIT(1) as the raw byte 0x00 or 0x01; ``0``/``1``/``true``/``false`` are taken too."""
    if not columns:
        return rb
    arrays = list(rb.columns)
    for i, name in enumerate(rb.schema.names):
        if name not in columns:
            continue
        values: list[bool | None] = []
        for j, v in enumerate(arrays[i].to_pylist()):
            if v is None:
                values.append(None)
            elif v.lower() in _BITS:
                values.append(_BITS[v.lower()])
            else:
                raise DataError(
                    f"{f.position(first_row + j)}, column {name}: cannot read {v!r} as a bit (boolean)"
                )
        arrays[i] = pa.array(values, pa.bool_())
    return pa.RecordBatch.from_arrays(arrays, names=rb.schema.names)


class DumpStream(io.RawIOBase):
    """A dump's bytes with ``\\<delimiter>`` as ``\\<0x1F>``, ``\\<LF>`` as ``\\n`` and a CR as ``\\r``.

    Escape pairs are matched left to right (``\\\\<TAB>`` is an escaped backslash, then a field
    end); a block ending in an unpaired backslash keeps it for the next block.
    """

    def __init__(self, raw: io.RawIOBase | pa.NativeFile, delimiter: str, quote: str | None = None) -> None:
        self._raw = raw
        self._delimiter = delimiter.encode()
        self._quote = quote.encode() if quote else None
        self._carry = b""
        self._out = b""

    def readable(self) -> bool:
        return True

    def _fix(self, m: re.Match[bytes]) -> bytes:
        ch = m.group(1)
        if ch is None or ch == b"\r":  # the CSV parser would end the line at a CR
            return b"\\r"
        if ch == self._delimiter:
            return b"\\" + _DELIMITER_MARK
        if ch == self._quote:  # MySQL's FIELDS ENCLOSED BY: ``\\"`` inside a quoted field
            return b"\\" + _QUOTE_MARK
        if ch == b"\n":
            return b"\\n"
        return m.group(0)

    def _fill(self, size: int) -> None:
        while len(self._out) < size:
            block = self._raw.read(max(size, 1 << 20))
            if not block:
                self._out += self._carry
                self._carry = b""
                return
            data = self._carry + bytes(block)
            trailing = len(data) - len(data.rstrip(b"\\"))
            cut = len(data) - 1 if trailing % 2 else len(data)  # an unpaired last backslash waits
            self._carry = data[cut:]
            self._out += _DUMP_SPECIAL.sub(self._fix, data[:cut])

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        self._fill(len(buffer))
        n = min(len(buffer), len(self._out))
        buffer[:n] = self._out[:n]
        self._out = self._out[n:]
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()
