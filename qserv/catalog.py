"""The data model: databases, their partitioning (family), tables and their kinds.

Names keep the case they were created with and resolve case-insensitively, as SQL
identifiers do (``Object``, ``object`` and ``OBJECT`` are one table).

Worker storage layout (one DuckDB database per worker; one schema per qserv database):

* director ``T``: table ``T`` with extra columns ``_chunk``, ``_subchunk``; its overlap rows
  in ``T__overlap`` (same columns; ``_chunk`` is the chunk whose overlap the row belongs to).
* child ``T``: table ``T`` with extra column ``_chunk`` (its director row's chunk).
* regular ``T``: table ``T`` as is, whole on every worker.

One table per (database, table) rather than one per chunk: DuckDB prunes row groups by the
``_chunk`` zone map, so a worker answers a batch of many chunk tasks in one pass
(``WHERE _chunk IN (...)``) instead of paying per-query overhead per chunk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

CHUNK_COLUMN = "_chunk"
SUBCHUNK_COLUMN = "_subchunk"
OVERLAP_SUFFIX = "__overlap"


class TableKind(StrEnum):
    DIRECTOR = "director"
    CHILD = "child"
    MATCH = "match"
    REGULAR = "regular"


@dataclass(frozen=True)
class Partitioning:
    """HEALPix partitioning parameters; databases sharing them form one family."""

    order: int = 5
    sub_order: int = 8
    overlap: float = 1.0 / 60.0

    @property
    def family(self) -> str:
        return f"healpix-o{self.order}-s{self.sub_order}-ov{self.overlap:.6f}"


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # a DuckDB SQL type: BIGINT, DOUBLE, VARCHAR, ...


@dataclass(frozen=True)
class Table:
    database: str
    name: str
    kind: TableKind
    columns: tuple[Column, ...]
    id_column: str | None = None  # director: its unique key (objectId)
    lon_column: str | None = None  # director: position columns, degrees
    lat_column: str | None = None
    director: str | None = None  # child: name of its director table (same database)
    key_column: str | None = None  # child: column holding the director key
    # match: (director, column) of each side, and the flag column of its stored copies
    # (bit 1: the left row is in this copy's chunk, bit 2: the right row is)
    match_left: tuple[str, str] | None = None
    match_right: tuple[str, str] | None = None
    flag_column: str | None = None

    def column(self, name: str) -> Column | None:
        lname = name.lower()
        for c in self.columns:
            if c.name.lower() == lname:
                return c
        return None

    @property
    def is_chunked(self) -> bool:
        return self.kind is not TableKind.REGULAR


@dataclass(frozen=True)
class Database:
    name: str
    partitioning: Partitioning = field(default_factory=Partitioning)


@dataclass(frozen=True)
class Catalog:
    """A snapshot of the databases and tables the czar resolves names against."""

    databases: tuple[Database, ...] = ()
    tables: tuple[Table, ...] = ()

    def database(self, name: str) -> Database | None:
        lname = name.lower()
        return next((d for d in self.databases if d.name.lower() == lname), None)

    def table(self, database: str, name: str) -> Table | None:
        ldb, lname = database.lower(), name.lower()
        return next((t for t in self.tables if t.database.lower() == ldb and t.name.lower() == lname), None)

    def tables_of(self, database: str) -> tuple[Table, ...]:
        ldb = database.lower()
        return tuple(t for t in self.tables if t.database.lower() == ldb)
