"""An in-process cluster of DuckDB "workers" and a single-DuckDB reference, for differential tests.

``FakeCluster`` stores a generated catalog with the worker storage layout (director tables with
``_chunk``/``_subchunk``, children with their director row's ``_chunk``, regular tables whole),
each chunk on two of N in-memory DuckDB connections.  ``run(sql)`` goes parse -> analyze ->
plan -> (each batch on its worker) -> merge; ``reference(sql)`` runs the analyzed query on one
DuckDB holding the plain tables; ``check(sql)`` compares the two.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from czar.analyze import AnalyzedQuery, analyze
from czar.merge import merge
from czar.parse import parse
from czar.plan import PlanContext, QueryPlan, plan
from qserv.catalog import CHUNK_COLUMN, SUBCHUNK_COLUMN, Catalog, TableKind
from qserv.sphere.healpix import chunk_ids
from qserv.sphere.scisql import install_macros
from tests.differential.catalog import GeneratedCatalog, generate


@dataclass(frozen=True)
class DictDirectorIndex:
    """Director index over a dict: (db, table) lower -> key -> chunk."""

    index: dict[tuple[str, str], dict[int | str, int]]

    def chunks_for_keys(self, database: str, table: str, keys: Sequence[int | str]) -> frozenset[int]:
        chunks = self.index.get((database.lower(), table.lower()), {})
        return frozenset(chunks[k] for k in keys if k in chunks)


@dataclass(frozen=True)
class Outcome:
    analyzed: AnalyzedQuery
    plan: QueryPlan
    table: pa.Table


class FakeCluster:
    """N in-memory DuckDB workers holding a generated catalog, each chunk on ``replicas`` of them."""

    def __init__(
        self, generated: GeneratedCatalog | None = None, n_workers: int = 3, replicas: int = 2
    ) -> None:
        self.generated = generated or generate()
        self.catalog: Catalog = self.generated.catalog
        self.database = self.generated.database.name
        order = self.generated.database.partitioning.order
        sub_order = self.generated.database.partitioning.sub_order
        self.workers = tuple(f"worker-{i + 1}" for i in range(n_workers))
        self.conns = {w: self._connect() for w in self.workers}
        self.reference_conn = self._connect()
        self.nonempty: dict[tuple[str, str], frozenset[int]] = {}
        index: dict[int | str, int] = {}
        director = next(t for t in self.generated.tables if t.kind is TableKind.DIRECTOR)
        child_tables = [t for t in self.generated.tables if t.kind is TableKind.CHILD]
        dir_data = self.generated.data[director.name]
        lon = dir_data.column(director.lon_column or "").to_numpy()
        lat = dir_data.column(director.lat_column or "").to_numpy()
        dir_chunks = chunk_ids(lon, lat, order)
        keys = dir_data.column(director.id_column or "").to_pylist()
        index = dict(zip(keys, (int(c) for c in dir_chunks), strict=True))
        stored = {
            director.name: dir_data.append_column(CHUNK_COLUMN, pa.array(dir_chunks)).append_column(
                SUBCHUNK_COLUMN, pa.array(chunk_ids(lon, lat, sub_order))
            )
        }
        for child in child_tables:
            data = self.generated.data[child.name]
            ck = [index[k] for k in data.column(child.key_column or "").to_pylist()]
            stored[child.name] = data.append_column(CHUNK_COLUMN, pa.array(ck, pa.int64()))
        all_chunks = sorted({int(c) for c in dir_chunks})
        self.placement = {
            c: tuple(self.workers[(c + k) % n_workers] for k in range(min(replicas, n_workers)))
            for c in all_chunks
        }
        for table in self.generated.tables:
            plain = self.generated.data[table.name]
            self._create(self.reference_conn, table.name, plain)
            if table.kind is TableKind.REGULAR:
                for conn in self.conns.values():
                    self._create(conn, table.name, plain)
                continue
            rows = stored[table.name]
            chunk_col = rows.column(CHUNK_COLUMN).to_numpy()
            self.nonempty[(self.database.lower(), table.name.lower())] = frozenset(
                int(c) for c in np.unique(chunk_col)
            )
            for w, conn in self.conns.items():
                mine = np.array([c for c, ws in self.placement.items() if w in ws], dtype=np.int64)
                self._create(conn, table.name, rows.filter(pa.array(np.isin(chunk_col, mine))))
        self.director_index = DictDirectorIndex({(self.database.lower(), director.name.lower()): index})

    def _connect(self) -> duckdb.DuckDBPyConnection:
        conn = duckdb.connect(":memory:", config={"threads": 1})
        install_macros(conn)
        conn.execute(f'CREATE SCHEMA "{self.database}"')
        return conn

    def _create(self, conn: duckdb.DuckDBPyConnection, name: str, data: pa.Table) -> None:
        conn.register("__load", data)
        conn.execute(f'CREATE TABLE "{self.database}"."{name}" AS SELECT * FROM __load')
        conn.unregister("__load")

    def context(self, workers: Sequence[str] | None = None) -> PlanContext:
        return PlanContext(
            placement=self.placement,
            nonempty_chunks=self.nonempty,
            workers=tuple(workers if workers is not None else self.workers),
            director_index=self.director_index,
            catalog=self.catalog,
        )

    def analyze(self, sql: str) -> AnalyzedQuery:
        return analyze(parse(sql), self.catalog, self.database)

    def run(self, sql: str, workers: Sequence[str] | None = None) -> Outcome:
        """The distributed answer: every batch on its fake worker, then the merge."""
        analyzed = self.analyze(sql)
        query_plan = plan(analyzed, self.context(workers))
        batches: list[pa.RecordBatch] = []
        schema: pa.Schema | None = None
        for batch in query_plan.batches:
            table = self.conns[batch.worker].sql(batch.sql).to_arrow_table()
            schema = schema or table.schema
            batches.extend(table.cast(schema).to_batches())
        assert schema is not None
        return Outcome(analyzed, query_plan, merge(query_plan, batches, schema))

    def reference(self, sql: str) -> pa.Table:
        """The single-DuckDB answer over the plain tables."""
        return self.reference_conn.sql(self.analyze(sql).reference_sql()).to_arrow_table()

    def check(self, sql: str) -> Outcome:
        """Run ``sql`` both ways and assert equal names, types and rows."""
        outcome = self.run(sql)
        expected = self.reference(sql)
        assert_same(
            outcome.table, expected, ordered=outcome.analyzed.tree.args.get("order") is not None, sql=sql
        )
        return outcome


def _norm(v: Any) -> Any:
    if isinstance(v, float):
        return None if math.isnan(v) else round(v, 6)
    return v


def _sort_key(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple((v is None, "" if v is None else (str(type(v)), v)) for v in (_norm(x) for x in row))


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) and math.isnan(b):
            return True
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return bool(a == b)


def assert_same(got: pa.Table, expected: pa.Table, *, ordered: bool, sql: str = "") -> None:
    """Equal column names, types and rows (order-insensitive unless ``ordered``; floats ~)."""
    assert got.column_names == expected.column_names, (
        f"{sql}\nnames {got.column_names} != {expected.column_names}"
    )
    assert got.schema.types == expected.schema.types, f"{sql}\ntypes {got.schema} != {expected.schema}"
    assert_same_rows(
        [tuple(r.values()) for r in got.to_pylist()],
        [tuple(r.values()) for r in expected.to_pylist()],
        ordered=ordered,
        sql=sql,
    )


def assert_same_rows(
    got: Sequence[tuple[Any, ...]], expected: Sequence[tuple[Any, ...]], *, ordered: bool, sql: str = ""
) -> None:
    """Equal rows, order-insensitive unless ``ordered``; floats equal to 1e-9 relative.

    Floats are never compared exactly: a distributed SUM/AVG adds in another order than one
    DuckDB does, which moves the last bits.
    """
    g, e = list(got), list(expected)
    assert len(g) == len(e), f"{sql}\n{len(g)} rows != {len(e)} expected"
    if not ordered:
        g.sort(key=_sort_key)
        e.sort(key=_sort_key)
    for i, (rg, re_) in enumerate(zip(g, e, strict=True)):
        assert len(rg) == len(re_) and all(_close(a, b) for a, b in zip(rg, re_, strict=True)), (
            f"{sql}\nrow {i}: {rg} != {re_}"
        )
