"""``qserv.dialect``: a session setting checked as PostgreSQL checks an enumerated one."""

from __future__ import annotations

import pytest

from czar.session import SessionState, handle_session_statement, session_defaults
from qserv.errors import InvalidParameter


def _show(state: SessionState) -> str | None:
    reply = handle_session_statement("SHOW qserv.dialect", state)
    assert reply is not None and reply.column == "qserv.dialect"
    return reply.value


def test_set_show_reset() -> None:
    s = SessionState(user="u", database="sky")
    assert _show(s) == "postgresql" and s.dialect() == "postgresql"
    handle_session_statement("SET qserv.dialect = 'MySQL'", s)
    assert _show(s) == "mysql" and s.dialect() == "mysql"
    handle_session_statement("RESET qserv.dialect", s)
    assert s.dialect() == "postgresql"
    handle_session_statement("SET qserv.dialect TO adql", s)
    assert s.dialect() == "adql"
    handle_session_statement("SET qserv.dialect TO DEFAULT", s)
    assert s.dialect() == "postgresql"


def test_startup_setting_is_the_default() -> None:
    s = SessionState(user="u", database="sky", defaults=session_defaults({}, {"qserv.dialect": "mysql"}))
    assert s.dialect() == "mysql"
    handle_session_statement("SET qserv.dialect = postgresql", s)
    handle_session_statement("RESET qserv.dialect", s)
    assert s.dialect() == "mysql"


@pytest.mark.parametrize("where", ["set", "startup"])
def test_invalid_name_is_refused(where: str) -> None:
    s = SessionState(user="u", database="sky")
    with pytest.raises(InvalidParameter) as info:
        if where == "set":
            handle_session_statement("SET qserv.dialect = 'tsql'", s)
        else:
            session_defaults({}, {"qserv.dialect": "tsql"})
    assert (info.value.sqlstate, info.value.message, info.value.hint) == (
        "22023",
        'invalid value for parameter "qserv.dialect": "tsql"',
        "Available values: adql, mysql, postgresql.",
    )
    assert s.dialect() == "postgresql"
