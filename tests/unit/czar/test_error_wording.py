"""Refusals in PostgreSQL's words, at PostgreSQL's position: never a parser class or DuckDB's wording.

The cases are mutants the fuzzer (tests/integration/test_fuzz.py) found leaking internals
(``Required keyword: 'expression' missing for <class 'sqlglot...Mul'>``, ``Binder Error: No
function matches ... '<<(DOUBLE, INTEGER_LITERAL)'``) or answering what PostgreSQL refuses, with
the message and position a real PostgreSQL server gives for the same text where they agree.
"""

from __future__ import annotations

import re

import duckdb
import pytest

from czar.analyze import analyze
from czar.parse import parse
from qserv.errors import QservError
from qserv.sqlerrors import scrub, translate
from tests.differential.catalog import generate
from tests.differential.harness import FakeCluster

CATALOG = generate(seed=3, n_objects=50).catalog

# Wording no client may see (the fuzzer's list, kept here on its own).
LEAKS = re.compile(
    r"Binder Error|Catalog Error|Conversion Error|Parser Error|Candidate (?:functions|macros|bindings)"
    r"|LINE \d+:|<class|sqlglot|duckdb"
    r"|_q_|__result|__QSERV|Required keyword|_LITERAL|Expecting|Invalid expression",
    re.I,
)

CASES = [
    # (sql, sqlstate, message, position) - message and position as PostgreSQL 16 gives them
    ("SELECT (*)FROM sky.Object WHERE rFlux > 25.5", "42601", 'syntax error at or near "*"', 9),
    ("SELECT( * ) FROM Object WHERE qserv_areaspec_box(359, -5, 1, 5)", "42601", 'syntax error at or near "*"', 9),
    ("SELECT 1 AS one, (*) FROM Object", "42601", 'syntax error at or near "*"', 19),
    ("SELECT * AS x FROM Object", "42601", 'syntax error at or near "AS"', 10),
    ("SELECT ra * FROM Object", "42601", 'syntax error at or near "FROM"', 13),
    ("SELECT ra FROM Object WHERE", "42601", "syntax error at end of input", 28),
    ("SELECT ra FROM Object WHERE flags >", "42601", "syntax error at end of input", 36),
    ("SELECT ra FROM Object ORDER BY", "42601", "syntax error at end of input", 31),
    ("SELECT ra FROM Object )", "42601", 'syntax error at or near ")"', 23),
    ("SELECT COUNT(iFlux), AVG() FROM Object", "42601", 'syntax error at or near ")"', 26),
    ("SELECT TOP 'obj1' objectId, ra FROM Object ORDER BY ra", "42601", "syntax error at or near \"'obj1'\"", 12),
    ("SELECT ra,, decl FROM Object", "42601", 'syntax error at or near ","', 11),
    ("SELECT, ra FROM Object", "42601", 'syntax error at or near ","', 7),
    ("SELECT ra FROM Object WHERE objectId IN (1000, 1003,)", "42601", 'syntax error at or near ")"', 53),
    ("SELECT scisql_angSep(ra, decl, 166.8,) FROM Object", "42601", 'syntax error at or near ")"', 38),
    ("SELECT %, ra FROM Object", "42601", 'syntax error at or near "%"', 8),
    ("SELECT ra FROM Object WHERE ra = ?", "42601", 'syntax error at or near "?"', 34),
    ("SELECT $1", "42P02", "there is no parameter $1", 8),
    ("SELECT 'abc", "42601", "unterminated quoted string at or near \"'abc\"", 8),
    ('SELECT "abc FROM Object', "42601", 'unterminated quoted identifier at or near ""abc FROM Object"', 8),
    ("SELECT ra FROM Object WHERE ra IS 1", "42601", 'syntax error at or near "1"', 35),
    ("SELECT decl << 2 FROM Object", "42883", "operator does not exist: double precision << integer", 13),
    ("SELECT b'' . width FROM Object", "42601", 'syntax error at or near "."', 12),
    # a table's name is hidden by its alias (PostgreSQL folds it: "object")
    ("SELECT o.ra FROM Object o WHERE Object.objectId > 5", "42P01",
     'invalid reference to FROM-clause entry for table "Object"', 33),
    ("SELECT flags FROM Object GROUP BY flags HAVING MAX(decl) >> 80", "42883",
     "operator does not exist: double precision >> integer", 58),
    ("SELECT objectId FROM Object WHERE name > 1", "42883", "operator does not exist: text > integer", 40),
    ("SELECT objectId FROM Object WHERE name = 1", "42883", "operator does not exist: text = integer", 40),
    ("SELECT name + 1 FROM Object", "42883", "operator does not exist: text + integer", 13),
    ("SELECT o.ra FROM Object o WHERE o.name LIKE 1", "42883", "operator does not exist: text ~~ integer", 40),
    ("SELECT 1 FROM Object WHERE (ra, decl) < 2.96", "42883", "operator does not exist: record < numeric", 39),
    ("SELECT round(1, 2, 3) FROM Object", "42883", "function round(integer, integer, integer) does not exist", 8),
    ("SELECT scisql_angSep(ra, decl, 166.8) FROM Object", "42883",
     "function scisql_angSep does not accept these arguments", 8),
    ("SELECT ra, COUNT(*) FROM Object", "42803",
     'column "ra" must appear in the GROUP BY clause or be used in an aggregate function', 8),
    ("SELECT flags % 2 AS parity, name, COUNT(*) FROM Object GROUP BY ALL rFlux", "42803",
     'column "flags" must appear in the GROUP BY clause or be used in an aggregate function', 8),
    ("SELECT objectId FROM Object WHERE objectId = 'abc'", "22P02", 'invalid input syntax for type bigint: "abc"', 46),
    ("SELECT ra FROM Object WHERE flags IN (1, 'x')", "22P02", 'invalid input syntax for type integer: "x"', 42),
    ("SELECT flags FROM Object '' GROUP BY flags", "42601", "syntax error at or near \"''\"", 26),
    ("SELECT 1 AS 'x' FROM Object", "42601", "syntax error at or near \"'x'\"", 13),
    ('SELECT "" FROM Object', "42601", 'zero-length delimited identifier at or near """"', 8),
    ("SELECT objectId, rMag FROM Object ORDER BY rMag DESC, 1e308 LIMIT 7", "42601",
     "non-integer constant in ORDER BY", 55),
    ("SELECT ra FROM Object ORDER BY 'a'", "42601", "non-integer constant in ORDER BY", 32),
    ("SELECT ra FROM Object ORDER BY ra, NULL", "42601", "non-integer constant in ORDER BY", 36),
    ("SELECT objectId FROM Object Source (5, 0, 15, 10)", "42601", 'syntax error at or near "5"', 37),
    ("SELECT objectId FROM Object o (a, b)", "0A000",
     "column aliases in FROM are not supported: o(a, b); alias the columns in the select list", 32),
    ("SELECT flags FROM Object GROUP BY 2.5", "42601", "non-integer constant in GROUP BY", 35),
    ("SELECT 1.2.3", "42601", 'syntax error at or near ".3"', 11),
    ("SELECT .199.3", "42601", 'syntax error at or near ".3"', 12),
    ("SELECT ra FROM Object WHERE qserv_areaspec_box(199.3, - . 50.28, 289.84, -44.6)", "42601",
     'syntax error at or near "."', 57),
    ("SELECT o.ra.x.y FROM Object o", "0A000", "cross-database references are not implemented: o.ra.x.y", 8),
    ("SELECT a.b.c.d.e FROM Object", "42601", "improper qualified name (too many dotted names): a.b.c.d.e", 8),
    ("ELSE flags, COUNT(*) FROM Object", "42601", 'syntax error at or near "ELSE"', 1),
    ("SELECT objectId FROM Object MOD WHERE flags = 1", "42601", 'syntax error at or near "MOD"', 29),
    ("SELECT objectId FROM Object WHERE (123, 45, 0.0001)", "42804",
     "argument of WHERE must be type boolean, not type record", 36),
    ("DESC SELECT DISTINCT flags FROM Object", "42501",
     "DESCRIBE is not allowed: qserv accepts read-only SELECT queries only", 1),
    ("SELECT FROM Object WHERE qserv_areaspec_box(5, 0, 15, 10)", "0A000",
     "a SELECT without a select list is not supported: select at least one column", 13),
]  # fmt: skip


def _refusal(sql: str) -> QservError:
    with pytest.raises(QservError) as info:
        analyze(parse(sql), CATALOG, "sky")
    return info.value


def _no_leak(err: QservError) -> None:
    for text in (err.message, err.detail or "", err.hint or ""):
        assert not LEAKS.search(text), f"{err.sqlstate} {text!r}"


@pytest.mark.parametrize(("sql", "sqlstate", "message", "position"), CASES)
def test_refusal_in_postgres_words(sql: str, sqlstate: str, message: str, position: int) -> None:
    err = _refusal(sql)
    _no_leak(err)
    assert (err.sqlstate, err.message, err.position) == (sqlstate, message, position), sql


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT objectId, ra FROM Object sourceId WHERE qserv_areaspec_box(350, -10, 10, 10 AND) flags > 2",
        "SELECT COUNT(*) BETWEEN Object WHERE qserv_areaspec_box(359, -5, 1, 5)",
        "SELECT objectId FROM Object WHERE qserv_areaspec_box(0, 20, 10.0001, 20.0001) IS 3",
        "SELECT abs('x') FROM Object",
        "SELECT flags FROM Object WHERE name'obj6'",
        "SELECT SUM(name) FROM Object",
        "SELECT COUNT(*) FROM Object WHERE COUNT(*) > 1",
        "SELECT objectId FROM Object WHERE name BETWEEN 1 AND 2",
        "SELECT COALESCE(name, 1) FROM Object GROUP BY name",
    ],
)
def test_refusal_never_leaks(sql: str) -> None:
    err = _refusal(sql)
    _no_leak(err)
    assert err.sqlstate.startswith(("42", "0A", "22")), (err.sqlstate, err.message)
    assert err.position is not None, err.message


def test_star_alias_is_ignored_as_postgres_does() -> None:
    """``SELECT o.* AS x``: PostgreSQL expands ``o.*`` and drops the alias (it was an internal error)."""
    q = analyze(parse("SELECT o.* AS x FROM Object o WHERE o.flags = 1"), CATALOG, "sky")
    plain = analyze(parse("SELECT o.* FROM Object o WHERE o.flags = 1"), CATALOG, "sky")
    assert q.columns == plain.columns and len(q.columns) > 1


def test_group_by_all_with_a_list_groups_by_the_list() -> None:
    q = analyze(parse("SELECT flags, COUNT(*) FROM Object GROUP BY ALL flags"), CATALOG, "sky")
    assert q.tree.args["group"].args.get("all") is None


@pytest.mark.parametrize(
    ("duck_sql", "sqlstate", "message"),
    [
        ("SELECT 1.5::DOUBLE << 2", "42883", "operator does not exist: double precision << integer"),
        ("SELECT abs(1.5::DOUBLE, 1)", "42883", "function abs(double precision, integer) does not exist"),
        ("SELECT no_such_fn(1)", "42883", "function no_such_fn does not exist"),
        ("SELECT CAST('abc' AS INTEGER)", "22P02", 'invalid input syntax for type integer: "abc"'),
        ("SELECT 2147483647::INTEGER + 1", "22003", "integer out of range"),
        ("SELECT CAST(1e300 AS BIGINT)", "22003", "bigint out of range"),
        ("SELECT 10 % 0", "22012", "division by zero"),
        ("SELECT x FROM range(3)", "42703", 'column "x" does not exist'),
        ("SELECT * FROM nowhere", "42P01", 'relation "nowhere" does not exist'),
        ("SELECT CAST(1.5 AS DATE)", "42846", "cannot cast type numeric to date"),
        ("SELEC 1", "42601", 'syntax error at or near "SELEC"'),
    ],
)
def test_duckdb_errors_translate(duck_sql: str, sqlstate: str, message: str) -> None:
    """DuckDB's own messages (raised here, not copied) come out in PostgreSQL's words."""
    with pytest.raises(duckdb.Error) as info:
        duckdb.connect().execute(duck_sql).fetchall()
    err = translate(str(info.value))
    _no_leak(err)
    assert (err.sqlstate, err.message) == (sqlstate, message)


def test_unknown_duckdb_wording_becomes_generic() -> None:
    err = scrub(QservError("Binder Error: something new about __result._q_a0"))
    assert err.message == "the query failed" and not LEAKS.search(err.message)
    err = translate(
        "Binder Error: Something new about _q_c0\n\nLINE 1: SELECT _q_c0 FROM x\n               ^^^^^"
    )
    assert err.sqlstate == "42804" and err.message == "the query cannot be evaluated as written"


def test_text_of_no_known_engine_is_an_internal_error_with_an_incident() -> None:
    err = translate("Traceback (most recent call last): KeyError: '_q_a0'")
    assert err.sqlstate == "XX000" and "incident" in err.message and not LEAKS.search(err.message)


def test_merge_errors_are_translated() -> None:
    """A value error found while merging (a sum cast to SMALLINT overflows on the czar)."""
    cluster = FakeCluster(generate(seed=3, n_objects=50))
    with pytest.raises(QservError) as info:
        cluster.run("SELECT CAST(SUM(objectId) AS SMALLINT) FROM Object")
    _no_leak(info.value)
    assert (info.value.sqlstate, info.value.message) == ("22003", "smallint out of range")
