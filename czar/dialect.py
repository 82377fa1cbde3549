"""The qserv SQL dialect: PostgreSQL syntax plus the MySQL/Qserv and ADQL forms users bring.

Accepted on top of PostgreSQL: backtick identifiers (`` `db`.`Object` ``), ``a DIV b``
(integer division), ``a MOD b``, the null-safe ``a <=> b``, ADQL ``SELECT TOP n``, and any
``qserv_areaspec_*``/``scisql_*`` call (they parse as ordinary functions; the analyzer gives
them meaning).

Semantics follow DuckDB, because answers must equal a single DuckDB holding the same rows:
``/`` is float division and NULLs sort last in both directions.

>>> import sqlglot
>>> sqlglot.parse_one("SELECT TOP 2 a DIV 2 FROM `t`", dialect=Qserv).sql("duckdb")
'SELECT a // 2 FROM "t" LIMIT 2'
"""

from __future__ import annotations

from sqlglot import exp
from sqlglot.dialects.postgres import Postgres
from sqlglot.parsers.postgres import PostgresParser
from sqlglot.tokens import TokenType


class Qserv(Postgres):
    """PostgreSQL + MySQL/Qserv + ADQL TOP, with DuckDB semantics for division and NULL order."""

    TYPED_DIVISION = False
    NULL_ORDERING = "nulls_are_last"

    class Tokenizer(Postgres.Tokenizer):
        IDENTIFIERS = ['"', "`"]
        KEYWORDS = {
            **Postgres.Tokenizer.KEYWORDS,
            "DIV": TokenType.DIV,
            "MOD": TokenType.MOD,
            "TOP": TokenType.TOP,
            "<=>": TokenType.NULLSAFE_EQ,
        }

    class Parser(PostgresParser):
        # MOD stays callable as a function: MOD(a, b).
        FUNC_TOKENS = {*PostgresParser.FUNC_TOKENS, TokenType.MOD}
        FACTOR = {**PostgresParser.FACTOR, TokenType.DIV: exp.IntDiv, TokenType.MOD: exp.Mod}
