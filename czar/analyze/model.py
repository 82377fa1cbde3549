"""Typed facts the analyzer hands to the planner (frozen dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TypeAlias

from sqlglot import exp

from qserv.catalog import Partitioning, Table, TableKind
from qserv.sphere.region import Box, Circle
from qserv.sphere.shapes import Ellipse, Polygon

Shape: TypeAlias = Box | Circle | Ellipse | Polygon


@dataclass(frozen=True)
class Restrictor:
    """A shape the rows of one table's position columns must lie in (a top-level WHERE term).

    ``margin`` grows the shape's chunk cover: a child's own positions lie up to the overlap
    away from the chunk of their director row, where the child rows are stored.
    """

    shape: Shape
    alias: str  # the table reference whose position columns are restricted
    margin: float = 0.0
    areaspec: bool = False  # from qserv_areaspec_* (else a scisql_s2PtIn* restrictor)


@dataclass(frozen=True)
class Region:
    """The restrictors of a query: every one holds, so its chunks are their covers' intersection."""

    restrictors: tuple[Restrictor, ...]

    def chunks(self, order: int) -> frozenset[int]:
        """Chunks that can hold rows satisfying every restrictor."""
        covers = [r.shape.chunks(order, r.margin) for r in self.restrictors]
        return frozenset.intersection(*covers) if covers else frozenset()


@dataclass(frozen=True)
class TableRef:
    """One table reference in FROM/JOIN: the catalog table and the alias the query uses."""

    alias: str
    table: Table
    position: int | None = None
    outer: bool = False  # the nullable side of a LEFT JOIN
    # JOIN ... USING / NATURAL JOIN: (this table's column, left alias, left column) per merged
    # column; unqualified, the name means the left column (see czar/analyze/using.py)
    using: tuple[tuple[str, str, str], ...] = ()
    # the alias's exact spelling, which a double-quoted qualifier must match (resolve.py):
    # a quoted alias as written, an unquoted one folded to lower case (as PostgreSQL folds
    # it), no alias: the catalog table's name
    spelling: str = ""

    @property
    def kind(self) -> TableKind:
        return self.table.kind

    @property
    def key(self) -> tuple[str, str]:
        """(database, table) lower-cased: the key of ``PlanContext.nonempty_chunks``."""
        return (self.table.database.lower(), self.table.name.lower())


class JoinKind(StrEnum):
    KEY = "key"  # director-child on the key: rows share a chunk
    NEAR = "near"  # near-neighbour: ``right`` read with its overlap, a zone band join
    OVERLAP = "overlap"  # ``right`` read with its overlap rows (a match table's right director)


@dataclass(frozen=True)
class ChunkJoin:
    """Two chunked references joined so that matching rows share a chunk (director-child),
    or are found in the chunk of ``left`` with the overlap of ``right`` (near-neighbour)."""

    left: str  # alias
    right: str  # alias
    in_on: bool  # the condition belongs in the ON clause of ``right`` (LEFT JOIN)
    kind: JoinKind = JoinKind.KEY
    radius: float | None = None  # NEAR: the join radius (degrees), at most the overlap


@dataclass(frozen=True)
class KeyRestriction:
    """Director keys the WHERE clause pins rows to: ``key = c`` / ``key IN (c, ...)`` conjuncts.

    Rows satisfy every conjunct, so the keys are the intersection of the conjuncts' constants.
    ``terms`` keeps each conjunct's constant nodes (with their positions in the SQL text), so a
    query differing only in these constants can reuse this one's plan (czar/generic.py).
    """

    director: tuple[str, str]  # (database, director table) to look keys up in
    keys: tuple[int | str, ...]
    terms: tuple[tuple[exp.Expr, ...], ...]


@dataclass(frozen=True)
class KeyRange:
    """``key BETWEEN low AND high`` (integer constants) in a top-level WHERE conjunct on a
    director's key (or a child's key column): the planner asks the director index for the
    chunks of the keys in the range, if they are few enough (plan/chunks.py)."""

    director: tuple[str, str]  # (database, director table) to look keys up in
    low: int
    high: int


@dataclass(frozen=True)
class AggregateInfo:
    """Whether the query aggregates, and its GROUP BY keys (ordinals and aliases resolved)."""

    aggregated: bool
    group_by: tuple[exp.Expr, ...] = ()


@dataclass(frozen=True)
class AnalyzedQuery:
    """A checked query: the rewritten tree plus everything the planner needs to know about it.

    ``tree`` is user-level DuckDB-ready SQL: tables as ``"db"."Table" AS alias``, columns
    qualified by alias, ``*`` expanded, areaspec restrictors rewritten into row predicates.
    Run on one DuckDB holding the plain tables it gives the reference answer.
    """

    sql: str
    tree: exp.Select
    # ``tree`` with columns spelled as written (result names come from it); None when it is
    # ``tree``'s, made on use (:meth:`written_tree`): most queries never need it
    written: exp.Select | None
    tables: tuple[TableRef, ...]
    chunk_joins: tuple[ChunkJoin, ...]
    region: Region | None
    director_keys: KeyRestriction | None
    aggregates: AggregateInfo
    columns: tuple[str, ...]
    types: tuple[str, ...]  # DuckDB type of each output column, as single-node DuckDB gives it
    partitioning: Partitioning | None  # of the chunked tables (None: regular tables only)
    director_range: KeyRange | None = None
    # match tables: (alias, flag bit) of the stored copies each reads (czar/analyze/match.py)
    match_copies: tuple[tuple[str, int], ...] = ()

    @property
    def family(self) -> str | None:
        """The family whose chunk placement the query is planned on (None: regular tables only)."""
        return self.partitioning.family if self.partitioning is not None else None

    @property
    def chunked(self) -> tuple[TableRef, ...]:
        return tuple(r for r in self.tables if r.table.is_chunked)

    def written_tree(self) -> exp.Select:
        """``tree`` with columns spelled as the user wrote them (qualified only if they were)."""
        if self.written is not None:
            return self.written
        from czar.analyze.resolve import as_written  # (resolve imports this module)

        return as_written(self.tree)

    def reference_sql(self) -> str:
        """The query for one DuckDB holding the plain tables (the differential reference)."""
        return self.written_tree().sql(dialect="duckdb")
