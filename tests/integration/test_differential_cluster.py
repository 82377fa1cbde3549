"""The differential suite against a real cluster: every query shape, through psycopg, equals DuckDB.

The generated catalog of ``tests/differential/catalog.py`` (rows on chunk edges, in the
overlap, at the poles, across ra = 0/360, in dense clumps, with NULLs; a second database
``other`` of another partitioning family) is written to Parquet (Object, Filter, Star, Band)
and CSV (Source, with ``--schema``), loaded into a 3-worker, 2-replica cluster through the real
``qserv load`` command, and every hand-written shape of the differential suite plus the seeded
generated queries run through psycopg.

The reference is :class:`tests.differential.reference.Reference`: one plain DuckDB holding the
generated Arrow tables (not the loaded files, so a lossy load path shows up as a difference),
running the query as the user wrote it, transpiled by sqlglot from the session dialect, with
spatial functions computed by numpy in the test - nothing of the czar's analyzer, planner,
macros or region code, and no fallback to them. Names, PostgreSQL types and rows must all
match (any valid answer where ORDER BY leaves ties), in text and in binary format; where the
reference refuses (PostgreSQL's refusals included), the cluster must refuse cleanly.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from czar.pgwire.types import pg_type_for
from tests.cluster import LiveCluster, running_cluster
from tests.differential.adql_reference import AdqlReference
from tests.differential.catalog import DATABASE, OTHER, GeneratedCatalog, generate
from tests.differential.harness import assert_clean_refusal, assert_matches, assert_valid_answer
from tests.differential.reference import Answer, Reference
from tests.differential.test_adql import ANY_DIALECT as ADQL_GEOMETRY
from tests.differential.test_differential import QUERIES, REFUSED
from tests.differential.test_generated import generate_query

# the cluster's default partitioning (order 5): generated boundary rows sit on its chunk edges
ORDER = 5
GENERATED_SEEDS = range(100)

SOURCE_SCHEMA = """CREATE TABLE Source (
    sourceId BIGINT, objectId BIGINT, ra DOUBLE, decl DOUBLE, psfFlux DOUBLE, filterId INTEGER
)"""


def _write(generated: GeneratedCatalog, out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "Object": out / "object.parquet",
        "Source": out / "source.csv",
        "Filter": out / "filter.parquet",
        "Star": out / "star.parquet",
        "Band": out / "band.parquet",
    }
    for name in ("Object", "Filter"):
        pq.write_table(generated.rows(name), paths[name])
    for name in ("Star", "Band"):
        pq.write_table(generated.rows(name, OTHER), paths[name])
    pacsv.write_csv(generated.rows("Source"), paths["Source"])
    (out / "source.sql").write_text(SOURCE_SCHEMA)
    return paths


def _create_database(tc: LiveCluster, generated: GeneratedCatalog, name: str) -> None:
    """Create a database with the generated catalog's partitioning (HTTP API)."""
    db = next(d for d in generated.databases if d.name == name)
    tc.create_database(name, db.partitioning.order, db.partitioning.sub_order)


def _load(tc: LiveCluster, generated: GeneratedCatalog, paths: dict[str, Path]) -> None:
    for name in (DATABASE, OTHER):
        _create_database(tc, generated, name)
    db = ["--database", DATABASE, "--no-progress"]
    tc.load(*db, "--table", "Object", "--director", "--id", "objectId", "--lon", "ra", "--lat", "decl",
            str(paths["Object"]))  # fmt: skip
    tc.load(*db, "--table", "Source", "--child-of", "Object", "--key", "objectId",
            "--schema", str(paths["Source"].parent / "source.sql"), str(paths["Source"]))  # fmt: skip
    tc.load(*db, "--table", "Filter", "--regular", str(paths["Filter"]))
    other = ["--database", OTHER, "--no-progress"]
    tc.load(*other, "--table", "Star", "--director", "--id", "starId", "--lon", "ra", "--lat", "decl",
            str(paths["Star"]))  # fmt: skip
    tc.load(*other, "--table", "Band", "--regular", str(paths["Band"]))


@pytest.fixture(scope="module")
def generated() -> GeneratedCatalog:
    return generate(order=ORDER)


@pytest.fixture(scope="module")
def diff_cluster(
    tmp_path_factory: pytest.TempPathFactory, generated: GeneratedCatalog
) -> Iterator[LiveCluster]:
    tmp = tmp_path_factory.mktemp("differential")
    with running_cluster(tmp, workers=3, replicas=2, objects=0) as tc:
        _load(tc, generated, _write(generated, tmp / "input"))
        yield tc


@pytest.fixture(scope="module")
def conn(diff_cluster: LiveCluster) -> Iterator[psycopg.Connection]:
    with diff_cluster.connect() as c:
        yield c


@pytest.fixture(scope="module")
def single(generated: GeneratedCatalog) -> Reference:
    """The independent reference: one DuckDB holding the generated tables (session db ``sky``)."""
    return Reference(generated)


def check(conn: psycopg.Connection, expected: Answer, sql: str, binary: bool = False) -> None:
    """Run ``sql`` on the cluster through psycopg: the reference's names, types and rows, or a
    clean refusal where the reference refuses."""
    try:
        cur = conn.cursor(binary=binary).execute(sql)
        rows = cur.fetchall()
    except psycopg.Error as e:
        message = e.diag.message_primary or str(e)
        assert expected.refused, f"{sql}\nthe cluster refuses ({e.sqlstate} {message}) what DuckDB answers"
        assert_clean_refusal(e.sqlstate, message, expected, sql=sql)
        return
    assert not expected.refused, f"{sql}\nthe cluster answers what the reference refuses: {expected.error}"
    assert expected.table is not None and cur.description is not None, sql
    names = [d.name for d in cur.description]
    assert names == expected.table.column_names, (
        f"{sql}\nnames {names} != DuckDB's {expected.table.column_names}"
    )
    want_oids = [pg_type_for(t).oid for t in expected.table.schema.types]
    oids = [d.type_code for d in cur.description]
    assert oids == want_oids, f"{sql}\ntype oids {oids} != {want_oids} ({expected.table.schema})"
    columns = [[row[i] for row in rows] for i in range(len(names))]
    got = pa.Table.from_arrays(
        [pa.array(c, type=t) for c, t in zip(columns, expected.table.schema.types, strict=True)],
        schema=expected.table.schema,
    )
    assert_matches(got, expected, sql=sql)


def literal_sql(sql: str, params: Sequence[object]) -> str:
    """``sql`` with each ``%s`` replaced by its parameter as an SQL literal (the reference's
    spelling of a bound query)."""

    def literal(v: object) -> str:
        if v is None:
            return "NULL"
        if isinstance(v, str):
            return "'" + v.replace("'", "''") + "'"
        return repr(v)

    parts = sql.split("%s")
    assert len(parts) == len(params) + 1, sql
    return "".join(p + literal(v) for p, v in zip(parts, params, strict=False)) + parts[-1]


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
@pytest.mark.parametrize("sql", QUERIES)
def test_shape_matches_single_duckdb(
    conn: psycopg.Connection, single: Reference, sql: str, binary: bool
) -> None:
    expected = single.answer(sql)
    assert not expected.refused, sql  # the corpus holds answerable queries
    check(conn, expected, sql, binary)


@pytest.mark.parametrize("sql", REFUSED)
def test_refused_as_postgresql_refuses(conn: psycopg.Connection, single: Reference, sql: str) -> None:
    expected = single.answer(sql)
    assert expected.refused and expected.sqlstate, sql
    check(conn, expected, sql)


@pytest.mark.parametrize("seed", GENERATED_SEEDS)
def test_generated_query_matches_single_duckdb(
    conn: psycopg.Connection, single: Reference, seed: int
) -> None:
    sql = generate_query(seed)
    try:
        check(conn, single.answer(sql), sql)
    except AssertionError as e:
        raise AssertionError(f"[seed {seed}] {sql}\n{e}") from None


def test_every_row_was_loaded(conn: psycopg.Connection, generated: GeneratedCatalog) -> None:
    for (db, name), data in generated.data.items():
        assert conn.execute(f"SELECT COUNT(*) FROM {db}.{name}").fetchone() == (data.num_rows,)


def test_two_families_plan_on_the_partitioned_tables_family(
    conn: psycopg.Connection, single: Reference
) -> None:
    """A query over sky.Object and other.Band (alphabetically first, another family) counts
    every Object row once: it is planned on sky's chunk placement, not other's."""
    sql = "SELECT COUNT(*), COUNT(b.band) FROM Object o JOIN other.Band b ON b.filterId = o.flags"
    check(conn, single.answer(sql), sql)


def test_concurrent_clients_get_their_own_answers(diff_cluster: LiveCluster, single: Reference) -> None:
    """Six connections at once, each its own queries: shared merge engine, dispatch, sessions."""
    queries = [*QUERIES[:30], *(generate_query(seed) for seed in range(200, 230))]
    expected = {sql: single.answer(sql) for sql in queries}

    def client(part: list[str]) -> None:
        with diff_cluster.connect() as c:
            for i, sql in enumerate(part):
                check(c, expected[sql], sql, binary=i % 2 == 1)

    parts = [queries[i::6] for i in range(6)]
    with ThreadPoolExecutor(len(parts)) as pool:
        for future in [pool.submit(client, part) for part in parts]:
            future.result()


PARAMETERIZED: list[tuple[str, tuple[object, ...]]] = [
    ("SELECT objectId, ra FROM Object WHERE objectId IN (%s, %s, %s)", (1000, 1003, 1006)),
    ("SELECT COUNT(*), AVG(rFlux) FROM Object WHERE qserv_areaspec_circle(%s, %s, %s)", (10.0, 5.0, 1.5)),
    ("SELECT objectId FROM Object WHERE qserv_areaspec_box(%s, %s, %s, %s) AND flags > %s", (359, -5, 1, 5, 2)),
    ("SELECT flags, COUNT(*) FROM Object WHERE name = %s GROUP BY flags", ("obj1",)),
    ("SELECT COUNT(*) FROM Object WHERE name = %s OR name IS NOT DISTINCT FROM %s", ("o'bj;--", None)),
    ("SELECT objectId, rFlux FROM Object WHERE rFlux > %s ORDER BY rFlux DESC LIMIT %s", (12.5, 4)),
    ("SELECT s.sourceId, f.filterName FROM Source s JOIN Filter f ON f.filterId = s.filterId "
     "WHERE s.objectId = %s", (1003,)),
]  # fmt: skip


@pytest.mark.parametrize("prepare", [False, True], ids=["unnamed", "prepared"])
@pytest.mark.parametrize(("sql", "params"), PARAMETERIZED)
def test_parameters_match_single_duckdb(
    conn: psycopg.Connection, single: Reference, sql: str, params: tuple[object, ...], prepare: bool
) -> None:
    """Extended protocol (Parse/Bind with typed parameters), unnamed and named statements."""
    expected = single.answer(literal_sql(sql, params))
    got = conn.execute(sql, params, prepare=prepare).fetchall()
    assert_valid_answer(got, expected, sql=f"{sql} {params}")


def test_lookups_and_cones_reuse_their_shapes_plan(
    diff_cluster: LiveCluster,
    conn: psycopg.Connection,
    single: Reference,
    generated: GeneratedCatalog,
) -> None:
    """Point lookups and cone searches by bound parameters: right rows for each, planned from
    the first query of each shape (czar/generic.py)."""
    lookup = "SELECT objectId, ra, name FROM Object WHERE objectId = %s AND flags >= 0"
    cone = "SELECT objectId, decl FROM Object WHERE qserv_areaspec_circle(%s, %s, %s) AND flags >= 0"
    ids = generated.rows("Object").column("objectId").to_pylist()[:30] + [7, 10**12]
    rng = np.random.default_rng(5)
    cones = [
        (float(rng.uniform(0, 360)), float(rng.uniform(0, 80)), float(rng.uniform(0.1, 5))) for _ in range(20)
    ]
    queries = [(lookup, (key,)) for key in ids] + [(cone, c) for c in cones]
    for i, (sql, params) in enumerate(queries):
        got = conn.execute(sql, params, binary=i % 2 == 1).fetchall()
        assert_valid_answer(got, single.answer(literal_sql(sql, params)), sql=f"{sql} {params}")
    log = (diff_cluster.spec.data_dir / "logs" / "czar.log").read_text()
    planned = re.findall(r"query done .*?planning=(\w+)", log)[-len(queries) :]
    # the first of each shape plans in full, and so does each metadata snapshot refresh
    assert planned.count("generic") >= len(queries) - 6, planned


@pytest.fixture(scope="module")
def adql_single(generated: GeneratedCatalog) -> AdqlReference:
    return AdqlReference(generated)


@pytest.mark.parametrize("sql", ADQL_GEOMETRY)
def test_adql_geometry_matches_single_duckdb(
    conn: psycopg.Connection, adql_single: AdqlReference, sql: str
) -> None:
    """ADQL geometry in a PostgreSQL session, through psycopg (numpy geometry as the reference)."""
    check(conn, adql_single.answer(sql), sql)
