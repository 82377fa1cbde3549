"""End to end through real clients: psql and psycopg against a 3-worker cluster."""

from __future__ import annotations

import math
import subprocess

import duckdb
import psycopg
import pytest

from tests.cluster import LiveCluster

QUERIES: list[str | tuple[str, str]] = [
    "SELECT COUNT(*) FROM Object",
    "SELECT COUNT(*), SUM(g_psfFlux), MIN(ra), MAX(decl), AVG(r_psfFlux) FROM Object",
    "SELECT extendedness, COUNT(*) AS n, AVG(i_psfFlux) FROM Object GROUP BY extendedness ORDER BY extendedness",
    "SELECT objectId, ra, decl FROM Object WHERE objectId IN (1003, 1006, 4000, 30001) ORDER BY objectId",
    (
        "SELECT objectId FROM Object WHERE qserv_areaspec_circle(10, 5, 2) ORDER BY objectId",
        "SELECT objectId FROM Object WHERE scisql_s2PtInCircle(ra, decl, 10, 5, 2) = 1 ORDER BY objectId",
    ),
    (
        "SELECT COUNT(*) FROM Object WHERE qserv_areaspec_box(350, -5, 10, 5)",
        "SELECT COUNT(*) FROM Object WHERE scisql_s2PtInBox(ra, decl, 350, -5, 10, 5) = 1",
    ),
    "SELECT objectId, ra FROM Object WHERE decl > 80 ORDER BY ra DESC LIMIT 7",
    "SELECT DISTINCT extendedness FROM Object ORDER BY 1",
    "SELECT o.objectId, COUNT(*) AS n, MAX(s.psfFlux) FROM Object o JOIN Source s ON o.objectId = s.objectId "
    "WHERE o.objectId IN (1003, 1006, 1009, 1012) GROUP BY o.objectId ORDER BY o.objectId",
    "SELECT f.filterName, COUNT(*) FROM Source s JOIN Filter f ON s.filterId = f.filterId "
    "GROUP BY f.filterName ORDER BY f.filterName",
    "SELECT COUNT(*) FROM Object WHERE scisql_s2PtInCircle(ra, decl, 200, -30, 3) = 1",
    "SELECT objectId, scisql_angSep(ra, decl, 100, 20) AS d FROM Object "
    "WHERE scisql_angSep(ra, decl, 100, 20) < 1 ORDER BY d LIMIT 5",
    "SELECT extendedness, COUNT(*) FROM Object GROUP BY extendedness HAVING COUNT(*) > 10 ORDER BY 1",
    "SELECT COUNT(*) FROM Object WHERE g_psfFlux IS NULL",
]


def _same(a: list[tuple], b: list[tuple]) -> bool:
    if len(a) != len(b):
        return False
    for ra, rb in zip(a, b, strict=True):
        for x, y in zip(ra, rb, strict=True):
            if isinstance(x, float) or isinstance(y, float):
                if x is None or y is None:
                    if x is not y:
                        return False
                elif not math.isclose(float(x), float(y), rel_tol=1e-9, abs_tol=1e-9):
                    return False
            elif x != y and not (x is not None and y is not None and float(x) == float(y)):
                return False
    return True


@pytest.mark.parametrize("sql", QUERIES)
def test_query_matches_single_duckdb(
    cluster: LiveCluster, reference: duckdb.DuckDBPyConnection, sql: str | tuple[str, str]
) -> None:
    # a pair gives the reference's spelling of a qserv-only construct (areaspec restrictors)
    sql, ref_sql = sql if isinstance(sql, tuple) else (sql, sql)
    got = cluster.query(sql)
    want = reference.execute(ref_sql).fetchall()
    if "ORDER BY" not in sql:
        got, want = sorted(got, key=repr), sorted(want, key=repr)
    assert _same(got, want), f"{sql}\n got: {got[:5]}\nwant: {want[:5]}"


def test_psql_counts_objects(cluster: LiveCluster) -> None:
    out = subprocess.run(
        [
            "psql",
            "-h",
            "127.0.0.1",
            "-p",
            str(cluster.spec.pg_port),
            "-U",
            "qserv",
            "sky",
            "-A",
            "-t",
            "-c",
            "SELECT COUNT(*) FROM Object",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == "20000"


def test_errors_reach_the_client_with_sqlstate(cluster: LiveCluster) -> None:
    with cluster.connect() as conn:
        with pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute("SELECT * FROM NoSuchTable")
        with pytest.raises(psycopg.errors.UndefinedColumn):
            conn.execute("SELECT nope FROM Object")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM Object")
        with pytest.raises(psycopg.errors.SyntaxError) as err:
            conn.execute("SELECT FROM WHERE")
        assert err.value.diag.sqlstate == "42601"
        # the connection stays usable
        assert conn.execute("SELECT COUNT(*) FROM Filter").fetchone() == (6,)


def test_parameters_through_extended_protocol(cluster: LiveCluster) -> None:
    with cluster.connect() as conn:
        rows = conn.execute("SELECT objectId FROM Object WHERE objectId = %s", (1006,)).fetchall()
        assert rows == [(1006,)]
        rows = conn.execute("SELECT COUNT(*) FROM Object WHERE decl > %s", (85.0,), prepare=True).fetchall()
        assert rows[0][0] >= 0


def test_explain_shows_the_plan(cluster: LiveCluster) -> None:
    rows = cluster.query("EXPLAIN SELECT COUNT(*) FROM Object WHERE objectId = 1006")
    text = "\n".join(r[0] for r in rows)
    assert "director" in text.lower()


def test_session_statements_and_functions(cluster: LiveCluster) -> None:
    with cluster.connect() as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("sky",)
        assert conn.execute("SELECT version()").fetchone()[0].startswith("PostgreSQL ")  # type: ignore[index]
        conn.execute("SET application_name = 'notebook'")
        assert conn.execute("SHOW application_name").fetchone() == ("notebook",)
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            conn.execute("SELECT COUNT(*) FROM Object WHERE qserv_areaspec_box(10, 95, 20, 100)")
