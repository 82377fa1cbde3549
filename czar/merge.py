"""Stage 5: worker Arrow batches -> the client's result, through a czar-side DuckDB.

The worker batches (already in the czar's memory) are registered as view ``__result`` of an
in-memory DuckDB (with the spatial macros, since merge expressions may call them) and
``plan.merge_sql`` runs over them, without copying them into a table first (which cost ~1 ms,
a third of a full-scan aggregate's merge).  The merge's own memory is bounded by
``memory_limit``; with a ``temp_directory`` DuckDB spills large sorts and aggregates to disk.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import duckdb
import pyarrow as pa

from czar.plan.model import QueryPlan
from czar.plan.split import RESULT_TABLE
from qserv.sphere.scisql import install_macros
from qserv.sqlerrors import translate


class MergeEngine:
    """A czar-side DuckDB shared by all queries; each merge runs on its own cursor.

    Opening a DuckDB and installing the macros costs milliseconds, which point lookups
    cannot afford per query; cursors are separate connections to one database, so each
    merge's ``__result`` is a TEMP table private to its cursor.
    """

    def __init__(self, temp_directory: Path | str | None = None, memory_limit: str | None = None) -> None:
        config: dict[str, str | bool | int | float | list[str]] = {}
        if temp_directory is not None:
            config["temp_directory"] = str(temp_directory)
        if memory_limit is not None:
            config["memory_limit"] = memory_limit
        self._conn = duckdb.connect(":memory:", config=config)
        install_macros(self._conn)

    def cursor(self) -> duckdb.DuckDBPyConnection:
        return self._conn.cursor()

    def merge(self, plan: QueryPlan, batches: Iterable[pa.RecordBatch], schema: pa.Schema) -> pa.Table:
        """Run the plan's merge query over the worker batches (all of the same ``schema``)."""
        table = pa.Table.from_batches([b.cast(schema) if b.schema != schema else b for b in batches], schema)
        if plan.passthrough:
            # the merge query would only rename columns: skip DuckDB (point lookups, cone searches)
            return table.rename_columns(list(plan.columns))
        cursor = self.cursor()
        try:
            cursor.register(RESULT_TABLE, table)
            return cursor.sql(plan.merge_sql).to_arrow_table()
        except duckdb.Error as e:
            # a value error found while merging (overflow of a sum, a bad cast): PostgreSQL's
            # words, never the merge query's internal names
            raise translate(str(e)) from None
        finally:
            cursor.close()

    def run_local(self, sql: str, tables: Mapping[str, pa.Table]) -> tuple[pa.Table, tuple[str, ...]]:
        """Run ``sql`` over ``tables`` (sub-query results, by name) at the czar; the result and
        its DuckDB column types. For queries that read only sub-query results."""
        cursor = self.cursor()
        try:
            for name, table in tables.items():
                cursor.register(name, table)
            relation = cursor.sql(sql)
            return relation.to_arrow_table(), tuple(str(t) for t in relation.types)
        except duckdb.Error as e:
            raise translate(str(e)) from None
        finally:
            cursor.close()

    def close(self) -> None:
        self._conn.close()


_ARROW_TYPES = {"BIGINT": pa.int64()}  # the types of answers known when planning (counts)


def planned_table(plan: QueryPlan) -> pa.Table:
    """The answer a plan carries (``plan.rows``: known when planning, nothing dispatched)."""
    assert plan.rows is not None
    columns = list(zip(*plan.rows, strict=True)) if plan.rows else [() for _ in plan.columns]
    return pa.table(
        [pa.array(list(c), _ARROW_TYPES[t]) for c, t in zip(columns, plan.types, strict=True)],
        names=list(plan.columns),
    )


def merge(
    plan: QueryPlan,
    batches: Iterable[pa.RecordBatch],
    schema: pa.Schema,
    *,
    temp_directory: Path | str | None = None,
    memory_limit: str | None = None,
) -> pa.Table:
    """One-off :meth:`MergeEngine.merge` (tests, tools); services keep one engine."""
    engine = MergeEngine(temp_directory, memory_limit)
    try:
        return engine.merge(plan, batches, schema)
    finally:
        engine.close()
