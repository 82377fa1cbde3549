"""The session dialects: name -> the sqlglot dialect a session's queries are read in.

A session chooses one with ``options='-c qserv.dialect=mysql'`` or ``SET qserv.dialect =
'mysql'`` (czar/session.py); the meaning of a query is its meaning in that dialect, as sqlglot
transpiles it to DuckDB plus the forms of czar/dialects/forms.py (DESIGN §4).

- ``postgresql`` (default): czar/dialect.py, PostgreSQL with the MySQL forms that mean nothing
  in PostgreSQL (backticks, ``DIV``, ``MOD``, ``<=>``, ``XOR``);
- ``mysql``: czar/dialects/mysql.py, Qserv's users' MySQL;
- ``adql``: ADQL 2.1, czar/dialects/adql.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect

from czar.dialect import Qserv
from czar.dialects.mysql import QservMySQL
from qserv.errors import InvalidParameter

DEFAULT_DIALECT = "postgresql"
SETTING = "qserv.dialect"


@dataclass(frozen=True)
class SessionDialect:
    """A dialect a session can choose: its sqlglot class (czar.parse.parse_in reads it), or a
    parse function of its own."""

    name: str
    sqlglot: type[Dialect] | None
    parse: Callable[[str], exp.Expr] | None = None


def _parse_adql(sql: str) -> exp.Expr:
    # imported on use: the ADQL module builds on czar.parse, which builds on this registry
    from czar.dialects.adql import parse_adql

    return parse_adql(sql)


DIALECTS: dict[str, SessionDialect] = {
    d.name: d
    for d in (
        SessionDialect("postgresql", Qserv),
        SessionDialect("mysql", QservMySQL),
        SessionDialect("adql", None, _parse_adql),
    )
}


def dialect_named(name: str) -> SessionDialect:
    """The dialect ``name`` (any case); an unknown name is refused as PostgreSQL refuses an
    invalid value of an enumerated setting (22023, the valid values in the hint)."""
    found = DIALECTS.get(name.strip().lower())
    if found is None:
        raise InvalidParameter(
            f'invalid value for parameter "{SETTING}": "{name}"',
            hint="Available values: " + ", ".join(sorted(DIALECTS)) + ".",
        )
    return found
