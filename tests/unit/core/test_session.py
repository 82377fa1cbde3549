from __future__ import annotations

import pytest

from czar.session import (
    SessionState,
    explain_target,
    format_duration_ms,
    handle_session_statement,
    parse_duration_ms,
    session_defaults,
)
from qserv.errors import InvalidParameter


def test_set_and_show_round_trip() -> None:
    s = SessionState(user="u", database="sky")
    assert handle_session_statement("SET extra_float_digits = 3", s).command_tag == "SET"  # type: ignore[union-attr]
    reply = handle_session_statement("show extra_float_digits;", s)
    assert reply is not None and reply.value == "3" and reply.column == "extra_float_digits"
    handle_session_statement("SET TIME ZONE 'Europe/Paris'", s)
    assert handle_session_statement("SHOW TimeZone", s).value == "Europe/Paris"  # type: ignore[union-attr]
    handle_session_statement("RESET ALL", s)
    assert handle_session_statement("SHOW timezone", s).value == "UTC"  # type: ignore[union-attr]


def test_transactions_and_use() -> None:
    s = SessionState(user="u", database="sky")
    assert handle_session_statement("BEGIN", s).command_tag == "BEGIN"  # type: ignore[union-attr]
    assert s.in_transaction
    assert handle_session_statement("-- c\nCOMMIT;", s).command_tag == "COMMIT"  # type: ignore[union-attr]
    assert not s.in_transaction
    handle_session_statement("USE other", s)
    assert s.database == "other"


def test_queries_are_not_session_statements() -> None:
    s = SessionState(user="u", database="sky")
    assert handle_session_statement("SELECT 1", s) is None
    assert handle_session_statement("  /* x */ SELECT 1", s) is None


def test_unknown_setting_is_an_error() -> None:
    with pytest.raises(InvalidParameter):
        handle_session_statement("SHOW no_such_thing", SessionState(user="u", database="sky"))


def test_explain_target() -> None:
    assert explain_target("EXPLAIN SELECT 1;") == "SELECT 1"
    assert explain_target("explain (format text) select 2") == "select 2"
    assert explain_target("SELECT 1") is None


def test_session_functions_drivers_ask_on_connect() -> None:
    s = SessionState(user="alice", database="sky")
    reply = handle_session_statement("select version()", s)
    assert reply is not None and reply.value is not None and reply.value.startswith("PostgreSQL 16")
    assert handle_session_statement("SELECT current_database();", s).value == "sky"  # type: ignore[union-attr]
    assert handle_session_statement("SELECT pg_catalog.current_schema()", s).value == "public"  # type: ignore[union-attr]
    assert handle_session_statement("SELECT current_user", s).value == "alice"  # type: ignore[union-attr]
    assert handle_session_statement("SELECT version() + 1", s) is None


def _show(s: SessionState, name: str) -> str | None:
    reply = handle_session_statement(f"SHOW {name}", s)
    assert reply is not None and reply.column == name
    return reply.value


@pytest.mark.parametrize(
    ("value", "ms", "shown"),
    [
        ("5000", 5000, "5s"),
        ("'5s'", 5000, "5s"),
        ("'5 s'", 5000, "5s"),
        ("1500", 1500, "1500ms"),
        ("'1.5s'", 1500, "1500ms"),
        ("'2min'", 120_000, "2min"),
        ("'90s'", 90_000, "90s"),
        ("'1h'", 3_600_000, "1h"),
        ("'1d'", 86_400_000, "1d"),
        ("'250ms'", 250, "250ms"),
        ("'3000us'", 3, "3ms"),
        ("0", 0, "0"),
    ],
)
def test_statement_timeout_takes_postgres_forms(value: str, ms: int, shown: str) -> None:
    s = SessionState(user="u", database="sky")
    assert handle_session_statement(f"SET statement_timeout = {value}", s).command_tag == "SET"  # type: ignore[union-attr]
    assert s.statement_timeout_ms() == ms
    assert _show(s, "statement_timeout") == shown


def test_statement_timeout_default_reset_and_set_default() -> None:
    s = SessionState(user="u", database="sky", defaults={"statement_timeout": format_duration_ms(30_000)})
    assert _show(s, "statement_timeout") == "30s" and s.statement_timeout_ms() == 30_000
    handle_session_statement("SET statement_timeout TO 100", s)
    assert s.statement_timeout_ms() == 100
    handle_session_statement("RESET statement_timeout", s)
    assert _show(s, "statement_timeout") == "30s"
    handle_session_statement("SET statement_timeout = 0", s)
    assert s.statement_timeout_ms() == 0
    handle_session_statement("SET statement_timeout TO DEFAULT", s)
    assert s.statement_timeout_ms() == 30_000
    handle_session_statement("SET statement_timeout = '1min'", s)
    handle_session_statement("RESET ALL", s)
    assert s.statement_timeout_ms() == 30_000
    # no configured default: none, shown as PostgreSQL shows it
    assert _show(SessionState(user="u", database="sky"), "statement_timeout") == "0"


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("'5x'", 'invalid value for parameter "statement_timeout": "5x"'),
        ("'soon'", 'invalid value for parameter "statement_timeout": "soon"'),
        ("-1", "outside the valid range"),
        ("'30d'", "outside the valid range"),
        ("'1e400'", "outside the valid range"),
    ],
)
def test_statement_timeout_rejects_bad_values(value: str, fragment: str) -> None:
    s = SessionState(user="u", database="sky")
    with pytest.raises(InvalidParameter) as info:
        handle_session_statement(f"SET statement_timeout = {value}", s)
    assert fragment in info.value.message and info.value.sqlstate == "22023"
    assert s.statement_timeout_ms() == 0  # the bad value was not kept


def test_durations_round_trip() -> None:
    for ms in (1, 999, 1000, 1001, 59_000, 60_000, 61_000, 3_600_000, 86_400_000, 2**31 - 1):
        assert parse_duration_ms(format_duration_ms(ms)) == ms


def test_set_local_lasts_until_the_transaction_ends() -> None:
    s = SessionState(user="u", database="sky", defaults={"statement_timeout": "30s"})
    handle_session_statement("SET LOCAL statement_timeout = '5s'", s)  # outside a transaction: no effect
    assert _show(s, "statement_timeout") == "30s"
    handle_session_statement("SET statement_timeout = '1min'", s)
    handle_session_statement("BEGIN", s)
    handle_session_statement("SET LOCAL statement_timeout = '5s'", s)
    assert s.statement_timeout_ms() == 5_000
    handle_session_statement("SET LOCAL statement_timeout TO DEFAULT", s)
    assert _show(s, "statement_timeout") == "30s"
    handle_session_statement("COMMIT", s)
    assert _show(s, "statement_timeout") == "1min"  # the session's SET outlives the transaction


def test_startup_settings_are_the_session_defaults() -> None:
    defaults = session_defaults(
        {"statement_timeout": "0"}, {"statement_timeout": "2500", "application_name": "x"}
    )
    assert defaults == {"statement_timeout": "2500ms", "application_name": "x"}
    with pytest.raises(InvalidParameter, match='invalid value for parameter "statement_timeout"'):
        session_defaults({}, {"statement_timeout": "soon"})
