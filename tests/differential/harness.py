"""An in-process cluster of DuckDB "workers" and an independent reference, for differential tests.

``FakeCluster`` stores a generated catalog with the worker storage layout (director tables with
``_chunk``/``_subchunk``, children with their director row's ``_chunk``, regular tables whole),
each chunk on two of N in-memory DuckDB connections, one placement per partitioning family.
``run(sql)`` goes parse -> analyze -> plan -> (each batch on its worker) -> merge;
``reference(sql)`` is :class:`tests.differential.reference.Reference`'s answer (one plain
DuckDB running the query as written, spatial functions computed with numpy); ``check(sql)``
compares the two, and :func:`assert_matches` is the one comparison both harnesses use.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
from sqlglot import exp

from czar import steps
from czar.analyze import AnalyzedQuery, analyze
from czar.analyze.guard import guard
from czar.analyze.subqueries import Program, decompose, has_subqueries
from czar.far import far_part
from czar.merge import MergeEngine, merge, planned_table
from czar.parse import parse
from czar.plan import PlanContext, QueryPlan, plan
from czar.plan.assign import assign
from czar.plan.match import MAX_FAR_PAIRS, FarPairs, fetch_plan
from czar.plan.shipped import Shipped, ship, shipped_catalog
from qserv.catalog import CHUNK_COLUMN, OVERLAP_SUFFIX, SUBCHUNK_COLUMN, Catalog, TableKind
from qserv.errors import QservError
from qserv.sphere.healpix import chunk_ids
from qserv.sphere.scisql import install_macros
from tests.differential.catalog import GeneratedCatalog, generate
from tests.differential.overlap import match_copies, overlap_rows
from tests.differential.reference import Answer, Reference, rows_of


@dataclass(frozen=True)
class DictDirectorIndex:
    """Director index over a dict: (db, table) lower -> key -> chunk."""

    index: dict[tuple[str, str], dict[int | str, int]]

    def chunks_for_keys(self, database: str, table: str, keys: Sequence[int | str]) -> frozenset[int]:
        chunks = self.index.get((database.lower(), table.lower()), {})
        return frozenset(chunks[k] for k in keys if k in chunks)

    def chunks_for_range(
        self, database: str, table: str, low: int, high: int, max_chunks: int
    ) -> frozenset[int] | None:
        chunks = self.index.get((database.lower(), table.lower()), {})
        found = frozenset(c for k, c in chunks.items() if isinstance(k, int) and low <= k <= high)
        return found if len(found) <= max_chunks else None


@dataclass(frozen=True)
class Outcome:
    analyzed: AnalyzedQuery  # (None for a program of sub-queries)
    plan: QueryPlan
    table: pa.Table
    program: Program | None = None


class FakeCluster:
    """N in-memory DuckDB workers holding a generated catalog, each chunk on ``replicas`` of them."""

    def __init__(
        self, generated: GeneratedCatalog | None = None, n_workers: int = 3, replicas: int = 2
    ) -> None:
        self.generated = generated or generate()
        self.catalog: Catalog = self.generated.catalog
        self.database = self.generated.database.name
        self.workers = tuple(f"worker-{i + 1}" for i in range(n_workers))
        self.conns = {w: self._connect() for w in self.workers}
        self.nonempty: dict[tuple[str, str], frozenset[int]] = {}
        self.row_counts: dict[tuple[str, str], int] = {}  # as the commits record them
        self.placements: dict[str, dict[int, tuple[str, ...]]] = {}  # family -> chunk -> workers
        index: dict[tuple[str, str], dict[int | str, int]] = {}
        families: dict[str, int] = {}
        for db in self.generated.databases:
            tables = [t for t in self.generated.tables if t.database == db.name]
            stored: dict[str, pa.Table] = {}
            keys: dict[int | str, int] = {}
            for director in (t for t in tables if t.kind is TableKind.DIRECTOR):
                rows = self.generated.rows(director.name, db.name)
                lon = rows.column(director.lon_column or "").to_numpy()
                lat = rows.column(director.lat_column or "").to_numpy()
                chunks = chunk_ids(lon, lat, db.partitioning.order)
                ids = rows.column(director.id_column or "").to_pylist()
                keys = dict(zip(ids, (int(c) for c in chunks), strict=True))
                index[(db.name.lower(), director.name.lower())] = keys
                stored[director.name] = rows.append_column(CHUNK_COLUMN, pa.array(chunks)).append_column(
                    SUBCHUNK_COLUMN, pa.array(chunk_ids(lon, lat, db.partitioning.sub_order))
                )
                overlap = overlap_rows(stored[director.name], director.lon_column or "",
                                       director.lat_column or "", db.partitioning)  # fmt: skip
                stored[director.name + OVERLAP_SUFFIX] = overlap
            for child in (t for t in tables if t.kind is TableKind.CHILD):
                rows = self.generated.rows(child.name, db.name)
                keys = index[(db.name.lower(), (child.director or "").lower())]
                ck = [keys[k] for k in rows.column(child.key_column or "").to_pylist()]
                stored[child.name] = rows.append_column(CHUNK_COLUMN, pa.array(ck, pa.int64()))
            for match in (t for t in tables if t.kind is TableKind.MATCH):
                stored[match.name] = match_copies(self.generated.rows(match.name, db.name), match, index)
            # each family its own placement (shifted), as a real cluster places families apart
            shift = families.setdefault(db.partitioning.family, len(families))
            all_chunks = sorted({int(c) for t in stored.values() for c in t.column(CHUNK_COLUMN).to_pylist()})
            placement = {
                c: tuple(self.workers[(c + k + shift) % n_workers] for k in range(min(replicas, n_workers)))
                for c in all_chunks
            }
            self.placements.setdefault(db.partitioning.family, {}).update(placement)
            for table in tables:
                if table.kind is TableKind.REGULAR:
                    for conn in self.conns.values():
                        self._create(conn, db.name, table.name, self.generated.rows(table.name, db.name))
                    continue
                rows = stored[table.name]
                chunk_col = rows.column(CHUNK_COLUMN).to_numpy()
                self.nonempty[(db.name.lower(), table.name.lower())] = frozenset(
                    int(c) for c in np.unique(chunk_col)
                )
                self.row_counts[(db.name.lower(), table.name.lower())] = rows.num_rows
                for w, conn in self.conns.items():
                    mine = np.array([c for c, ws in placement.items() if w in ws], dtype=np.int64)
                    for name in (table.name, table.name + OVERLAP_SUFFIX):
                        if name in stored:
                            part = stored[name]
                            keep = np.isin(part.column(CHUNK_COLUMN).to_numpy(), mine)
                            self._create(conn, db.name, name, part.filter(pa.array(keep)))
        self.placement = self.placements[self.generated.database.partitioning.family]
        self.director_index = DictDirectorIndex(index)
        self.ref = Reference(self.generated)
        self.other_refs: dict[str, Reference] = {}  # dialect -> its reference, made on first use

    def _connect(self) -> duckdb.DuckDBPyConnection:
        conn = duckdb.connect(":memory:", config={"threads": 1})
        install_macros(conn)
        for db in self.generated.databases:
            conn.execute(f'CREATE SCHEMA "{db.name}"')
        return conn

    def _create(self, conn: duckdb.DuckDBPyConnection, db: str, name: str, data: pa.Table) -> None:
        conn.register("__load", data)
        conn.execute(f'CREATE TABLE "{db}"."{name}" AS SELECT * FROM __load')
        conn.unregister("__load")

    def context(self, workers: Sequence[str] | None = None, family: str | None = None) -> PlanContext:
        return PlanContext(
            placement=self.placements[family] if family else self.placement,
            nonempty_chunks=self.nonempty,
            workers=tuple(workers if workers is not None else self.workers),
            director_index=self.director_index,
            catalog=self.catalog,
            row_counts=self.row_counts,
        )

    def parse(self, sql: str, dialect: str = "postgresql") -> exp.Expr:
        """The session's parse of ``sql`` (in ``dialect``; a subclass speaks another dialect)."""
        return parse(sql, dialect)

    def _parse_in(self, sql: str, dialect: str) -> exp.Expr:
        # the default dialect as parse(sql): subclasses reading their own dialect override it
        return self.parse(sql) if dialect == "postgresql" else self.parse(sql, dialect)

    def analyze(self, sql: str, dialect: str = "postgresql") -> AnalyzedQuery:
        return analyze(self._parse_in(sql, dialect), self.catalog, self.database)

    def _family(self, analyzed: AnalyzedQuery) -> str | None:
        """The family of the query's partitioned tables (the placement a real czar uses)."""
        for ref in analyzed.tables:
            if ref.table.kind is not TableKind.REGULAR:
                db = self.catalog.database(ref.table.database)
                return db.partitioning.family if db is not None else None
        return None

    def run(self, sql: str, workers: Sequence[str] | None = None, dialect: str = "postgresql") -> Outcome:
        """The distributed answer: every batch on its fake worker, then the merge; a query with
        sub-queries runs as the pipeline runs it, step by step (czar/steps.py)."""
        tree = self._parse_in(sql, dialect)
        program = decompose(guard(tree), self.catalog, self.database) if has_subqueries(tree) else None
        if program is None:
            return self._run_analyzed(analyze(tree, self.catalog, self.database), workers)
        engine = MergeEngine()
        ran: list[Outcome] = []

        async def distributed(query: exp.Select, shipped: Shipped) -> tuple[pa.Table, tuple[str, ...]]:
            catalog = shipped_catalog(self.catalog, self.database, shipped)
            ran.append(self._run_analyzed(analyze(query, catalog, self.database), workers, shipped))
            return ran[-1].table, ran[-1].plan.types

        async def local(
            query: exp.Select, tables: Mapping[str, pa.Table]
        ) -> tuple[pa.Table, tuple[str, ...]]:
            return engine.run_local(query.sql(dialect="duckdb"), tables)

        try:
            table, _ = asyncio.run(steps.execute(program, distributed, local))
        finally:
            engine.close()
        if program.names is not None and len(program.names) == table.num_columns:
            table = table.rename_columns(list(program.names))
        # the final query's analysis and plan (None when it ran at the czar)
        last = ran[-1] if ran and not program.final.local else None
        return Outcome(last.analyzed if last else None, last.plan if last else None, table, program)  # type: ignore[arg-type]

    def _run_analyzed(
        self, analyzed: AnalyzedQuery, workers: Sequence[str] | None, shipped: Shipped | None = None
    ) -> Outcome:
        query_plan = ship(
            plan(analyzed, self.context(workers, self._family(analyzed))), self.database, shipped or {}
        )
        if query_plan.rows is not None:  # answered from the row counts, nothing dispatched
            return Outcome(analyzed, query_plan, planned_table(query_plan))
        batches: list[pa.RecordBatch] = []
        schema: pa.Schema | None = None
        for batch in query_plan.batches:
            table = self.conns[batch.worker].sql(batch.sql).to_arrow_table()
            schema = schema or table.schema
            batches.extend(table.cast(schema).to_batches())
        assert schema is not None
        if query_plan.far is not None:
            extra = self._far_rows(query_plan, query_plan.far, workers)
            if extra is not None:
                batches.extend(extra.cast(schema).to_batches())
        return Outcome(analyzed, query_plan, merge(query_plan, batches, schema))

    def _far_rows(
        self,
        query_plan: QueryPlan,
        far: FarPairs,
        workers: Sequence[str] | None,
        bound: int = MAX_FAR_PAIRS,
    ) -> pa.Table | None:
        """The far match pairs' rows, fetched from the fake workers as the pipeline fetches them."""
        live = tuple(workers if workers is not None else self.workers)

        async def fetch(template: str, alias: str, chunk_ids: Sequence[int]) -> pa.Table:
            assignment = assign(chunk_ids, self.placement, live) if chunk_ids else {}
            fetching = fetch_plan(template, alias, assignment, live[0])
            return pa.concat_tables(
                self.conns[b.worker].sql(b.sql).to_arrow_table() for b in fetching.batches
            )

        key = (far.match.database.lower(), far.match.name.lower())
        coroutine = far_part(
            query_plan,
            far,
            fetch,
            self.director_index.chunks_for_keys,
            self.nonempty.get(key, frozenset()),
            bound,
        )
        # a step of a program runs inside the program's event loop: this one in a thread
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, coroutine).result()

    def reference(self, sql: str, dialect: str = "postgresql") -> Answer:
        """The independent single-DuckDB answer (or refusal) to ``sql`` read in ``dialect``."""
        if dialect == self.ref.dialect:
            return self.ref.answer(sql)
        if dialect not in self.other_refs:
            self.other_refs[dialect] = Reference(self.generated, dialect)
        return self.other_refs[dialect].answer(sql)

    def check(self, sql: str, seed: int | None = None, dialect: str = "postgresql") -> Outcome | None:
        """Run ``sql`` (read in the session ``dialect``) both ways and assert agreement: equal
        names, types and valid rows, or both refuse (the czar with a clean error; PostgreSQL's
        SQLSTATE where it is known)."""
        where = f"[seed {seed}] " if seed is not None else ""
        expected = self.reference(sql, dialect)
        try:
            outcome = self.run(sql, dialect=dialect)
        except QservError as e:
            assert expected.refused, f"{where}{sql}\nthe czar refuses ({e.sqlstate} {e}) what DuckDB answers"
            assert_clean_refusal(e.sqlstate, str(e), expected, sql=f"{where}{sql}")
            return None
        except duckdb.Error as e:
            raise AssertionError(
                f"{where}{sql}\nthe czar fails inside DuckDB (leaks its wording): {e}"
            ) from None
        assert not expected.refused, (
            f"{where}{sql}\nthe czar answers what the reference refuses: {expected.error}"
        )
        assert_matches(outcome.table, expected, sql=f"{where}{sql}")
        return outcome


_INTERNAL = ("_q_", "Binder Error", "Catalog Error", "Parser Error", "<class", "Traceback", "sqlglot")


def assert_clean_refusal(sqlstate: str | None, message: str, expected: Answer, *, sql: str) -> None:
    """A refusal a client may see: a SQLSTATE (PostgreSQL's, where the reference knows it), no
    internal error, no internal name or another engine's wording."""
    assert sqlstate and not sqlstate.startswith("XX"), f"{sql}\ninternal error {sqlstate}: {message}"
    assert not any(w in message for w in _INTERNAL), f"{sql}\nthe refusal leaks internals: {message}"
    if expected.sqlstate is not None:
        assert sqlstate == expected.sqlstate, (
            f"{sql}\nrefused with {sqlstate} ({message}); PostgreSQL says {expected.sqlstate}: {expected.error}"
        )


def assert_matches(got: pa.Table, expected: Answer, *, sql: str) -> None:
    """The czar's table against the reference: names, types, then a valid set/order of rows."""
    assert expected.table is not None
    assert got.column_names == expected.table.column_names, (
        f"{sql}\nnames {got.column_names} != DuckDB's {expected.table.column_names}"
    )
    assert got.schema.types == expected.table.schema.types, (
        f"{sql}\ntypes {got.schema} != {expected.table.schema}"
    )
    assert_valid_answer(rows_of(got), expected, sql=sql)


def assert_valid_answer(got: Sequence[tuple[Any, ...]], expected: Answer, *, sql: str = "") -> None:
    """``got`` is a valid answer: the reference's rows, in an order the ORDER BY allows.

    Rows tied on the ORDER BY keys may come in any order; where LIMIT cuts through a tie group,
    the rows kept from it may be any of the group's rows (a sub-multiset of the whole group,
    which is why the reference ranks its rows without LIMIT).
    """
    sql = sql or expected.sql
    if expected.ranks is None:
        assert_same_rows(got, expected.full, ordered=False, sql=sql)
        return
    stop = len(expected.full) if expected.limit is None else expected.offset + expected.limit
    window = range(expected.offset, min(stop, len(expected.full)))
    assert len(got) == len(window), f"{sql}\n{len(got)} rows != {len(window)} expected"
    groups: dict[int, list[int]] = {}
    for i, rank in enumerate(expected.ranks):
        groups.setdefault(rank, []).append(i)
    kept: dict[int, int] = {}  # rank -> rows of its group inside the window (in order)
    for i in window:
        kept[expected.ranks[i]] = kept.get(expected.ranks[i], 0) + 1
    start = 0
    for rank, count in kept.items():
        members = [expected.full[i] for i in groups[rank]]
        segment = list(got[start : start + count])
        start += count
        if count == len(members) == 1:
            assert _same_row(segment[0], members[0]), f"{sql}\nrow {start - 1}: {segment[0]} != {members[0]}"
        elif count == len(members):
            assert_same_rows(segment, members, ordered=False, sql=sql)
        else:  # LIMIT/OFFSET cut this tie group: any of its rows will do
            _assert_sub_multiset(segment, members, sql=sql)


def _assert_sub_multiset(got: list[tuple[Any, ...]], pool: list[tuple[Any, ...]], *, sql: str) -> None:
    left = list(pool)
    for row in got:
        match = next((j for j, r in enumerate(left) if _same_row(row, r)), None)
        assert match is not None, f"{sql}\nrow {row} is not among the tied rows the ORDER BY allows"
        left.pop(match)


def _same_row(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))


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
        assert _same_row(rg, re_), f"{sql}\nrow {i}: {rg} != {re_}"
