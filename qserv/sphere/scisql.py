"""Spatial SQL functions as DuckDB macros, installed on workers and on the czar.

Macros rather than Python UDFs: DuckDB vectorises them (~12 M angular separations per
second), where a Python UDF is 3-18x slower. All angles are degrees; a box whose minimum
longitude exceeds its maximum wraps through 0. The predicates return 1/0 (INTEGER) like
sciSQL, and NULL when any argument is NULL.

Each entry of :data:`MACROS` is (name, parameters, body); adding a function is adding a row.
"""

from __future__ import annotations

from typing import Protocol

_HAVERSINE = (
    "sqrt(pow(sin(radians(({dec2}) - ({dec1})) / 2), 2) + "
    "cos(radians({dec1})) * cos(radians({dec2})) * pow(sin(radians(({ra2}) - ({ra1})) / 2), 2))"
)


def _angsep(ra1: str, dec1: str, ra2: str, dec2: str) -> str:
    h = _HAVERSINE.format(ra1=ra1, dec1=dec1, ra2=ra2, dec2=dec2)
    # CASE, not least(1.0, h): DuckDB's least skips a NULL, which made a NULL position 180 degrees away
    return f"degrees(2 * asin(CASE WHEN {h} > 1.0 THEN 1.0 ELSE {h} END))"


# Longitudes are normalised into [0, 360) before the box test so that -10 and 350 agree.
_NORM_LON = "(((({x}) % 360.0) + 360.0) % 360.0)"

MACROS: tuple[tuple[str, str, str], ...] = (
    ("scisql_angSep", "ra1, dec1, ra2, dec2", _angsep("ra1", "dec1", "ra2", "dec2")),
    (
        "scisql_s2PtInCircle",
        "ra, decl, raCen, decCen, radius",
        f"CAST(({_angsep('ra', 'decl', 'raCen', 'decCen')}) <= radius AS INTEGER)",
    ),
    (
        "scisql_s2PtInBox",
        "ra, decl, raMin, declMin, raMax, declMax",
        "CAST(decl BETWEEN declMin AND declMax AND ("
        "CASE WHEN raMax - raMin >= 360.0 THEN TRUE "
        f"WHEN {_NORM_LON.format(x='raMin')} <= {_NORM_LON.format(x='raMax')} "
        f"THEN {_NORM_LON.format(x='ra')} BETWEEN {_NORM_LON.format(x='raMin')} "
        f"AND {_NORM_LON.format(x='raMax')} "
        f"ELSE {_NORM_LON.format(x='ra')} >= {_NORM_LON.format(x='raMin')} "
        f"OR {_NORM_LON.format(x='ra')} <= {_NORM_LON.format(x='raMax')} END) AS INTEGER)",
    ),
)


class _Executes(Protocol):
    def execute(self, query: str, parameters: object = ...) -> object: ...


def macro_ddl(schema: str | None = None, temporary: bool = False) -> list[str]:
    """``CREATE OR REPLACE MACRO`` statements for every spatial function."""
    kind = "TEMP MACRO" if temporary else "MACRO"
    prefix = f"{schema}." if schema else ""
    return [f"CREATE OR REPLACE {kind} {prefix}{name}({params}) AS {body}" for name, params, body in MACROS]


def install_macros(conn: _Executes, schema: str | None = None, temporary: bool = False) -> None:
    """Create the spatial macros on a DuckDB connection (persistent unless ``temporary``)."""
    for ddl in macro_ddl(schema, temporary):
        conn.execute(ddl)
