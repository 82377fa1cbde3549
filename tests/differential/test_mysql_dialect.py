"""The MySQL session dialect: the fake cluster's answer equals one DuckDB running the query as
the test's own MySQL dialect reads it (tests/differential/mysql_reference.py), and the texts
that mean different things in the two dialects are checked in both."""

from __future__ import annotations

import pytest

from czar.parse import parse
from qserv.errors import QservError
from tests.differential.harness import FakeCluster
from tests.differential.test_generated import generate_query

MYSQL = [
    # && and || (MySQL's default sql_mode), with their precedence
    "SELECT objectId FROM Object WHERE flags > 2 && rFlux > 50",
    "SELECT objectId FROM Object WHERE flags = 1 || flags = 5",
    "SELECT objectId FROM Object WHERE flags = 1 || flags = 2 && rFlux > 80",
    "SELECT objectId FROM Object WHERE (flags = 1 || flags = 2) && rFlux > 80",
    "SELECT objectId, flags = 1 || gFlux IS NULL AS f FROM Object WHERE objectId < 1100",
    "SELECT COUNT(*) FROM Object WHERE NOT (flags < 3 && decl > 0) || name IS NULL",
    # ^ is bitwise XOR on BIGINT UNSIGNED
    "SELECT objectId, flags ^ 5 AS x FROM Object WHERE objectId < 1100",
    "SELECT objectId, flags ^ -1 AS x, -flags ^ 3 AS y FROM Object WHERE objectId < 1050",
    "SELECT flags ^ 3, COUNT(*) FROM Object GROUP BY flags ^ 3 ORDER BY 1",
    # << and >> of negative numbers, by 64 or more, of doubles
    "SELECT -1 << 1 AS a, -1 >> 1 AS b, 1 << 63 AS c, 1 << 64 AS d, 3 >> 64 AS e, 1 << -1 AS f",
    "SELECT objectId, flags << 1, -flags << 2, -flags >> 60 FROM Object WHERE objectId < 1060",
    "SELECT filterId, filterName FROM Filter WHERE filterId << 1 = 2",
    "SELECT objectId, ROUND(rFlux) << 3 AS s FROM Object WHERE objectId < 1040",
    "SELECT SUM(flags << 2), MAX(-flags >> 1) FROM Object",
    "SELECT objectId, flags & 6, flags | 8, ~flags FROM Object WHERE objectId < 1030",
    # DIV truncates toward zero, also doubles; DIV and MOD by zero are NULL
    "SELECT 7.5 DIV 2 AS a, -7.5 DIV 2 AS b, -7 DIV 2 AS c, 7 DIV -2 AS d, 5 DIV 0 AS e, 5 MOD 0 AS f",
    "SELECT objectId, decl DIV 10, ra DIV 7, rFlux DIV -3 FROM Object WHERE objectId < 1080",
    "SELECT decl DIV 10 AS band, COUNT(*), AVG(rFlux) FROM Object GROUP BY decl DIV 10 ORDER BY band",
    "SELECT objectId FROM Object WHERE ra DIV 2 > 170",
    "SELECT objectId, flags MOD 3, flags % 4, MOD(objectId, 7), -decl MOD 10 FROM Object WHERE objectId < 1050",
    "SELECT objectId, flags DIV (flags - 2), flags MOD (flags - 3) FROM Object WHERE objectId < 1050",
    # hex() of integers (negative ones as 64-bit two's complement), strings, NULL
    "SELECT hex(-1) AS a, hex(255) AS b, hex('abc') AS c, hex(0) AS d, hex(-256) AS e",
    "SELECT objectId, hex(objectId), hex(-flags), hex(name) FROM Object WHERE objectId < 1040",
    "SELECT hex(flags) AS h, COUNT(*) FROM Object GROUP BY hex(flags) ORDER BY h",
    # LIKE on numbers (their text), \\ as the escape character
    "SELECT objectId FROM Object WHERE objectId LIKE '10_5'",
    "SELECT objectId, flags FROM Object WHERE flags LIKE '1%' && objectId LIKE '%7'",
    "SELECT COUNT(*) FROM Object WHERE flags NOT LIKE '3'",
    "SELECT objectId, name LIKE 'obj1%' AS l FROM Object WHERE objectId LIKE '100_'",
    "SELECT objectId FROM Object WHERE name LIKE 'obj\\\\_1%' OR name LIKE 'obj1|_%' ESCAPE '|'",
    # NULLs first in ascending order, last in descending; ties
    "SELECT objectId, gFlux FROM Object ORDER BY gFlux, objectId LIMIT 12",
    "SELECT objectId, gFlux FROM Object ORDER BY gFlux DESC, objectId LIMIT 12",
    "SELECT name, COUNT(*) FROM Object GROUP BY name ORDER BY name LIMIT 5",
    "SELECT objectId, rMag FROM Object ORDER BY flags, rMag DESC LIMIT 20",
    "SELECT filterId, COUNT(*) AS n FROM Source GROUP BY filterId ORDER BY filterId",
    "SELECT filterId, COUNT(*) AS n FROM Source GROUP BY filterId ORDER BY filterId DESC LIMIT 3",
    # backticks, db.table, <=>, XOR, IFNULL, IF(), string comparisons
    "SELECT `o`.`objectId`, `o`.`ra` FROM `sky`.`Object` AS `o` WHERE `o`.`flags` = 2",
    "SELECT sky.Object.objectId FROM sky.Object WHERE sky.Object.objectId IN (1000, 1003)",
    "SELECT objectId FROM Object WHERE gFlux <=> NULL && flags <=> 3",
    "SELECT objectId, flags = 1 XOR gFlux IS NULL AS x FROM Object WHERE objectId < 1100",
    "SELECT COUNT(*) FROM Object WHERE flags = 1 XOR flags = 2 OR flags = 3",
    "SELECT objectId, IFNULL(gFlux, -1) AS g, IF(flags > 3, 'hi', 'lo') AS f FROM Object WHERE objectId < 1050",
    "SELECT IF(gFlux IS NULL, 'none', 'some') AS k, COUNT(*) FROM Object GROUP BY IF(gFlux IS NULL, 'none', 'some')",
    "SELECT objectId, name FROM Object WHERE name = 'obj1001' OR name < 'obj1003' ORDER BY name LIMIT 5",
    'SELECT "obj1001" = name AS same, objectId FROM Object WHERE objectId = 1001',
    # with joins and aggregates
    "SELECT o.objectId, COUNT(*) AS n FROM Object o JOIN Source s ON s.objectId = o.objectId "
    "WHERE o.flags = 1 || o.flags = 2 GROUP BY o.objectId ORDER BY n DESC, o.objectId LIMIT 5",
    "SELECT f.filterName, SUM(s.filterId << 1) AS t FROM Source s JOIN Filter f ON f.filterId = s.filterId "
    "GROUP BY f.filterName ORDER BY t",
    "SELECT objectId DIV 100 AS h, COUNT(*), MIN(hex(objectId)) FROM Object WHERE objectId IN (1000, 1099, 1100, 1203) "
    "GROUP BY objectId DIV 100",
    "SELECT objectId FROM Object WHERE qserv_areaspec_box(5, 0, 15, 10) && flags ^ 1 = 3",
    # unaliased forms are named by their MySQL text
    "SELECT -1 << 1, 7.5 DIV 2, hex(-1), flags ^ 1 FROM Object WHERE objectId = 1003",
]


@pytest.mark.parametrize("sql", MYSQL)
def test_mysql_same_answer_as_single_duckdb(cluster: FakeCluster, sql: str) -> None:
    assert not cluster.reference(sql, "mysql").refused, sql
    assert cluster.check(sql, dialect="mysql") is not None


# One text, two meanings: each dialect's answer checked against its own reference, and the two
# answers differ (so each dialect is really read as itself).
CONFLICTS = [
    "SELECT objectId, objectId || flags AS c FROM Object WHERE objectId < 1010",  # concatenation / OR
    "SELECT objectId, flags ^ 2 AS p FROM Object WHERE objectId < 1010",  # power / XOR
    "SELECT objectId, gFlux FROM Object ORDER BY gFlux LIMIT 5",  # NULLs last / first
    "SELECT objectId, gFlux FROM Object ORDER BY gFlux DESC LIMIT 5",  # NULLs first / last
    "SELECT filterName FROM Filter WHERE filterName NOT LIKE 'Z'",  # LIKE: case matters / not
    "SELECT objectId FROM Object WHERE name LIKE 'OBJ1%' AND objectId < 1200",
]


@pytest.mark.parametrize("sql", CONFLICTS)
def test_conflicting_text_in_both_dialects(cluster: FakeCluster, sql: str) -> None:
    postgres, mysql = cluster.check(sql), cluster.check(sql, dialect="mysql")
    assert postgres is not None and mysql is not None
    assert postgres.table.to_pylist() != mysql.table.to_pylist(), sql


# The MySQL forms PostgreSQL sessions accept mean what they mean in MySQL.
POSTGRES = [
    "SELECT 7.5 DIV 2 AS a, -7.5 DIV 2 AS b, -7 DIV 2 AS c",
    "SELECT objectId, decl DIV 10, rFlux DIV -3 FROM Object WHERE objectId < 1080",
    "SELECT objectId FROM Object WHERE flags = 1 XOR flags = 2 OR flags = 3",
    "SELECT objectId, gFlux IS NULL XOR flags > 4 AS x FROM Object WHERE objectId < 1060",
    "SELECT `objectId`, flags MOD 3 FROM `Object` WHERE gFlux <=> NULL",
]


@pytest.mark.parametrize("sql", POSTGRES)
def test_mysql_forms_in_postgres_sessions(cluster: FakeCluster, sql: str) -> None:
    assert cluster.check(sql) is not None


# MySQL's LIMIT offset, count is LIMIT count OFFSET offset: the same outcome, answered or refused
LIMITS = [
    ("SELECT objectId FROM Object ORDER BY objectId LIMIT 5, 10", "LIMIT 10 OFFSET 5"),
    (
        "SELECT flags, COUNT(*) AS n FROM Object GROUP BY flags ORDER BY n DESC, flags LIMIT 1, 3",
        "LIMIT 3 OFFSET 1",
    ),
    ("SELECT objectId, gFlux FROM Object ORDER BY gFlux, objectId LIMIT 3, 4", "LIMIT 4 OFFSET 3"),
]


@pytest.mark.parametrize(("sql", "standard"), LIMITS)
def test_limit_offset_count(cluster: FakeCluster, sql: str, standard: str) -> None:
    same = sql[: sql.index("LIMIT")] + standard
    outcomes = []
    for text in (sql, same):
        try:
            outcomes.append(cluster.check(text, dialect="mysql"))
        except AssertionError as e:  # only a clean refusal (OFFSET may not be distributed yet)
            outcomes.append(e)
    mysql, standard_form = outcomes
    if isinstance(mysql, AssertionError) or isinstance(standard_form, AssertionError):
        assert str(mysql).replace(sql, "") == str(standard_form).replace(same, ""), (mysql, standard_form)
    else:
        assert mysql is not None and standard_form is not None
        assert mysql.table.to_pylist() == standard_form.table.to_pylist()


def test_div_truncates_in_both_dialects(cluster: FakeCluster) -> None:
    sql = "SELECT -7.5 DIV 2 AS a, 7.5 DIV 2 AS b, -1 << 1 AS c"
    outcome = cluster.check(sql, dialect="mysql")
    assert outcome is not None and outcome.table.to_pylist() == [{"a": -3, "b": 3, "c": 2**64 - 2}]
    postgres = cluster.check("SELECT -7.5 DIV 2 AS a, 7.5 DIV 2 AS b")
    assert postgres is not None and postgres.table.to_pylist() == [{"a": -3, "b": 3}]


# Refusals with their exact messages: (dialect, sql, sqlstate, message).
REFUSALS = [
    ("mysql", "SELECT objectId FROM Object WHERE", "42601", "syntax error at end of input"),
    ("mysql", "SELECT objectId FROM Object WHERE flags = = 1", "42601", 'syntax error at or near "="'),
    (
        "mysql",
        "SELECT `objectId FROM Object",
        "42601",
        'unterminated quoted identifier at or near "`objectId FROM Objec"',
    ),
    (
        "mysql",
        "SELECT objectId FROM Nope",
        "42P01",
        'relation "sky.Nope" does not exist (tables in sky: Filter, Object, Source)',
    ),
    ("mysql", "SELECT x.objectId FROM Object o", "42P01", 'missing FROM-clause entry for table "x"'),
    (
        "mysql",
        "DELETE FROM Object",
        "42501",
        "DELETE is not allowed: qserv accepts read-only SELECT queries only",
    ),
    (
        "mysql",
        "SELECT 1; SELECT 2",
        "42601",
        "only one statement per query is accepted; remove the extra statement",
    ),
    (
        "mysql",
        "SELECT objectId FROM Object WHERE flags = 'abc'",
        "22P02",
        'invalid input syntax for type integer: "abc"',
    ),
    (
        "mysql",
        "SHOW COLUMNS FROM Object",
        "0A000",
        "SHOW COLUMNS is not supported yet: select from the table to see its columns",
    ),
    ("oracle", "SELECT 1", "22023", 'invalid value for parameter "qserv.dialect": "oracle"'),
    (
        "postgresql",
        "SELECT objectId FROM Object WHERE flags LIKE '1%'",
        "42883",
        "operator does not exist: integer ~~ unknown",
    ),
]


@pytest.mark.parametrize(("dialect", "sql", "sqlstate", "message"), REFUSALS)
def test_refusals(cluster: FakeCluster, dialect: str, sql: str, sqlstate: str, message: str) -> None:
    with pytest.raises(QservError) as info:
        cluster.run(sql, dialect=dialect)
    assert (info.value.sqlstate, info.value.message) == (sqlstate, message)


def test_adql_session(cluster: FakeCluster) -> None:
    # TOP is ADQL's (a syntax error in the other dialects)
    sql = "SELECT TOP 2 objectId FROM Object ORDER BY objectId"
    assert cluster.run(sql, dialect="adql").table.num_rows == 2


def test_invalid_dialect_lists_the_valid_ones() -> None:
    with pytest.raises(QservError) as info:
        parse("SELECT 1", "MariaDB")
    assert info.value.sqlstate == "22023"
    assert info.value.hint == "Available values: adql, mysql, postgresql."


def mysql_spelling(sql: str) -> str:
    """A generated query in MySQL's spelling: ``&&`` for each AND that is not BETWEEN's."""
    words = sql.split(" ")
    out = []
    for i, word in enumerate(words):
        between = "BETWEEN" in words[max(0, i - 2) : i]
        out.append("&&" if word == "AND" and not between else word)
    return " ".join(out)


@pytest.mark.parametrize("seed", range(120))
def test_generated_in_mysql(cluster: FakeCluster, seed: int) -> None:
    # the generator's joins, aggregates, ORDER BY ties and NULLs, read as MySQL (NULLs first)
    sql = mysql_spelling(generate_query(seed))
    try:
        cluster.check(sql, seed=seed, dialect="mysql")
    except AssertionError as e:
        raise AssertionError(f"[seed {seed}] {sql}\n{e}") from None
