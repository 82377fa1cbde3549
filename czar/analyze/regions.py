"""Pass 6a (regions): spatial restrictors -> a :class:`Region` (chunk pruning) and row filters.

Two spellings restrict rows to a shape. An areaspec names the shape only, for the first
director in FROM, and becomes its row predicate wherever it is written::

    WHERE qserv_areaspec_ellipse(10, 5, 3600, 1800, 30) AND o.flux > 1
    -> WHERE (scisql_s2PtInEllipse("o"."ra", "o"."decl", 10, 5, 3600, 1800, 30) = 1) AND ...

A sciSQL predicate on a table's declared position columns stays as written::

    WHERE scisql_s2PtInCircle(s.ra, s.decl, 10, 5, 0.1) = 1      (also ``1 = f(...)``, bare ``f(...)``)

Either one restricts chunks when it is a top-level AND term of WHERE (with constant
arguments, a valid shape, and for a sciSQL predicate the restricted table's own lon/lat
columns in that order); several are intersected. Under OR or NOT, in the select list or in
ON they are row filters only. A child with its own positions is covered by its shape grown
by the overlap: its rows are stored with their director row, at most the overlap away
(the loader refuses farther ones).

sciSQL calls are checked for their number of arguments; ``scisql_s2PtInCPoly`` calls are
written out as inline expressions (:func:`expand_cpoly`, after the output pass named them),
since DuckDB macros take a fixed number of arguments.

Depends on resolve (qualified columns) and classify (the partitioning's overlap).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sqlglot
from sqlglot import exp

from czar.analyze.joins import conjuncts
from czar.analyze.model import Region, Restrictor, Shape, TableRef
from czar.analyze.resolve import as_written
from czar.analyze.restrictors import number
from czar.dialect import Qserv
from czar.parse import node_position
from qserv.catalog import Partitioning, TableKind
from qserv.errors import InvalidParameter, QservError, UndefinedFunction, Unsupported
from qserv.sphere.region import Box, Circle
from qserv.sphere.scisql import CPOLY, CPOLY_MAX_VERTICES, arities, cpoly_sql
from qserv.sphere.shapes import Ellipse, polygon_from_args

_POLY_ARGS = (6, 2 * CPOLY_MAX_VERTICES)


def _shape(kind: str) -> Callable[[Sequence[float]], Shape]:
    makers: dict[str, Callable[[Sequence[float]], Shape]] = {
        "box": lambda v: Box(*v),
        "circle": lambda v: Circle(*v),
        "ellipse": lambda v: Ellipse(*v),
        "poly": polygon_from_args,
    }
    return makers[kind]


# areaspec -> (shape kind, number of arguments; None: a polygon's 6 to 40)
AREASPECS: dict[str, tuple[str, int | None]] = {
    "qserv_areaspec_box": ("box", 4),
    "qserv_areaspec_circle": ("circle", 3),
    "qserv_areaspec_ellipse": ("ellipse", 5),
    "qserv_areaspec_poly": ("poly", None),
}
# sciSQL predicate -> shape kind of its arguments after (lon, lat)
PREDICATES: dict[str, str] = {
    "scisql_s2ptinbox": "box",
    "scisql_s2ptincircle": "circle",
    "scisql_s2ptinellipse": "ellipse",
    CPOLY.lower(): "poly",
}


def make_shape(kind: str, values: Sequence[float]) -> Shape:
    """The shape of an areaspec's or predicate's constant arguments (InvalidParameter if bad)."""
    try:
        return _shape(kind)(values)
    except (ValueError, TypeError) as e:
        raise InvalidParameter(str(e)) from None


def check_arity(tree: exp.Expr) -> None:
    """Every areaspec and sciSQL call has its number of arguments (sciSQL refuses others)."""
    for call in tree.find_all(exp.Anonymous):
        name = call.name.lower()
        n = len(call.expressions)
        if name in AREASPECS:
            want = AREASPECS[name][1]
            if want is None and not (_POLY_ARGS[0] <= n <= _POLY_ARGS[1] and n % 2 == 0):
                raise InvalidParameter(
                    f"{call.name} takes 3 to {CPOLY_MAX_VERTICES} vertices: an even number of 6 to "
                    f"{_POLY_ARGS[1]} numeric constant arguments (lon, lat pairs, degrees), got {n}",
                    position=node_position(call),
                )
            if want is not None and n != want:
                raise InvalidParameter(
                    f"{call.name} takes {want} numeric constant arguments (degrees), got {n}",
                    position=node_position(call),
                )
        elif name == CPOLY.lower():
            if not (_POLY_ARGS[0] + 2 <= n <= _POLY_ARGS[1] + 2 and n % 2 == 0):
                raise UndefinedFunction(
                    f"function {call.name} does not accept these arguments",
                    hint=f"{call.name} takes a position and 3 to {CPOLY_MAX_VERTICES} vertices (an even "
                    f"number of 8 to {_POLY_ARGS[1] + 2} arguments), got {n}",
                    position=node_position(call),
                )
        elif (counts := arities(name)) and n not in counts:
            raise UndefinedFunction(
                f"function {call.name} does not accept these arguments",
                hint=f"{call.name} takes {' or '.join(map(str, counts))} arguments, got {n}",
                position=node_position(call),
            )


AREASPEC = "qserv_areaspec"  # meta key marking the row predicate an areaspec became


@dataclass(frozen=True)
class Areaspec:
    """Where a region's row predicate came from: its director and the call's arguments."""

    director: TableRef
    args: tuple[exp.Expr, ...]  # never modified (czar/generic.py copies them before use)
    kind: str  # shape kind (AREASPECS)

    def __deepcopy__(self, memo: dict[int, object]) -> Areaspec:
        # shared, not copied, when a tree is copied: it only records where the predicate came from
        return self


def region_predicate(shape: Shape, ref: TableRef) -> exp.Expr:
    """The row predicate keeping ``ref``'s rows (by its position columns) inside ``shape``."""
    lon = f'"{ref.alias}"."{ref.table.lon_column}"'
    lat = f'"{ref.alias}"."{ref.table.lat_column}"'
    predicate = sqlglot.parse_one(shape.sql_predicate(lon, lat), dialect=Qserv)
    return exp.paren(predicate) if isinstance(predicate, exp.Connector) else predicate


def extract_region(
    tree: exp.Select, refs: tuple[TableRef, ...], partitioning: Partitioning | None = None
) -> Region | None:
    """Rewrite areaspecs into row predicates; the restrictors of top-level WHERE terms."""
    check_arity(tree)
    where = tree.args.get("where")
    top = conjuncts(where.this if where is not None else None)
    top_ids = {id(t) for t in top}
    restrictors: list[Restrictor] = []
    for term in top:
        found = _predicate_restrictor(term, refs, partitioning)
        if found is not None:
            restrictors.append(found)
    for call in [n for n in tree.find_all(exp.Anonymous) if n.name.lower() in AREASPECS]:
        shape, restricted = _areaspec(call, refs)
        parts = []
        for ref in restricted:
            part = region_predicate(shape, ref)
            part.meta[AREASPEC] = Areaspec(ref, tuple(call.expressions), AREASPECS[call.name.lower()][0])
            parts.append(part)
            if id(call) in top_ids:
                margin = _margin(ref, partitioning)
                restrictors.append(Restrictor(shape, ref.alias, margin, areaspec=True))
        predicate = parts[0] if len(parts) == 1 else exp.paren(exp.and_(*parts))
        if call.parent is tree and call.arg_key == "expressions":
            # a select-list item: DuckDB names the column by the call as written (lower case)
            args = ", ".join(a.sql(dialect="duckdb") for a in call.expressions)
            predicate = exp.alias_(predicate, f"{call.name.lower()}({args})", quoted=True)
        call.replace(predicate)
    return Region(tuple(restrictors)) if restrictors else None


def _margin(ref: TableRef, partitioning: Partitioning | None) -> float:
    """How far a restricted table's rows may lie from the chunk storing them: a child with its
    own positions is stored in its director row's chunk, up to the overlap away."""
    return partitioning.overlap if ref.kind is TableKind.CHILD and partitioning is not None else 0.0


def positioned(refs: tuple[TableRef, ...]) -> list[TableRef]:
    """The chunked tables an areaspec restricts: every director, and every child with its own
    position columns, as Qserv applies its areaspecs to each partitioned table in FROM."""
    return [
        r
        for r in refs
        if r.kind is TableKind.DIRECTOR
        or (r.kind is TableKind.CHILD and r.table.lon_column and r.table.lat_column)
    ]


def _areaspec(call: exp.Anonymous, refs: tuple[TableRef, ...]) -> tuple[Shape, list[TableRef]]:
    name = call.name.lower()
    kind, want = AREASPECS[name]
    args = [number(a) for a in call.expressions]
    if any(a is None for a in args):
        count = f"{want}" if want is not None else f"6 to {_POLY_ARGS[1]}"
        raise InvalidParameter(
            f"{call.name} takes {count} numeric constant arguments (degrees)", position=node_position(call)
        )
    restricted = positioned(refs)
    if not restricted:
        raise Unsupported(
            f"{name} needs a director table (with positions) in FROM", position=node_position(call)
        )
    try:
        shape = make_shape(kind, [a for a in args if a is not None])
    except QservError as e:
        raise InvalidParameter(f"{name}: {e.message}", position=node_position(call)) from None
    return shape, restricted


def _predicate_restrictor(
    term: exp.Expr, refs: tuple[TableRef, ...], partitioning: Partitioning | None
) -> Restrictor | None:
    """The restrictor a top-level term ``f(lon, lat, ...) = 1`` (or ``1 = f``, bare ``f``) is."""
    term = term.unnest()
    call: exp.Expr = term
    if isinstance(term, exp.EQ):
        left, right = term.this.unnest(), term.expression.unnest()
        call, one = (left, right) if isinstance(left, exp.Anonymous) else (right, left)
        if number(one) != 1.0:
            return None
    if not isinstance(call, exp.Anonymous) or call.name.lower() not in PREDICATES:
        return None
    lon, lat, *rest = call.expressions
    if not (isinstance(lon, exp.Column) and isinstance(lat, exp.Column) and lon.table == lat.table):
        return None
    ref = next((r for r in refs if r.alias == lon.table), None)
    if ref is None or not ref.table.is_chunked or ref.kind not in (TableKind.DIRECTOR, TableKind.CHILD):
        return None
    if (ref.table.lon_column or "").lower() != lon.name.lower() or (
        ref.table.lat_column or ""
    ).lower() != lat.name.lower():
        return None  # other columns than the table's position: a row filter only
    values = [number(a) for a in rest]
    if any(v is None for v in values):
        return None
    try:
        shape = make_shape(PREDICATES[call.name.lower()], [v for v in values if v is not None])
    except QservError:
        return None  # sciSQL's answer for such a shape is NULL or its own: the filter gives it
    return Restrictor(shape, ref.alias, _margin(ref, partitioning))


def expand_cpoly(tree: exp.Expr) -> exp.Expr:
    """Write every ``scisql_s2PtInCPoly(lon, lat, ...)`` call out as sciSQL's inline test
    (in place; returns the new root when ``tree`` is itself a call)."""
    root = tree
    for call in [n for n in tree.find_all(exp.Anonymous) if n.name.lower() == CPOLY.lower()]:
        lon, lat, *rest = call.expressions
        values: list[float | None] = []
        for arg in rest:
            value = number(arg)
            if value is None and not isinstance(arg.unnest(), exp.Null):
                shown = as_written(exp.select(arg.copy())).expressions[0].sql()
                raise Unsupported(
                    f"{call.name}: vertex coordinates must be numeric constants (found {shown})",
                    position=node_position(arg) or node_position(call),
                )
            values.append(value)
        pairs = [(values[i], values[i + 1]) for i in range(0, len(values), 2)]
        inline = sqlglot.parse_one(cpoly_sql("__qserv_lon", "__qserv_lat", pairs), dialect=Qserv)
        for column in list(inline.find_all(exp.Column)):
            if column.name in ("__qserv_lon", "__qserv_lat"):
                column.replace((lon if column.name == "__qserv_lon" else lat).copy())
        written = exp.paren(inline)
        if call is root:
            root = written
        else:
            call.replace(written)
    return root


def grow_for_overlap(
    region: Region | None, overlapped: frozenset[str], partitioning: Partitioning | None
) -> Region | None:
    """``region`` with the covers of restrictors on ``overlapped`` tables grown by the overlap.

    A join reads those tables with their overlap rows: a row inside the shape pairs with rows
    of the other side up to the overlap away, stored in chunks the shape itself may miss.
    """
    if region is None or not overlapped or partitioning is None:
        return region
    return Region(
        tuple(
            dataclasses.replace(r, margin=max(r.margin, partitioning.overlap))
            if r.alias.lower() in overlapped
            else r
            for r in region.restrictors
        )
    )
