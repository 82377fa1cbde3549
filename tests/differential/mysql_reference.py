"""The test's own MySQL session dialect, for the reference (independent of czar/dialects/).

sqlglot's MySQL, transpiled to DuckDB, plus only the extensions the README's "Dialects"
paragraph documents, written here again in other terms: the bit operators on BIGINT UNSIGNED
and ``hex()`` of numbers are Python functions on Python integers registered in the reference's
DuckDB; ``DIV`` is a float division truncated; ``DIV``/``MOD`` by zero and ``XOR`` are CASE
expressions; ``LIKE`` compares the operands' text, lower-cased, with ``\\`` as escape. A select item without
an alias that holds one of these forms is named by its MySQL text (as sqlglot writes it).

The same forms of the PostgreSQL session dialect (``DIV``, ``XOR``) come from :func:`extend`
with ``mysql=False``.
"""

from __future__ import annotations

import duckdb
import sqlglot
from sqlglot import exp
from sqlglot.dialects.mysql import MySQL
from sqlglot.parsers.mysql import MySQLParser
from sqlglot.tokens import Token

_U64 = 2**64
_OPERATORS = {
    "ref_bitand": lambda a, b: (a % _U64) & (b % _U64),
    "ref_bitor": lambda a, b: (a % _U64) | (b % _U64),
    "ref_bitxor": lambda a, b: (a % _U64) ^ (b % _U64),
    "ref_shl": lambda a, b: ((a % _U64) << (b % _U64)) % _U64 if b % _U64 < 64 else 0,
    "ref_shr": lambda a, b: (a % _U64) >> (b % _U64) if b % _U64 < 64 else 0,
}


def install(conn: duckdb.DuckDBPyConnection) -> None:
    """The Python functions the test's MySQL forms call, in a reference DuckDB."""
    for name, fn in _OPERATORS.items():
        conn.create_function(name, fn, ["HUGEINT", "HUGEINT"], "UBIGINT")  # type: ignore[arg-type]
    conn.create_function("ref_bitnot", lambda a: _U64 - 1 - a % _U64, ["HUGEINT"], "UBIGINT")  # type: ignore[arg-type]
    conn.create_function("ref_hex", lambda a: format(a % _U64, "X"), ["HUGEINT"], "VARCHAR")  # type: ignore[arg-type]


def _parse(sql: str) -> exp.Expr:
    return sqlglot.parse_one(sql, read="duckdb")


def _integer(node: exp.Expr) -> exp.Expr:
    return exp.cast(exp.paren(node.copy(), copy=False), "HUGEINT")


_BINARY = {
    exp.BitwiseAnd: "ref_bitand",
    exp.BitwiseOr: "ref_bitor",
    exp.BitwiseXor: "ref_bitxor",
    exp.BitwiseLeftShift: "ref_shl",
    exp.BitwiseRightShift: "ref_shr",
}


def _form(node: exp.Expr, mysql: bool) -> exp.Expr | None:
    """The reference's DuckDB for one documented form, or None."""
    a, b = node.args.get("this"), node.args.get("expression")
    if isinstance(node, exp.IntDiv):
        quotient = exp.cast(
            exp.Anonymous(this="TRUNC", expressions=[exp.Div(this=a, expression=b)]), "BIGINT"
        )
        if not mysql:
            return quotient
        return (
            exp.case()
            .when(exp.EQ(this=b.copy(), expression=exp.Literal.number(0)), exp.null())
            .else_(quotient)
        )
    if isinstance(node, exp.Xor):
        pa, pb = (exp.cast(exp.paren(x.copy(), copy=False), "BOOLEAN") for x in (a, b))
        either_null = exp.or_(exp.Is(this=pa, expression=exp.null()), exp.Is(this=pb, expression=exp.null()))
        return exp.paren(exp.case().when(either_null, exp.null()).else_(exp.NEQ(this=pa, expression=pb)))
    if not mysql:
        return None
    if isinstance(node, exp.Mod):
        zero = exp.EQ(this=b.copy(), expression=exp.Literal.number(0))
        return exp.case().when(zero, exp.null()).else_(exp.Mod(this=a, expression=b))
    if type(node) in _BINARY:
        return exp.Anonymous(this=_BINARY[type(node)], expressions=[_integer(a), _integer(b)])
    if isinstance(node, exp.BitwiseNot):
        return exp.Anonymous(this="ref_bitnot", expressions=[_integer(a)])
    if isinstance(node, exp.Hex) and not (isinstance(a, exp.Literal) and a.is_string):
        text = exp.Hex(this=exp.cast(a.copy(), "VARCHAR"))
        number = exp.Anonymous(this="ref_hex", expressions=[_integer(a)])
        is_text = exp.EQ(
            this=exp.Anonymous(this="TYPEOF", expressions=[a.copy()]),
            expression=exp.Literal.string("VARCHAR"),
        )
        return exp.case().when(is_text, text).else_(number)
    if isinstance(node, exp.Like) and not isinstance(node.parent, exp.Escape):
        return exp.Escape(this=_like(node), expression=exp.Literal.string("\\"))
    if isinstance(node, exp.Escape) and isinstance(a, exp.Like):
        return exp.Escape(this=_like(a), expression=b.copy())
    return None


def _like(like: exp.Like) -> exp.Like:
    """Both operands' text, lower-cased: MySQL's default collations ignore case in LIKE."""
    out = like.copy()
    for key in ("this", "expression"):
        operand = like.args[key]
        text = (
            operand
            if isinstance(operand, exp.Literal) and operand.is_string
            else exp.cast(operand.copy(), "VARCHAR")
        )
        out.set(key, exp.Lower(this=text.copy()))
    return out


def extend(tree: exp.Expr, mysql: bool) -> exp.Expr:
    """``tree`` with the documented forms in the reference's DuckDB, rewritten items named."""
    for select in list(tree.find_all(exp.Select)):
        for item in list(select.expressions):
            if isinstance(item, (exp.Alias, exp.Star)) or (isinstance(item, exp.Column) and item.is_star):
                continue
            if any(_form(n.copy(), mysql) is not None for n in item.walk()):
                item.replace(exp.alias_(item.copy(), item.sql(dialect="mysql"), quoted=True))
    for node in reversed(list(tree.walk())):
        new = _form(node, mysql)
        if new is not None:
            if node is tree:
                return new
            node.replace(new)
    return tree


class MySQLSession(MySQL):
    """A MySQL session as the README documents it (the reference's own reading)."""

    class Parser(MySQLParser):
        def parse(self, raw_tokens: list[Token], sql: str) -> list[exp.Expr | None]:
            return [t if t is None else extend(t, mysql=True) for t in super().parse(raw_tokens, sql)]
