"""Session statements the czar answers itself: SET/SHOW/RESET, BEGIN/COMMIT/ROLLBACK, USE.

Clients (psql, psycopg, SQLAlchemy, JDBC) send these around their queries. qserv is read-only,
so transaction statements are accepted and do nothing; settings are remembered per session
and shown back by SHOW. Everything else goes through the query pipeline.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from czar.dialects.registry import DEFAULT_DIALECT, dialect_named
from czar.dialects.registry import SETTING as DIALECT
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
    "statement_timeout": "0",
    DIALECT: DEFAULT_DIALECT,
}


STATEMENT_TIMEOUT = "statement_timeout"

# PostgreSQL's units of a time setting whose base unit is the millisecond (guc.c), and its
# range: an int4 of milliseconds
_TIME_UNITS_MS: dict[str, float] = {
    "us": 0.001,
    "ms": 1,
    "s": 1000,
    "min": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
}
_MAX_MS = 2**31 - 1
_DURATION = re.compile(r"^\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*([A-Za-z]*)\s*$")


def parse_duration_ms(value: str, name: str = STATEMENT_TIMEOUT) -> int:
    """A time setting in PostgreSQL's forms, in milliseconds: ``5000``, ``'5s'``, ``'1.5 min'``.

    A bare number is milliseconds; units are us, ms, s, min, h, d; ``0`` means no limit.
    Fractions are rounded to the millisecond, as PostgreSQL does.
    """
    m = _DURATION.match(value)
    unit = m.group(2) if m else ""
    if m is None or (unit and unit not in _TIME_UNITS_MS):
        raise InvalidParameter(
            f'invalid value for parameter "{name}": "{value}"',
            hint='Valid units for this parameter are "us", "ms", "s", "min", "h", and "d".',
        )
    exact = float(m.group(1)) * _TIME_UNITS_MS[unit or "ms"]
    ms = round(exact) if math.isfinite(exact) else _MAX_MS + 1
    if not 0 <= ms <= _MAX_MS:
        raise InvalidParameter(
            f'{m.group(1)}{unit or " ms"} is outside the valid range for parameter "{name}" (0 ms .. {_MAX_MS} ms)'
        )
    return ms


def format_duration_ms(ms: int) -> str:
    """How SHOW prints a time setting: in the largest unit that divides it (``5s``, ``1500ms``)."""
    if ms == 0:
        return "0"
    for unit in ("d", "h", "min", "s"):
        size = int(_TIME_UNITS_MS[unit])
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


# settings whose values are checked and shown in a canonical form, as PostgreSQL does
_CANONICAL = {
    STATEMENT_TIMEOUT: lambda value: format_duration_ms(parse_duration_ms(value)),
    DIALECT: lambda value: dialect_named(value).name,
}


def session_defaults(server: Mapping[str, str], client: Mapping[str, str]) -> dict[str, str]:
    """A session's defaults: the server's, overridden by the client's startup settings.

    Startup settings (the startup packet's parameters and its ``options='-c name=value'``)
    are checked as SET checks them: a bad value raises (22023), refusing the session.
    """
    out = dict(server)
    for name, value in client.items():
        key = name.lower()
        canonical = _CANONICAL.get(key)
        out[key] = canonical(value) if canonical else value
    return out


@dataclass
class SessionState:
    """Mutable per-connection state: the default database and SET parameters.

    ``defaults`` are this server's values of settings (from its configuration, such as
    ``statement_timeout``); RESET returns a setting to them.
    """

    user: str
    database: str
    settings: dict[str, str] = field(default_factory=dict)
    in_transaction: bool = False
    defaults: Mapping[str, str] = field(default_factory=dict)
    local: dict[str, str] = field(default_factory=dict)  # SET LOCAL: until the transaction ends

    def setting(self, name: str) -> str | None:
        """The current value of ``name``: SET LOCAL, SET in this session, else the default."""
        if name in self.local:
            return self.local[name]
        return self.settings.get(name, self.defaults.get(name, DEFAULT_SETTINGS.get(name)))

    def dialect(self) -> str:
        """The session dialect its queries are read in (``qserv.dialect``, czar/dialects/)."""
        return self.setting(DIALECT) or DEFAULT_DIALECT

    def statement_timeout_ms(self) -> int:
        """Milliseconds a statement may run before it is cancelled (0: no limit)."""
        value = self.setting(STATEMENT_TIMEOUT)
        return parse_duration_ms(value) if value else 0


@dataclass(frozen=True)
class SessionReply:
    """What a session statement answers: a command tag and optionally one row."""

    command_tag: str
    column: str | None = None
    value: str | None = None


_COMMENT = re.compile(r"(--[^\n]*\n?)|(/\*.*?\*/)", re.S)
_SET = re.compile(
    r"^SET\s+(SESSION\s+|LOCAL\s+)?([A-Za-z_][\w.]*)\s*(?:=|\s+TO\s+|\s+)\s*(.+?)\s*;?\s*$", re.I | re.S
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
        state.local.clear()  # BEGIN, COMMIT or ROLLBACK: SET LOCAL values end with their transaction
        return SessionReply(tag)
    if first == "SET":
        if m := _SET_TZ.match(text):
            state.settings["timezone"] = _unquote(m.group(1))
            return SessionReply("SET")
        if m := _SET.match(text):
            local = (m.group(1) or "").strip().upper() == "LOCAL"
            name = m.group(2).lower()
            if name in {"transaction", "session"}:  # SET TRANSACTION READ ONLY, SET SESSION CHARACTERISTICS
                return SessionReply("SET")
            raw = m.group(3)
            if raw.upper() == "DEFAULT":  # SET name TO DEFAULT is RESET name
                value: str | None = state.defaults.get(name, DEFAULT_SETTINGS.get(name))
            else:
                canonical = _CANONICAL.get(name)
                value = canonical(_unquote(raw)) if canonical else _unquote(raw)
            if local:
                # PostgreSQL: until the transaction ends; outside one it only warns, and changes nothing
                if state.in_transaction and value is not None:
                    state.local[name] = value
            elif raw.upper() == "DEFAULT":
                state.settings.pop(name, None)
            elif value is not None:
                state.settings[name] = value
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
            shown = state.setting(name)
            if shown is None:
                raise InvalidParameter(f'unrecognized configuration parameter "{name}"')
            return SessionReply("SHOW", column=name, value=shown)
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
