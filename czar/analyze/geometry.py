"""Pass 0 (geometry): ADQL geometry rewritten into sciSQL calls, in every dialect.

A pure rewrite, before guard (which then sees only sciSQL calls), so that the restrictor pass
prunes chunks by the forms it knows:

    WHERE CONTAINS(POINT('ICRS', ra, decl), CIRCLE('ICRS', 10, 5, 0.5)) = 1
    -> WHERE scisql_s2PtInCircle(ra, decl, 10, 5, 0.5) = 1
    WHERE 1 = CONTAINS(POINT(ra, decl), POLYGON(10, 0, 12, 0, 11, 2))
    -> WHERE 1 = scisql_s2PtInCPoly(ra, decl, 1.0e+01, 0.0e+00, 1.2e+01, ...)
    SELECT DISTANCE(POINT(ra, decl), POINT(10, 5)) AS d   -> SELECT scisql_angSep(ra, decl, 10, 5) AS d

* ``CONTAINS(point, region)`` keeps a point in a CIRCLE (``scisql_s2PtInCircle``), BOX or POLYGON
  (``scisql_s2PtInCPoly``: ADQL's BOX has great-circle sides, so it becomes the quadrilateral
  of its four vertices, qserv/sphere/adql.py); ``CONTAINS(CIRCLE, CIRCLE)`` is exact
  (``angSep + r1 <= r2``). ``INTERSECTS`` of a point and a region is ``CONTAINS``, either way
  round; of two circles ``angSep <= r1 + r2``. Anything else (a region in a polygon, two
  polygons meeting) cannot be computed exactly here and is refused by name.
* ``DISTANCE(p1, p2)`` and ``DISTANCE(lon1, lat1, lon2, lat2)`` are ``scisql_angSep``;
  ``COORD1``/``COORD2`` a point's coordinates (DOUBLE); ``AREA`` square degrees, exact.
* A shape as a result column is its DALI value, a list of DOUBLE: ``[lon, lat]``, ``[lon,
  lat, r]``, ``[lon1, lat1, ...]``; anywhere else a shape is refused.
* The coordinate system (an optional first argument, deprecated in ADQL 2.1) must be 'ICRS'
  (maybe with a reference position), '' or NULL: the catalogs are ICRS.

BOX and POLYGON arguments must be numeric constants (the polygon is checked for convexity);
CIRCLE and POINT arguments may be any expressions. An unaliased result column that is a
geometry call is named by the function, as PostgreSQL names a call (``distance``).

Depends on nothing (it runs on the copied tree first); guard then checks the sciSQL calls.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sqlglot
from sqlglot import exp

from czar.analyze.restrictors import number
from czar.parse import node_position
from qserv.errors import InvalidParameter, UndefinedFunction, Unsupported
from qserv.sphere.adql import ShapeError, Vertex, box_vertices, circle_area_sql, convex_ccw, polygon_area

SHAPES = ("point", "circle", "box", "polygon")
FUNCTIONS = frozenset({*SHAPES, "contains", "intersects", "distance", "coord1", "coord2", "area"})
# ADQL 2.1 geometry functions not offered here, and what to write instead.
UNSUPPORTED = {
    "centroid": "use the CIRCLE's centre or the POLYGON's vertices",
    "region": "write the region with CIRCLE, BOX or POLYGON",
    "coordsys": "every catalog position here is ICRS",
}
# Reference positions ADQL 2.0 wrote after the frame; directions do not depend on them here.
_REFERENCE_POSITIONS = frozenset({"", "GEOCENTER", "BARYCENTER", "UNKNOWNREFPOS"})


@dataclass(frozen=True)
class Point:
    lon: exp.Expr
    lat: exp.Expr


@dataclass(frozen=True)
class Circle:
    lon: exp.Expr
    lat: exp.Expr
    radius: exp.Expr


@dataclass(frozen=True)
class Polygon:
    kind: str  # "BOX" or "POLYGON", as written
    vertices: tuple[Vertex, ...]  # convex, counter-clockwise
    written: tuple[Vertex, ...]  # as the query gives them (a BOX: its vertices)


Shape = Point | Circle | Polygon


def geometry_name(node: exp.Expr) -> str | None:
    """The ADQL geometry function a node calls (lower case), or None."""
    if isinstance(node, exp.Contains):
        return "contains"
    if isinstance(node, exp.Anonymous) and node.name.lower() in FUNCTIONS | UNSUPPORTED.keys():
        return node.name.lower()
    return None


def rewrite_geometry(tree: exp.Expr) -> exp.Expr:
    """Replace every ADQL geometry call in ``tree`` (in place); refuse what has no exact meaning."""
    outermost = [
        n
        for n in tree.find_all(exp.Contains, exp.Anonymous)
        if geometry_name(n) and not any(geometry_name(a) for a in _ancestors(n))
    ]
    for node in tree.find_all(exp.Anonymous):
        name = node.name.lower()
        if name in UNSUPPORTED:
            raise Unsupported(
                f"ADQL's {name.upper()} is not supported: {UNSUPPORTED[name]}", position=node_position(node)
            )
    top = _top_terms(tree)
    for call in outermost:
        name = geometry_name(call) or ""
        replacement = _value(call, name) if name in SHAPES else _function(call, name)
        if _is_point_test(replacement) and not _restricts(call, top):
            replacement = _null_preserving(replacement)
        if isinstance(call.parent, exp.Select) and call.arg_key == "expressions":
            # an unaliased result column keeps the function's name, as PostgreSQL names a call
            replacement = exp.alias_(replacement, name, quoted=True, copy=False)
        call.replace(replacement)
    return tree


def _top_terms(tree: exp.Expr) -> set[int]:
    """Ids of the top-level AND terms of every WHERE clause in ``tree``."""
    from czar.analyze.joins import conjuncts  # joins -> neighbour -> restrictors: no cycle here

    ids: set[int] = set()
    for select in tree.find_all(exp.Select):
        where = select.args.get("where")
        if where is not None:
            ids.update(id(t) for t in conjuncts(where.this))
    return ids


def _restricts(call: exp.Expr, top: set[int]) -> bool:
    """Whether ``call`` is a top-level WHERE term ``call = 1`` / ``1 = call`` / bare ``call``:
    there a NULL and a 0 both drop the row, so sciSQL's 0-for-NULL form (which prunes) is exact."""
    if id(call) in top:
        return True
    parent = call.parent
    while isinstance(parent, exp.Paren):
        parent = parent.parent
    if isinstance(parent, exp.EQ) and id(parent) in top:
        other = parent.expression if parent.this.unnest() is call else parent.this
        return number(other) == 1.0
    return False


def _is_point_test(node: exp.Expr) -> bool:
    return isinstance(node, exp.Anonymous) and node.name.lower().startswith("scisql_s2ptin")


def _null_preserving(test: exp.Expr) -> exp.Expr:
    """``test`` with NULL for a NULL argument: ADQL's CONTAINS follows SQL (NULL in, NULL out),
    where sciSQL's predicates give 0; it matters under NOT, ``= 0`` and in the select list."""
    nullable = [a for a in test.expressions if not isinstance(a, exp.Literal | exp.Neg)]
    if not nullable:
        return test
    condition = exp.or_(*(exp.Is(this=a.copy(), expression=exp.Null()) for a in nullable))
    return exp.Case(ifs=[exp.If(this=condition, true=exp.Null())], default=test)


def _ancestors(node: exp.Expr) -> list[exp.Expr]:
    out = []
    parent = node.parent
    while parent is not None:
        out.append(parent)
        parent = parent.parent
    return out


def _arguments(call: exp.Expr) -> list[exp.Expr]:
    if isinstance(call, exp.Contains):
        return [call.this, call.expression]
    return list(call.expressions)


def _function(call: exp.Expr, name: str) -> exp.Expr:
    args = _arguments(call)
    upper = name.upper()
    if name == "distance":
        if len(args) == 4:
            return _angsep(Point(args[0], args[1]), Point(args[2], args[3]))
        if len(args) == 2:
            return _angsep(_point(args[0], upper, 1), _point(args[1], upper, 2))
        raise _arity(call, "DISTANCE takes two POINTs or four numbers (lon1, lat1, lon2, lat2)", len(args))
    if len(args) != (2 if name in ("contains", "intersects") else 1):
        expected = "two geometries" if name in ("contains", "intersects") else "one geometry"
        raise _arity(call, f"{upper} takes {expected}", len(args))
    shapes = [_shape(a, upper, i + 1) for i, a in enumerate(args)]
    if name in ("coord1", "coord2"):
        point = _point(args[0], upper, 1)
        return exp.cast(point.lon if name == "coord1" else point.lat, exp.DataType.build("DOUBLE"))
    if name == "area":
        return _area(shapes[0], call)
    first, second = shapes
    if name == "intersects" and isinstance(second, Point) and not isinstance(first, Point):
        first, second = second, first  # INTERSECTS is symmetric
    if name == "intersects" and isinstance(first, Circle) and isinstance(second, Circle):
        return _integer(
            exp.LTE(
                this=_angsep(first, second), expression=exp.Add(this=first.radius, expression=second.radius)
            )
        )
    return _contains(first, second, call, upper)


def _contains(inner: Shape, outer: Shape, call: exp.Expr, name: str) -> exp.Expr:
    if isinstance(outer, Point) and name == "CONTAINS":
        raise Unsupported(
            f"{name}(..., POINT): a point contains nothing; the contained geometry comes first: "
            f"{name}(POINT(lon, lat), region)",
            position=node_position(call),
        )
    if isinstance(inner, Point) and isinstance(outer, Circle):
        return _call("scisql_s2PtInCircle", inner.lon, inner.lat, outer.lon, outer.lat, outer.radius)
    if isinstance(inner, Point) and isinstance(outer, Polygon):
        flat = [_double(c) for vertex in outer.vertices for c in vertex]
        return _call("scisql_s2PtInCPoly", inner.lon, inner.lat, *flat)
    if name == "CONTAINS" and isinstance(inner, Circle) and isinstance(outer, Circle):
        distance = exp.Add(this=_angsep(inner, outer), expression=inner.radius)
        return _integer(exp.LTE(this=distance, expression=outer.radius))
    raise Unsupported(
        f"{name}({_kind(inner)}, {_kind(outer)}) cannot be computed exactly: supported are a POINT "
        f"in any region, CIRCLE-CIRCLE{' containment' if name == 'CONTAINS' else ''}",
        hint="test the region's points with CONTAINS(POINT(lon, lat), region)",
        position=node_position(call),
    )


def _kind(shape: Shape) -> str:
    return shape.kind if isinstance(shape, Polygon) else type(shape).__name__.upper()


def _area(shape: Shape, call: exp.Expr) -> exp.Expr:
    if isinstance(shape, Circle):
        area: exp.Expr = sqlglot.parse_one(circle_area_sql("__radius"), dialect="duckdb")
        for column in list(area.find_all(exp.Column)):  # the radius as written (positions kept)
            column.replace(shape.radius.copy())
        return area
    if isinstance(shape, Polygon):
        return _double(polygon_area(shape.vertices))
    raise Unsupported("AREA(POINT): a point has no area", position=node_position(call))


def _value(call: exp.Expr, name: str) -> exp.Expr:
    """A shape as a result column: its DALI list of DOUBLE; anywhere else it is refused."""
    parent = call.parent
    if not (isinstance(parent, exp.Select) and call.arg_key == "expressions") and not (
        isinstance(parent, exp.Alias) and isinstance(parent.parent, exp.Select)
    ):
        raise Unsupported(
            f"a {name.upper()} value cannot be used here: use it as a result column or as an "
            "argument of CONTAINS, INTERSECTS, DISTANCE, COORD1, COORD2 or AREA",
            position=node_position(call),
        )
    shape = _shape(call, name.upper(), 1)
    if isinstance(shape, Point):
        parts = [shape.lon, shape.lat]
    elif isinstance(shape, Circle):
        parts = [shape.lon, shape.lat, shape.radius]
    else:
        parts = [_double(c) for vertex in shape.written for c in vertex]
    return exp.Anonymous(
        this="list_value", expressions=[exp.cast(p, exp.DataType.build("DOUBLE")) for p in parts]
    )


# -- reading shapes ------------------------------------------------------------------------


def _shape(node: exp.Expr, function: str, index: int) -> Shape:
    name = geometry_name(node)
    if name not in SHAPES:
        raise Unsupported(
            f"argument {index} of {function} must be a POINT, CIRCLE, BOX or POLYGON, not {node.sql()}",
            position=node_position(node),
        )
    args = _without_frame(node, name.upper())
    upper = name.upper()
    if name == "point":
        if len(args) != 2:
            raise _arity(node, "POINT takes (lon, lat), after an optional coordinate system", len(args))
        return Point(args[0], args[1])
    if name == "circle":
        if len(args) == 2:
            centre = _point(args[0], upper, 1)
            return Circle(centre.lon, centre.lat, args[1])
        if len(args) != 3:
            raise _arity(node, "CIRCLE takes (lon, lat, radius) or (POINT, radius)", len(args))
        return Circle(args[0], args[1], args[2])
    if name == "box":
        if len(args) == 3:
            centre = _point(args[0], upper, 1)
            args = [centre.lon, centre.lat, *args[1:]]
        if len(args) != 4:
            raise _arity(node, "BOX takes (lon, lat, width, height) or (POINT, width, height)", len(args))
        lon, lat, width, height = _constants(args, node, upper)
        corners = _checked(lambda: convex_ccw(box_vertices(lon, lat, width, height)), node)
        return Polygon("BOX", corners, corners)
    if args and all(geometry_name(a) == "point" for a in args):
        points = [_point(a, upper, i + 1) for i, a in enumerate(args)]
        args = [c for p in points for c in (p.lon, p.lat)]
    if len(args) < 6 or len(args) % 2:
        raise _arity(node, "POLYGON takes three or more vertices (lon, lat pairs or POINTs)", len(args))
    values = _constants(args, node, upper)
    vertices = [(values[i], values[i + 1]) for i in range(0, len(values), 2)]
    return Polygon("POLYGON", _checked(lambda: convex_ccw(vertices), node), tuple(vertices))


def _point(node: exp.Expr, function: str, index: int) -> Point:
    shape = _shape(node, function, index)
    if not isinstance(shape, Point):
        raise Unsupported(
            f"argument {index} of {function} must be a POINT, not a {(geometry_name(node) or '').upper()}",
            position=node_position(node),
        )
    return shape


def _without_frame(node: exp.Expr, name: str) -> list[exp.Expr]:
    """A shape's arguments without its coordinate system, which must be ICRS ('' or NULL: the
    default)."""
    args = _arguments(node)
    if not args or not (
        isinstance(args[0], exp.Null) or (isinstance(args[0], exp.Literal) and args[0].is_string)
    ):
        return args
    frame = args[0]
    if isinstance(frame, exp.Literal):
        words = str(frame.this).upper().split()
        if words and (words[0] != "ICRS" or " ".join(words[1:]) not in _REFERENCE_POSITIONS):
            raise InvalidParameter(
                f"coordinate system '{frame.this}' of {name} is not supported: the catalogs are ICRS; "
                "write 'ICRS', '' or leave it out",
                position=node_position(frame),
            )
    return args[1:]


def _constants(args: list[exp.Expr], node: exp.Expr, name: str) -> list[float]:
    values = [number(a) for a in args]
    for arg, value in zip(args, values, strict=True):
        if value is None:
            raise Unsupported(
                f"{name} arguments must be numeric constants (degrees), not {arg.sql()}",
                position=node_position(arg),
            )
    return [float(v) for v in values if v is not None]


def _checked(build: Callable[[], tuple[Vertex, ...]], node: exp.Expr) -> tuple[Vertex, ...]:
    try:
        return build()
    except ShapeError as e:
        raise InvalidParameter(str(e), position=node_position(node)) from None


def _arity(node: exp.Expr, expected: str, got: int) -> UndefinedFunction:
    return UndefinedFunction(
        f"{expected}; got {got} argument{'s' if got != 1 else ''}", position=node_position(node)
    )


# -- building sciSQL ------------------------------------------------------------------------


def _call(name: str, *args: exp.Expr) -> exp.Expr:
    return exp.Anonymous(this=name, expressions=[a.copy() for a in args])


def _angsep(a: Point | Circle, b: Point | Circle) -> exp.Expr:
    return _call("scisql_angSep", a.lon, a.lat, b.lon, b.lat)


def _integer(condition: exp.Expr) -> exp.Expr:
    """A condition as ADQL's 1/0 (NULL stays NULL)."""
    return exp.cast(exp.paren(condition), exp.DataType.build("INT"))


def _double(value: float) -> exp.Expr:
    # an exponent makes DuckDB read it as DOUBLE exactly (0.1 alone would be a DECIMAL)
    text = format(float(value), ".17e")
    return exp.Neg(this=exp.Literal.number(text[1:])) if text.startswith("-") else exp.Literal.number(text)
