"""Near-neighbour join conditions: ``scisql_angSep`` of two directors' positions below a radius.

    WHERE scisql_angSep(o1.ra, o1.decl, o2.ra, o2.decl) < 0.01        -> NearTerm(o1, o2, 0.01)
    also <=, 0.01 > ..., ... BETWEEN 0 AND 0.01, and 1.0 / 3600 as the radius

A pair closer than the overlap is found in the chunk of its first member, with the second
member among that chunk's rows or its overlap rows (DESIGN §3), so the joins pass accepts such a
term as a chunk-local join when its radius is a constant no larger than the overlap.
The positions must be the directors' declared position columns: the overlap is measured there.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp

from czar.analyze.model import TableRef
from qserv.catalog import TableKind

ANGSEP = "scisql_angsep"


@dataclass(frozen=True)
class NearTerm:
    """A condition keeping pairs of ``first`` and ``second`` rows closer than ``radius``."""

    first: str  # alias (as written in the angSep call, lower-case)
    second: str
    radius: float | None  # degrees; None when it is not a constant
    term: exp.Expr


def _separation_bound(term: exp.Expr) -> tuple[exp.Expr, exp.Expr] | None:
    """(angSep call, upper bound) of ``sep < r``, ``sep <= r``, ``r > sep``, ``sep BETWEEN a AND r``."""
    if isinstance(term, (exp.LT, exp.LTE)):
        return term.this, term.expression
    if isinstance(term, (exp.GT, exp.GTE)):
        return term.expression, term.this
    if isinstance(term, exp.Between):
        return term.this, term.args["high"]
    return None


def _position_ref(lon: exp.Expr, lat: exp.Expr, by_alias: dict[str, TableRef]) -> TableRef | None:
    """The director whose declared position columns ``lon``, ``lat`` are."""
    if not (isinstance(lon, exp.Column) and isinstance(lat, exp.Column)):
        return None
    if lon.table.lower() != lat.table.lower():
        return None
    ref = by_alias.get(lon.table.lower())
    if ref is None or ref.kind is not TableKind.DIRECTOR:
        return None
    t = ref.table
    if (t.lon_column or "").lower() != lon.name.lower() or (t.lat_column or "").lower() != lat.name.lower():
        return None
    return ref


def near_terms(terms: list[exp.Expr], by_alias: dict[str, TableRef]) -> list[NearTerm]:
    """The conjuncts comparing the angular separation of two directors' positions to a bound."""
    found = []
    for term in terms:
        parts = _separation_bound(term)
        if parts is None:
            continue
        call, bound = parts
        call = call.unnest()
        if not (
            isinstance(call, exp.Anonymous) and call.name.lower() == ANGSEP and len(call.expressions) == 4
        ):
            continue
        a = _position_ref(call.expressions[0], call.expressions[1], by_alias)
        b = _position_ref(call.expressions[2], call.expressions[3], by_alias)
        if a is None or b is None or a is b:
            continue
        found.append(NearTerm(a.alias.lower(), b.alias.lower(), constant(bound), term))
    return found


def constant(node: exp.Expr) -> float | None:
    """The value of a numeric constant expression (``0.01``, ``1.0 / 3600``, ``-(2)``), else None."""
    # imported here: restrictors reads the joins pass's conjuncts, and joins reads this module
    from czar.analyze.restrictors import number

    node = node.unnest()
    ops = {exp.Add: float.__add__, exp.Sub: float.__sub__, exp.Mul: float.__mul__}
    if isinstance(node, (exp.Add, exp.Sub, exp.Mul, exp.Div)):
        left, right = constant(node.this), constant(node.expression)
        if left is None or right is None:
            return None
        if isinstance(node, exp.Div):
            return None if right == 0 else left / right
        return ops[type(node)](left, right)
    return number(node)
