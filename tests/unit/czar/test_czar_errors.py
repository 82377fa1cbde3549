"""Each refusal: the right SQLSTATE, a message naming the construct, and its position."""

from __future__ import annotations

import pytest

from czar.analyze import analyze
from czar.parse import parse
from qserv.errors import QservError
from tests.differential.catalog import generate

CATALOG = generate(seed=3, n_objects=50).catalog

CASES = [
    # (sql, sqlstate, message fragment, position or None)
    ("SELECT ra FROM Object WHERE", "42601", "syntax error", None),
    ("SELECT 1; SELECT 2", "42601", "one statement", None),
    ("INSERT INTO Object VALUES (1)", "42501", "INSERT", 1),
    ("DROP TABLE Object", "42501", "DROP", 1),
    ("ATTACH 'x.db' AS x", "42501", "ATTACH", 1),
    ("INSTALL httpfs", "42501", "INSTALL", 1),
    ("COPY Object TO '/tmp/x.csv'", "42501", "COPY", 1),
    ("SET threads = 1", "42501", "SET", 1),
    ("PRAGMA version", "42501", "PRAGMA", 1),
    ("SELECT * FROM read_csv('/etc/passwd')", "42501", "read_csv", 15),
    ("SELECT read_parquet('x.parquet') FROM Object", "42501", "read_parquet", 8),
    ("SELECT evil(ra) FROM Object", "42883", "evil", 8),
    ("SELECT ra FROM Nope", "42P01", "Object", 16),
    ("SELECT ra FROM other.Object", "42P01", "other", 16),
    ("SELECT nope FROM Object", "42703", "nope", 8),
    ("SELECT _chunk FROM Object", "42703", "internal", 8),
    ("SELECT o._subchunk FROM Object o", "42703", "internal", None),
    ("SELECT ra FROM Object o JOIN Source s ON s.objectId = o.objectId", "42702", "ambiguous", 8),
    ("SELECT x.ra FROM Object o", "42P01", "x", 8),
    ("SELECT ra FROM Object UNION SELECT ra FROM Object", "0A000", "UNION", None),
    ("SELECT ra FROM (SELECT ra FROM Object) t", "0A000", "sub-queries", None),
    ("WITH t AS (SELECT 1) SELECT * FROM Object", "0A000", "WITH", None),
    ("SELECT ra FROM Object LIMIT 5 OFFSET flags", "0A000", "OFFSET must be an integer constant", None),
    ("SELECT ROW_NUMBER() OVER () FROM Object", "0A000", "window", None),
    ("SELECT MEDIAN(ra) FROM Object", "0A000", "MEDIAN", 8),
    ("SELECT 1 FROM Object a, Object b", "0A000", "self-join", None),
    ("SELECT 1 FROM Object o, Source s", "0A000", "equi-join", None),
    ("SELECT 1 FROM Filter f LEFT JOIN Object o ON o.flags = f.filterId", "0A000", "LEFT JOIN", None),
    ("SELECT 1 FROM Object o RIGHT JOIN Source s ON s.objectId = o.objectId", "0A000", "RIGHT JOIN", None),
    ("SELECT ra FROM Object WHERE qserv_areaspec_box(1, 2, 3)", "22023", "4 numeric", 29),
    (
        "SELECT ra FROM Object WHERE qserv_areaspec_circle(CAST('NaN' AS DOUBLE), 2, 3)",
        "22023",
        "3 numeric",
        29,
    ),
    ("SELECT ra FROM Object WHERE qserv_areaspec_circle(CAST(ra AS DOUBLE), 2, 3)", "22023", "3 numeric", 29),
    ("SELECT filterId FROM Filter WHERE qserv_areaspec_circle(1, 2, 3)", "0A000", "director", None),
    ("SELECT ra, COUNT(*) FROM Object", "42803", "GROUP BY", None),
]


@pytest.mark.parametrize(("sql", "sqlstate", "fragment", "position"), CASES)
def test_refusal(sql: str, sqlstate: str, fragment: str, position: int | None) -> None:
    with pytest.raises(QservError) as info:
        analyze(parse(sql), CATALOG, "sky")
    err = info.value
    assert err.sqlstate == sqlstate, f"{sql}: {err.sqlstate} {err.message}"
    assert fragment.lower() in err.message.lower(), err.message
    if position is not None:
        assert err.position == position, f"{sql}: position {err.position} ({err.message})"


def test_unknown_table_lists_tables() -> None:
    with pytest.raises(QservError) as info:
        analyze(parse("SELECT 1 FROM Objet"), CATALOG, "sky")
    assert "Filter, Object, Source" in info.value.message


def test_identifiers_resolve_case_insensitively() -> None:
    q = analyze(parse('SELECT OBJECTID, `RA` FROM sky.OBJECT WHERE "decl" > 0'), CATALOG, "SKY")
    assert q.columns == ("objectId", "ra")
    assert '"sky"."Object"' in q.reference_sql()


def test_star_never_expands_hidden_columns() -> None:
    q = analyze(parse("SELECT * FROM Object o JOIN Source s ON s.objectId = o.objectId"), CATALOG, "sky")
    assert "_chunk" not in q.columns and "_subchunk" not in q.columns
    assert len(q.columns) == 9 + 6
