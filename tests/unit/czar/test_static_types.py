"""The output pass's catalog typing (czar/analyze/static_types.py) against DuckDB's DESCRIBE.

Result names and types become the wire's, so wherever the catalog typing answers it must say
exactly what DuckDB says, and it must never answer for a query DuckDB refuses. Over a corpus of
query shapes, each is analyzed and its final tree (columns as written) typed both ways.
"""

from __future__ import annotations

import dataclasses

import duckdb
import pytest

from czar.analyze import analyze
from czar.analyze.output import _empty_database, _ref_column_types
from czar.analyze.static_types import static_describe
from czar.parse import parse
from qserv.catalog import Catalog, Column, Table, TableKind
from qserv.errors import QservError
from tests.differential.catalog import generate

_TYPED = Table(
    "sky",
    "Typed",
    TableKind.REGULAR,
    tuple(
        Column(n, t)
        for n, t in [
            ("k", "BIGINT"),
            ("i", "INT"),
            ("s", "SMALLINT"),
            ("t", "TINYINT"),
            ("h", "HUGEINT"),
            ("u", "UINTEGER"),
            ("d", "DOUBLE"),
            ("f", "FLOAT"),
            ("r", "REAL"),
            ("m", "DECIMAL(10,3)"),
            ("n2", "NUMERIC(20,4)"),
            ("b", "BOOLEAN"),
            ("v", "VARCHAR"),
            ("name", "TEXT"),
            ("MixedCase", "DOUBLE"),
            ("dt", "DATE"),
        ]
    ),
)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    base = generate(n_objects=50, order=3, other=False).catalog
    return dataclasses.replace(base, tables=(*base.tables, _TYPED))


_AGGREGATES = (
    "COUNT",
    "SUM",
    "AVG",
    "MIN",
    "MAX",
    "STDDEV",
    "STDDEV_SAMP",
    "STDDEV_POP",
    "VARIANCE",
    "VAR_POP",
)
_COLUMNS = ("k", "i", "s", "t", "h", "u", "d", "f", "r", "m", "n2", "b", "v", "name", "MixedCase", "dt")

CORPUS = [
    *(f"SELECT {a}({c}) FROM Typed" for a in _AGGREGATES for c in _COLUMNS),
    *(f"SELECT {a}(DISTINCT {c}) FROM Typed" for a in ("COUNT", "SUM", "MIN") for c in ("k", "d", "m", "v")),
    *(f"SELECT {c} FROM Typed" for c in _COLUMNS),
    *(f"SELECT {c}, COUNT(*), AVG(d) FROM Typed GROUP BY {c}" for c in _COLUMNS),
    *(
        f"SELECT {a} {op} {b} FROM Typed"
        for a in ("i", "k", "d", "s", "f", "m", "1")
        for b in ("i", "k", "d", "t", "f", "m", "2", "2.5", "3000000000")
        for op in ("+", "-", "*", "/", "%")
    ),
    *(
        f"SELECT {a} {op} {b} AS x FROM Typed"
        for a in ("i", "k", "d", "s", "b", "v")
        for b in ("i", "k", "d", "1", "'a'")
        for op in ("=", "<", "<>")
    ),
    *(
        f"SELECT CAST({c} AS {t}) FROM Typed"
        for c in ("i", "k", "d", "m", "b", "v", "dt")
        for t in (
            "INT",
            "INTEGER",
            "BIGINT",
            "DOUBLE",
            "REAL",
            "FLOAT",
            "VARCHAR",
            "TEXT",
            "BOOLEAN",
            "SMALLINT",
            "DECIMAL(12,2)",
        )
    ),
    *(
        f"SELECT COALESCE({a}, {b}) FROM Typed"
        for a in ("i", "k", "d", "v", "m")
        for b in ("i", "k", "d", "0", "NULL", "'x'", "1.5")
    ),
    *(
        f"SELECT CASE WHEN i > 1 THEN {a} ELSE {b} END AS c FROM Typed"
        for a in ("i", "k", "d", "1", "v", "NULL")
        for b in ("i", "k", "d", "0", "v", "NULL")
    ),
    "SELECT CASE WHEN b THEN 1 END AS c FROM Typed",
    "SELECT CASE i WHEN 1 THEN 2 ELSE 3 END AS c FROM Typed",
    *(
        f"SELECT {fn}({c}) FROM Typed"
        for fn in ("UPPER", "LOWER", "LENGTH", "ABS", "ROUND", "SQRT", "LN")
        for c in ("v", "name", "i", "k", "d")
    ),
    "SELECT v || v FROM Typed",
    "SELECT -i, -d, -k FROM Typed",
    "SELECT -i AS a, -d AS b, -k AS c FROM Typed",
    "SELECT DISTINCT i, v FROM Typed",
    "SELECT DISTINCT i FROM Typed ORDER BY 1",
    "SELECT i, d FROM Typed ORDER BY k",
    "SELECT i FROM Typed WHERE v = 'a' AND d > 1.5 OR k IN (1, 2) AND b IS NULL",
    "SELECT i FROM Typed WHERE k BETWEEN 1 AND 3 LIMIT 5",
    "SELECT i FROM Typed WHERE i = k",
    "SELECT i FROM Typed WHERE v = i",
    "SELECT SUM(i) / COUNT(*) FROM Typed",
    "SELECT SUM(i) AS s1, COUNT(i) AS n FROM Typed",
    "SELECT MAX(i + 1), MIN(d * 2), SUM(k - i) FROM Typed",
    "SELECT AVG(CAST(i AS DOUBLE)) FROM Typed",
    "SELECT COUNT(*) FROM Typed GROUP BY i",
    "SELECT i, COUNT(*) FROM Typed GROUP BY i ORDER BY i",
    "SELECT i, COUNT(*) FROM Typed GROUP BY i ORDER BY 2 DESC",
    "SELECT i, COUNT(*) FROM Typed GROUP BY i HAVING COUNT(*) > 1",
    "SELECT i + 1, COUNT(*) FROM Typed GROUP BY i",
    "SELECT k, COUNT(*) FROM Typed GROUP BY i",
    "SELECT i, COUNT(*) FROM Typed",
    "SELECT i, k FROM Typed GROUP BY i",
    "SELECT SUM(COUNT(*)) FROM Typed",
    "SELECT GFLUX, gflux, Ra FROM Object",
    "SELECT AVG(GFLUX), avg(gFlux), avg(o.gFlux) FROM Object o",
    "SELECT COUNT(*), AVG(gFlux), MIN(decl), MAX(decl) FROM Object WHERE flags > 3",
    "SELECT flags, COUNT(*), AVG(gFlux), SUM(rFlux) FROM Object GROUP BY flags",
    "SELECT o.flags, COUNT(*) AS n FROM Object o WHERE o.decl > -10 GROUP BY o.flags ORDER BY n DESC LIMIT 3",
    "SELECT * FROM Object WHERE objectId = 1003",
    "SELECT objectId, ra, decl FROM Object WHERE qserv_areaspec_circle(10.5, -3.25, 0.1)",
    "SELECT objectId FROM Object WHERE qserv_areaspec_box(1, 2, 3, 4)",
    "SELECT objectId FROM Object WHERE qserv_areaspec_poly(1, 1, 2, 1, 2, 2)",
    "SELECT objectId, scisql_s2PtInCPoly(ra, decl, 1, 1, 2, 1, 2, 2) FROM Object",
    "SELECT scisql_s2PtInCPoly(ra, decl, 1, 1, 2, 1, 2, 2) AS p, COUNT(*) FROM Object GROUP BY p",
    "SELECT objectId FROM Object WHERE qserv_areaspec_ellipse(1, 2, 30, 20, 45)",
    "SELECT objectId, scisql_angSep(ra, decl, 0, 0) FROM Object",
    "SELECT scisql_angSep(ra, decl, 0, 0) AS sep, scisql_fluxToAbMag(gFlux) AS mag FROM Object",
    "SELECT scisql_s2PtInCircle(ra, decl, 1.5, 2.5, 0.1) AS inside FROM Object",
    "SELECT objectId FROM Object WHERE scisql_s2PtInCircle(ra, decl, 1.5, 2.5, 0.1) = 1",
    "SELECT objectId FROM Object WHERE scisql_angSep(ra, decl, 1.5, 2.5) < 0.1",
    "SELECT objectId FROM Object WHERE scisql_angSep(ra, name, 1.5, 2.5) < 0.1",
    "SELECT o.objectId, COUNT(*), AVG(s.psfFlux) FROM Object o JOIN Source s ON s.objectId = o.objectId WHERE o.flags = 2 GROUP BY o.objectId",
    "SELECT o.objectId, s.sourceId, s.psfFlux FROM Object o JOIN Source s ON s.objectId = o.objectId WHERE o.objectId = 1003",
    "SELECT o.objectId, s.psfFlux FROM Object o LEFT JOIN Source s ON s.objectId = o.objectId",
    "SELECT o.name, s.psfFlux FROM Object o JOIN Source s ON o.objectId = s.objectId AND o.name = s.objectId",
    "SELECT s.objectId, COUNT(*) FROM Source s JOIN Object o USING (objectId) GROUP BY s.objectId",
    "SELECT o1.objectId, o2.objectId FROM Object o1, Object o2 WHERE scisql_angSep(o1.ra, o1.decl, o2.ra, o2.decl) < 0.01",
    "SELECT o1.objectId AS a, o2.objectId AS b, scisql_angSep(o1.ra, o1.decl, o2.ra, o2.decl) AS d FROM Object o1, Object o2 WHERE scisql_angSep(o1.ra, o1.decl, o2.ra, o2.decl) < 0.01 AND o1.objectId <> o2.objectId",
    "SELECT COUNT(*) FROM Object o1, Object o2 WHERE scisql_angSep(o1.ra, o1.decl, o2.ra, o2.decl) < 0.01",
    "SELECT f.filterName, COUNT(*) FROM Source s JOIN Filter f ON f.filterId = s.filterId GROUP BY f.filterName",
    "SELECT s.filterId, f.filterName FROM Source s, Filter f WHERE f.filterId = s.filterId",
]


def _duckdb_describe(q) -> tuple[tuple[str, ...], tuple[str, ...]] | str:
    cursor = _empty_database(frozenset(r.table for r in q.tables)).cursor()
    try:
        rows = cursor.execute("DESCRIBE " + q.written_tree().sql(dialect="duckdb")).fetchall()
    except duckdb.Error as e:
        return f"refused: {e}"
    finally:
        cursor.close()
    return tuple(str(r[0]) for r in rows), tuple(str(r[1]) for r in rows)


@pytest.mark.parametrize("sql", CORPUS)
def test_catalog_types_are_duckdbs(sql: str, catalog: Catalog) -> None:
    """Where the catalog typing answers, its names and types are DuckDB DESCRIBE's."""
    try:
        q = analyze(parse(sql), catalog, "sky", sql=sql)
    except QservError:
        return  # refused (by DuckDB's binder among others): nothing was typed without it
    described = _duckdb_describe(q)
    assert (q.columns, q.types) == described, sql  # what the output pass reports, either way
    fast = static_describe(q.tree, q.tables, _ref_column_types)
    if fast is not None:
        assert fast == described, sql


def test_corpus_is_typed_statically(catalog: Catalog) -> None:
    """The corpus proves something: most of it is typed from the catalog, the bench's shapes all."""
    typed = 0
    for sql in CORPUS:
        try:
            q = analyze(parse(sql), catalog, "sky", sql=sql)
        except QservError:
            continue
        typed += static_describe(q.tree, q.tables, _ref_column_types) is not None
    assert typed >= len(CORPUS) // 3
    for sql in [
        "SELECT objectId, ra, decl FROM Object WHERE qserv_areaspec_circle(10.5, -3.25, 0.1)",
        "SELECT * FROM Object WHERE objectId = 1003",
        "SELECT COUNT(*), AVG(gFlux), MIN(decl), MAX(decl) FROM Object WHERE flags > 3",
        "SELECT flags, COUNT(*), AVG(gFlux), SUM(rFlux) FROM Object GROUP BY flags",
        "SELECT o.objectId, COUNT(*), AVG(s.psfFlux) FROM Object o JOIN Source s ON s.objectId = o.objectId WHERE o.flags = 2 GROUP BY o.objectId",
        "SELECT COUNT(*) FROM Object o1, Object o2 WHERE scisql_angSep(o1.ra, o1.decl, o2.ra, o2.decl) < 0.01",
    ]:
        q = analyze(parse(sql), catalog, "sky", sql=sql)
        assert static_describe(q.tree, q.tables, _ref_column_types) is not None, sql


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT AVG(b) FROM Typed",
        "SELECT i, COUNT(*) FROM Typed",
        "SELECT k, COUNT(*) FROM Typed GROUP BY i",
        "SELECT i, k FROM Typed GROUP BY i",
        "SELECT SUM(v) FROM Typed",
        "SELECT o.name FROM Object o JOIN Source s ON o.name = s.objectId",
        "SELECT UPPER(i) AS x FROM Typed",
    ],
)
def test_refused_by_duckdb_still_refused(sql: str, catalog: Catalog) -> None:
    """What DuckDB's binder refuses is refused at analysis, not typed past."""
    with pytest.raises(QservError):
        analyze(parse(sql), catalog, "sky", sql=sql)
