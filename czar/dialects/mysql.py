"""The MySQL session dialect (Qserv's users): sqlglot's MySQL, plus the MySQL meanings its
translation to DuckDB lacks (czar/dialects/forms.py).

A query means what it means in MySQL with its default ``sql_mode``, as sqlglot transpiles it
to DuckDB: ``&&`` is AND, ``||`` is OR, ``^`` is bitwise XOR, ``XOR`` is logical XOR, ``<=>``,
``DIV``, ``MOD``, backticks, ``db.table``, ``LIMIT offset, count``, ``IFNULL``, ``IF()``; NULLs
sort first in ascending order and last in descending order. On top of sqlglot: the forms of
:mod:`czar.dialects.forms` (bit operators on BIGINT UNSIGNED, truncating ``DIV``, ``hex()``,
``LIKE`` on numbers with ``\\`` as escape, NULL for ``DIV``/``MOD`` by zero), and ADQL's
``TOP n``. String comparisons are DuckDB's (case-sensitive, as MySQL's ``_bin`` collations),
not those of MySQL's default case-insensitive collation (see README "Dialects").

>>> import sqlglot
>>> sqlglot.parse_one("SELECT a FROM `t` WHERE a > 1 && b ORDER BY a LIMIT 2, 3", dialect=QservMySQL).sql("duckdb")
'SELECT a FROM "t" WHERE a > 1 AND b ORDER BY a NULLS FIRST LIMIT 3 OFFSET 2'
"""

from __future__ import annotations

from sqlglot import exp
from sqlglot.dialects.mysql import MySQL
from sqlglot.parsers.mysql import MySQLParser
from sqlglot.tokens import Token, TokenType

from czar.dialects.forms import rewrite


class QservMySQL(MySQL):
    """MySQL with the meanings of czar/dialects/forms.py and ADQL ``TOP n``."""

    class Tokenizer(MySQL.Tokenizer):
        KEYWORDS = {**MySQL.Tokenizer.KEYWORDS, "TOP": TokenType.TOP}

    class Parser(MySQLParser):
        def parse(self, raw_tokens: list[Token], sql: str) -> list[exp.Expr | None]:
            return [t if t is None else rewrite(t, bits=True) for t in super().parse(raw_tokens, sql)]
