"""Session dialects end to end: psycopg sessions choose MySQL with ``options='-c
qserv.dialect=mysql'`` or ``SET qserv.dialect``, and each query means what it means in its
session's dialect, checked against the independent reference reading it in that dialect
(tests/differential/mysql_reference.py) on the differential suite's generated catalog.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from tests.cluster import LiveCluster
from tests.differential.catalog import GeneratedCatalog
from tests.differential.reference import Reference
from tests.differential.test_mysql_dialect import CONFLICTS, MYSQL
from tests.integration.test_differential_cluster import check, diff_cluster, generated, single

__all__ = ["diff_cluster", "generated", "single"]  # the differential suite's cluster fixtures

MYSQL_OPTIONS = "-c qserv.dialect=mysql"


@pytest.fixture(scope="module")
def mysql_single(generated: GeneratedCatalog) -> Reference:
    """The independent reference reading queries as MySQL (tests/differential/mysql_reference.py)."""
    return Reference(generated, "mysql")


@pytest.fixture(scope="module")
def mysql(diff_cluster: LiveCluster) -> Iterator[psycopg.Connection]:
    with psycopg.connect(diff_cluster.dsn, autocommit=True, options=MYSQL_OPTIONS) as c:
        yield c


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
@pytest.mark.parametrize("sql", MYSQL)
def test_mysql_session_matches_the_mysql_reference(
    mysql: psycopg.Connection, mysql_single: Reference, sql: str, binary: bool
) -> None:
    expected = mysql_single.answer(sql)
    assert not expected.refused, sql
    check(mysql, expected, sql, binary)


def test_set_show_reset(diff_cluster: LiveCluster, single: Reference, mysql_single: Reference) -> None:
    with diff_cluster.connect() as conn:
        assert conn.execute("SHOW qserv.dialect").fetchone() == ("postgresql",)
        for sql in CONFLICTS:  # the same text, planned (and cached) once per dialect
            check(conn, single.answer(sql), sql)
        conn.execute("SET qserv.dialect = 'MySQL'")
        assert conn.execute("SHOW qserv.dialect").fetchone() == ("mysql",)
        for sql in CONFLICTS:
            check(conn, mysql_single.answer(sql), sql)
        plan = "\n".join(
            r[0] for r in conn.execute("EXPLAIN SELECT objectId FROM Object WHERE flags = 1 || flags = 2")
        )
        assert '"flags" = 1 OR' in plan, plan
        conn.execute("RESET qserv.dialect")
        assert conn.execute("SHOW qserv.dialect").fetchone() == ("postgresql",)
        check(conn, single.answer(CONFLICTS[1]), CONFLICTS[1])
        conn.execute("SET qserv.dialect TO mysql")
        conn.execute("SET qserv.dialect TO DEFAULT")
        assert conn.execute("SHOW qserv.dialect").fetchone() == ("postgresql",)


def test_startup_option_is_the_session_default(mysql: psycopg.Connection) -> None:
    assert mysql.execute("SHOW qserv.dialect").fetchone() == ("mysql",)
    mysql.execute("SET qserv.dialect = postgresql")
    assert mysql.execute("SELECT 2 ^ 3 AS p").fetchone() == (8.0,)
    mysql.execute("RESET qserv.dialect")  # back to the startup setting, as in PostgreSQL
    assert mysql.execute("SHOW qserv.dialect").fetchone() == ("mysql",)
    assert mysql.execute("SELECT 2 ^ 3 AS p").fetchone() == (1,)


def test_generic_plans_are_per_dialect(diff_cluster: LiveCluster, mysql: psycopg.Connection) -> None:
    sql = "SELECT objectId, flags ^ 2 AS p FROM Object WHERE objectId = {}"
    with diff_cluster.connect() as conn:
        for key in (1003, 1006):  # the second is planned from the first's template
            postgres = conn.execute(sql.format(key)).fetchone()
            bits = mysql.execute(sql.format(key)).fetchone()
            flags = conn.execute(f"SELECT flags FROM Object WHERE objectId = {key}").fetchone()
            assert postgres is not None and bits is not None and flags is not None
            assert (postgres, bits) == ((key, float(flags[0] ** 2)), (key, flags[0] ^ 2))


def test_invalid_dialect_is_refused(diff_cluster: LiveCluster) -> None:
    with diff_cluster.connect() as conn:
        with pytest.raises(psycopg.errors.InvalidParameterValue) as info:
            conn.execute("SET qserv.dialect = 'oracle'")
        assert info.value.diag.message_primary == 'invalid value for parameter "qserv.dialect": "oracle"'
        assert info.value.diag.message_hint == "Available values: adql, mysql, postgresql."
        assert conn.execute("SHOW qserv.dialect").fetchone() == ("postgresql",)
    with pytest.raises(psycopg.OperationalError) as refused:
        psycopg.connect(diff_cluster.dsn, autocommit=True, options="-c qserv.dialect=sybase")
    assert 'invalid value for parameter "qserv.dialect": "sybase"' in str(refused.value)
    with psycopg.connect(diff_cluster.dsn, autocommit=True, options="-c qserv.dialect=adql") as adql:
        assert len(adql.execute("SELECT TOP 1 objectId FROM Object").fetchall()) == 1
        assert adql.execute("SELECT LOG(100.0) AS l").fetchone()[0] == pytest.approx(4.605170185988092)


@pytest.mark.parametrize("options", ["", MYSQL_OPTIONS], ids=["postgresql", "mysql"])
def test_bound_parameters_mean_the_same_in_every_dialect(diff_cluster: LiveCluster, options: str) -> None:
    # a backslash is an escape character in MySQL's strings: bound values must not depend on it
    texts = ["a\\b", "\\", "it's \\' x", "\\x41\\n"]
    with psycopg.connect(diff_cluster.dsn, autocommit=True, options=options) as conn:
        for text in texts:
            assert conn.execute("SELECT %s AS s", [text]).fetchone() == (text,)
            assert conn.execute("SELECT %b AS s", [text]).fetchone() == (text,)
        blob = b"\x00\\\xff'A"
        assert conn.execute("SELECT %s AS b", [blob]).fetchone() == (blob,)
        assert conn.execute("SELECT %b AS b", [blob]).fetchone() == (blob,)
        rows = conn.execute("SELECT objectId FROM Object WHERE name = %s OR name = %s", ["obj1\\", "obj3"])
        expected = conn.execute("SELECT objectId FROM Object WHERE name = 'obj3'").fetchall()
        assert sorted(rows.fetchall()) == sorted(expected)


def test_bit_operand_beyond_64_bits_is_refused(mysql: psycopg.Connection) -> None:
    # MySQL clamps such an operand to 2^64 - 1; qserv refuses rather than answer otherwise
    with pytest.raises(psycopg.errors.NumericValueOutOfRange) as info:
        mysql.execute("SELECT objectId, rFlux * 1e18 << 1 AS s FROM Object WHERE rFlux > 50").fetchall()
    assert info.value.diag.message_primary == "uint64 out of range"
    assert mysql.execute("SELECT 1 << 1 AS s").fetchone() == (2,)


@pytest.mark.parametrize("options", ["", "-c qserv.dialect=adql"], ids=["postgresql", "adql"])
def test_quoted_names_match_exactly(diff_cluster: LiveCluster, single: Reference, options: str) -> None:
    """Double-quoted names match only their spelling (PostgreSQL, ADQL 2.1 §2.1.3); unquoted any
    case; the refusal is PostgreSQL's, at the name (README "Identifiers")."""
    with psycopg.connect(diff_cluster.dsn, autocommit=True, options=options) as conn:
        sql = 'SELECT "objectId" FROM "Object" WHERE "flags" = 3'
        rows = conn.execute(sql).fetchall()
        expected = single.answer(sql)
        assert not expected.refused and sorted(rows) == sorted(expected.full)
        cur = conn.execute('SELECT COUNT(*) AS "MyCount" FROM "sky"."Object" WHERE ra >= 0')
        assert cur.description is not None and cur.description[0].name == "MyCount"
        with pytest.raises(psycopg.errors.UndefinedColumn) as column:
            conn.execute('SELECT "OBJECTID" FROM Object')
        assert column.value.diag.sqlstate == "42703"
        assert column.value.diag.message_primary.startswith('column "OBJECTID" does not exist')
        assert column.value.diag.statement_position == "8"
        with pytest.raises(psycopg.errors.UndefinedTable) as table:
            conn.execute('SELECT objectId FROM "object"')
        assert table.value.diag.message_primary.startswith('relation "sky.object" does not exist')
        assert table.value.diag.statement_position == "22"


def test_mysql_session_names_match_any_case(mysql: psycopg.Connection, mysql_single: Reference) -> None:
    sql = "SELECT `OBJECTID`, `o`.`Ra` FROM `sky`.`Object` `O` WHERE `FLAGS` = 3"
    rows = mysql.execute(sql).fetchall()
    expected = mysql_single.answer(sql)
    assert not expected.refused and sorted(rows) == sorted(expected.full)
