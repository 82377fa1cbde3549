"""The qserv SQL dialect: PostgreSQL syntax plus the MySQL/Qserv and ADQL forms users bring.

Accepted on top of PostgreSQL: backtick identifiers (`` `db`.`Object` ``), ``a DIV b``
(integer division), ``a MOD b``, the null-safe ``a <=> b``, ADQL ``SELECT TOP n``, and any
``qserv_areaspec_*``/``scisql_*`` call (they parse as ordinary functions; the analyzer gives
them meaning).

The meaning of a query is its PostgreSQL meaning as sqlglot transpiles it to DuckDB (DESIGN §4):
NULLs sort last under ASC and first under DESC, as in PostgreSQL (the generated DuckDB SQL says
``NULLS FIRST`` where DuckDB's default differs); ``/`` stays DuckDB's float division, as
sqlglot writes it (it cannot know the operand types).

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
    """PostgreSQL + MySQL/Qserv + ADQL TOP; ``/`` is DuckDB's float division (see module doc)."""

    TYPED_DIVISION = False

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
