"""Director-match-director joins: each pair once, from the match copy in its left row's chunk.

A match table M (N-to-M pairs between directors D1 and D2 of one family) is stored once in the
chunk of its left row and once in the chunk of its right row (once when they are equal), each
copy flagged (qserv/catalog.py): bit 1 when the left row is in the copy's chunk, bit 2 when the
right row is, bit 4 on the only copy of a pair one of whose rows does not exist::

    SELECT o1.objectId, o2.pairId FROM Object o1 JOIN M m ON m.objectId = o1.objectId
    JOIN Pair o2 ON m.pairId = o2.pairId
    -> in chunk C: o1 in C, m's copies with bit 1 or 4 in C (m._chunk = o1._chunk), o2 among the
       rows of C and C's overlap (o2._chunk = m._chunk); a copy with bit 1 only whose right row
       is in neither (a pair farther apart than the overlap) is answered beside the chunks, as
       a virtual chunk at the czar (czar/plan/match.py), or, in the shapes that cannot be (a
       LEFT JOIN, other tables joined), fails the query: never dropped

Joined to its left director, or alone, M's copies with bit 1 or 4 are read (one per pair; the
left row, where it exists, is in the copy's chunk); joined only to its right director, those
with bit 2 or 4.  Either way a LEFT JOIN keeps pairs whose director row is missing, once.
Depends on resolve and classify.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp

from czar.analyze.components import Union
from czar.analyze.model import ChunkJoin, JoinKind, TableRef
from qserv.catalog import FLAG_ALONE, FLAG_COLUMN, FLAG_LEFT, FLAG_RIGHT, TableKind
from qserv.errors import Unsupported


@dataclass(frozen=True)
class MatchEdge:
    match: str  # alias of the match table (lower)
    side: str  # "left" | "right"
    director: str  # alias of the director it is joined to (lower)


def flag_column(ref: TableRef) -> str:
    return ref.table.flag_column or FLAG_COLUMN


def match_edges(terms: list[exp.Expr], by_alias: dict[str, TableRef]) -> list[MatchEdge]:
    """``m.left = d1.id`` / ``m.right = d2.id`` conjuncts between a match table and its directors."""
    edges = []
    for term in terms:
        if not isinstance(term, exp.EQ):
            continue
        for m_col, d_col in ((term.this, term.expression), (term.expression, term.this)):
            if not (isinstance(m_col, exp.Column) and isinstance(d_col, exp.Column)):
                continue
            m, d = by_alias.get(m_col.table.lower()), by_alias.get(d_col.table.lower())
            if m is None or d is None or m.kind is not TableKind.MATCH or d.kind is not TableKind.DIRECTOR:
                continue
            name = f"{d.table.database}.{d.table.name}".lower()
            t = m.table
            for side, director, column in (
                ("left", t.left_director, t.left_column),
                ("right", t.right_director, t.right_column),
            ):
                if (
                    (director or "").lower() == name
                    and (column or "").lower() == m_col.name.lower()
                    and (d.table.id_column or "").lower() == d_col.name.lower()
                ):
                    edges.append(MatchEdge(m.alias.lower(), side, d.alias.lower()))
    return edges


def match_joins(
    edges: list[MatchEdge],
    by_alias: dict[str, TableRef],
    order: dict[str, int],
    union: Union,
) -> tuple[list[ChunkJoin], list[tuple[str, int]]]:
    """The chunk joins of each match table and the flag bit of the copies it reads."""
    joins: list[ChunkJoin] = []
    copies: list[tuple[str, int]] = []
    for alias, m in by_alias.items():
        if m.kind is not TableKind.MATCH:
            continue
        left = next((e.director for e in edges if e.match == alias and e.side == "left"), None)
        right = next((e.director for e in edges if e.match == alias and e.side == "right"), None)
        if left is not None and right is not None and union.find(left) != union.find(right):
            if not union.alone(right):
                raise Unsupported(
                    f'the right director "{by_alias[right].alias}" of match table "{m.alias}" is read '
                    "with its overlap rows and cannot also be key-joined to other chunked tables",
                    position=by_alias[right].position,
                )
            joins.append(_join(by_alias, order, left, alias, JoinKind.KEY))
            joins.append(_join(by_alias, order, alias, right, JoinKind.OVERLAP))
            union.join(left, alias)
            union.join(alias, right)
            copies.append((m.alias, FLAG_LEFT | FLAG_ALONE))
        elif right is not None and left is None:
            joins.append(_join(by_alias, order, right, alias, JoinKind.KEY))
            union.join(right, alias)
            copies.append((m.alias, FLAG_RIGHT | FLAG_ALONE))
        else:
            if left is not None:
                joins.append(_join(by_alias, order, left, alias, JoinKind.KEY))
                union.join(left, alias)
            copies.append((m.alias, FLAG_LEFT | FLAG_ALONE))
    return joins, copies


def _join(
    by_alias: dict[str, TableRef], order: dict[str, int], left: str, right: str, kind: JoinKind
) -> ChunkJoin:
    later = max(left, right, key=order.__getitem__)
    return ChunkJoin(
        left=by_alias[left].alias, right=by_alias[right].alias, in_on=by_alias[later].outer, kind=kind
    )
