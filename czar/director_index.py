"""The director index: director key -> (chunk, sub-chunk), in a DuckDB file of the czar.

Why: a query ``WHERE objectId = 42`` or ``IN (...)`` needs only the chunks holding those
keys, and a child row must be stored in the chunk of its director row. Both questions are
answered here.

Layout (one DuckDB database, owned by the czar process; nobody else opens it):

* ``"idx:<db>.<table>"`` (key, chunk, subchunk): published keys of one director table,
  appended sorted by key per transaction, so DuckDB's zone maps skip all but a row group or
  two on a point lookup;
* ``"stage:<txn>:<db>.<table>"``: keys staged by a running transaction, invisible to
  lookups. :meth:`DirectorIndex.check` refuses duplicate keys (inside the load or against
  already published keys), :meth:`DirectorIndex.publish` moves the staged keys into the
  index (idempotent: a second call finds no staging table), :meth:`DirectorIndex.abort`
  drops them.

Thread-safe: every call uses its own cursor; writes are serialised by a lock because DuckDB
refuses concurrent DDL on one table.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import duckdb
import pyarrow as pa

from qserv.errors import DataError

_COLUMNS = ("key", "chunk", "subchunk")


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _index_name(database: str, table: str) -> str:
    return f"idx:{database.lower()}.{table.lower()}"


def _stage_name(transaction_id: int, database: str, table: str) -> str:
    return f"stage:{transaction_id}:{database.lower()}.{table.lower()}"


class DirectorIndex:
    """Director key -> chunk map of every director table, staged per transaction."""

    def __init__(self, path: Path | str) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = duckdb.connect(str(path))
        self._write_lock = threading.Lock()
        # Names of published index tables, so lookups skip a catalog query (~0.5 ms).
        self._published = set(self._tables(self._conn, "idx:"))

    def close(self) -> None:
        """Close the DuckDB file (after the HTTP server and query pipeline stopped)."""
        self._conn.close()

    def _tables(self, cur: duckdb.DuckDBPyConnection, prefix: str) -> list[str]:
        rows = cur.execute(
            "SELECT table_name FROM duckdb_tables() WHERE starts_with(table_name, ?)", [prefix]
        ).fetchall()
        return [r[0] for r in rows]

    # staging (one transaction)

    def stage(self, transaction_id: int, database: str, table: str, rows: pa.Table) -> None:
        """Stage (key, chunk, subchunk) rows of a director load; invisible until published."""
        if rows.num_columns != 3:
            raise DataError("director index rows must have 3 columns: key, chunk, subchunk")
        rows = rows.rename_columns(list(_COLUMNS)).cast(
            pa.schema(
                [
                    pa.field("key", rows.schema.field(0).type),
                    pa.field("chunk", pa.int32()),
                    pa.field("subchunk", pa.int64()),
                ]
            )
        )
        name = _quote(_stage_name(transaction_id, database, table))
        with self._write_lock:
            cur = self._conn.cursor()
            try:
                cur.register("_rows", rows)
                cur.execute(f"CREATE TABLE IF NOT EXISTS {name} AS SELECT * FROM _rows LIMIT 0")
                cur.execute(f"INSERT INTO {name} SELECT * FROM _rows")
            finally:
                cur.close()

    def check(self, transaction_id: int) -> None:
        """Raise DataError naming a key loaded twice or already present in the index."""
        cur = self._conn.cursor()
        try:
            for stage in self._tables(cur, f"stage:{transaction_id}:"):
                target = stage.split(":", 2)[2]
                dup = cur.execute(
                    f"SELECT key FROM {_quote(stage)} GROUP BY key HAVING count(*) > 1 LIMIT 1"
                ).fetchone()
                if dup is not None:
                    raise DataError(
                        f"duplicate director key {dup[0]!r} in the load of {target}",
                        hint="director keys must be unique: remove the duplicate rows and load again",
                    )
                index = _index_name(*target.split(".", 1))
                if index not in self._published:
                    continue
                dup = cur.execute(
                    f"SELECT s.key FROM {_quote(stage)} s SEMI JOIN {_quote(index)} i ON s.key = i.key LIMIT 1"
                ).fetchone()
                if dup is not None:
                    raise DataError(
                        f"director key {dup[0]!r} of {target} is already loaded",
                        hint="director keys must be unique across loads: drop the rows already loaded",
                    )
        finally:
            cur.close()

    def publish(self, transaction_id: int) -> None:
        """Move a transaction's staged keys into the index (idempotent)."""
        with self._write_lock:
            cur = self._conn.cursor()
            try:
                for stage in self._tables(cur, f"stage:{transaction_id}:"):
                    name = _index_name(*stage.split(":", 2)[2].split(".", 1))
                    index = _quote(name)
                    cur.execute("BEGIN")
                    if name not in self._published:
                        cur.execute(
                            f"CREATE TABLE IF NOT EXISTS {index} AS SELECT * FROM {_quote(stage)} LIMIT 0"
                        )
                        # An ART index makes a point lookup ~0.3 ms on 10M keys.
                        cur.execute(f"CREATE INDEX IF NOT EXISTS {_quote(name + ':key')} ON {index} (key)")
                    # Sorted appends keep zone maps tight: a point lookup reads one row group.
                    cur.execute(f"INSERT INTO {index} SELECT * FROM {_quote(stage)} ORDER BY key")
                    cur.execute(f"DROP TABLE {_quote(stage)}")
                    cur.execute("COMMIT")
                    self._published.add(name)
            finally:
                cur.close()

    def abort(self, transaction_id: int) -> None:
        """Drop a transaction's staged keys (idempotent)."""
        with self._write_lock:
            cur = self._conn.cursor()
            try:
                for stage in self._tables(cur, f"stage:{transaction_id}:"):
                    cur.execute(f"DROP TABLE IF EXISTS {_quote(stage)}")
            finally:
                cur.close()

    # lookups (published keys only)

    def chunks_for_keys(self, database: str, table: str, keys: Sequence[object]) -> frozenset[int]:
        """Chunks holding any of ``keys`` of director ``database.table`` (absent keys ignored)."""
        if not keys:
            return frozenset()
        cur = self._conn.cursor()
        try:
            index = _index_name(database, table)
            if index not in self._published:
                return frozenset()
            # `=` lets DuckDB use the ART index; an IN list of many keys becomes a join.
            where = "key = ?" if len(keys) == 1 else f"key IN ({', '.join('?' for _ in keys)})"
            try:
                rows = cur.execute(f"SELECT chunk FROM {_quote(index)} WHERE {where}", list(keys)).fetchall()
            except duckdb.ConversionException:
                return frozenset()  # a key of the wrong type matches nothing
            return frozenset(int(r[0]) for r in rows)
        finally:
            cur.close()

    def lookup(self, database: str, table: str, keys: pa.Array) -> pa.Array:
        """Chunk (int32) of each key of ``keys``, in order; null where the key is absent."""
        cur = self._conn.cursor()
        try:
            index = _index_name(database, table)
            if index not in self._published:
                return pa.nulls(len(keys), pa.int32())
            probe = pa.table({"pos": pa.array(range(len(keys)), pa.int64()), "key": keys})
            cur.register("_probe", probe)
            result = cur.sql(
                f"SELECT i.chunk FROM _probe p LEFT JOIN {_quote(index)} i ON p.key = i.key ORDER BY p.pos"
            ).to_arrow_table()
            return result.column(0).combine_chunks().cast(pa.int32())
        finally:
            cur.close()

    def count(self, database: str, table: str) -> int:
        """Number of published keys of a director table."""
        cur = self._conn.cursor()
        try:
            index = _index_name(database, table)
            if index not in self._published:
                return 0
            row = cur.execute(f"SELECT count(*) FROM {_quote(index)}").fetchone()
            return int(row[0]) if row else 0
        finally:
            cur.close()
