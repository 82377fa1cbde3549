"""Generic plans (czar/generic.py): a rebound plan is exactly the plan full planning gives.

Each case plans one query in full, keeps its template, then plans queries of the same shape
with other keys both ways: the plans (chunks, worker batches, merge) must be equal, and the
rebound plan's answer must equal one DuckDB's.
"""

from __future__ import annotations

import numpy as np
import pytest

from czar.analyze import analyze
from czar.generic import KeyTemplate, rebind, shape_of, template
from czar.merge import merge
from czar.parse import parse
from czar.plan import QueryPlan, plan
from tests.differential.harness import FakeCluster, assert_same

# {0}, {1} ... are director keys; each case gives the key sets to bind (first one makes the template)
KEYED = [
    ("SELECT * FROM Object WHERE objectId = {0}", 1),
    ("SELECT objectId, ra FROM Object WHERE objectId IN ({0}, {1}, {2}) ORDER BY objectId", 3),
    ("SELECT COUNT(*), AVG(rFlux) FROM Object WHERE objectId IN ({0}, {1}) AND flags > 2", 2),
    ("SELECT o.objectId, s.sourceId FROM Object o JOIN Source s ON s.objectId = o.objectId "
     "WHERE o.objectId = {0}", 1),
    ("SELECT s.sourceId, f.filterName FROM Source s JOIN Filter f ON f.filterId = s.filterId "
     "WHERE s.objectId = {0}", 1),
    ("SELECT objectId FROM Object WHERE objectId IN ({0}, {1}) AND objectId = {2}", 3),
    ("SELECT objectId, name FROM Object WHERE name = 'obj1' AND objectId = {0}", 1),
]  # fmt: skip


def _plan(cluster: FakeCluster, sql: str) -> QueryPlan:
    return plan(analyze(parse(sql), cluster.catalog, cluster.database, sql=sql), cluster.context())


def _template(cluster: FakeCluster, sql: str) -> KeyTemplate | None:
    shape = shape_of(sql)
    assert shape is not None
    return template(analyze(parse(sql), cluster.catalog, cluster.database, sql=sql), shape)


def _keys(cluster: FakeCluster, rng: np.random.Generator, n: int) -> list[int]:
    ids = cluster.generated.data["Object"].column("objectId").to_pylist()
    # mostly existing keys, sometimes one no row has
    return [
        int(rng.choice(ids)) if rng.random() < 0.85 else int(rng.integers(10**9, 10**10)) for _ in range(n)
    ]


@pytest.mark.parametrize(("sql", "arity"), KEYED)
def test_rebound_plan_equals_full_plan(cluster: FakeCluster, sql: str, arity: int) -> None:
    rng = np.random.default_rng(7)
    first = sql.format(*_keys(cluster, rng, arity))
    generic = _template(cluster, first)
    assert generic is not None, first
    for _ in range(25):
        query = sql.format(*_keys(cluster, rng, arity))
        shape = shape_of(query)
        assert shape is not None
        rebound = rebind(generic, shape, cluster.context())
        assert rebound == _plan(cluster, query), query


@pytest.mark.parametrize(("sql", "arity"), KEYED[:4])
def test_rebound_plan_answers_like_duckdb(cluster: FakeCluster, sql: str, arity: int) -> None:
    rng = np.random.default_rng(11)
    generic = _template(cluster, sql.format(*_keys(cluster, rng, arity)))
    assert generic is not None
    for _ in range(5):
        query = sql.format(*_keys(cluster, rng, arity))
        shape = shape_of(query)
        assert shape is not None
        rebound = rebind(generic, shape, cluster.context())
        assert rebound is not None
        batches = []
        schema = None
        for batch in rebound.batches:
            table = cluster.conns[batch.worker].sql(batch.sql).to_arrow_table()
            schema = schema or table.schema
            batches.extend(table.cast(schema).to_batches())
        assert schema is not None
        got = merge(rebound, batches, schema)
        assert_same(got, cluster.reference(query), ordered="ORDER BY" in query, sql=query)


def test_string_keys_are_quoted_as_the_full_path_quotes_them(cluster: FakeCluster) -> None:
    sql = "SELECT objectId FROM Object WHERE name = 'x' AND objectId = 1003"
    generic = _template(cluster, sql)
    assert generic is not None
    # the string constant is not a key: another value must not reuse the plan
    other = shape_of("SELECT objectId FROM Object WHERE name = 'o''b;--' AND objectId = 1003")
    assert other is not None and rebind(generic, other, cluster.context()) is None


@pytest.mark.parametrize(
    ("first", "second"),
    [
        # a non-key constant differs
        ("SELECT objectId FROM Object WHERE objectId = 1003 AND flags > 2",
         "SELECT objectId FROM Object WHERE objectId = 1003 AND flags > 3"),
        ("SELECT objectId + 1 FROM Object WHERE objectId = 1003",
         "SELECT objectId + 2 FROM Object WHERE objectId = 1006"),
        # the new key is no integer: the full path plans a scan, never a key lookup
        ("SELECT objectId FROM Object WHERE objectId = 1003",
         "SELECT objectId FROM Object WHERE objectId = 1003.5"),
        ("SELECT objectId FROM Object WHERE objectId = 1003",
         "SELECT objectId FROM Object WHERE objectId = 1e3"),
    ],
)  # fmt: skip
def test_other_constants_plan_in_full(cluster: FakeCluster, first: str, second: str) -> None:
    generic = _template(cluster, first)
    assert generic is not None
    shape = shape_of(second)
    assert shape is not None
    assert rebind(generic, shape, cluster.context()) is None


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT objectId FROM Object",  # no keys
        "SELECT objectId FROM Object WHERE objectId = -1003",  # a negated key: its text is not one token
        "SELECT objectId FROM Object WHERE objectId = 1003 AND qserv_areaspec_circle(10, 5, 1)",
        "SELECT objectId FROM Object WHERE objectId = 1003 OR flags = 1",  # not a conjunct: no key
        "SELECT COUNT(*) FROM Filter",
    ],
)
def test_no_template_where_keys_cannot_vary(cluster: FakeCluster, sql: str) -> None:
    assert _template(cluster, sql) is None


def test_shape_ignores_spacing_and_masks_only_constants() -> None:
    a = shape_of("SELECT ra FROM Object WHERE objectId = 1")
    b = shape_of("select  ra\nFROM Object WHERE objectId=22")
    c = shape_of("SELECT decl FROM Object WHERE objectId = 1")
    d = shape_of("SELECT ra FROM Object WHERE objectId = '1'")
    assert a is not None and b is not None and c is not None and d is not None
    assert a.key != b.key  # keywords keep their spelling: `select` is another text
    assert shape_of("SELECT ra FROM Object WHERE objectId=22") is not None
    assert a.key == shape_of("SELECT ra FROM Object WHERE  objectId =\t22").key  # type: ignore[union-attr]
    assert a.key != c.key and a.key != d.key
    assert shape_of("SELECT 'unterminated") is None
