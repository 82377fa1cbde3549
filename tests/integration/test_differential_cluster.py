"""The differential suite against a real cluster: every query shape, through psycopg, equals DuckDB.

The generated catalog of ``tests/differential/catalog.py`` (rows on chunk edges, in the
overlap, at the poles, across ra = 0/360, in dense clumps, with NULLs) is written to Parquet
(Object, Filter) and CSV (Source, with ``--schema``), loaded into a 3-worker, 2-replica
cluster through the real ``qserv load`` command, and every hand-written shape of the
differential suite plus the seeded generated queries run through psycopg.

The reference is one DuckDB holding the generated Arrow tables (not the loaded files, so a
lossy load path shows up as a difference). It runs the query as the user wrote it, with the
few qserv/ADQL-only spellings (areaspec restrictors, TOP, DIV, MOD, ``<=>``) translated by
:func:`duckdb_spelling` here, independently of the czar's analyzer; only what that cannot
translate falls back to the analyzer's ``reference_sql``. Names, PostgreSQL types and rows
must all match, with results in text and in binary format.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from czar.analyze import analyze
from czar.parse import parse
from czar.pgwire.types import pg_type_for
from qserv.sphere.scisql import install_macros
from tests.cluster import LiveCluster, running_cluster
from tests.differential.catalog import DATABASE, GeneratedCatalog, generate
from tests.differential.harness import assert_same, assert_same_rows
from tests.differential.test_differential import QUERIES
from tests.differential.test_generated import generate_query

# the cluster's default partitioning (order 5): generated boundary rows sit on its chunk edges
ORDER = 5
GENERATED_SEEDS = range(100)

SOURCE_SCHEMA = """CREATE TABLE Source (
    sourceId BIGINT, objectId BIGINT, ra DOUBLE, decl DOUBLE, psfFlux DOUBLE, filterId INTEGER
)"""


def _write(generated: GeneratedCatalog, out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {"Object": out / "object.parquet", "Source": out / "source.csv", "Filter": out / "filter.parquet"}
    pq.write_table(generated.data["Object"], paths["Object"])
    pq.write_table(generated.data["Filter"], paths["Filter"])
    pacsv.write_csv(generated.data["Source"], paths["Source"])
    (out / "source.sql").write_text(SOURCE_SCHEMA)
    return paths


def _load(tc: LiveCluster, paths: dict[str, Path]) -> None:
    db = ["--database", DATABASE, "--no-progress"]
    tc.load(*db, "--table", "Object", "--director", "--id", "objectId", "--lon", "ra", "--lat", "decl",
            str(paths["Object"]))  # fmt: skip
    tc.load(*db, "--table", "Source", "--child-of", "Object", "--key", "objectId",
            "--schema", str(paths["Source"].parent / "source.sql"), str(paths["Source"]))  # fmt: skip
    tc.load(*db, "--table", "Filter", "--regular", str(paths["Filter"]))


@pytest.fixture(scope="module")
def generated() -> GeneratedCatalog:
    return generate(order=ORDER)


@pytest.fixture(scope="module")
def diff_cluster(
    tmp_path_factory: pytest.TempPathFactory, generated: GeneratedCatalog
) -> Iterator[LiveCluster]:
    tmp = tmp_path_factory.mktemp("differential")
    with running_cluster(tmp, workers=3, replicas=2, objects=0) as tc:
        _load(tc, _write(generated, tmp / "input"))
        yield tc


@pytest.fixture(scope="module")
def conn(diff_cluster: LiveCluster) -> Iterator[psycopg.Connection]:
    with diff_cluster.connect() as c:
        yield c


@pytest.fixture(scope="module")
def single(generated: GeneratedCatalog) -> Iterator[duckdb.DuckDBPyConnection]:
    """One DuckDB holding the generated tables in schema ``sky`` (also the search path)."""
    ref = duckdb.connect()
    install_macros(ref)
    ref.execute(f'CREATE SCHEMA "{DATABASE}"')
    for name, data in generated.data.items():
        ref.register("__load", data)
        ref.execute(f'CREATE TABLE "{DATABASE}"."{name}" AS SELECT * FROM __load')
        ref.unregister("__load")
    ref.execute(f"USE {DATABASE}")
    yield ref
    ref.close()


_AREASPEC = re.compile(r"qserv_areaspec_(box|circle)\(((?:[^()]|\([^()]*\))*)\)", re.I)
_DIRECTOR_ALIAS = re.compile(r"\bObject\s+(?:AS\s+)?(?!WHERE|JOIN|LEFT|GROUP|ORDER|LIMIT)(\w+)", re.I)
_TOP = re.compile(r"^\s*SELECT\s+TOP\s+(\d+)\s+", re.I)


def duckdb_spelling(sql: str) -> str:
    """``sql`` with qserv/ADQL-only forms in DuckDB's words (a test-side, independent rewrite).

    >>> duckdb_spelling("SELECT TOP 2 ra DIV 10 FROM Object o WHERE qserv_areaspec_circle(1, 2, 3)")
    'SELECT ra // 10 FROM Object o WHERE (scisql_s2PtInCircle(o.ra, o.decl, 1, 2, 3) = 1) LIMIT 2'
    """
    alias = _DIRECTOR_ALIAS.search(sql)
    prefix = f"{alias.group(1)}." if alias else ""

    def region(m: re.Match[str]) -> str:
        name = "scisql_s2PtInBox" if m.group(1).lower() == "box" else "scisql_s2PtInCircle"
        return f"({name}({prefix}ra, {prefix}decl, {m.group(2)}) = 1)"

    out = _AREASPEC.sub(region, sql)
    out = re.sub(r"\bDIV\b", "//", out, flags=re.I)
    out = re.sub(r"\bMOD\b(?!\s*\()", "%", out, flags=re.I)
    out = out.replace("<=>", "IS NOT DISTINCT FROM")
    if top := _TOP.match(out):
        out = f"SELECT {out[top.end() :]} LIMIT {top.group(1)}"
    return out


def reference(single: duckdb.DuckDBPyConnection, generated: GeneratedCatalog, sql: str) -> pa.Table:
    """DuckDB's answer to ``sql`` (in DuckDB's spelling), else to the analyzer's reference SQL."""
    try:
        return single.sql(duckdb_spelling(sql)).to_arrow_table()
    except duckdb.Error:
        pass  # a form the test-side rewrite does not know: trust the analyzer's spelling
    analyzed = analyze(parse(sql), generated.catalog, DATABASE)
    return single.sql(analyzed.reference_sql()).to_arrow_table()


def check(
    conn: psycopg.Connection,
    single: duckdb.DuckDBPyConnection | pa.Table,
    generated: GeneratedCatalog,
    sql: str,
    binary: bool = False,
) -> None:
    """Run ``sql`` on the cluster through psycopg and on DuckDB: same names, types and rows.

    ``single`` may be the reference's answer itself (computed beforehand, for threads).
    """
    expected = single if isinstance(single, pa.Table) else reference(single, generated, sql)
    cur = conn.cursor(binary=binary).execute(sql)
    assert cur.description is not None, sql
    names = [d.name for d in cur.description]
    oids = [d.type_code for d in cur.description]
    assert names == expected.column_names, f"{sql}\nnames {names} != {expected.column_names}"
    want_oids = [pg_type_for(t).oid for t in expected.schema.types]
    assert oids == want_oids, f"{sql}\ntype oids {oids} != {want_oids} ({expected.schema})"
    rows = cur.fetchall()
    columns: list[list[object]] = [[row[i] for row in rows] for i in range(len(names))]
    got = pa.Table.from_arrays(
        [pa.array(list(c), type=t) for c, t in zip(columns, expected.schema.types, strict=True)],
        schema=expected.schema,
    )
    ordered = analyze(parse(sql), generated.catalog, DATABASE).tree.args.get("order") is not None
    assert_same(got, expected, ordered=ordered, sql=sql)


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
@pytest.mark.parametrize("sql", QUERIES)
def test_shape_matches_single_duckdb(
    conn: psycopg.Connection,
    single: duckdb.DuckDBPyConnection,
    generated: GeneratedCatalog,
    sql: str,
    binary: bool,
) -> None:
    check(conn, single, generated, sql, binary)


@pytest.mark.parametrize("seed", GENERATED_SEEDS)
def test_generated_query_matches_single_duckdb(
    conn: psycopg.Connection, single: duckdb.DuckDBPyConnection, generated: GeneratedCatalog, seed: int
) -> None:
    check(conn, single, generated, generate_query(seed))


def test_every_row_was_loaded(conn: psycopg.Connection, generated: GeneratedCatalog) -> None:
    for name, data in generated.data.items():
        assert conn.execute(f"SELECT COUNT(*) FROM {name}").fetchone() == (data.num_rows,)


def test_concurrent_clients_get_their_own_answers(
    diff_cluster: LiveCluster, single: duckdb.DuckDBPyConnection, generated: GeneratedCatalog
) -> None:
    """Six connections at once, each its own queries: shared merge engine, dispatch, sessions."""
    queries = [*QUERIES[:30], *(generate_query(seed) for seed in range(200, 230))]
    expected = {sql: reference(single, generated, sql) for sql in queries}

    def client(part: list[str]) -> None:
        with diff_cluster.connect() as c:
            for i, sql in enumerate(part):
                check(c, expected[sql], generated, sql, binary=i % 2 == 1)

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
    conn: psycopg.Connection,
    single: duckdb.DuckDBPyConnection,
    sql: str,
    params: tuple[object, ...],
    prepare: bool,
) -> None:
    """Extended protocol (Parse/Bind with typed parameters), unnamed and named statements."""
    expected = single.execute(duckdb_spelling(sql.replace("%s", "?")), list(params)).fetchall()
    got = conn.execute(sql, params, prepare=prepare).fetchall()
    assert_same_rows(got, expected, ordered="ORDER BY" in sql, sql=f"{sql} {params}")


def test_lookups_and_cones_reuse_their_shapes_plan(
    diff_cluster: LiveCluster,
    conn: psycopg.Connection,
    single: duckdb.DuckDBPyConnection,
    generated: GeneratedCatalog,
) -> None:
    """Point lookups and cone searches by bound parameters: right rows for each, planned from
    the first query of each shape (czar/generic.py)."""
    lookup = "SELECT objectId, ra, name FROM Object WHERE objectId = %s AND flags >= 0"
    cone = "SELECT objectId, decl FROM Object WHERE qserv_areaspec_circle(%s, %s, %s) AND flags >= 0"
    ids = generated.data["Object"].column("objectId").to_pylist()[:30] + [7, 10**12]
    rng = np.random.default_rng(5)
    cones = [
        (float(rng.uniform(0, 360)), float(rng.uniform(0, 80)), float(rng.uniform(0.1, 5))) for _ in range(20)
    ]
    queries = [(lookup, (key,)) for key in ids] + [(cone, c) for c in cones]
    for i, (sql, params) in enumerate(queries):
        got = conn.execute(sql, params, binary=i % 2 == 1).fetchall()
        expected = single.execute(duckdb_spelling(sql).replace("%s", "?"), list(params)).fetchall()
        assert_same_rows(got, expected, ordered=False, sql=f"{sql} {params}")
    log = (diff_cluster.spec.data_dir / "logs" / "czar.log").read_text()
    planned = re.findall(r"query done .*?planning=(\w+)", log)[-len(queries) :]
    # the first of each shape plans in full, and so does each metadata snapshot refresh
    assert planned.count("generic") >= len(queries) - 6, planned
