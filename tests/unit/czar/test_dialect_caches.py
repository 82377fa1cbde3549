"""Plans are cached per session dialect: by text and by shape (czar/pipeline.py, czar/generic.py)."""

from __future__ import annotations

from czar.pipeline import Pipeline
from tests.unit.czar.test_query_family import pipeline

__all__ = ["pipeline"]  # the fixture: a pipeline over a metadata store, planning only

SQL = "SELECT objectId, objectId ^ 2 AS p FROM Object WHERE objectId = {}"


def _worker_sql(p: Pipeline, sql: str, dialect: str) -> tuple[str, str]:
    prepared = p.prepare(sql, "sky", dialect)
    return prepared.planning, prepared.plan.batches[0].sql


def test_the_same_text_is_planned_once_per_dialect(pipeline: Pipeline) -> None:
    planning, postgres = _worker_sql(pipeline, SQL.format(5), "postgresql")
    assert planning == "full" and "POWER(" in postgres
    planning, mysql = _worker_sql(pipeline, SQL.format(5), "mysql")
    assert planning == "full" and "XOR(" in mysql and "POWER(" not in mysql
    assert _worker_sql(pipeline, SQL.format(5), "mysql") == ("cached", mysql)
    assert _worker_sql(pipeline, SQL.format(5), "postgresql") == ("cached", postgres)


def test_generic_plans_are_per_dialect(pipeline: Pipeline) -> None:
    for dialect, operator in (("postgresql", "POWER("), ("mysql", "XOR(")):
        assert _worker_sql(pipeline, SQL.format(5), dialect)[0] == "full"
        planning, sql = _worker_sql(pipeline, SQL.format(6), dialect)
        assert planning == "generic" and operator in sql and "6" in sql, (dialect, sql)


def test_explain_reads_the_session_dialect(pipeline: Pipeline) -> None:
    text = "SELECT objectId, (objectId > 3) || (objectId < 9) AS c FROM Object WHERE objectId = 5"
    mysql, postgres = (pipeline.explain(text, "sky", d) for d in ("mysql", "postgresql"))
    assert ") OR (" in mysql and "||" not in mysql, mysql
    assert ") || (" in postgres, postgres
