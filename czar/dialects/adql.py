"""The ADQL 2.1 dialect (IVOA Astronomical Data Query Language), as sqlglot reads it.

ADQL is SQL-92 plus astronomy: ``SELECT TOP n`` (and ``OFFSET m``, never ``LIMIT``), ``||``
concatenation, unquoted identifiers case-insensitive (quoted ones case-sensitive), and these
functions, with ADQL's meaning where it differs from PostgreSQL's:

* ``LOG(x)`` is the *natural* logarithm (PostgreSQL's ``log(x)`` is base 10); ``LOG10(x)``
  base 10; ``EXP``, ``SQRT``, ``POWER``, ``PI``, ``ABS``, ``CEILING``, ``FLOOR``, ``DEGREES``,
  ``RADIANS``, ``SIGN``, the trigonometric functions and ``ATAN2``;
* ``ROUND(x[, n])`` and ``TRUNCATE(x[, n])`` to ``n`` decimal places, ``MOD(x, y)``;
* ``RAND()`` (unseeded: one DuckDB ``random()`` per row, any sequence is a valid answer);
* ``LOWER``, ``UPPER``, ``ILIKE``, ``CAST``, ``COALESCE``;
* the geometry (``POINT``, ``CIRCLE``, ``BOX``, ``POLYGON``, ``CONTAINS``, ``INTERSECTS``,
  ``DISTANCE``, ``COORD1``, ``COORD2``, ``AREA``): parsed as calls here, given meaning by the
  analyzer's geometry pass (czar/analyze/geometry.py), in every dialect.

What ADQL lacks, or what cannot be answered as one database would, is refused by name:
``LIMIT`` (ADQL writes ``TOP``), ``::`` casts, ``LOG(b, x)``, ``RAND(seed)``.

>>> parse_adql("SELECT TOP 3 LOG(x), LOG10(x), a || b FROM t ORDER BY x OFFSET 2").sql("duckdb")
'SELECT LN(x), LOG(10, x), a || b FROM t ORDER BY x LIMIT 3 OFFSET 2'
"""

from __future__ import annotations

from sqlglot import exp
from sqlglot.dialects.postgres import Postgres
from sqlglot.parsers.postgres import PostgresParser
from sqlglot.tokens import Token, TokenType

from czar.parse import node_position, parse_in
from qserv.errors import SyntaxError_, Unsupported


class Adql(Postgres):
    """ADQL 2.1 over sqlglot's PostgreSQL: ``TOP``, natural ``LOG``; ``/`` as in czar/dialect.py."""

    TYPED_DIVISION = False

    class Tokenizer(Postgres.Tokenizer):
        KEYWORDS = {**Postgres.Tokenizer.KEYWORDS, "TOP": TokenType.TOP}

    class Parser(PostgresParser):
        LOG_DEFAULTS_TO_LN = True  # LOG10(x) stays sqlglot's LOG(10, x)


def parse_adql(sql: str) -> exp.Expr:
    """Parse one ADQL 2.1 statement (the checks of czar.parse.parse, then ADQL's own refusals)."""
    dialect = Adql()
    tree = parse_in(sql, dialect)
    _check_tokens(dialect.tokenize(sql))
    for node in tree.walk():
        if isinstance(node, exp.Log) and node.expression is not None and not _is_log10(node):
            raise Unsupported(
                "LOG takes one argument in ADQL (the natural logarithm): write LOG(x) / LOG(b) "
                "for another base, or LOG10(x)",
                position=node_position(node),
            )
        if isinstance(node, exp.Rand) and node.this is not None:
            raise Unsupported(
                "RAND(seed) is not supported: the query runs in parallel on many workers, so no "
                "seeded sequence can match one database's; use RAND()",
                position=node_position(node),
            )
    return tree


def _is_log10(node: exp.Log) -> bool:
    base = node.this
    return isinstance(base, exp.Literal) and base.this == "10" and not base.is_string


def _check_tokens(tokens: list[Token]) -> None:
    """Refuse PostgreSQL spellings ADQL does not have, at the token."""
    for token in tokens:
        if token.token_type is TokenType.LIMIT:
            raise SyntaxError_(
                'ADQL has no LIMIT: write "SELECT TOP n ..." (with OFFSET m after ORDER BY to skip rows)',
                position=token.start + 1,
            )
        if token.token_type is TokenType.DCOLON:
            raise SyntaxError_("ADQL has no :: casts: write CAST(x AS type)", position=token.start + 1)
