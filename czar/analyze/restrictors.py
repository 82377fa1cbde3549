"""Pass 6b (restrictors): director-key restrictions in the WHERE clause (regions: regions.py).

Director keys: ``id = const`` or ``id IN (consts)`` on a director's id column (or a child's key
column) in a top-level conjunct; the planner looks them up in the director index. So does
``id BETWEEN low AND high`` (integer constants), as a range of keys.
Depends on resolve (qualified columns) and joins (which children are tied to a director).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from sqlglot import exp

from czar.analyze.joins import conjuncts
from czar.analyze.model import KeyRange, KeyRestriction, TableRef
from qserv.catalog import TableKind


def number(node: exp.Expr) -> float | None:
    """The value of a numeric constant: ``1.5``, ``-(2)``, or a cast of one to a numeric type.

    Casts matter because bound parameters arrive as ``CAST(10.0 AS DOUBLE)`` (float8 from
    psycopg/JDBC, see czar/pgwire/params.py), and users write ``10::float8`` too.
    """
    if isinstance(node, exp.Paren):
        return number(node.this)
    if isinstance(node, exp.Neg):
        inner = number(node.this)
        return None if inner is None else -inner
    if isinstance(node, exp.Literal) and not node.is_string:
        return float(node.this)
    if isinstance(node, (exp.Cast, exp.TryCast)) and node.to.is_type(*exp.DataType.NUMERIC_TYPES):
        inner = node.this
        if isinstance(inner, exp.Literal) and inner.is_string:
            try:
                value = float(inner.this)
            except ValueError:
                return None
            return value if math.isfinite(value) else None
        return number(inner)
    return None


def literal_key(node: exp.Expr) -> int | str | None:
    """The director key a constant node stands for (None: not a key constant)."""
    if isinstance(node, exp.Literal):
        if node.is_string:
            return str(node.this)
        if node.is_int:
            return int(node.this)
    if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal) and node.this.is_int:
        return -int(node.this.this)
    return None


def common_keys(terms: Sequence[Sequence[int | str]]) -> tuple[int | str, ...]:
    """Keys satisfying every conjunct (the intersection), sorted."""
    keys = set(terms[0])
    for more in terms[1:]:
        keys &= set(more)
    return tuple(sorted(keys, key=lambda k: (isinstance(k, str), k)))


def extract_keys(
    tree: exp.Select,
    refs: tuple[TableRef, ...],
    joined_children: frozenset[str],
    excluded: frozenset[str] = frozenset(),
) -> KeyRestriction | None:
    """Director keys from ``key = c`` / ``key IN (c, ...)`` conjuncts, and the director they key.

    ``joined_children`` are aliases of children joined to their director (or alone): their key
    column restricts chunks as the director's id does. ``excluded`` aliases (tables a join reads
    with their overlap rows: found in other chunks too) restrict no chunk.
    """
    by_alias = {r.alias.lower(): r for r in refs if r.alias.lower() not in excluded}
    where = tree.args.get("where")
    found: list[tuple[tuple[str, str], tuple[exp.Expr, ...]]] = []
    for term in conjuncts(where.this if where is not None else None):
        column: exp.Expr | None = None
        values: list[exp.Expr] = []
        if isinstance(term, exp.EQ):
            if isinstance(term.this, exp.Column):
                column, values = term.this, [term.expression]
            elif isinstance(term.expression, exp.Column):
                column, values = term.expression, [term.this]
        elif isinstance(term, exp.In) and not term.args.get("query") and isinstance(term.this, exp.Column):
            column, values = term.this, list(term.expressions)
        if not isinstance(column, exp.Column) or not values:
            continue
        ref = by_alias.get(column.table.lower())
        if ref is None:
            continue
        director = _keyed_director(ref, column.name, joined_children)
        if director is None or any(literal_key(v) is None for v in values):
            continue
        found.append((director, tuple(values)))
    if not found:
        return None
    # several restrictions on the same key: rows satisfy all of them
    director = found[0][0]
    terms = tuple(values for d, values in found if d == director)
    keys = common_keys([[k for k in map(literal_key, values) if k is not None] for values in terms])
    return KeyRestriction(director, keys, terms)


def extract_range(
    tree: exp.Select,
    refs: tuple[TableRef, ...],
    joined_children: frozenset[str],
    excluded: frozenset[str] = frozenset(),
) -> KeyRange | None:
    """The key range of ``key BETWEEN low AND high`` conjuncts (integer constants): their
    intersection, on the director of the first one.

        WHERE o.objectId BETWEEN 1000 AND 1050 AND o.objectId BETWEEN 1040 AND 2000
        -> KeyRange(("sky", "Object"), 1040, 1050)

    ``excluded`` aliases restrict no chunk, as in :func:`extract_keys`.
    """
    by_alias = {r.alias.lower(): r for r in refs if r.alias.lower() not in excluded}
    where = tree.args.get("where")
    found: KeyRange | None = None
    for term in conjuncts(where.this if where is not None else None):
        if not isinstance(term, exp.Between) or term.args.get("symmetric"):
            continue
        column = term.this
        low, high = literal_key(term.args["low"]), literal_key(term.args["high"])
        if not isinstance(column, exp.Column) or not isinstance(low, int) or not isinstance(high, int):
            continue
        ref = by_alias.get(column.table.lower())
        director = _keyed_director(ref, column.name, joined_children) if ref is not None else None
        if director is None:
            continue
        if found is None:
            found = KeyRange(director, low, high)
        elif found.director == director:
            found = KeyRange(director, max(found.low, low), min(found.high, high))
    return found


def _keyed_director(ref: TableRef, column: str, joined_children: frozenset[str]) -> tuple[str, str] | None:
    t = ref.table
    if t.kind is TableKind.DIRECTOR and (t.id_column or "").lower() == column.lower():
        return (t.database, t.name)
    if (
        t.kind is TableKind.CHILD
        and (t.key_column or "").lower() == column.lower()
        and ref.alias.lower() in joined_children
        and t.director
        # a child with its own position may hold rows no director row has (in the chunks of
        # their own positions): the director index does not know where those are
        and t.lon_column is None
    ):
        return (t.database, t.director)
    return None
