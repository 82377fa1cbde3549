"""sciSQL's functions as DuckDB macros, installed on workers and on the czar.

Macros rather than Python UDFs: DuckDB vectorises them (~12 M angular separations per
second), where a Python UDF is 3-18x slower. All angles are degrees. Each entry of
:data:`MACROS` is (name, parameters, body); adding a function is adding a row.

Semantics are sciSQL's (its UDF documentation and sources), NULL and invalid arguments
included:

* predicates (``scisql_s2PtInBox/Circle/Ellipse/CPoly``) return INTEGER 1/0; **0** when any
  argument is NULL, NULL when an argument is invalid (NaN or infinite, a latitude outside
  [-90, 90], a radius outside [0, 180], an ellipse with ``semiMinor > semiMajor``, a negative
  axis or a semi-major axis above 36000 arcsec, a box ``lonMin > lonMax`` with one of them
  outside [0, 360]);
* ``scisql_angSep(lon1, lat1, lon2, lat2)`` returns NULL for NULL or invalid positions
  (haversine, degrees); ``scisql_angSep(x1, y1, z1, x2, y2, z2)`` the angle between two
  vectors (NULL for NULL or non-finite components);
* the photometry conversions return NULL for NULL, NaN or infinite arguments, a flux <= 0, a
  negative sigma, or a result that overflows.

``scisql_s2PtInEllipse(lon, lat, lonCen, latCen, semiMajor, semiMinor, posAngle)``: axes in
arcsec, position angle in degrees east of north; the test is sciSQL's (the point's
orthographic (north, east) coordinates at the centre, rotated by the position angle, inside
the axis-aligned ellipse), plus one thing sciSQL lacks: the point must lie in the centre's
hemisphere (sciSQL's test also accepts the antipodal copy of the ellipse).

``scisql_s2PtInCPoly(lon, lat, lon1, lat1, ..., lonN, latN)`` (3 to 20 vertices) is variadic,
which DuckDB macros are not: the czar writes each call out as an inline expression
(:func:`cpoly_sql`) with the polygon's edge planes computed once, as sciSQL does: vertices in
either order (a clockwise list is turned around), a point on an edge is inside.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

_HAVERSINE = (
    "sqrt(pow(sin(radians(({dec2}) - ({dec1})) / 2), 2) + "
    "cos(radians({dec1})) * cos(radians({dec2})) * pow(sin(radians(({ra2}) - ({ra1})) / 2), 2))"
)


def _angsep(ra1: str, dec1: str, ra2: str, dec2: str) -> str:
    h = _HAVERSINE.format(ra1=ra1, dec1=dec1, ra2=ra2, dec2=dec2)
    # CASE, not least(1.0, h): DuckDB's least skips a NULL, which made a NULL position 180 degrees away
    return f"degrees(2 * asin(CASE WHEN {h} > 1.0 THEN 1.0 ELSE {h} END))"


def _valid(lon: str, lat: str) -> str:
    """sciSQL's valid position: a finite longitude, a latitude in [-90, 90] (NaN is not)."""
    return f"(isfinite(CAST({lon} AS DOUBLE)) AND ({lat}) BETWEEN -90.0 AND 90.0)"


def _any_null(*args: str) -> str:
    return " OR ".join(f"({a}) IS NULL" for a in args)


def _finite(*args: str) -> str:
    return " AND ".join(f"isfinite(CAST({a} AS DOUBLE))" for a in args)


# Longitudes are reduced into [0, 360) before the box test so that -10 and 350 agree.
_NORM_LON = "(((({x}) % 360.0) + 360.0) % 360.0)"


def _box() -> str:
    lo, hi, x = (_NORM_LON.format(x=v) for v in ("raMin", "raMax", "ra"))
    return (
        f"CASE WHEN {_any_null('ra', 'decl', 'raMin', 'declMin', 'raMax', 'declMax')} THEN 0 "
        f"WHEN NOT ({_valid('ra', 'decl')} AND {_valid('raMin', 'declMin')} AND {_valid('raMax', 'declMax')}) "
        "THEN NULL "
        "WHEN raMax < raMin AND (raMax < 0.0 OR raMin > 360.0) THEN NULL "
        "ELSE CAST(decl BETWEEN declMin AND declMax AND ("
        "CASE WHEN raMax - raMin >= 360.0 THEN TRUE "
        f"WHEN {lo} <= {hi} THEN {x} BETWEEN {lo} AND {hi} "
        f"ELSE {x} >= {lo} OR {x} <= {hi} END) AS INTEGER) END"
    )


def _circle() -> str:
    return (
        f"CASE WHEN {_any_null('ra', 'decl', 'raCen', 'decCen', 'radius')} THEN 0 "
        f"WHEN NOT ({_valid('ra', 'decl')} AND {_valid('raCen', 'decCen')} AND radius BETWEEN 0.0 AND 180.0) "
        "THEN NULL "
        f"ELSE CAST(({_angsep('ra', 'decl', 'raCen', 'decCen')}) <= radius AS INTEGER) END"
    )


def _ellipse() -> str:
    # point (l, b), centre (L, B): north/east coordinates of the point's unit vector at the centre
    d = "radians(ra - raCen)"
    b, c = "radians(decl)", "radians(decCen)"
    xne = f"(cos({c}) * sin({b}) - sin({c}) * cos({b}) * cos({d}))"
    yne = f"(cos({b}) * sin({d}))"
    dot = f"(cos({c}) * cos({b}) * cos({d}) + sin({c}) * sin({b}))"
    pa = "radians(posAng)"
    x = f"(sin({pa}) * {yne} + cos({pa}) * {xne})"
    y = f"(cos({pa}) * {yne} - sin({pa}) * {xne})"
    major, minor = "radians(smaa / 3600.0)", "radians(smia / 3600.0)"
    return (
        f"CASE WHEN {_any_null('ra', 'decl', 'raCen', 'decCen', 'smaa', 'smia', 'posAng')} THEN 0 "
        f"WHEN NOT ({_valid('ra', 'decl')} AND {_valid('raCen', 'decCen')} AND {_finite('smaa', 'smia', 'posAng')} "
        "AND smia >= 0.0 AND smia <= smaa AND smaa <= 36000.0) THEN NULL "
        "WHEN smia = 0.0 THEN 0 "  # sciSQL divides by zero there: never inside
        f"ELSE CAST({dot} > 0.0 AND pow({x} / {major}, 2) + pow({y} / {minor}, 2) <= 1.0 AS INTEGER) END"
    )


def _mag(offset: str) -> str:
    """-2.5 log10(flux) + offset; NULL unless the flux is finite and positive."""
    return f"CASE WHEN isfinite(CAST(flux AS DOUBLE)) AND flux > 0.0 THEN -2.5 * log10(flux) + {offset} END"


def _mag_sigma() -> str:
    value = "2.5 / ln(10.0) * fluxSigma / flux"
    return (
        f"CASE WHEN {_finite('flux', 'fluxSigma')} AND flux > 0.0 AND fluxSigma >= 0.0 "
        f"AND isfinite({value}) THEN {value} END"
    )


def _flux(offset: str) -> str:
    value = f"pow(10.0, -0.4 * (mag + {offset}))"
    return f"CASE WHEN {_finite('mag')} AND isfinite({value}) THEN {value} END"


def _flux_sigma(offset: str) -> str:
    value = f"magSigma * pow(10.0, -0.4 * (mag + {offset})) * ln(10.0) / 2.5"
    return (
        f"CASE WHEN {_finite('mag', 'magSigma')} AND magSigma >= 0.0 AND isfinite({value}) THEN {value} END"
    )


# AB magnitudes: m = -2.5 log10(f) - 48.6 for f in erg/cm^2/s/Hz, m = -2.5 log10(f) + 31.4
# for f in nanojansky (1 nJy = 1e-32 erg/cm^2/s/Hz), as sciSQL defines them.

MACROS: tuple[tuple[str, str, str], ...] = (
    (
        "scisql_angSep",
        "ra1, dec1, ra2, dec2",
        f"CASE WHEN {_valid('ra1', 'dec1')} AND {_valid('ra2', 'dec2')} "
        f"THEN {_angsep('ra1', 'dec1', 'ra2', 'dec2')} END",
    ),
    ("scisql_s2PtInCircle", "ra, decl, raCen, decCen, radius", _circle()),
    ("scisql_s2PtInBox", "ra, decl, raMin, declMin, raMax, declMax", _box()),
    ("scisql_s2PtInEllipse", "ra, decl, raCen, decCen, smaa, smia, posAng", _ellipse()),
    ("scisql_fluxToAbMag", "flux", _mag("-48.6")),
    ("scisql_fluxToAbMagSigma", "flux, fluxSigma", _mag_sigma()),
    ("scisql_abMagToFlux", "mag", _flux("48.6")),
    ("scisql_abMagToFluxSigma", "mag, magSigma", _flux_sigma("48.6")),
    ("scisql_nanojanskyToAbMag", "flux", _mag("31.4")),
    ("scisql_nanojanskyToAbMagSigma", "flux, fluxSigma", _mag_sigma()),
    ("scisql_abMagToNanojansky", "mag", _flux("-31.4")),
    ("scisql_abMagToNanojanskySigma", "mag, magSigma", _flux_sigma("-31.4")),
)


def _angsep_vectors() -> str:
    """sciSQL's angSep of two (not necessarily unit) vectors: atan2(|v1 x v2|, v1 . v2)."""
    cx, cy, cz = "(y1 * z2 - z1 * y2)", "(z1 * x2 - x1 * z2)", "(x1 * y2 - y1 * x2)"
    return (
        f"CASE WHEN {_finite('x1', 'y1', 'z1', 'x2', 'y2', 'z2')} "
        f"THEN degrees(atan2(sqrt({cx} * {cx} + {cy} * {cy} + {cz} * {cz}), x1 * x2 + y1 * y2 + z1 * z2)) END"
    )


# Further signatures of a macro (DuckDB overloads): name -> ((parameters, body), ...)
OVERLOADS: dict[str, tuple[tuple[str, str], ...]] = {
    "scisql_angSep": (("x1, y1, z1, x2, y2, z2", _angsep_vectors()),),
}

CPOLY = "scisql_s2PtInCPoly"
CPOLY_MAX_VERTICES = 20  # sciSQL's SCISQL_MAX_VERTS

FUNCTIONS: frozenset[str] = frozenset({name.lower() for name, _, _ in MACROS} | {CPOLY.lower()})
"""Every sciSQL function a query may call (lower case)."""


def arities(name: str) -> tuple[int, ...]:
    """The numbers of arguments macro ``name`` takes (empty: no such fixed-arity macro)."""
    found = []
    for macro, params, _ in MACROS:
        if macro.lower() == name.lower():
            found.append(len(params.split(",")))
            found += [len(p.split(",")) for p, _ in OVERLOADS.get(macro, ())]
    return tuple(found)


def _lit(x: float) -> str:
    return format(float(x), ".17e")


def cpoly_edges(vertices: Sequence[tuple[float, float]]) -> np.ndarray | None:
    """Edge-plane normals (n, 3) of a polygon, oriented inward as sciSQL orients them.

    Each normal is the cross product of consecutive vertices (sciSQL's rounding-robust
    ``(v1 + v2) x (v2 - v1)``); when the sum of the vertices lies on the negative side of the
    first plane the list was clockwise and every normal is negated. None when a vertex is
    invalid (sciSQL's NULL).
    """
    lon = np.array([v[0] for v in vertices], dtype=np.float64)
    lat = np.array([v[1] for v in vertices], dtype=np.float64)
    if not (np.isfinite(lon).all() and np.isfinite(lat).all()) or (np.abs(lat) > 90.0).any():
        return None
    lo, la = np.radians(lon), np.radians(lat)
    v = np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=-1)
    nxt = np.roll(v, -1, axis=0)
    edges = np.cross(nxt + v, nxt - v)
    if float(v.sum(axis=0) @ edges[0]) < 0.0:
        edges = -edges
    return np.asarray(edges)


def cpoly_sql(lon: str, lat: str, vertices: Sequence[tuple[float | None, float | None]]) -> str:
    """The inline DuckDB expression of ``scisql_s2PtInCPoly(lon, lat, vertices...)``.

    ``vertices`` are the constant (lon, lat) pairs (None for a NULL constant).
    """
    head = f"CASE WHEN {_any_null(lon, lat)} THEN 0 WHEN NOT {_valid(lon, lat)} THEN NULL"
    if any(a is None or b is None for a, b in vertices):
        return f"{head} ELSE 0 END"
    pairs = [(float(a), float(b)) for a, b in vertices if a is not None and b is not None]
    edges = cpoly_edges(pairs) if 3 <= len(pairs) <= CPOLY_MAX_VERTICES else None
    if edges is None:
        return f"{head} ELSE NULL END"
    x = f"cos(radians({lat})) * cos(radians({lon}))"
    y = f"cos(radians({lat})) * sin(radians({lon}))"
    z = f"sin(radians({lat}))"
    tests = " AND ".join(
        f"{_lit(nx)} * {x} + {_lit(ny)} * {y} + {_lit(nz)} * {z} >= 0.0" for nx, ny, nz in edges
    )
    return f"{head} ELSE CAST({tests} AS INTEGER) END"


class _Executes(Protocol):
    def execute(self, query: str, parameters: object = ...) -> object: ...


def macro_ddl(schema: str | None = None, temporary: bool = False) -> list[str]:
    """``CREATE OR REPLACE MACRO`` statements for every spatial function."""
    kind = "TEMP MACRO" if temporary else "MACRO"
    prefix = f"{schema}." if schema else ""
    ddl = []
    for name, params, body in MACROS:
        more = "".join(f", ({p}) AS {b}" for p, b in OVERLOADS.get(name, ()))
        ddl.append(f"CREATE OR REPLACE {kind} {prefix}{name}({params}) AS {body}{more}")
    return ddl


def install_cpoly_signature(conn: _Executes) -> None:
    """A ``scisql_s2PtInCPoly`` of every arity returning INTEGER NULL, for describing queries
    (names and types) before the czar writes the calls out (:func:`cpoly_sql`); never on workers."""
    overloads = []
    for n in range(3, CPOLY_MAX_VERTICES + 1):
        params = ", ".join(f"a{i}" for i in range(2 + 2 * n))
        overloads.append(f"({params}) AS CAST(NULL AS INTEGER)")
    conn.execute(f"CREATE OR REPLACE MACRO {CPOLY}{', '.join(overloads)}")


def install_macros(conn: _Executes, schema: str | None = None, temporary: bool = False) -> None:
    """Create the spatial macros on a DuckDB connection (persistent unless ``temporary``)."""
    for ddl in macro_ddl(schema, temporary):
        conn.execute(ddl)
