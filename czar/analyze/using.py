"""Pass 3a (using): ``JOIN ... USING (cols)`` and ``NATURAL JOIN`` merge columns as PostgreSQL does.

    SELECT * FROM Object o JOIN Source s USING (objectId)
    -> refs: s.using = (("objectId", "o", "objectId"),)
       *  -> o.objectId, o.ra, ..., s.sourceId, s.ra, ...    (objectId once, first)
       an unqualified objectId means o.objectId; s.objectId stays reachable qualified

The tree keeps its USING/NATURAL clauses (so the written query, which the reference and the
output typing run, is the user's); :func:`using_condition` is the equivalent ON condition,
which the joins pass reads and the worker query is given (plan/split.py).  A merged column is
the left one, which is PostgreSQL's value for INNER and LEFT joins (RIGHT/FULL are refused).
For a chain, the left side is everything joined so far, with merged columns counted once.
Depends on resolve_tables (refs in FROM order, aligned with the tree's joins).
"""

from __future__ import annotations

import dataclasses

from sqlglot import exp

from czar.analyze.model import TableRef
from czar.parse import node_position
from qserv.catalog import CHUNK_COLUMN, SUBCHUNK_COLUMN
from qserv.errors import AmbiguousColumn, UndefinedColumn

HIDDEN = frozenset({CHUNK_COLUMN, SUBCHUNK_COLUMN})


def visible_columns(refs: tuple[TableRef, ...] | list[TableRef]) -> list[tuple[str, str]]:
    """(column, alias) of ``SELECT *`` over ``refs`` in PostgreSQL's order."""
    out: list[tuple[str, str]] = []
    for ref in refs:
        own = [(c.name, ref.alias) for c in ref.table.columns if c.name.lower() not in HIDDEN]
        if not ref.using:
            out.extend(own)
            continue
        merged = {r.lower() for r, _, _ in ref.using}
        first = [(left_column, alias) for _, alias, left_column in ref.using]
        rest = [v for v in out if v[0].lower() not in merged]
        out = first + rest + [v for v in own if v[0].lower() not in merged]
    return out


def merge_using(tree: exp.Select, refs: tuple[TableRef, ...]) -> tuple[TableRef, ...]:
    """``refs`` with the merged columns of each USING/NATURAL join recorded on its table."""
    joins = list(tree.args.get("joins") or [])
    if not refs or len(joins) != len(refs) - 1:
        return refs
    out = [refs[0]]
    for ref, join in zip(refs[1:], joins, strict=True):
        names = _using_names(join, ref, out)
        if names:
            left = visible_columns(out)
            merged = []
            for name, position in names:
                # PostgreSQL's order of checks: the left side, then the right
                sources = [v for v in left if v[0].lower() == name.lower()]
                if len(sources) > 1:
                    raise AmbiguousColumn(
                        f'common column name "{name}" appears more than once in left table',
                        position=position,
                    )
                mine = ref.table.column(name)
                if not sources or mine is None:
                    side = "left" if not sources else "right"
                    raise UndefinedColumn(
                        f'column "{name}" specified in USING clause does not exist in {side} table',
                        position=position,
                    )
                merged.append((mine.name, sources[0][1], sources[0][0]))
            ref = dataclasses.replace(ref, using=tuple(merged))
        out.append(ref)
    return tuple(out)


def _using_names(join: exp.Join, ref: TableRef, left: list[TableRef]) -> list[tuple[str, int | None]]:
    using = join.args.get("using") or []
    if using:
        return [(ident.name, node_position(ident)) for ident in using]
    if (join.args.get("method") or "").upper() != "NATURAL":
        return []
    have = {c.name.lower() for c in ref.table.columns if c.name.lower() not in HIDDEN}
    seen: list[str] = []
    for name, _ in visible_columns(left):
        if name.lower() in have and name.lower() not in (s.lower() for s in seen):
            seen.append(name)
    return [(name, node_position(join)) for name in seen]


def using_condition(ref: TableRef) -> exp.Expr | None:
    """The ON condition equivalent to ``ref``'s USING/NATURAL join (None: it has none)."""
    terms = [
        exp.EQ(
            this=exp.column(mine, table=exp.to_identifier(ref.alias, quoted=True), quoted=True),
            expression=exp.column(column, table=exp.to_identifier(alias, quoted=True), quoted=True),
        )
        for mine, alias, column in ref.using
    ]
    return exp.and_(*terms) if terms else None


def hidden_by_using(ref: TableRef, name: str) -> bool:
    """An unqualified ``name`` does not mean ``ref``'s column: USING merged it into the left one."""
    return any(mine.lower() == name.lower() for mine, _, _ in ref.using)


def to_on(select: exp.Select, refs: tuple[TableRef, ...]) -> None:
    """Rewrite ``select``'s USING/NATURAL joins as ON joins (for the worker query)."""
    by_alias = {r.alias.lower(): r for r in refs}
    for join in select.args.get("joins") or []:
        ref = by_alias.get(join.this.alias_or_name.lower())
        if ref is None or not ref.using:
            continue
        join.set("using", None)
        if (join.args.get("method") or "").upper() == "NATURAL":
            join.set("method", None)
        join.set("on", using_condition(ref))
