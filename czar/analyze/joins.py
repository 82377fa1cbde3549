"""Pass 5 (joins): every join must be answerable from chunk-local data.

Allowed:

* one chunked table, with any number of regular tables (copied whole to every worker);
* a director and its children joined on ``director.id = child.key`` (children live in their
  director row's chunk), children of the same director on ``a.key = b.key``, a director with
  itself on ``a.id = b.id`` (in ON, in WHERE, or through USING/NATURAL):

      SELECT ... FROM Object o JOIN Source s ON s.objectId = o.objectId
      -> worker adds ``s._chunk = o._chunk`` (see plan/split.py)

* a match table joined to its directors on their keys (match.py);
* near-neighbour joins of two directors of the family, ``scisql_angSep(...) < r`` with a
  constant r up to the overlap (neighbour.py): the second table is read with its overlap.

Refused (Unsupported 0A000): directors, or children of different directors, without such a
join (cross joins), a near-neighbour radius above the overlap or not constant, and a LEFT
JOIN whose nullable chunked side has no chunked preserved side.
Depends on resolve (qualified columns) and classify.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp

from czar.analyze.components import Union
from czar.analyze.match import match_edges, match_joins
from czar.analyze.model import ChunkJoin, JoinKind, TableRef
from czar.analyze.neighbour import NearTerm, near_terms
from czar.analyze.using import using_condition
from czar.parse import node_position
from qserv.catalog import Partitioning, TableKind
from qserv.errors import Unsupported


def conjuncts(condition: exp.Expr | None) -> list[exp.Expr]:
    """Top-level AND terms of a condition (parentheses removed)."""
    if condition is None:
        return []
    condition = condition.unnest()
    if isinstance(condition, exp.And):
        return conjuncts(condition.left) + conjuncts(condition.right)
    return [condition]


def _director_of(ref: TableRef, column: str) -> tuple[str, str] | None:
    """(db, director) when ``column`` is the director key of ``ref``, else None."""
    t = ref.table
    if t.kind is TableKind.DIRECTOR and t.id_column and t.id_column.lower() == column.lower():
        return (t.database.lower(), t.name.lower())
    if t.kind is TableKind.CHILD and t.key_column and t.key_column.lower() == column.lower():
        return (t.database.lower(), (t.director or "").lower())
    return None


def _key_edges(terms: list[exp.Expr], by_alias: dict[str, TableRef]) -> list[tuple[str, str]]:
    edges = []
    for term in terms:
        if not isinstance(term, exp.EQ):
            continue
        a, b = term.this, term.expression
        if not (isinstance(a, exp.Column) and isinstance(b, exp.Column)):
            continue
        ra, rb = by_alias.get(a.table.lower()), by_alias.get(b.table.lower())
        if ra is None or rb is None or ra is rb:
            continue
        da, db = _director_of(ra, a.name), _director_of(rb, b.name)
        if da is not None and da == db:
            edges.append((ra.alias.lower(), rb.alias.lower()))
    return edges


@dataclass(frozen=True)
class Joins:
    """The chunk-local joins of a query and the match-table copies it reads."""

    chunk_joins: tuple[ChunkJoin, ...]
    match_copies: tuple[tuple[str, int], ...] = ()


def check_joins(
    tree: exp.Select, refs: tuple[TableRef, ...], partitioning: Partitioning | None = None
) -> Joins:
    """Return the chunk-local joins between chunked tables, or refuse the query."""
    chunked = [r for r in refs if r.table.is_chunked]
    order = {r.alias.lower(): i for i, r in enumerate(refs)}
    by_alias = {r.alias.lower(): r for r in chunked}
    where = tree.args.get("where")
    terms = conjuncts(where.this if where is not None else None)
    for join in tree.args.get("joins") or []:
        terms.extend(conjuncts(join.args.get("on")))
    for ref in refs:
        terms.extend(conjuncts(using_condition(ref)))
    union = Union(list(by_alias))
    joins: list[ChunkJoin] = []
    for a, b in _key_edges(terms, by_alias):
        if union.join(a, b):
            left, right = sorted((a, b), key=order.__getitem__)
            joins.append(
                ChunkJoin(left=by_alias[left].alias, right=by_alias[right].alias, in_on=by_alias[right].outer)
            )
    matched, copies = match_joins(match_edges(terms, by_alias), by_alias, order, union)
    joins.extend(matched)
    if len(union.roots()) > 1:
        overlapped = {j.right.lower() for j in matched if j.kind is JoinKind.OVERLAP}
        joins.extend(_near_joins(terms, by_alias, order, union, partitioning, overlapped))
    if len(union.roots()) > 1:
        raise _refusal(chunked)
    for ref in chunked:
        if ref.outer and not any(ref.alias in (j.left, j.right) for j in joins):
            raise Unsupported(
                f'LEFT JOIN of chunked table "{ref.alias}" needs a chunked table on its left, joined '
                "on the director key: a regular table cannot be the preserved side",
                position=ref.position,
            )
    return Joins(tuple(joins), tuple(copies))


def _near_joins(
    terms: list[exp.Expr],
    by_alias: dict[str, TableRef],
    order: dict[str, int],
    union: Union,
    partitioning: Partitioning | None,
    overlapped: set[str],
) -> list[ChunkJoin]:
    """Near-neighbour joins tying the remaining components together (see neighbour.py).

    The second side of each is a director read with its overlap rows: it must stand alone
    (children and key joins have no overlap rows), and its first side must not be a second.
    """
    out: list[ChunkJoin] = []
    seconds = overlapped  # read with their overlap: their rows may lie outside the chunk
    pending = near_terms(terms, by_alias)
    while pending:
        usable = [n for n in pending if _sides(n, union, order, seconds) is not None]
        if not usable:
            needed = [n for n in pending if union.find(n.first) != union.find(n.second)]
            if needed:
                near = needed[0]
                raise Unsupported(
                    f'near-neighbour join of "{by_alias[near.first].alias}" and '
                    f'"{by_alias[near.second].alias}": one side is read with its overlap rows and must '
                    "be a director joined to no other chunked table (children and match tables have no "
                    "overlap rows)",
                    position=node_position(near.term),
                )
            break
        near = usable[0]
        pending.remove(near)
        sides = _sides(near, union, order, seconds)
        assert sides is not None
        first, second = sides
        position = node_position(near.term)
        if near.radius is None:
            raise Unsupported(
                "near-neighbour join radius must be a constant (degrees), not an expression of columns",
                position=position,
            )
        overlap = partitioning.overlap if partitioning is not None else 0.0
        if near.radius > overlap:
            db = by_alias[second].table.database
            raise Unsupported(
                f"near-neighbour join radius {near.radius:g}° exceeds the overlap {overlap:g}° of "
                f'database "{db}": pairs farther apart than the overlap are not stored together; use '
                "a radius up to the overlap, or load the tables into a database created with a larger "
                "one (qserv database create DB --overlap DEG)",
                position=position,
            )
        union.join(first, second)
        seconds.add(second)
        ref = by_alias[second]
        out.append(
            ChunkJoin(
                left=by_alias[first].alias,
                right=ref.alias,
                in_on=by_alias[max(first, second, key=order.__getitem__)].outer,
                kind=JoinKind.NEAR,
                radius=max(near.radius, 0.0),
            )
        )
    return out


def _sides(near: NearTerm, union: Union, order: dict[str, int], seconds: set[str]) -> tuple[str, str] | None:
    """(first, second) for a near-neighbour term that joins two components, else None."""
    a, b = sorted((near.first, near.second), key=order.__getitem__)
    if union.find(a) == union.find(b):
        return None
    first, second = (a, b) if union.alone(b) else (b, a)
    if not union.alone(second) or first in seconds:
        return None
    return first, second


def _refusal(chunked: list[TableRef]) -> Unsupported:
    directors = {
        (
            r.table.database.lower(),
            r.table.name.lower() if r.kind is TableKind.DIRECTOR else (r.table.director or "").lower(),
        )
        for r in chunked
    }
    names = ", ".join(f"{r.alias} ({r.kind.value} {r.table.name})" for r in chunked)
    position = chunked[1].position
    if len(directors) > 1:
        return Unsupported(
            f"join of tables of different directors is not supported: {names}; join a director "
            "and its children on the key, two directors through a match table or with a "
            "near-neighbour condition scisql_angSep(a.lon, a.lat, b.lon, b.lat) < radius",
            position=position,
        )
    same = {r.table.name.lower() for r in chunked}
    if len(same) == 1 and chunked[0].kind is TableKind.DIRECTOR:
        return Unsupported(
            f"self-join of director {chunked[0].table.name} needs equal keys or a near-neighbour "
            f"condition scisql_angSep(a.lon, a.lat, b.lon, b.lat) < radius: {names}",
            position=position,
        )
    return Unsupported(
        f"join of chunked tables without an equi-join on the director key is not supported: {names}; "
        "add ON child.key = director.id",
        position=position,
    )
