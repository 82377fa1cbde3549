"""Input files -> Arrow record batches, streamed with bounded memory.

CSV/TSV files have a header line; the delimiter comes from the extension (``.csv`` comma,
``.tsv``/``.tab`` tab, ``.psv`` pipe) or is sniffed from the first 64 KiB. ``NULL``, ``null``,
``\\N`` and the empty field are NULL (in a dump without a header, ``\\N`` only). Compressed files (``.gz``, ``.bz2``, ``.zst``) are
read transparently. Binary (BLOB) fields are bytes with MySQL's escapes, as Qserv's catalogs
hold them (:mod:`loader.escapes`); a column whose values are not UTF-8 text is inferred as
binary. A file without a header line (``--no-header``) is a MySQL or Qserv dump: its columns
are the table's, in order, and MySQL's escapes are undone in every text and binary column.

Schema inference reads the *whole* file (pyarrow infers from the first block only, so a
column that looks integer for a million rows and then holds ``1.5`` would fail half-way
through a load): every conversion error widens that column (null -> int64 -> double ->
string) and the scan restarts, so the load pass never meets a value its type cannot hold.

A value that does not parse under a given schema (``--schema``, an existing table, Parquet)
is reported with file, line and column: the batch that failed is re-read as text and
bisected with pyarrow's own casts to find the first bad value.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from loader.escapes import DumpStream, bits_to_bool, unescape_binary, unescape_columns
from qserv.errors import DataError

NULL_VALUES = ["", "NULL", "null", "\\N"]
DUMP_NULL_VALUES = ["\\N"]  # MySQL's SELECT ... INTO OUTFILE (--no-header)
_COMPRESSION = {".gz", ".bz2", ".zst", ".lz4"}
_DELIMITERS = {".csv": ",", ".tsv": "\t", ".tab": "\t", ".psv": "|"}
_CONVERSION = re.compile(r"In CSV column #(\d+): CSV conversion error to (\w+)")


@dataclass(frozen=True)
class InputFile:
    """One input file and how to parse it."""

    path: Path
    format: str  # "csv" or "parquet"
    delimiter: str = ","
    columns: tuple[str, ...] | None = None  # a CSV without a header line: its columns, in order
    quote: str | None = None  # a dump's fields may be enclosed in it (MySQL's FIELDS ENCLOSED BY)

    def position(self, row: int) -> str:
        """Where data row ``row`` (0-based) is, for error messages."""
        if self.format == "csv":
            return f"{self.path} line {row + (2 if self.columns is None else 1)}"  # line 1: the header
        return f"{self.path} row {row + 1}"


@dataclass(frozen=True)
class Batch:
    """Rows ``first_row`` .. ``first_row + len(data) - 1`` of ``file``."""

    file: InputFile
    first_row: int
    data: pa.RecordBatch


def input_file(path: Path, columns: tuple[str, ...] | None = None, quote: str | None = None) -> InputFile:
    """Recognise a file's format and delimiter (``columns``: a CSV's, when it has no header line;
    ``quote``: the character a dump may enclose fields in)."""
    if not path.is_file():
        raise DataError(f"input file {path} does not exist or is not a file")
    suffixes = [s.lower() for s in path.suffixes if s.lower() not in _COMPRESSION]
    ext = suffixes[-1] if suffixes else ""
    if ext in (".parquet", ".pq"):
        return InputFile(path, "parquet")
    if ext in _DELIMITERS:
        return InputFile(path, "csv", _DELIMITERS[ext], columns, quote)
    with pa.input_stream(str(path), compression="detect") as f:
        sample = f.read(64 << 10).decode("utf-8", errors="replace")
    try:
        dialect = csv.Sniffer().sniff(sample.split("\n", 20)[0] + "\n", delimiters=",\t|;")
    except csv.Error as e:
        raise DataError(f"cannot tell the format of {path}", hint="name it .csv, .tsv or .parquet") from e
    return InputFile(path, "csv", dialect.delimiter, columns, quote)


def _open_csv(
    f: InputFile, block_bytes: int, column_types: dict[str, pa.DataType] | None = None
) -> pacsv.CSVStreamingReader:
    stream: pa.NativeFile | DumpStream = pa.input_stream(str(f.path), compression="detect")
    if f.columns is not None:  # a dump: MySQL's escapes of the delimiter and newline
        stream = DumpStream(stream, f.delimiter, f.quote)
    return pacsv.open_csv(
        stream,
        read_options=pacsv.ReadOptions(
            block_size=block_bytes, column_names=list(f.columns) if f.columns is not None else None
        ),
        # a dump encloses no field in quotes: a quote is a character like any other
        parse_options=pacsv.ParseOptions(
            delimiter=f.delimiter, quote_char='"' if f.columns is None else (f.quote or False)
        ),
        convert_options=pacsv.ConvertOptions(
            column_types=column_types or {},
            # a dump writes NULL as \N only: its empty field is the empty string
            null_values=DUMP_NULL_VALUES if f.columns is not None else NULL_VALUES,
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        ),
    )


def _widen(t: pa.DataType) -> pa.DataType:
    if pa.types.is_null(t):
        return pa.int64()
    if pa.types.is_integer(t):
        return pa.float64()
    if pa.types.is_string(t):
        return pa.binary()  # not UTF-8: bytes
    return pa.string()


def _widest(a: pa.DataType, b: pa.DataType) -> pa.DataType:
    """The narrowest type of the chain null < int64 < double < string holding both."""
    if a == b:
        return a
    chain = [pa.null(), pa.int64(), pa.float64()]
    if pa.types.is_binary(a) or pa.types.is_binary(b):
        return pa.binary()

    def rank(t: pa.DataType) -> int:
        if pa.types.is_null(t):
            return 0
        if pa.types.is_integer(t):
            return 1
        if pa.types.is_floating(t):
            return 2
        return 3

    r = max(rank(a), rank(b))
    if pa.types.is_null(a):
        return b
    if pa.types.is_null(b):
        return a
    return chain[r] if r < 3 else pa.string()


def _finish(schema: pa.Schema) -> pa.Schema:
    # An all-NULL column has no type to infer: store it as text.
    return pa.schema([pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f for f in schema])


def infer_schema(f: InputFile, block_bytes: int = 16 << 20) -> pa.Schema:
    """The schema of a whole file (Parquet: its own; CSV: inferred over every row)."""
    if f.format == "parquet":
        return pq.ParquetFile(f.path).schema_arrow
    try:
        first = _open_csv(f, block_bytes, None).schema  # inferred from the first block
    except pa.ArrowInvalid as e:
        raise DataError(f"cannot read {f.path}: {e}") from e
    # Explicit types convert ~1.5x faster than inference mode, and keep the check exact.
    types: dict[str, pa.DataType] = {fld.name: fld.type for fld in first}
    while True:
        reader = _open_csv(f, block_bytes, types)
        schema = reader.schema
        try:
            for _ in reader:
                pass
            return _finish(schema)
        except pa.ArrowInvalid as e:
            m = _CONVERSION.search(str(e))
            if m is None:
                raise DataError(f"cannot parse {f.path}: {e}") from e
            i = int(m.group(1))
            types = {fld.name: fld.type for fld in schema}
            types[schema.field(i).name] = _widen(schema.field(i).type)


def unify_schemas(schemas: list[tuple[InputFile, pa.Schema]]) -> pa.Schema:
    """One schema for several files: same column names, types widened to hold all."""
    first_file, result = schemas[0]
    for f, s in schemas[1:]:
        if [n.lower() for n in s.names] != [n.lower() for n in result.names]:
            raise DataError(
                f"{f.path} has columns {s.names}, but {first_file.path} has {result.names}",
                hint="load files with different columns in separate runs",
            )
        result = pa.schema(
            [pa.field(a.name, _widest(a.type, b.type)) for a, b in zip(result, s, strict=True)]
        )
    return result


def _first_bad(values: pa.Array, target: pa.DataType) -> int | None:
    """Index of the first value of a text array that does not cast to ``target``."""

    def ok(arr: pa.Array) -> bool:
        try:
            pc.cast(arr, target, safe=True)
            return True
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return False

    if ok(values):
        return None
    lo, hi = 0, len(values)  # invariant: [lo, hi) holds a bad value
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(values.slice(lo, mid - lo)):
            lo = mid
        else:
            hi = mid
    return lo


def _locate_csv_error(f: InputFile, schema: pa.Schema, block_bytes: int, error: Exception) -> DataError:
    """Re-read ``f`` as text and name the first value that does not parse."""
    text = {name: pa.string() for name in schema.names}
    row = 0
    try:
        for batch in _open_csv(f, block_bytes, text):
            for name in schema.names:
                target = schema.field(name).type
                if pa.types.is_string(target) or name not in batch.schema.names:
                    continue
                bad = _first_bad(batch.column(name), target)
                if bad is not None:
                    value = batch.column(name)[bad].as_py()
                    return DataError(
                        f"{f.position(row + bad)}, column {name}: cannot read {value!r} as {target}",
                        hint="fix the value, or declare the column's type with --schema",
                    )
            row += batch.num_rows
    except pa.ArrowInvalid as e:
        return DataError(f"{f.path}: cannot parse after {f.position(row)}: {e}")
    return DataError(f"{f.path}: {error}")


def read_batches(
    f: InputFile, schema: pa.Schema, block_bytes: int = 16 << 20, batch_rows: int = 256 * 1024
) -> Iterator[Batch]:
    """Stream ``f`` as batches with exactly ``schema`` (columns matched case-insensitively)."""
    names = _match_columns(f, schema)
    if f.format == "parquet":
        pf = pq.ParquetFile(f.path)
        target = pa.schema([pa.field(n, schema.field(i).type) for i, n in enumerate(names)])
        row = 0
        for rb in pf.iter_batches(batch_size=batch_rows, columns=names):
            try:
                rb = rb.select(names).cast(target)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                raise _locate_parquet_error(f, rb, target, row, e) from e
            yield Batch(f, row, rb.rename_columns(schema.names))
            row += rb.num_rows
        return
    types = {n: schema.field(i).type for i, n in enumerate(names)}
    # a dump writes BIT(1) as a raw byte: read as bytes, then as a bit (loader.escapes)
    bits = {n for n, t in types.items() if f.columns is not None and pa.types.is_boolean(t)}
    row = 0
    try:
        reader = _open_csv(f, block_bytes, {n: pa.binary() if n in bits else t for n, t in types.items()})
        for rb in reader:
            rb = rb.select(names)
            if f.columns is not None:
                rb = bits_to_bool(unescape_columns(rb, f.delimiter, f.quote), bits, f, row)
            else:
                rb = unescape_binary(rb)
            yield Batch(f, row, rb.rename_columns(schema.names))
            row += rb.num_rows
    except pa.ArrowInvalid as e:
        target = pa.schema([pa.field(n, types[n]) for n in names])
        raise _locate_csv_error(f, target, block_bytes, e) from e


def _locate_parquet_error(
    f: InputFile, rb: pa.RecordBatch, target: pa.Schema, first_row: int, error: Exception
) -> DataError:
    for fld in target:
        bad = _first_bad(rb.column(fld.name), fld.type)
        if bad is not None:
            value = rb.column(fld.name)[bad].as_py()
            return DataError(
                f"{f.position(first_row + bad)}, column {fld.name}: cannot convert {value!r} to {fld.type}"
            )
    return DataError(f"{f.path}: {error}")


def file_columns(f: InputFile) -> list[str]:
    """Column names of a file, from its header or Parquet schema."""
    if f.format == "parquet":
        return list(pq.ParquetFile(f.path).schema_arrow.names)
    if f.columns is not None:
        return list(f.columns)
    try:
        reader = _open_csv(f, 1 << 16, None)
    except pa.ArrowInvalid as e:
        raise DataError(f"cannot read the header of {f.path}: {e}") from e
    return list(reader.schema.names)


def _match_columns(f: InputFile, schema: pa.Schema) -> list[str]:
    """The file's name for each schema column; refuse missing or extra columns."""
    have = file_columns(f)
    by_lower = {n.lower(): n for n in have}
    missing = [n for n in schema.names if n.lower() not in by_lower]
    if missing:
        raise DataError(
            f"{f.path} lacks column(s) {', '.join(missing)} of the table",
            hint=f"the file has columns {', '.join(have)}",
        )
    wanted = {n.lower() for n in schema.names}
    extra = [n for n in have if n.lower() not in wanted]
    if extra:
        raise DataError(
            f"{f.path} has column(s) {', '.join(extra)} the table does not have",
            hint="remove them, or load into a table declared with them (--schema)",
        )
    return [by_lower[n.lower()] for n in schema.names]
