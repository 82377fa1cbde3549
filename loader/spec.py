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
    lon_column: str | None = None  # director; child (optional): its own position
    lat_column: str | None = None  # director; child (optional)
    director: str | None = None  # child: director table (same database)
    key_column: str | None = None  # child: column holding the director key
    non_unique_key: bool = False  # director: keys may repeat
    left_director: str | None = None  # match: [db.]director of the left side
    left_column: str | None = None  # match: column holding the left director's key
    right_director: str | None = None
    right_column: str | None = None
    flag_column: str | None = None  # match: the flag column (None: qserv's hidden one)
    schema_file: Path | None = None
    header: bool = True  # CSV/TSV files start with a header line (Qserv's dumps do not)
    enclosed_by: str | None = None  # a dump's fields may be enclosed in it (MySQL's ENCLOSED BY)
    batch_bytes: int = 16 << 20  # CSV block size (rows per batch follow from it)
    batch_rows: int = 256 * 1024  # Parquet rows per batch

    def __post_init__(self) -> None:
        if self.enclosed_by is not None and (len(self.enclosed_by) != 1 or self.header):
            raise InvalidParameter(
                "--enclosed-by takes one character, for files without a header line (--no-header)",
                hint="e.g. --no-header --enclosed-by '\"' (MySQL's FIELDS ENCLOSED BY)",
            )
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
        if self.kind is TableKind.CHILD and (self.lon_column is None) != (self.lat_column is None):
            raise InvalidParameter(f"child table {self.table}: give both --lon and --lat, or neither")
        if self.kind is TableKind.MATCH and not (
            self.left_director and self.left_column and self.right_director and self.right_column
        ):
            raise InvalidParameter(
                f"match table {self.table} needs --left DIRECTOR=COLUMN and --right DIRECTOR=COLUMN",
                hint="e.g. --match --left RefObject=refObjectId --right Object=objectId",
            )

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
            **({"non_unique_key": "1"} if self.non_unique_key else {}),
            **({"header": "0"} if not self.header else {}),
            **(
                {
                    "left": f"{self.left_director}={self.left_column}",
                    "right": f"{self.right_director}={self.right_column}",
                    "flag": self.flag_column,
                }
                if self.kind is TableKind.MATCH
                else {}
            ),
        }

    @property
    def required_columns(self) -> tuple[str, ...]:
        """Columns that may not be NULL (a match row's keys may: that side is absent; so may the
        key of a child with its own position: the row is placed by that position)."""
        key = self.key_column if self.lon_column is None else None
        cols = (self.id_column, self.lon_column, self.lat_column, key)
        return tuple(c for c in cols if c)


def director_option(value: str, option: str) -> tuple[str, str]:
    """``[DB.]DIRECTOR=COLUMN`` of ``--left``/``--right`` as (director, column)."""
    director, sep, column = value.partition("=")
    if not sep or not director.strip() or not column.strip():
        raise InvalidParameter(
            f"{option} {value!r}: expected DIRECTOR=COLUMN", hint=f"e.g. {option} Object=objectId"
        )
    return director.strip(), column.strip()


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
    """Hash of a file's bytes (hashlib releases the GIL, so this runs in a thread).

    SHA-256: processors' SHA instructions make it the fastest of hashlib's (1.6 GB/s here,
    BLAKE2b 0.7), and a load waits for it before its first row is sent.
    """
    h = hashlib.sha256()
    block = bytearray(chunk_bytes)
    view = memoryview(block)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(block):
            h.update(view[:n])
    return h.hexdigest()


def parse_schema(sql: str, source: str = "--schema") -> tuple[tuple[Column, ...], pa.Schema]:
    """Columns (DuckDB types) and Arrow schema of a ``CREATE TABLE`` statement.

    The table name in the statement is ignored (``--table`` names the target). DuckDB's and
    PostgreSQL's type names are taken as DuckDB normalises them; a statement DuckDB's grammar
    does not take is read as MySQL (Qserv's schema files: backticks, ``DEFAULT NULL``, keys,
    ``ENGINE=...``), its types mapped by :func:`duckdb_type`.
    """
    tree, mysql = None, False
    # backticks: MySQL (else DuckDB's parser would fall back to a Command, with a warning)
    dialects = ("mysql", "duckdb") if "`" in sql else ("duckdb", "mysql")
    for dialect in dialects:
        try:
            tree = sqlglot.parse_one(sql, read=dialect)
        except sqlglot.errors.ParseError as e:
            if dialect == dialects[-1]:
                raise SyntaxError_(f"{source}: cannot parse CREATE TABLE: {e}") from e
            continue
        if isinstance(tree, exp.Create) and isinstance(tree.this, exp.Schema):
            mysql = dialect == "mysql"
            break
    if not isinstance(tree, exp.Create) or not isinstance(tree.this, exp.Schema):
        raise SyntaxError_(f"{source}: expected CREATE TABLE name (column type, ...)")
    defs = [d for d in tree.this.expressions if isinstance(d, exp.ColumnDef)]
    if not defs:
        raise SyntaxError_(f"{source}: CREATE TABLE lists no columns")
    if any(not isinstance(d.args.get("kind"), exp.DataType) for d in defs):
        raise SyntaxError_(f"{source}: every column needs a type")
    body = ", ".join(f'"{d.name}" {duckdb_type(d.args["kind"], mysql)}' for d in defs)
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


_T = exp.DataType.Type
# MySQL types whose width is a display width (INT(11)) or that DuckDB spells otherwise
_INTEGERS = {_T.TINYINT, _T.SMALLINT, _T.INT, _T.BIGINT, _T.UTINYINT, _T.USMALLINT, _T.UINT, _T.UBIGINT}
_RENAMED = {
    _T.MEDIUMINT: "INTEGER",  # 24-bit in MySQL: INTEGER holds it
    _T.UMEDIUMINT: "UINTEGER",
    _T.BINARY: "BLOB",  # BINARY(n), VARBINARY(n), *BLOB: bytes
    _T.VARBINARY: "BLOB",
    _T.TINYBLOB: "BLOB",
    _T.MEDIUMBLOB: "BLOB",
    _T.LONGBLOB: "BLOB",
    _T.BLOB: "BLOB",
    _T.CHAR: "VARCHAR",  # CHAR(n), VARCHAR(n), *TEXT: text (DuckDB has no length limit)
    _T.NCHAR: "VARCHAR",
    _T.VARCHAR: "VARCHAR",
    _T.NVARCHAR: "VARCHAR",
}


def duckdb_type(kind: exp.DataType, mysql: bool = False) -> str:
    """The DuckDB type of a column type of a ``CREATE TABLE``.

    Integers lose MySQL's display width (``INT(11)`` -> INTEGER, ``BIGINT(20) UNSIGNED`` ->
    UBIGINT, ``TINYINT(1)`` stays TINYINT: MySQL stores -128..127 in it); ``BIT(1)`` is
    BOOLEAN, ``BIT(n)`` UBIGINT (its value as a number); CHAR/VARCHAR/TEXT are VARCHAR;
    BINARY/VARBINARY/BLOB are BLOB; MySQL's ``TIMESTAMP`` and ``DATETIME`` are TIMESTAMP (MySQL
    shows both in the session's zone: no zone is stored with the value), FLOAT is FLOAT
    (4 bytes), DOUBLE DOUBLE, DATE DATE.
    """
    t = kind.this
    if t in _INTEGERS:
        return exp.DataType(this=t).sql("duckdb")
    if t in _RENAMED:
        return _RENAMED[t]
    if t == _T.BIT:
        size = kind.expressions[0].this.this if kind.expressions else "1"
        return "BOOLEAN" if str(size) == "1" else "UBIGINT"
    if mysql and t in (_T.TIMESTAMPTZ, _T.TIMESTAMP, _T.DATETIME):
        return "TIMESTAMP"
    return kind.sql("duckdb")


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
