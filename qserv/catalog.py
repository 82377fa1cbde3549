"""The data model: databases, their partitioning (family), tables and their kinds.

Names keep the case they were created with and resolve case-insensitively, as SQL
identifiers do (``Object``, ``object`` and ``OBJECT`` are one table).

Worker storage layout (one DuckDB database per worker; one schema per qserv database):

* director ``T``: table ``T`` with extra columns ``_chunk``, ``_subchunk``; its overlap rows
  in ``T__overlap`` (same columns; ``_chunk`` is the chunk whose overlap the row belongs to).
* child ``T``: table ``T`` with extra column ``_chunk`` (its director row's chunk; a row whose
  director row is absent, loaded with the child's own position columns, is in the chunk of
  its own position).
* match ``M``: table ``M`` with extra column ``_chunk``; each pair is stored once in the chunk
  of its left row and once in the chunk of its right row (once when they are equal). The flag
  column (``flag_column``: the user's, or the hidden ``_flag``) holds bit 1 when the left row
  is in this chunk, bit 2 when the right row is, and bit 4 on the only copy of a pair one of
  whose sides has no director row (stored in the chunk of the side that exists, with that
  side's bit). Each pair once: the copies with ``flag & 5 <> 0`` (czar/analyze/match.py chooses
  the copies each query reads).
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
FLAG_COLUMN = "_flag"  # a match table's flag column when the load names none
FLAG_LEFT, FLAG_RIGHT, FLAG_ALONE = 1, 2, 4
# a match load's director index rows of keys without a director row: the side, in ``subchunk``
MATCH_SIDE_LEFT, MATCH_SIDE_RIGHT = 1, 2


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
    id_column: str | None = None  # director: its key (objectId)
    lon_column: str | None = None  # director, child (optional): position columns, degrees
    lat_column: str | None = None
    director: str | None = None  # child: name of its director table (same database)
    key_column: str | None = None  # child: column holding the director key
    non_unique_key: bool = False  # director: keys may repeat (Qserv's unique_primary_key: 0)
    left_director: str | None = None  # match: "db.table" of the left director
    left_column: str | None = None  # match: column holding the left director's key
    right_director: str | None = None  # match: "db.table" of the right director
    right_column: str | None = None
    flag_column: str | None = None  # match: the flag column (FLAG_COLUMN when hidden)

    def column(self, name: str) -> Column | None:
        lname = name.lower()
        for c in self.columns:
            if c.name.lower() == lname:
                return c
        return None

    @property
    def is_chunked(self) -> bool:
        return self.kind is not TableKind.REGULAR

    @property
    def worker_columns(self) -> tuple[Column, ...]:
        """The columns a worker is told to create (the kind's ``_chunk``/``_subchunk`` it adds)."""
        if self.hidden_flag:  # stored, never shown: the catalog's columns are the user's
            return self.columns + (Column(FLAG_COLUMN, "INTEGER"),)
        return self.columns

    @property
    def hidden_flag(self) -> bool:
        """A match table whose flag column is qserv's own (``_flag``), not one of the user's."""
        return self.kind is TableKind.MATCH and self.flag_column == FLAG_COLUMN


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
