"""The qserv SQL dialect: PostgreSQL syntax plus the MySQL/Qserv and ADQL forms users bring.

Accepted on top of PostgreSQL: backtick identifiers (`` `db`.`Object` ``), ``a DIV b``
(MySQL's: truncated toward zero, a BIGINT, also for doubles; czar/dialects/forms.py), ``a MOD b``,
the null-safe ``a <=> b``, the logical ``a XOR b``, ADQL ``SELECT TOP n``, and any
``qserv_areaspec_*``/``scisql_*`` call (they parse as ordinary functions; the analyzer gives
them meaning).

The meaning of a query is its PostgreSQL meaning as sqlglot transpiles it to DuckDB (DESIGN §4):
NULLs sort last under ASC and first under DESC, as in PostgreSQL (the generated DuckDB SQL says
``NULLS FIRST`` where DuckDB's default differs); ``/`` stays DuckDB's float division, as
sqlglot writes it (it cannot know the operand types).

>>> import sqlglot
>>> sqlglot.parse_one("SELECT TOP 2 a DIV 2 FROM `t`", dialect=Qserv).sql("duckdb")
'SELECT CAST(TRUNC(a // 2) AS BIGINT) AS "a DIV 2" FROM "t" LIMIT 2'
"""

from __future__ import annotations

from sqlglot import exp
from sqlglot.dialects.postgres import Postgres
from sqlglot.parsers.postgres import PostgresParser
from sqlglot.tokens import Token, TokenType

from czar.dialects.forms import rewrite


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
            "XOR": TokenType.XOR,
        }

    class Parser(PostgresParser):
        # MOD stays callable as a function: MOD(a, b).
        FUNC_TOKENS = {*PostgresParser.FUNC_TOKENS, TokenType.MOD}
        FACTOR = {**PostgresParser.FACTOR, TokenType.DIV: exp.IntDiv, TokenType.MOD: exp.Mod}

        def _parse_conjunction(self) -> exp.Expr | None:
            # MySQL's XOR binds between AND and OR: a OR b XOR c AND d is a OR (b XOR (c AND d))
            this = super()._parse_conjunction()
            while self._match(TokenType.XOR):
                this = self.expression(exp.Xor(this=this, expression=super()._parse_conjunction()))
            return this

        def parse(self, raw_tokens: list[Token], sql: str) -> list[exp.Expr | None]:
            return [t if t is None else rewrite(t, bits=False) for t in super().parse(raw_tokens, sql)]
