"""Stage 1: SQL text -> one sqlglot expression tree in the qserv dialect."""

from __future__ import annotations

import re

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from czar.dialect import Qserv
from qserv.errors import AccessDenied, SyntaxError_


def offset_of(sql: str, line: int, col: int) -> int:
    """1-based character offset of sqlglot's (1-based line, column) in ``sql``."""
    lines = sql.split("\n")
    line = max(1, min(line, len(lines)))
    return sum(len(s) + 1 for s in lines[: line - 1]) + max(1, col)


def parse(sql: str) -> exp.Expr:
    """Parse exactly one statement; syntax errors raise :class:`SyntaxError_` with a position."""
    try:
        trees = sqlglot.parse(sql, dialect=Qserv)
    except ParseError as e:
        _refuse_statement(sql)
        first = e.errors[0] if e.errors else {}
        line, col = first.get("line"), first.get("col")
        position = offset_of(sql, line, col) if line and col else None
        desc = first.get("description") or str(e)
        near = first.get("highlight")
        message = f"syntax error at or near {near!r}: {desc}" if near else f"syntax error: {desc}"
        raise SyntaxError_(message, position=position) from None
    except TokenError as e:
        raise SyntaxError_(f"syntax error: {e}") from None
    statements = [t for t in trees if t is not None]
    if not statements:
        raise SyntaxError_("empty query: expected one SELECT statement")
    if len(statements) > 1:
        second = statements[1]
        raise SyntaxError_(
            "only one statement per query is accepted; remove the extra statement",
            position=node_position(second),
        )
    if not isinstance(statements[0], exp.Query):
        _refuse_statement(sql)  # name the statement by its first word, at its position
    return statements[0]


# Statements refused outright even when sqlglot cannot parse them (ATTACH 'x.db').
_REFUSED_WORDS = frozenset(
    """ATTACH DETACH INSTALL LOAD COPY INSERT UPDATE DELETE MERGE CREATE DROP ALTER SET RESET PRAGMA
    CALL EXPORT IMPORT CHECKPOINT VACUUM TRUNCATE GRANT REVOKE USE BEGIN COMMIT ROLLBACK""".split()
)


def _refuse_statement(sql: str) -> None:
    match = re.match(r"\s*([A-Za-z]+)", sql)
    if match and match.group(1).upper() in _REFUSED_WORDS:
        raise AccessDenied(
            f"{match.group(1).upper()} is not allowed: qserv accepts read-only SELECT queries only",
            position=match.start(1) + 1,
        )


def node_position(node: exp.Expr) -> int | None:
    """1-based character offset of a node (or its first positioned descendant), if known."""
    best: int | None = None
    for n in node.walk():
        start = n.meta.get("start") if n.meta else None
        if isinstance(start, int) and (best is None or start < best):
            best = start
    return None if best is None else best + 1
