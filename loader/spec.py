"""What to load: the typed load specification built once from the command line.

``LoadSpec`` is the value every later stage (read, partition, upload, transaction) takes;
``parse_schema`` turns a ``CREATE TABLE`` into columns; ``fingerprint`` identifies the
input so a rerun of the same command finds its predecessor transaction::

    qserv load --url http://127.0.0.1:4048 --database sky --table Object \\
        --director --id objectId --lon ra --lat dec object_*.csv
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import sqlglot
from sqlglot import exp

from qserv.catalog import Column, TableKind
from qserv.errors import InvalidParameter, SyntaxError_


@dataclass(frozen=True)
class LoadSpec:
    """One load: target table, its kind and kind options, input files."""

    url: str
    database: str
    table: str
    kind: TableKind
    files: tuple[Path, ...]
    id_column: str | None = None  # director
    lon_column: str | None = None  # director
    lat_column: str | None = None  # director
    director: str | None = None  # child: director table (same database)
    key_column: str | None = None  # child: column holding the director key
    schema_file: Path | None = None
    batch_bytes: int = 16 << 20  # CSV block size (rows per batch follow from it)
    batch_rows: int = 256 * 1024  # Parquet rows per batch

    def __post_init__(self) -> None:
        if not self.files:
            raise InvalidParameter("no input file given", hint="name one or more CSV/TSV/Parquet files")
        if self.kind is TableKind.DIRECTOR and not (self.id_column and self.lon_column and self.lat_column):
            raise InvalidParameter(
                f"director table {self.table} needs --id, --lon and --lat",
                hint="e.g. --director --id objectId --lon ra --lat dec",
            )
        if self.kind is TableKind.CHILD and not (self.director and self.key_column):
            raise InvalidParameter(
                f"child table {self.table} needs --child-of DIRECTOR and --key COLUMN",
                hint="e.g. --child-of Object --key objectId",
            )
        if self.kind is TableKind.MATCH:
            raise InvalidParameter("loading match tables is not supported yet")

    @property
    def kind_options(self) -> dict[str, str | None]:
        """The options that decide where rows go (part of the fingerprint)."""
        return {
            "kind": self.kind.value,
            "id": self.id_column,
            "lon": self.lon_column,
            "lat": self.lat_column,
            "director": self.director,
            "key": self.key_column,
        }

    @property
    def required_columns(self) -> tuple[str, ...]:
        """Columns every input file must have (and that may not be NULL)."""
        cols = (self.id_column, self.lon_column, self.lat_column, self.key_column)
        return tuple(c for c in cols if c)


def fingerprint(spec: LoadSpec, content_hashes: dict[Path, str]) -> str:
    """Hash of target, kind options and every file's absolute path, size and content hash."""
    files = []
    for path in spec.files:
        ap = path.resolve()
        files.append([str(ap), ap.stat().st_size, content_hashes[path]])
    doc = {
        "database": spec.database.lower(),
        "table": spec.table.lower(),
        "options": spec.kind_options,
        "files": files,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def content_hash(path: Path, chunk_bytes: int = 8 << 20) -> str:
    """Hash of a file's bytes (BLAKE2b; hashlib releases the GIL, so this runs in a thread)."""
    h = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as f:
        while block := f.read(chunk_bytes):
            h.update(block)
    return h.hexdigest()


def parse_schema(sql: str, source: str = "--schema") -> tuple[tuple[Column, ...], pa.Schema]:
    """Columns (DuckDB types) and Arrow schema of a ``CREATE TABLE`` statement.

    The table name in the statement is ignored (``--table`` names the target). Types are
    normalised by DuckDB itself, so anything DuckDB accepts is accepted here.
    """
    try:
        tree = sqlglot.parse_one(sql, read="duckdb")
    except sqlglot.errors.ParseError as e:
        raise SyntaxError_(f"{source}: cannot parse CREATE TABLE: {e}") from e
    if not isinstance(tree, exp.Create) or not isinstance(tree.this, exp.Schema):
        raise SyntaxError_(f"{source}: expected CREATE TABLE name (column type, ...)")
    defs = [d for d in tree.this.expressions if isinstance(d, exp.ColumnDef)]
    if not defs:
        raise SyntaxError_(f"{source}: CREATE TABLE lists no columns")
    body = ", ".join(f'"{d.name}" {d.args["kind"].sql("duckdb")}' for d in defs if d.args.get("kind"))
    if len(body.split(", ")) < len(defs):
        raise SyntaxError_(f"{source}: every column needs a type")
    conn = duckdb.connect()
    try:
        conn.execute(f"CREATE TABLE t ({body})")
        rel = conn.sql("SELECT * FROM t")
        schema = rel.to_arrow_table().schema
        columns = tuple(Column(n, str(t)) for n, t in zip(rel.columns, rel.dtypes, strict=True))
    except duckdb.Error as e:
        raise SyntaxError_(f"{source}: {e}") from e
    finally:
        conn.close()
    return columns, schema


def columns_of(schema: pa.Schema) -> tuple[Column, ...]:
    """DuckDB column types of an Arrow schema (as DuckDB would store it)."""
    conn = duckdb.connect()
    try:
        rel = conn.from_arrow(schema.empty_table())
        return tuple(Column(n, str(t)) for n, t in zip(rel.columns, rel.dtypes, strict=True))
    finally:
        conn.close()


def arrow_schema_of(columns: tuple[Column, ...]) -> pa.Schema:
    """Arrow schema for DuckDB-typed columns (an existing table's definition)."""
    body = ", ".join(f'"{c.name}" {c.type}' for c in columns)
    return parse_schema(f"CREATE TABLE t ({body})", source="table definition")[1]
