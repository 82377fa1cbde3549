"""Session statements the czar answers itself: SET/SHOW/RESET, BEGIN/COMMIT/ROLLBACK, USE.

Clients (psql, psycopg, SQLAlchemy, JDBC) send these around their queries. qserv is read-only,
so transaction statements are accepted and do nothing; settings are remembered per session
and shown back by SHOW. Everything else goes through the query pipeline.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from qserv.errors import InvalidParameter, SyntaxError_

SERVER_VERSION = "16.0 (qserv-py 0.1.0)"

DEFAULT_SETTINGS: dict[str, str] = {
    "server_version": SERVER_VERSION,
    "server_encoding": "UTF8",
    "client_encoding": "UTF8",
    "datestyle": "ISO, MDY",
    "timezone": "UTC",
    "standard_conforming_strings": "on",
    "transaction_isolation": "read committed",
    "default_transaction_read_only": "on",
    "search_path": '"$user", public',
    "integer_datetimes": "on",
    "max_identifier_length": "63",
}


@dataclass
class SessionState:
    """Mutable per-connection state: the default database and SET parameters."""

    user: str
    database: str
    settings: dict[str, str] = field(default_factory=dict)
    in_transaction: bool = False


@dataclass(frozen=True)
class SessionReply:
    """What a session statement answers: a command tag and optionally one row."""

    command_tag: str
    column: str | None = None
    value: str | None = None


_COMMENT = re.compile(r"(--[^\n]*\n?)|(/\*.*?\*/)", re.S)
_SET = re.compile(
    r"^SET\s+(?:SESSION\s+|LOCAL\s+)?([A-Za-z_][\w.]*)\s*(?:=|\s+TO\s+|\s+)\s*(.+?)\s*;?\s*$", re.I | re.S
)
_SET_TZ = re.compile(r"^SET\s+(?:SESSION\s+|LOCAL\s+)?TIME\s+ZONE\s+(.+?)\s*;?\s*$", re.I | re.S)
_SHOW = re.compile(r"^SHOW\s+([A-Za-z_][\w.]*)\s*;?\s*$", re.I)
_RESET = re.compile(r"^RESET\s+([A-Za-z_][\w.]*|ALL)\s*;?\s*$", re.I)
_USE = re.compile(r"^USE\s+`?\"?([A-Za-z_]\w*)\"?`?\s*;?\s*$", re.I)
_SESSION_FUNCTION = re.compile(
    r"^SELECT\s+(?:pg_catalog\.)?(version|current_database|current_schema|current_user|session_user|user)"
    r"\s*(?:\(\s*\))?\s*;?\s*$",
    re.I,
)
_TRANSACTION = {
    "BEGIN": ("BEGIN", True),
    "START": ("START TRANSACTION", True),
    "COMMIT": ("COMMIT", False),
    "END": ("COMMIT", False),
    "ROLLBACK": ("ROLLBACK", False),
    "ABORT": ("ROLLBACK", False),
}

# what may follow COMMIT/END/ROLLBACK/ABORT in PostgreSQL
_END_REST = re.compile(r"^(?:(?:WORK|TRANSACTION)\s*)?(?:AND\s+(?:NO\s+)?CHAIN\s*)?;?\s*$", re.I)


def strip_comments(sql: str) -> str:
    return _COMMENT.sub(" ", sql).strip()


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1].replace(value[0] * 2, value[0])
    return value


def handle_session_statement(sql: str, state: SessionState) -> SessionReply | None:
    """Answer ``sql`` if it is a session statement (mutating ``state``); else return None."""
    text = strip_comments(sql)
    if not text:
        return None
    first = text.split(None, 1)[0].rstrip(";").upper()
    if first in _TRANSACTION:
        tag, opens = _TRANSACTION[first]
        rest = text[len(first) :].strip()
        if not opens and not _END_REST.match(rest):  # END objectId FROM ... is not a COMMIT
            word = re.match(r"[\w$]+|\S", rest).group(0)  # type: ignore[union-attr]
            position = sql.find(word, sql.upper().find(first) + len(first)) + 1
            raise SyntaxError_(f'syntax error at or near "{word}"', position=position or None)
        state.in_transaction = opens
        return SessionReply(tag)
    if first == "SET":
        if m := _SET_TZ.match(text):
            state.settings["timezone"] = _unquote(m.group(1))
            return SessionReply("SET")
        if m := _SET.match(text):
            name = m.group(1).lower()
            if name in {"transaction", "session"}:  # SET TRANSACTION READ ONLY, SET SESSION CHARACTERISTICS
                return SessionReply("SET")
            state.settings[name] = _unquote(m.group(2))
            return SessionReply("SET")
        raise InvalidParameter(f"cannot parse SET statement: {text[:80]!r}", hint="use SET name = value")
    if first == "RESET":
        if m := _RESET.match(text):
            name = m.group(1).lower()
            if name == "all":
                state.settings.clear()
            else:
                state.settings.pop(name, None)
            return SessionReply("RESET")
        return None
    if first == "SHOW":
        if m := _SHOW.match(text):
            name = m.group(1).lower()
            value = state.settings.get(name, DEFAULT_SETTINGS.get(name))
            if value is None:
                raise InvalidParameter(f'unrecognized configuration parameter "{name}"')
            return SessionReply("SHOW", column=name, value=value)
        return None
    if first == "DISCARD":
        state.settings.clear()
        return SessionReply("DISCARD ALL")
    if first == "SELECT" and (m := _SESSION_FUNCTION.match(text)):
        # what drivers ask on connect (SQLAlchemy: version(), current_schema())
        name = m.group(1).lower()
        values = {
            "version": f"PostgreSQL {SERVER_VERSION}",
            "current_database": state.database,
            "current_schema": "public",
        }
        return SessionReply("SELECT 1", column=name, value=values.get(name, state.user))
    if first == "USE":
        if m := _USE.match(text):
            state.database = m.group(1)
            return SessionReply("SET")
    return None


def explain_target(sql: str) -> str | None:
    """The query of an ``EXPLAIN <query>`` statement, or None."""
    text = strip_comments(sql)
    m = re.match(r"^EXPLAIN\s+(?:\((?:[^)]*)\)\s+)?(?:ANALYZE\s+)?(?:VERBOSE\s+)?(.*)$", text, re.I | re.S)
    return m.group(1).rstrip().rstrip(";") if m else None
