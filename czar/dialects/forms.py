"""MySQL meanings sqlglot's MySQL-to-DuckDB translation does not give, as DuckDB expressions.

One home for each MySQL form the session dialects accept (czar/dialect.py for PostgreSQL
sessions, czar/dialects/mysql.py for MySQL sessions): the parser of a dialect calls
:func:`rewrite` on every tree it reads, so the tree carries the meaning and every later stage
(analysis, worker SQL, merge, EXPLAIN) renders it to DuckDB unchanged. The forms:

- ``a XOR b`` is true when exactly one operand is, NULL when either is NULL;
- ``a DIV b`` truncates toward zero and is a BIGINT, also for doubles (``-7.5 DIV 2`` = -3;
  DuckDB's ``//`` is float division for doubles);
- bit operators (``& | ^ ~ << >>``, MySQL sessions only) work on BIGINT UNSIGNED: an operand
  is rounded to an integer and a negative one taken modulo 2^64 (``-1 << 1`` =
  18446744073709551614; outside [-2^63, 2^64) it is refused, 22003), a shift
  by 64 or more (or by a negative amount) is 0, bits shifted past bit 63 are dropped;
- ``hex(n)`` of a number is the hex of n as a 64-bit two's complement integer (``hex(-1)`` =
  ``FFFFFFFFFFFFFFFF``); of a string or a BLOB, its bytes (upper-case);
- ``x LIKE p`` compares the text of a number (``flags LIKE '1%'``), with ``\\`` as the default
  escape character;
- ``a DIV 0`` and ``a MOD 0`` are NULL (MySQL sessions; PostgreSQL sessions refuse a division
  by zero, 22012).

A select item without an alias whose translation differs from its text is named by its text as
written (MySQL's own rule; in sqlglot's MySQL spelling, ``HEX(-1)``), so that its name does not
depend on how the meaning is spelled:

>>> import sqlglot
>>> tree = rewrite(sqlglot.parse_one("SELECT -1 << 1"), bits=True)
>>> tree.sql("duckdb")  # doctest: +ELLIPSIS
'SELECT CASE WHEN ... >= 64 THEN CAST(0 AS UBIGINT) ELSE ... END AS "-1 << 1"'
"""

from __future__ import annotations

from collections.abc import Callable

import sqlglot
from sqlglot import exp

_MASK = str(2**64 - 1)
_TEMPLATES: dict[str, str] = {
    # two's complement of a negative operand; outside [-2^63, 2^64) the casts refuse (22003),
    # where MySQL would clamp
    "unsigned": "CASE WHEN CAST(__a AS HUGEINT) < 0 THEN CAST(CAST(CAST(__a AS HUGEINT) AS BIGINT) "
    f"+ {2**64} AS UBIGINT) ELSE CAST(CAST(__a AS HUGEINT) AS UBIGINT) END",
    "shl": f"CASE WHEN __b >= 64 THEN CAST(0 AS UBIGINT) ELSE CAST((CAST(__a AS UHUGEINT) << __b) & {_MASK} AS UBIGINT) END",
    "shr": "CASE WHEN __b >= 64 THEN CAST(0 AS UBIGINT) ELSE __a >> __b END",
    "div": "CAST(TRUNC(__a // __b) AS BIGINT)",
    # DuckDB binds every branch, so each must bind for any operand type: a BLOB reaches its
    # bytes through its text form (which casts back), a number path uses TRY_CAST
    "hex": "CASE TYPEOF(__a) WHEN 'VARCHAR' THEN HEX(CAST(__a AS VARCHAR)) "
    "WHEN 'BLOB' THEN HEX(CAST(CAST(__a AS VARCHAR) AS BLOB)) ELSE HEX(__b) END",
}
_PARSED = {name: sqlglot.parse_one(text, read="duckdb") for name, text in _TEMPLATES.items()}
_BITS: dict[type[exp.Expr], Callable[[exp.Expr, exp.Expr], exp.Expr]] = {
    exp.BitwiseAnd: lambda a, b: exp.BitwiseAnd(this=a, expression=b),
    exp.BitwiseOr: lambda a, b: exp.BitwiseOr(this=a, expression=b),
    exp.BitwiseXor: lambda a, b: exp.BitwiseXor(this=a, expression=b),
}


def _fill(name: str, a: exp.Expr, b: exp.Expr | None = None) -> exp.Expr:
    """The template ``name`` with ``__a``/``__b`` replaced by copies of the operands."""
    operands = {"__a": a, "__b": b}

    def put(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Column) and node.name in operands and not node.table:
            operand = operands[node.name]
            assert operand is not None
            return exp.paren(operand.copy(), copy=False) if _needs_paren(operand) else operand.copy()
        return node

    return _PARSED[name].transform(put)


def _needs_paren(node: exp.Expr) -> bool:
    return isinstance(node, (exp.Binary, exp.Unary)) and not isinstance(node, exp.Paren)


def unsigned(a: exp.Expr) -> exp.Expr:
    """``a`` as MySQL's BIGINT UNSIGNED: rounded to an integer, modulo 2^64."""
    return _fill("unsigned", a)


def truncating_div(a: exp.Expr, b: exp.Expr, null_on_zero: bool) -> exp.Expr:
    """MySQL's ``a DIV b``: truncated toward zero, a BIGINT (NULL for ``b = 0`` if asked)."""
    return _fill("div", a, _nullif_zero(b) if null_on_zero else b)


def logical_xor(a: exp.Expr, b: exp.Expr) -> exp.Expr:
    """MySQL's ``a XOR b``: true when exactly one is true, NULL when either is NULL.

    sqlglot writes an ``Xor`` under an ``OR`` as ``XOR``, which DuckDB cannot parse."""
    left, right = exp.paren(a.copy(), copy=False), exp.paren(b.copy(), copy=False)
    either = exp.or_(exp.and_(left, exp.not_(right)), exp.and_(exp.not_(left.copy()), right.copy()))
    return exp.paren(either, copy=False)


def _nullif_zero(b: exp.Expr) -> exp.Expr:
    return exp.Nullif(this=b.copy(), expression=exp.Literal.number(0))


def _bit_form(node: exp.Expr) -> exp.Expr | None:
    """The unsigned 64-bit form of a bit operator node, or None."""
    if isinstance(node, exp.BitwiseLeftShift):
        return _fill("shl", unsigned(node.this), unsigned(node.expression))
    if isinstance(node, exp.BitwiseRightShift):
        return _fill("shr", unsigned(node.this), unsigned(node.expression))
    if isinstance(node, exp.BitwiseNot):
        return exp.BitwiseNot(this=unsigned(node.this))
    build = _BITS.get(type(node))
    if build is not None:
        return build(unsigned(node.this), unsigned(node.expression))
    return None


def _text_like(like: exp.Like) -> exp.ILike:
    """``like`` (NOT LIKE included) comparing the text of its operands without regard to case,
    as MySQL's default (case-insensitive) collations do: ``'Zz' LIKE 'z%'`` is true."""
    out = exp.ILike(**{**like.args, "this": _text(like.this), "expression": _text(like.expression)})
    return out


def _text(node: exp.Expr) -> exp.Expr:
    """A LIKE operand as text (a string literal stays as it is)."""
    if isinstance(node, exp.Literal) and node.is_string:
        return node
    return exp.cast(node.copy(), exp.DataType.build("VARCHAR"))


def _translate(node: exp.Expr, bits: bool) -> exp.Expr | None:
    """The DuckDB form of one MySQL node whose sqlglot translation means something else."""
    if isinstance(node, exp.IntDiv):
        return truncating_div(node.this, node.expression, null_on_zero=bits)
    if isinstance(node, exp.Xor):
        return logical_xor(node.this, node.expression)
    if not bits:
        return None
    if isinstance(node, exp.Mod):
        return exp.Mod(this=node.this.copy(), expression=_nullif_zero(node.expression))
    if isinstance(node, exp.Hex):
        if isinstance(node.this, exp.Literal) and node.this.is_string:
            return None  # a string's bytes, as DuckDB's hex gives them
        return _fill(
            "hex", node.this, unsigned(exp.TryCast(this=node.this.copy(), to=exp.DataType.build("HUGEINT")))
        )
    if isinstance(node, exp.Like) and not isinstance(node.parent, exp.Escape):
        return exp.Escape(this=_text_like(node), expression=exp.Literal.string("\\"))
    if isinstance(node, exp.Escape) and isinstance(node.this, exp.Like):
        return exp.Escape(this=_text_like(node.this), expression=node.expression.copy())
    return _bit_form(node)


_MYSQL_FORMS: tuple[type[exp.Expr], ...] = (
    exp.Mod,
    exp.Hex,
    exp.Like,
    exp.BitwiseLeftShift,
    exp.BitwiseRightShift,
    exp.BitwiseNot,
    *_BITS,
)


def _is_form(node: exp.Expr, bits: bool) -> bool:
    """Whether :func:`_translate` gives ``node`` another form."""
    if isinstance(node, exp.Hex):
        return bits and not (isinstance(node.this, exp.Literal) and node.this.is_string)
    return isinstance(node, (exp.IntDiv, exp.Xor)) or (bits and isinstance(node, _MYSQL_FORMS))


def rewrite(tree: exp.Expr, bits: bool) -> exp.Expr:
    """``tree`` with each MySQL form in its DuckDB meaning (``bits``: the MySQL session's forms,
    else only what PostgreSQL sessions accept of MySQL: DIV, XOR); names rewritten items as written."""
    nodes = list(tree.walk())
    if not any(_is_form(n, bits) for n in nodes):
        return tree  # most queries: nothing to translate
    named: list[tuple[exp.Expr, str]] = []
    for select in tree.find_all(exp.Select):
        for item in select.expressions:
            if isinstance(item, (exp.Alias, exp.Star)) or (isinstance(item, exp.Column) and item.is_star):
                continue
            if any(_is_form(n, bits) for n in item.walk()):
                named.append((item, item.sql(dialect="mysql")))
    for item, name in named:
        item.replace(exp.alias_(item.copy(), name, quoted=True))
    # children before parents (a pre-order walk reversed), so a translated node is never
    # visited again (its DuckDB form has shifts and masks of its own)
    for node in reversed(list(tree.walk()) if named else nodes):
        new = _translate(node, bits)
        if new is not None:
            if node is tree:
                return new
            node.replace(new)
    return tree
