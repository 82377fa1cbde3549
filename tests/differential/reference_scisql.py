"""The reference's sciSQL functions: numpy, registered on the reference DuckDB as Python UDFs.

Independent of the project: unit vectors and cross products written here from sciSQL's
documented semantics (predicates: 0 for a NULL argument, NULL for an invalid one; see
qserv/sphere/scisql.py for the list), not its macros or region code. A query's ``scisql_*``
call is renamed to the UDF (:func:`rewrite_call`); ``scisql_s2PtInCPoly`` gets one UDF per
arity. A point within :data:`BOUNDARY` of a shape's edge has no sure answer (float rounding
differs between engines): the UDF raises, and the test must pick another shape.

Areaspec ellipses and polygons are answered by :func:`areaspec_inside` (the row set of the
first director), as reference.py answers boxes and circles.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import duckdb
import numpy as np
import pyarrow as pa
from duckdb.sqltypes import DOUBLE, INTEGER
from sqlglot import exp

BOUNDARY = 1e-9
PREFIX = "__ref_"

Array = np.ndarray


class OnTheEdge(ValueError):
    """A point lies on a shape's edge: the reference cannot tell inside from outside."""


def _np(a: pa.ChunkedArray) -> Array:
    return np.asarray(a.cast(pa.float64()).fill_null(np.nan).to_numpy(), dtype=np.float64)


def _nulls(*arrays: pa.ChunkedArray) -> Array:
    out = np.zeros(len(arrays[0]), dtype=bool)
    for a in arrays:
        out |= np.asarray(a.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    return out


def _vec(lon: Array, lat: Array) -> Array:
    lo, la = np.radians(lon), np.radians(lat)
    return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=-1)


def _valid(lon: Array, lat: Array) -> Array:
    with np.errstate(invalid="ignore"):
        return np.isfinite(lon) & np.isfinite(lat) & (np.abs(lat) <= 90.0)


def _predicate(null: Array, invalid: Array, inside: Array) -> pa.Array:
    """sciSQL's INTEGER result: 0 where an argument is NULL, NULL where one is invalid."""
    value = np.where(null, 0, inside.astype(np.int32))
    return pa.array(value.astype(np.int32), mask=~null & invalid)


def _edge_check(name: str, distance: Array, candidates: Array) -> None:
    if (candidates & (distance < BOUNDARY)).any():
        raise OnTheEdge(f"{name}: a row lies on the shape's edge (pick another shape)")


def sep(lon: Array, lat: Array, lon0: Array, lat0: Array) -> Array:
    """Degrees between positions: atan2(|a x b|, a . b)."""
    a, b = _vec(lon, lat), _vec(lon0, lat0)
    return np.degrees(np.arctan2(np.linalg.norm(np.cross(a, b), axis=-1), np.sum(a * b, axis=-1)))


def _angsep(*args: pa.ChunkedArray) -> pa.Array:
    lon, lat, lon0, lat0 = (_np(a) for a in args)
    ok = _valid(lon, lat) & _valid(lon0, lat0) & ~_nulls(*args)
    with np.errstate(invalid="ignore"):
        value = sep(lon, lat, lon0, lat0)
    return pa.array(np.where(ok, value, 0.0), mask=~ok)


def _angsep_vectors(*args: pa.ChunkedArray) -> pa.Array:
    """The angle between two vectors of any length (sciSQL's 6-argument angSep)."""
    a = np.stack([_np(x) for x in args[:3]], axis=-1)
    b = np.stack([_np(x) for x in args[3:]], axis=-1)
    ok = np.isfinite(a).all(axis=1) & np.isfinite(b).all(axis=1) & ~_nulls(*args)
    with np.errstate(invalid="ignore"):
        value = np.degrees(np.arctan2(np.linalg.norm(np.cross(a, b), axis=-1), np.sum(a * b, axis=-1)))
    return pa.array(np.where(ok, value, 0.0), mask=~ok)


def _circle(*args: pa.ChunkedArray) -> pa.Array:
    lon, lat, lon0, lat0, r = (_np(a) for a in args)
    null = _nulls(*args)
    with np.errstate(invalid="ignore"):
        invalid = ~(_valid(lon, lat) & _valid(lon0, lat0) & (r >= 0) & (r <= 180))
        d = sep(lon, lat, lon0, lat0)
        _edge_check("circle", np.abs(d - r), ~null & ~invalid)
        return _predicate(null, invalid, d <= r)


def _box(*args: pa.ChunkedArray) -> pa.Array:
    lon, lat, lo, la_lo, hi, la_hi = (_np(a) for a in args)
    null = _nulls(*args)
    with np.errstate(invalid="ignore"):
        invalid = ~(_valid(lon, lat) & _valid(lo, la_lo) & _valid(hi, la_hi))
        invalid |= (hi < lo) & ((hi < 0) | (lo > 360))
        x, a, b = np.mod(lon, 360.0), np.mod(lo, 360.0), np.mod(hi, 360.0)
        full = hi - lo >= 360.0
        in_lon = full | np.where(a <= b, (x >= a) & (x <= b), (x >= a) | (x <= b))
        in_lat = (lat >= la_lo) & (lat <= la_hi)
        dist = np.minimum(np.abs(lat - la_lo), np.abs(lat - la_hi))
        for edge in (a, b):
            d = np.abs(x - edge)
            dist = np.minimum(dist, np.where(full | ~in_lat, np.inf, np.minimum(d, 360.0 - d)))
        _edge_check("box", dist, ~null & ~invalid & (la_lo <= la_hi))
        return _predicate(null, invalid, in_lat & in_lon)


def _ellipse(*args: pa.ChunkedArray) -> pa.Array:
    lon, lat, lon0, lat0, major, minor, pa_deg = (_np(a) for a in args)
    null = _nulls(*args)
    with np.errstate(invalid="ignore", divide="ignore"):
        invalid = ~(_valid(lon, lat) & _valid(lon0, lat0) & np.isfinite(major) & np.isfinite(minor))
        invalid |= ~np.isfinite(pa_deg) | (minor < 0) | (minor > major) | (major > 36000.0)
        c = _vec(lon0, lat0)
        east = np.stack([-np.sin(np.radians(lon0)), np.cos(np.radians(lon0)), np.zeros_like(lon0)], axis=-1)
        north = np.cross(c, east)
        t = np.radians(pa_deg)[:, None]
        u = np.cos(t) * north + np.sin(t) * east
        w = -np.sin(t) * north + np.cos(t) * east
        v = _vec(lon, lat)
        q = (np.sum(v * u, -1) / np.radians(major / 3600)) ** 2 + (
            np.sum(v * w, -1) / np.radians(minor / 3600)
        ) ** 2
        front = np.sum(v * c, -1) > 0
        inside = (q <= 1.0) & front & (minor > 0)
        _edge_check("ellipse", np.abs(q - 1.0), ~null & ~invalid & front & (minor > 0))
        return _predicate(null, invalid, inside)


def _cpoly(*args: pa.ChunkedArray) -> pa.Array:
    lon, lat = _np(args[0]), _np(args[1])
    verts = [_np(a) for a in args[2:]]
    null = _nulls(*args)
    invalid = ~_valid(lon, lat)
    n = len(verts) // 2
    vlon, vlat = np.stack(verts[0::2], axis=-1), np.stack(verts[1::2], axis=-1)  # (rows, n)
    invalid |= ~_valid(vlon, vlat).all(axis=1)
    vv = _vec(vlon, vlat)  # (rows, n, 3)
    normals = np.cross(vv, np.roll(vv, -1, axis=1))  # edge i: vertex i to i + 1
    clockwise = np.sum(vv.sum(axis=1) * normals[:, 0], -1) < 0
    normals = np.where(clockwise[:, None, None], -normals, normals)
    length = np.linalg.norm(normals, axis=-1, keepdims=True)
    p = _vec(lon, lat)[:, None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        side = np.sum(normals / length * p, -1)  # (rows, n): sin of the distance to each edge
        inside = (side >= 0).all(axis=1)
        near = (np.abs(side) < BOUNDARY).any(axis=1) & (side >= -BOUNDARY).all(axis=1)
    _edge_check(f"polygon of {n} vertices", np.where(near, 0.0, 1.0), ~null & ~invalid)
    return _predicate(null, invalid, inside)


def _photometry(kind: str, zero: float) -> Callable[..., pa.Array]:
    def f(*args: pa.ChunkedArray) -> pa.Array:
        a = _np(args[0])
        b = _np(args[1]) if len(args) > 1 else np.ones_like(a)
        with np.errstate(all="ignore"):
            if kind == "mag":  # flux -> magnitude: m = -2.5 log10(f) + zero
                v = np.where(a > 0, zero - 2.5 * np.log10(a), np.nan)
            elif kind == "mag_sigma":
                v = np.where((a > 0) & (b >= 0), 2.5 / math.log(10.0) * b / a, np.nan)
            elif kind == "flux":  # magnitude -> flux
                v = 10.0 ** ((zero - a) / 2.5)
            else:
                v = np.where(b >= 0, b * 10.0 ** ((zero - a) / 2.5) * math.log(10.0) / 2.5, np.nan)
        ok = np.isfinite(a) & np.isfinite(b) & np.isfinite(v) & ~_nulls(*args)
        return pa.array(np.where(ok, v, 0.0), mask=~ok)

    return f


# sciSQL name (lower) -> (number of arguments, result type, numpy function)
_UDFS: dict[str, tuple[int, object, Callable[..., pa.Array]]] = {
    "scisql_angsep": (4, DOUBLE, _angsep),
    "scisql_s2ptincircle": (5, INTEGER, _circle),
    "scisql_s2ptinbox": (6, INTEGER, _box),
    "scisql_s2ptinellipse": (7, INTEGER, _ellipse),
    "scisql_fluxtoabmag": (1, DOUBLE, _photometry("mag", -48.6)),
    "scisql_fluxtoabmagsigma": (2, DOUBLE, _photometry("mag_sigma", 0.0)),
    "scisql_abmagtoflux": (1, DOUBLE, _photometry("flux", -48.6)),
    "scisql_abmagtofluxsigma": (2, DOUBLE, _photometry("flux_sigma", -48.6)),
    "scisql_nanojanskytoabmag": (1, DOUBLE, _photometry("mag", 31.4)),
    "scisql_nanojanskytoabmagsigma": (2, DOUBLE, _photometry("mag_sigma", 0.0)),
    "scisql_abmagtonanojansky": (1, DOUBLE, _photometry("flux", 31.4)),
    "scisql_abmagtonanojanskysigma": (2, DOUBLE, _photometry("flux_sigma", 31.4)),
}
CPOLY = "scisql_s2ptincpoly"

# For naming result columns (reference.py binds the query on empty tables with stubs).
STUBS = [
    f"CREATE MACRO {name}({', '.join(f'a{i}' for i in range(n))}) AS CAST(NULL AS {'DOUBLE' if t is DOUBLE else 'INTEGER'})"
    for name, (n, t, _) in _UDFS.items()
    if name not in ("scisql_angsep", "scisql_s2ptincircle", "scisql_s2ptinbox")  # reference.py's own
] + [
    "CREATE MACRO scisql_s2PtInCPoly"
    + ", ".join(
        f"({', '.join(f'a{i}' for i in range(2 + 2 * k))}) AS CAST(NULL AS INTEGER)" for k in range(3, 21)
    )
    + "",
    "CREATE OR REPLACE MACRO scisql_angSep(a, b, c, d) AS CAST(NULL AS DOUBLE), "
    "(a, b, c, d, e, f) AS CAST(NULL AS DOUBLE)",
    "CREATE MACRO qserv_areaspec_ellipse(a, b, c, d, e) AS TRUE",
    "CREATE MACRO qserv_areaspec_poly"
    + ", ".join(f"({', '.join(f'a{i}' for i in range(2 * k))}) AS TRUE" for k in range(3, 21)),
]


def _fixed(fn: Callable[..., pa.Array], n: int) -> Callable[..., pa.Array]:
    """``fn`` with a signature of ``n`` parameters (DuckDB counts them)."""

    def call(*args: pa.ChunkedArray) -> pa.Array:
        return fn(*args)

    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    call.__signature__ = inspect.Signature([inspect.Parameter(f"a{i}", kind) for i in range(n)])  # type: ignore[attr-defined]
    return call


def handles(name: str) -> bool:
    return name.lower() in _UDFS or name.lower() == CPOLY


def rewrite_call(conn: duckdb.DuckDBPyConnection, call: exp.Anonymous, registered: set[str]) -> None:
    """Rename a sciSQL call to its numpy UDF on ``conn`` (registered on first use)."""
    name = call.name.lower()
    n = len(call.expressions)
    if name == CPOLY:
        udf, rtype, fn = f"{PREFIX}cpoly_{n}", INTEGER, _cpoly
    elif name == "scisql_angsep" and n == 6:
        udf, rtype, fn = f"{PREFIX}angsep_vectors", DOUBLE, _angsep_vectors
    else:
        arity, rtype, fn = _UDFS[name]
        if n != arity:
            raise ValueError(f"{call.sql()}: {name} takes {arity} arguments")
        udf = PREFIX + name
    if udf not in registered:
        conn.create_function(udf, _fixed(fn, n), [DOUBLE] * n, rtype, type="arrow", null_handling="special")
        registered.add(udf)
    call.set("this", udf)


def areaspec_inside(shape: str, lon: Array, lat: Array, args: list[float]) -> Array | str:
    """Rows of an areaspec ellipse/polygon (sciSQL's predicate = 1), or why it is refused."""
    k = len(lon)
    col = [pa.chunked_array([pa.array(lon)]), pa.chunked_array([pa.array(lat)])]
    consts = [pa.chunked_array([pa.array(np.full(k, a))]) for a in args]
    if shape == "ellipse":
        if len(args) != 5:
            return "qserv_areaspec_ellipse takes 5 arguments"
        if not (-90 <= args[1] <= 90 and 0 < args[3] <= args[2] <= 36000):
            return f"invalid ellipse {args}"
        result = _ellipse(*col, *consts)
    else:
        if len(args) % 2 or not 6 <= len(args) <= 40:
            return "qserv_areaspec_poly takes 3 to 20 vertices"
        if (refusal := _bad_polygon(args)) is not None:
            return refusal
        result = _cpoly(*col, *consts)
    return np.asarray(result.fill_null(0).to_numpy(zero_copy_only=False)) == 1


def _bad_polygon(args: list[float]) -> str | None:
    """Why a vertex list is no convex polygon in one hemisphere, listed in order (else None):
    every vertex on the inner side of every edge's great circle."""
    lon, lat = np.array(args[0::2]), np.array(args[1::2])
    if (np.abs(lat) > 90).any():
        return "polygon latitude out of range"
    v = _vec(lon, lat)
    normals = np.cross(v, np.roll(v, -1, axis=0))
    if (np.linalg.norm(normals, axis=1) < 1e-12).any():
        return "polygon with a degenerate edge"
    side = normals @ v.T
    centre = v.sum(axis=0)
    if np.linalg.norm(centre) < 1e-12 or (v @ centre <= 0).any():
        return "polygon beyond a hemisphere"
    if not ((side >= -1e-12).all() or (side <= 1e-12).all()):
        return "non-convex polygon"
    return None
