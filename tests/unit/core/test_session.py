from __future__ import annotations

import pytest

from czar.session import SessionState, explain_target, handle_session_statement
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
