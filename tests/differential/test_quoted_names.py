"""Names in double quotes match exactly, unquoted names any case (README "Identifiers").

Each query runs on the fake cluster and against the reference, whose quoted-name rule is the
test's own (tests/differential/quoted_names.py); the expected outcome is also stated here, so a
reference that stopped refusing would fail too.
"""

from __future__ import annotations

import pytest

from tests.differential.harness import FakeCluster
from tests.differential.test_adql import AdqlCluster

# (query, SQLSTATE of PostgreSQL's refusal or None when answered), in both PostgreSQL and ADQL
CASES = [
    # select list, tables and databases
    ('SELECT "objectId", "ra" FROM "Object" WHERE ra > 359', None),
    ('SELECT "objectId" FROM "sky"."Object" WHERE "decl" < -80', None),
    ('SELECT "OBJECTID" FROM Object WHERE ra > 359', "42703"),
    ('SELECT "objectid" FROM "Object"', "42703"),
    ('SELECT objectId FROM "object"', "42P01"),
    ('SELECT objectId FROM "OBJECT"', "42P01"),
    ('SELECT COUNT(*) FROM "SKY"."Object"', "42P01"),
    ('SELECT COUNT(*) FROM "sky".object WHERE "flags" = 3', None),
    # unquoted names keep matching any case
    ("SELECT OBJECTID, RA FROM OBJECT WHERE ra > 359", None),
    # WHERE
    ('SELECT objectId FROM Object WHERE "rFlux" > 0 AND "flags" = 2', None),
    ('SELECT objectId FROM Object WHERE "RFLUX" > 0', "42703"),
    # qualifiers: an unquoted alias is spelled in lower case, no alias is the table's name
    ('SELECT "o"."objectId" FROM Object o WHERE o.ra > 359', None),
    ('SELECT "O".ra FROM Object o WHERE ra > 359', "42P01"),
    ('SELECT "O".ra FROM Object AS "O" WHERE O.ra > 359', None),
    ('SELECT "o".ra FROM Object AS "O" WHERE ra > 359', "42P01"),
    ('SELECT "Object".ra FROM object WHERE ra > 359', None),
    ('SELECT "object".ra FROM Object WHERE ra > 359', "42P01"),
    # JOIN ... ON
    (
        'SELECT o."objectId", s."sourceId" FROM "Object" o JOIN "Source" s ON o."objectId" = s."objectId" '
        "WHERE o.ra > 359",
        None,
    ),
    ('SELECT o.objectId FROM Object o JOIN Source s ON o.objectId = s."objectID" WHERE o.ra > 359', "42703"),
    ('SELECT o.objectId FROM Object o JOIN "source" s ON o.objectId = s.objectId', "42P01"),
    # ORDER BY, GROUP BY, HAVING: aliases and output names
    ('SELECT ra AS "Ra" FROM Object WHERE ra > 359 ORDER BY "Ra"', None),
    ('SELECT ra AS "Ra" FROM Object WHERE ra > 359 ORDER BY "ra"', None),  # the input column
    ('SELECT ra AS "Ra" FROM Object WHERE ra > 359 ORDER BY "RA"', "42703"),
    ('SELECT ra AS Big FROM Object WHERE ra > 359 ORDER BY "big"', None),  # folded, as PG
    ('SELECT ra AS Big FROM Object WHERE ra > 359 ORDER BY "Big"', "42703"),
    ('SELECT objectId, "rMag" FROM Object WHERE ra > 359 ORDER BY "rMag", "objectId"', None),
    ('SELECT objectId FROM Object WHERE ra > 359 ORDER BY "rmag"', "42703"),
    (
        'SELECT flags AS "F", COUNT(*) AS "MyCount" FROM Object GROUP BY "F" HAVING "F" > 1 ORDER BY "MyCount"',
        None,
    ),
    ('SELECT flags AS "F", COUNT(*) FROM Object GROUP BY "f"', "42703"),
    ('SELECT "flags", COUNT(*) FROM Object GROUP BY "flags" HAVING COUNT("gFlux") > 10', None),
    ('SELECT flags, COUNT(*) FROM Object GROUP BY flags HAVING MAX("Decl") > 80', "42703"),
]


@pytest.fixture(scope="module")
def adql() -> AdqlCluster:
    return AdqlCluster()


def _check(cluster: FakeCluster, sql: str, sqlstate: str | None) -> None:
    expected = cluster.reference(sql)
    assert expected.sqlstate == sqlstate and expected.refused == (sqlstate is not None), (sql, expected)
    outcome = cluster.check(sql)
    assert (outcome is None) == (sqlstate is not None), sql


@pytest.mark.parametrize(("sql", "sqlstate"), CASES)
def test_postgresql_session(cluster: FakeCluster, sql: str, sqlstate: str | None) -> None:
    _check(cluster, sql, sqlstate)


@pytest.mark.parametrize(("sql", "sqlstate"), CASES)
def test_adql_session(adql: AdqlCluster, sql: str, sqlstate: str | None) -> None:
    _check(adql, sql, sqlstate)


def test_result_names_keep_the_quoted_spelling(cluster: FakeCluster) -> None:
    outcome = cluster.check('SELECT COUNT(*) AS "MyCount", MAX(ra) AS "maxRA" FROM Object')
    assert outcome is not None
    assert outcome.table.column_names == ["MyCount", "maxRA"]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT `OBJECTID`, `Ra` FROM `OBJECT` WHERE `RA` > 359",
        "SELECT `o`.`OBJECTID` FROM `sky`.`object` `O` WHERE `o`.ra > 359 ORDER BY `OBJECTID`",
    ],
)
def test_mysql_quotes_match_any_case(cluster: FakeCluster, sql: str) -> None:
    """MySQL sessions (and backticks in PostgreSQL sessions) stay case-insensitive."""
    for dialect in ("mysql", "postgresql"):
        assert cluster.check(sql, dialect=dialect) is not None, (dialect, sql)
