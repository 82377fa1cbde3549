"""A cancel that lands while the worker binds its query must still stop the query.

DuckDB forgets ``interrupt()`` when no query is executing: a relation that is bound
(``cursor.sql``) but not yet executed (``to_arrow_reader``) runs to completion afterwards.
The end-to-end cancel test (tests/integration/test_cancel.py) met this: with a 3,000-chunk
batch the bind takes long enough that a CancelRequest sent right away left one worker computing
its whole share (~17 s) after the client had its 57014.
"""

from __future__ import annotations

from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from qserv.errors import QueryCanceled
from worker.execute import QueryRun

ROWS = 20_000_000  # about a second of DuckDB work when nothing stops it


def _counting_connection(seen: list[int]) -> duckdb.DuckDBPyConnection:
    """A DuckDB whose ``tick(i)`` counts the rows the query really processed."""
    conn = duckdb.connect(config={"threads": 1})

    def tick(values: pa.Array) -> pa.Array:
        seen[0] += len(values)
        return pc.equal(pc.bit_wise_and(values, 7), 3)

    conn.create_function("tick", tick, ["BIGINT"], "BOOLEAN", type="arrow")  # type: ignore[call-overload]
    return conn


class _InterruptDuringBind:
    """A cursor whose ``sql()`` (the bind step) is where the cancel arrives."""

    def __init__(self, cursor: duckdb.DuckDBPyConnection) -> None:
        self._cursor = cursor
        self.run: QueryRun | None = None

    def sql(self, query: str) -> Any:
        relation = self._cursor.sql(query)
        assert self.run is not None
        self.run.interrupt()  # the gRPC termination callback, on another thread in real life
        return relation

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


def test_interrupt_between_bind_and_execute_stops_duckdb() -> None:
    seen = [0]
    conn = _counting_connection(seen)
    cursor = _InterruptDuringBind(conn.cursor())
    run = QueryRun(cursor, f"SELECT count(*) FROM range({ROWS}) t(i) WHERE tick(i)")  # type: ignore[arg-type]
    cursor.run = run
    try:
        with pytest.raises(QueryCanceled):
            for _ in run.messages():
                pass
        # the client hears "cancelled" either way; the worker must not have done all the work
        assert seen[0] < ROWS, f"the cancelled query processed all {seen[0]:,} rows"
    finally:
        conn.close()
