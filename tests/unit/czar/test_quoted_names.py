"""The resolve and names passes: double-quoted names match exactly in PostgreSQL and ADQL
sessions, unquoted names (and MySQL's backticks) any case (czar/analyze/resolve.py)."""

from __future__ import annotations

import pytest
from sqlglot import exp

from czar.analyze import AnalyzedQuery, analyze
from czar.parse import EXACT, parse
from czar.pipeline import Pipeline
from qserv.errors import QservError
from tests.differential.catalog import generate
from tests.unit.czar.test_query_family import pipeline

__all__ = ["pipeline"]  # the fixture: a pipeline over a metadata store, planning only

CATALOG = generate(seed=3, n_objects=50).catalog


def _analyze(sql: str, dialect: str = "postgresql") -> AnalyzedQuery:
    return analyze(parse(sql, dialect), CATALOG, "sky", sql=sql)


def test_parse_marks_only_double_quoted_names() -> None:
    tree = parse('SELECT "objectId", `ra`, decl FROM "Object"')
    marks = {i.this: bool(i.meta.get(EXACT)) for i in tree.find_all(exp.Identifier)}
    assert marks == {"objectId": True, "ra": False, "decl": False, "Object": True}
    mysql = parse('SELECT `objectId` AS "x" FROM Object', "mysql")  # "x": MySQL's string alias
    assert not any(i.meta.get(EXACT) for i in mysql.find_all(exp.Identifier))


@pytest.mark.parametrize("dialect", ["postgresql", "adql"])
@pytest.mark.parametrize(
    "sql",
    [
        'SELECT "objectId", "ra" FROM "sky"."Object" WHERE "decl" > 0',
        'SELECT "o"."objectId" FROM Object o JOIN "Source" s ON o."objectId" = s."objectId"',
        'SELECT "O".ra FROM Object AS "O"',
        'SELECT "Object".ra FROM object',
        'SELECT ra AS "Ra" FROM Object ORDER BY "Ra", "ra", RA',
        'SELECT ra AS Big FROM Object ORDER BY "big"',
        'SELECT flags AS "F", COUNT(*) FROM Object GROUP BY "F" HAVING "F" > 1',
    ],
)
def test_exact_spelling_binds(sql: str, dialect: str) -> None:
    _analyze(sql, dialect)


@pytest.mark.parametrize("dialect", ["postgresql", "adql"])
@pytest.mark.parametrize(
    ("sql", "sqlstate", "message", "position"),
    [
        ('SELECT "OBJECTID" FROM Object', "42703", 'column "OBJECTID" does not exist', 8),
        ('SELECT objectId FROM Object WHERE "RA" > 1', "42703", 'column "RA" does not exist', 35),
        ('SELECT objectId FROM "object"', "42P01", 'relation "sky.object" does not exist', 22),
        ('SELECT objectId FROM "SKY"."Object"', "42P01", 'relation "SKY.Object" does not exist', 22),
        ('SELECT "O".ra FROM Object o', "42P01", 'missing FROM-clause entry for table "O"', 8),
        ('SELECT "object".ra FROM Object', "42P01", 'missing FROM-clause entry for table "object"', 8),
        ('SELECT ra AS "Ra" FROM Object ORDER BY "RA"', "42703", 'column "RA" does not exist', 40),
        ('SELECT ra AS Big FROM Object ORDER BY "Big"', "42703", 'column "Big" does not exist', 39),
        ('SELECT flags AS "F" FROM Object GROUP BY "f"', "42703", 'column "f" does not exist', 42),
        (
            'SELECT o.ra FROM Object o JOIN Source s ON o.objectId = s."objectid"',
            "42703",
            'column "objectid" does not exist',
            57,
        ),
    ],
)
def test_other_spelling_is_refused(
    sql: str, sqlstate: str, message: str, position: int, dialect: str
) -> None:
    with pytest.raises(QservError) as info:
        _analyze(sql, dialect)
    assert info.value.sqlstate == sqlstate
    assert str(info.value).startswith(message), info.value
    assert info.value.position == position


def test_refusal_hints_the_spelling() -> None:
    with pytest.raises(QservError) as info:
        _analyze('SELECT "OBJECTID" FROM Object')
    assert info.value.hint == 'Names in double quotes are case-sensitive: it is spelled "Object"."objectId".'


def test_mysql_backticks_match_any_case() -> None:
    q = _analyze("SELECT `OBJECTID`, `O`.`RA` FROM `SKY`.`OBJECT` `o` ORDER BY `Objectid`", "mysql")
    assert q.columns == ("objectId", "ra")  # bare columns: named as the catalog spells them
    _analyze("SELECT `OBJECTID` FROM `object`")  # backticks in PostgreSQL sessions: MySQL's meaning


def test_result_names_keep_the_written_spelling() -> None:
    assert _analyze('SELECT COUNT(*) AS "MyCount", "objectId" FROM Object GROUP BY 2').columns == (
        "MyCount",
        "objectId",
    )


def test_a_generic_plan_is_not_shared_by_backticks_and_double_quotes(pipeline: Pipeline) -> None:
    """`x` and "x" tokenize alike, but only the second is case-sensitive (czar/generic.py)."""
    sql = "SELECT {}OBJECTID{} FROM Object WHERE objectId = {}"
    assert pipeline.prepare(sql.format("`", "`", 5), "sky", "postgresql").planning == "full"
    assert pipeline.prepare(sql.format("`", "`", 6), "sky", "postgresql").planning == "generic"
    with pytest.raises(QservError) as info:
        pipeline.prepare(sql.format('"', '"', 7), "sky", "postgresql")
    assert info.value.sqlstate == "42703"
