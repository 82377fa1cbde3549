"""Constants of a DuckDB type from Python values (sub-query results written into queries)."""

from __future__ import annotations

import math
from decimal import Decimal

from sqlglot import exp


def literal(value: object, type_: str) -> exp.Expr:
    """A constant of DuckDB type ``type_`` holding ``value`` (a Python value from Arrow)."""
    if type_.strip('"').upper() == "NULL":  # DuckDB's type of a bare NULL has no SQL spelling
        return exp.null()
    dtype = exp.DataType.build(type_, dialect="duckdb")
    if value is None:
        return exp.cast(exp.null(), dtype)
    if isinstance(value, bool):
        return exp.cast(exp.Boolean(this=value), dtype)
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        return exp.cast(exp.Literal.number(repr(value)), dtype)
    if isinstance(value, Decimal):
        return exp.cast(exp.Literal.number(str(value)), dtype)
    if isinstance(value, bytes):
        return exp.cast(exp.Literal.string("".join(f"\\x{b:02X}" for b in value)), dtype)
    if hasattr(value, "isoformat"):
        return exp.cast(exp.Literal.string(value.isoformat()), dtype)
    return exp.cast(exp.Literal.string(str(value)), dtype)
