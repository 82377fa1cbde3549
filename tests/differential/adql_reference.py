"""The ADQL reference: one plain DuckDB running the ADQL query as written, geometry by numpy.

The query is read by a test-side ADQL dialect (PostgreSQL's syntax, ``TOP``, ``LOG`` the natural
logarithm) and transpiled to DuckDB by sqlglot. Every ADQL geometry call is replaced by a lookup
of values computed here with numpy, per row, from the values DuckDB gives the call's numeric
arguments as the user wrote them. The geometry is ADQL 2.1's, written afresh: a CIRCLE keeps
points whose atan2 separation is at most the radius; a BOX keeps points ``p`` with, in the
centre's frame (centre ``c``, east ``e``, north ``n``), ``p.c > 0``, ``|p.e| <= tan(w/2) p.c``
and ``|p.n| <= tan(h/2) p.c`` (its sides are great circles); a convex POLYGON keeps points on the
inner side of every edge's great circle; AREA uses Girard's theorem (sum of angles - (n-2)pi).
Nothing of the czar (dialect, geometry pass, macros, region code) is used.

An unaliased result column that is a geometry call is named by the function, as PostgreSQL
names a call (``distance``); a shape as a result column is its DALI list of DOUBLE.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import sqlglot
from sqlglot import exp
from sqlglot.dialects.postgres import Postgres
from sqlglot.parsers.postgres import PostgresParser
from sqlglot.tokens import TokenType

from tests.differential.catalog import GeneratedCatalog
from tests.differential.reference import BOUNDARY_TOLERANCE, Reference, ReferenceUnavailable, _q

GEOMETRY = (
    "point",
    "circle",
    "box",
    "polygon",
    "contains",
    "intersects",
    "distance",
    "coord1",
    "coord2",
    "area",
)
_MARK = "__adql_"


class AdqlDialect(Postgres):
    """ADQL 2.1 as the test reads it: TOP n, natural LOG."""

    class Tokenizer(Postgres.Tokenizer):
        KEYWORDS = {**Postgres.Tokenizer.KEYWORDS, "TOP": TokenType.TOP}

    class Parser(PostgresParser):
        LOG_DEFAULTS_TO_LN = True


class AdqlReference(Reference):
    """:class:`Reference` for ADQL sessions."""

    def __init__(self, generated: GeneratedCatalog) -> None:
        super().__init__(generated)
        for name in GEOMETRY:
            arities = range(1, 26) if name == "polygon" else range(1, 7)
            overloads = ", ".join(f"({', '.join(f'a{i}' for i in range(k))}) AS NULL" for k in arities)
            self.names.execute(f"CREATE MACRO {_MARK}{name}{overloads}")

    def _parse(self, sql: str) -> exp.Expr:
        tree = sqlglot.parse_one(sql, read=AdqlDialect)
        for call in list(tree.find_all(exp.Contains, exp.Anonymous)):
            name = _name(call)
            if name is None:
                continue
            args = [call.this, call.expression] if isinstance(call, exp.Contains) else list(call.expressions)
            marked = exp.Anonymous(this=f"{_MARK}{name}", expressions=args)
            if isinstance(call.parent, exp.Select) and call.arg_key == "expressions":
                marked = exp.alias_(marked, name, quoted=True, copy=False)  # PostgreSQL names a call so
            call.replace(marked)
        return tree

    def _rewrite_spatial(self, tree: exp.Query, created: list[str]) -> str | None:
        calls = [
            n
            for n in tree.find_all(exp.Anonymous)
            if n.name.startswith(_MARK) and not any(_marked(a) for a in _ancestors(n))
        ]
        for call in calls:
            refusal = self._replace(call, created)
            if refusal is not None:
                return refusal
        return super()._rewrite_spatial(tree, created)

    def _replace(self, call: exp.Anonymous, created: list[str]) -> str | None:
        leaves = _leaves(call)
        scope = call.find_ancestor(exp.Select)
        refs = self._refs(scope) if scope is not None else []
        columns = list(call.find_all(exp.Column))
        owner = None
        if columns:
            owners = {
                r.alias.lower()
                for c in columns
                for r in refs
                if (not c.table or c.table.lower() == r.alias.lower())
                and c.name.lower() in (x.name.lower() for x in r.table.columns)
            }
            if len(owners) != 1:
                raise ReferenceUnavailable(f"{call.sql()}: geometry over {sorted(owners)} has no reference")
            owner = next(r for r in refs if r.alias.lower() in owners)
        exprs = ", ".join(f"CAST({leaf.sql(dialect='duckdb')} AS DOUBLE)" for leaf in leaves) or "1"
        if owner is not None:
            source = f'"{owner.table.database}"."{owner.table.name}" AS {_q(owner.alias)}'
            rows = self.conn.sql(f"SELECT {exprs} FROM {source} ORDER BY rowid").fetchall()
        else:
            rows = self.conn.sql(f"SELECT {exprs}").fetchall()
        values = {
            id(leaf): np.array([np.nan if r[i] is None else r[i] for r in rows], dtype=np.float64)
            for i, leaf in enumerate(leaves)
        }
        try:
            result, kind = _evaluate(call, values)
        except _Refused as e:
            return str(e)
        if owner is None:
            call.replace(_literal(result[0], kind))
            return None
        self._serial += 1
        table = f"t{self._serial}"
        if kind == "list":
            v = pa.array([None if np.isnan(x).any() else list(x) for x in result], pa.list_(pa.float64()))
        else:
            v = pa.array(result, mask=np.isnan(result)).cast(pa.int32() if kind == "int" else pa.float64())
        self.conn.register("__load", pa.table({"r": pa.array(np.arange(len(rows), dtype=np.int64)), "v": v}))
        self.conn.execute(f'CREATE TABLE "__ref"."{table}" AS SELECT * FROM __load')
        self.conn.unregister("__load")
        created.append(table)
        call.replace(
            sqlglot.parse_one(
                f'(SELECT v FROM "__ref"."{table}" AS __v WHERE __v.r = {_q(owner.alias)}.rowid)',
                read="duckdb",
            )
        )
        return None


class _Refused(Exception):
    """ADQL has no exact answer the test knows for this call (the czar must refuse too)."""


def _name(node: exp.Expr) -> str | None:
    if isinstance(node, exp.Contains):
        return "contains"
    if isinstance(node, exp.Anonymous) and node.name.lower() in GEOMETRY:
        return node.name.lower()
    return None


def _marked(node: exp.Expr) -> bool:
    return isinstance(node, exp.Anonymous) and node.name.startswith(_MARK)


def _ancestors(node: exp.Expr) -> list[exp.Expr]:
    out, parent = [], node.parent
    while parent is not None:
        out.append(parent)
        parent = parent.parent
    return out


def _leaves(call: exp.Expr) -> list[exp.Expr]:
    """The numeric arguments of a marked call and its marked arguments (not frames)."""
    out: list[exp.Expr] = []
    for i, arg in enumerate(call.expressions):
        if _marked(arg):
            out.extend(_leaves(arg))
        elif i == 0 and (isinstance(arg, exp.Null) or (isinstance(arg, exp.Literal) and arg.is_string)):
            continue  # a coordinate system
        else:
            out.append(arg)
    return out


def _frame_ok(call: exp.Expr) -> bool:
    first = call.expressions[0] if call.expressions else None
    if isinstance(first, exp.Literal) and first.is_string:
        words = first.this.upper().split()  # ADQL 2.0 wrote a reference position after the frame
        return not words or (
            words[0] == "ICRS" and words[1:] in ([], ["GEOCENTER"], ["BARYCENTER"], ["UNKNOWNREFPOS"])
        )
    return True


Values = dict[int, np.ndarray]


def _shape(call: exp.Expr, values: Values) -> tuple[str, list[np.ndarray]]:
    """(kind, arrays): point [lon, lat], circle [lon, lat, r], box [lon, lat, w, h], polygon [...]."""
    if not _marked(call):
        raise _Refused(f"not a geometry: {call.sql()}")
    kind = call.name[len(_MARK) :]
    if not _frame_ok(call):
        raise _Refused(f"coordinate system of {kind}")
    args: list[np.ndarray] = []
    for arg in call.expressions:
        if _marked(arg):
            inner, parts = _shape(arg, values)
            if inner != "point":
                raise _Refused(f"{inner} inside {kind}")
            args.extend(parts)
        elif id(arg) in values:
            args.append(values[id(arg)])
    sizes = {"point": (2,), "circle": (3,), "box": (4,)}
    if (
        kind in sizes
        and len(args) not in sizes[kind]
        or kind == "polygon"
        and (len(args) < 6 or len(args) % 2)
    ):
        raise _Refused(f"arity of {kind}")
    return kind, args


def _vec(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    lo, la = np.radians(lon), np.radians(lat)
    return np.stack(
        np.broadcast_arrays(np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)), axis=-1
    )


def _sep(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.degrees(np.arctan2(np.linalg.norm(np.cross(a, b), axis=-1), np.sum(a * b, axis=-1)))


def _edge(side: np.ndarray, near: np.ndarray | bool = True) -> None:
    """Refuse points a hair from a region's edge (``side``: sine of the distance to its great
    circle; ``near``: the points close enough to the region for that side to bound them)."""
    if ((np.abs(side) < BOUNDARY_TOLERANCE) & near).any():
        raise ReferenceUnavailable("a point lies on a region's edge (pick another region)")


def _box_frame(lon: float, lat: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre, east and north unit vectors: the rotation of x, y, z by lat about -y, then lon about z."""
    rz = np.array(
        [
            [math.cos(math.radians(lon)), -math.sin(math.radians(lon)), 0],
            [math.sin(math.radians(lon)), math.cos(math.radians(lon)), 0],
            [0, 0, 1],
        ]
    )
    b = math.radians(lat)
    ry = np.array([[math.cos(b), 0, -math.sin(b)], [0, 1, 0], [math.sin(b), 0, math.cos(b)]])
    m = rz @ ry
    return m[:, 0], m[:, 1], m[:, 2]


def _constant(arrays: list[np.ndarray], kind: str) -> list[float]:
    if any(np.unique(a).size != 1 for a in arrays):
        raise _Refused(f"{kind} arguments must be constants")
    return [float(a[0]) for a in arrays]


def _polygon_vertices(kind: str, args: list[np.ndarray]) -> np.ndarray:
    c = _constant(args, kind)
    if kind == "box":
        lon, lat, w, h = c
        if not (0 < w < 180 and 0 < h < 180 and -90 < lat < 90):
            raise _Refused("box shape")
        centre, east, north = _box_frame(lon, lat)
        ta, tb = math.tan(math.radians(w / 2)), math.tan(math.radians(h / 2))
        corners = [centre + i * ta * east + j * tb * north for i, j in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
        return np.array([v / np.linalg.norm(v) for v in corners])
    return _vec(np.array(c[0::2]), np.array(c[1::2]))


def _inside_polygon(vertices: np.ndarray, p: np.ndarray) -> np.ndarray:
    n = len(vertices)
    normals = [np.cross(vertices[i], vertices[(i + 1) % n]) for i in range(n)]
    normals = [m / np.linalg.norm(m) for m in normals]
    centre = vertices.mean(axis=0)
    signs = [1.0 if float(m @ centre) > 0 else -1.0 for m in normals]
    if len(set(signs)) != 1 or any(
        abs(float(m @ v)) > 1e-12 and float(m @ v) * s < 0
        for m, s in zip(normals, signs, strict=True)
        for v in vertices
    ):
        raise _Refused("polygon not convex")
    inside = np.ones(len(p), dtype=bool)
    reach = max(float(v @ (centre / np.linalg.norm(centre))) for v in vertices)
    near = p @ (centre / np.linalg.norm(centre)) >= reach - 1e-6  # within the vertices' cap
    for m, s in zip(normals, signs, strict=True):
        side = (p @ m) * s
        _edge(side, near)
        inside &= side >= 0
    return inside


def _contains(point: list[np.ndarray], kind: str, args: list[np.ndarray]) -> np.ndarray:
    p = _vec(point[0], point[1])
    if kind == "circle":
        sep = _sep(p, _vec(args[0], args[1]))
        _edge(np.radians(sep - args[2]))
        return sep <= args[2]
    if kind == "box":
        lon, lat, w, h = _constant(args, kind)
        if not (0 < w < 180 and 0 < h < 180 and -90 < lat < 90):
            raise _Refused("box shape")
        centre, east, north = _box_frame(lon, lat)
        x, y, z = p @ centre, p @ east, p @ north
        a, b = math.radians(w / 2), math.radians(h / 2)
        near = (x > 0) & (np.abs(y) <= x * math.tan(a) + 1e-6) & (np.abs(z) <= x * math.tan(b) + 1e-6)
        for side in (
            y * math.cos(a) - x * math.sin(a),
            y * math.cos(a) + x * math.sin(a),
            z * math.cos(b) - x * math.sin(b),
            z * math.cos(b) + x * math.sin(b),
        ):
            _edge(side, near)
        return (x > 0) & (np.abs(y) <= x * math.tan(a)) & (np.abs(z) <= x * math.tan(b))
    return _inside_polygon(_polygon_vertices(kind, args), p)


def _girard(vertices: np.ndarray) -> float:
    """Area (square degrees) from the polygon's interior angles."""
    n = len(vertices)
    total = 0.0
    for i in range(n):
        a, b, c = vertices[i - 1], vertices[i], vertices[(i + 1) % n]
        t1 = np.cross(b, a)
        t2 = np.cross(b, c)
        total += math.acos(max(-1.0, min(1.0, float(t1 @ t2) / (np.linalg.norm(t1) * np.linalg.norm(t2)))))
    return (total - (n - 2) * math.pi) * (180 / math.pi) ** 2


def _evaluate(call: exp.Anonymous, values: Values) -> tuple[np.ndarray, str]:
    """Per-row values of a marked call (NaN for NULL) and their kind: int, float or list."""
    name = call.name[len(_MARK) :]
    args = call.expressions
    null = np.zeros(1, dtype=bool)
    for leaf in _leaves(call):
        null = null | np.isnan(values[id(leaf)])
    if name in ("point", "circle", "box", "polygon"):
        kind, parts = _shape(call, values)
        if kind == "box":
            flat = [x for v in _polygon_vertices(kind, parts) for x in _lonlat(v)]
            parts = [np.full(null.shape, x) for x in flat]
        return np.stack(np.broadcast_arrays(*parts), axis=-1), "list"
    if name == "distance":
        if len(args) == 4:
            a, b = [values[id(x)] for x in args[:2]], [values[id(x)] for x in args[2:]]
        else:
            (ka, a), (kb, b) = _shape(args[0], values), _shape(args[1], values)
            if ka != "point" or kb != "point":
                raise _Refused("distance of regions")
        d = _sep(_vec(a[0], a[1]), _vec(b[0], b[1]))
        return np.where(null, np.nan, d), "float"
    if name in ("coord1", "coord2"):
        kind, parts = _shape(args[0], values)
        if kind != "point":
            raise _Refused(f"{name} of {kind}")
        return np.where(null, np.nan, parts[0 if name == "coord1" else 1]), "float"
    if name == "area":
        kind, parts = _shape(args[0], values)
        if kind == "circle":
            r = np.radians(parts[2])
            return np.where(
                null, np.nan, 2 * math.pi * 2 * np.sin(r / 2) ** 2 * (180 / math.pi) ** 2
            ), "float"
        if kind == "point":
            raise _Refused("area of a point")
        return np.array([_girard(_polygon_vertices(kind, parts))]), "float"
    (k1, a1), (k2, a2) = _shape(args[0], values), _shape(args[1], values)
    if name == "intersects" and k2 == "point" and k1 != "point":
        (k1, a1), (k2, a2) = (k2, a2), (k1, a1)
    if k1 == "point" and k2 != "point":
        inside = _contains(a1, k2, a2)
    elif k1 == k2 == "circle":
        sep = _sep(_vec(a1[0], a1[1]), _vec(a2[0], a2[1]))
        inside = sep <= (a1[2] + a2[2]) if name == "intersects" else sep + a1[2] <= a2[2]
    else:
        raise _Refused(f"{name} of {k1} and {k2}")
    return np.where(null, np.nan, inside.astype(np.float64)), "int"


def _lonlat(v: np.ndarray) -> tuple[float, float]:
    return math.degrees(math.atan2(v[1], v[0])) % 360.0, math.degrees(math.asin(max(-1.0, min(1.0, v[2]))))


def _literal(value: np.ndarray | float, kind: str) -> exp.Expr:
    if kind == "list":
        inner = ", ".join(format(float(x), ".17e") for x in np.atleast_1d(value))
        return sqlglot.parse_one(f"[{inner}]", read="duckdb")
    v = float(np.atleast_1d(value)[0])
    if math.isnan(v):
        return sqlglot.parse_one(f"CAST(NULL AS {'INTEGER' if kind == 'int' else 'DOUBLE'})", read="duckdb")
    if kind == "int":
        return sqlglot.parse_one(f"CAST({int(v)} AS INTEGER)", read="duckdb")
    return sqlglot.parse_one(f"CAST({format(v, '.17e')} AS DOUBLE)", read="duckdb")
