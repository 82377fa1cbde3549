"""The director index: director key -> (chunk, sub-chunk), in a DuckDB file of the czar.

Why: a query ``WHERE objectId = 42`` or ``IN (...)`` needs only the chunks holding those
keys, and a child row must be stored in the chunk of its director row. Both questions are
answered here. A director loaded with ``--non-unique-key`` may hold a key many times, in
several chunks: the index keeps one row per director row, so a lookup names every chunk
holding the key (such a director has no children or match tables: a key names no one row).
A child loaded with its own position (``--lon/--lat``) publishes here, under its own name, the
keys of its rows that had no director row, so that a later director load holding one of those
keys is refused (:meth:`DirectorIndex.check_orphans`).

Layout (one DuckDB database, owned by the czar process; nobody else opens it):

* ``"idx:<db>.<table>"`` (key, chunk, subchunk): published keys of one director table,
  appended sorted by key per transaction, so DuckDB's zone maps skip all but a row group or
  two on a point lookup (no ART index: maintaining one tripled the cost of publishing, and a
  zone-map lookup on 10M key-sorted keys takes ~0.5 ms, about as long);
* staged keys of a running transaction, invisible to lookups, are Arrow IPC files in the
  directory ``<index file stem>.staging`` next to the index file, one per ``stage`` call,
  named ``<txn>__<hex of "db.table">__<time><random>.arrow`` and made durable (fsync, rename) before
  ``stage`` returns, so a commit interrupted by a restart still finds them.
  :meth:`DirectorIndex.check` refuses duplicate keys (inside the load or against already
  published keys), :meth:`DirectorIndex.publish` appends the staged keys to the index and
  records the transaction in ``"published"`` in the same DuckDB transaction, then deletes
  the files (idempotent: a second call finds the transaction published, or no files),
  :meth:`DirectorIndex.abort` deletes them.

Integer keys (the usual case) are checked with numpy: already-ascending keys, as catalogs
are usually written, need no sort at all. Other key types are checked by DuckDB.

Point lookups (:meth:`DirectorIndex.chunks_for_keys`) of integer keys are answered from an
in-memory copy of a table's published keys, sorted int64 keys beside their int32 chunks
(12 bytes a key: 120 MB for 10M keys), searched with ``np.searchsorted`` in ~5 us instead of
~0.6 ms through DuckDB (the czar plans on its event loop, so this is latency of every point
query). The copy is built on a background thread the first time a table is looked up
(~0.4 s for 10M keys), DuckDB answering meanwhile; a publish drops every copy, and a build that
overlapped a publish is thrown away (generation counter), so a copy never misses published
keys. Tables above ``cache_max_keys`` keys, and non-integer keys, always go to DuckDB.

Thread-safe: every call uses its own cursor; writes are serialised by a lock because DuckDB
refuses concurrent DDL on one table.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from qserv.durable import fsync_path, transaction
from qserv.errors import DataError

_COLUMNS = ("key", "chunk", "subchunk")


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _index_name(database: str, table: str) -> str:
    return f"idx:{database.lower()}.{table.lower()}"


def match_side_index(match: str, side: int) -> str:
    """The index table name, beside the directors', of a match table's keys of one side
    (1 left, 2 right) whose director row was absent when the pairs were loaded."""
    return f"{match}#side{side}"


def _target(database: str, table: str) -> str:
    return f"{database.lower()}.{table.lower()}"


_STAGED_SUFFIX = ".arrow"
_PUBLISHED = '"published"'
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1

CACHE_MAX_KEYS = 20_000_000
"""Largest director table whose keys are kept in memory (12 bytes a key: 240 MB)."""


@dataclass(frozen=True)
class _KeyCache:
    """Published keys of one director table, sorted, with the chunk of each."""

    keys: np.ndarray  # int64, ascending (a director with non-unique keys repeats them)
    chunks: np.ndarray  # int32, chunks[i] holds keys[i]

    def chunks_for(self, keys: Sequence[int]) -> frozenset[int]:
        probe = np.fromiter(keys, dtype=np.int64, count=len(keys))
        lo = np.searchsorted(self.keys, probe, side="left")
        hi = np.searchsorted(self.keys, probe, side="right")
        if bool(np.all(hi - lo <= 1)):  # unique keys: one row per key found
            return frozenset(int(c) for c in np.unique(self.chunks[lo[hi > lo]]))
        # a repeated key may be in several chunks: every row of it counts
        hit = np.concatenate([np.arange(a, b) for a, b in zip(lo.tolist(), hi.tolist(), strict=True)])
        return frozenset(int(c) for c in np.unique(self.chunks[hit.astype(np.intp)]))

    def chunks_in(self, low: int, high: int) -> np.ndarray:
        """Chunks of the keys in [low, high]: two binary searches and a slice."""
        start = int(np.searchsorted(self.keys, low, side="left"))
        stop = int(np.searchsorted(self.keys, high, side="right"))
        return np.unique(self.chunks[start:stop]) if stop > start else np.zeros(0, np.int32)


class DirectorIndex:
    """Director key -> chunk map of every director table, staged per transaction."""

    def __init__(self, path: Path | str, cache_max_keys: int = CACHE_MAX_KEYS) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = duckdb.connect(str(path))
        self._staging = path.parent / (path.stem + ".staging")
        self._staging.mkdir(exist_ok=True)
        self._write_lock = threading.Lock()
        self._conn.execute(f"CREATE TABLE IF NOT EXISTS {_PUBLISHED} (transaction_id BIGINT, target VARCHAR)")
        # Names of published index tables, so lookups skip a catalog query (~0.5 ms).
        self._published = set(self._tables(self._conn, "idx:"))
        for tmp in self._staging.glob("*.tmp"):  # a stage call cut short: never acknowledged
            tmp.unlink(missing_ok=True)
        # in-memory key copies for point lookups (see the module docstring)
        self._cache_max_keys = cache_max_keys
        self._cache_lock = threading.Lock()
        self._generation = 0  # bumped by every publish: copies built before it are stale
        self._caches: dict[str, _KeyCache | None] = {}  # None: not cacheable this generation
        self._builders: dict[str, threading.Thread] = {}
        self._closed = False

    def close(self) -> None:
        """Close the DuckDB file (after the HTTP server and query pipeline stopped)."""
        with self._cache_lock:
            self._closed = True
            builders = list(self._builders.values())
        for thread in builders:
            thread.join()
        self._conn.close()

    def _tables(self, cur: duckdb.DuckDBPyConnection, prefix: str) -> list[str]:
        rows = cur.execute(
            "SELECT table_name FROM duckdb_tables() WHERE starts_with(table_name, ?)", [prefix]
        ).fetchall()
        return [r[0] for r in rows]

    # staging (one transaction)

    def _staged(self, transaction_id: int) -> dict[str, list[Path]]:
        """Staged files of a transaction by target ``db.table``."""
        out: dict[str, list[Path]] = {}
        for path in sorted(self._staging.glob(f"{transaction_id}__*{_STAGED_SUFFIX}")):
            target = bytes.fromhex(path.name.split("__")[1]).decode()
            out.setdefault(target, []).append(path)
        return out

    def _read(self, paths: list[Path]) -> pa.Table:
        return pa.concat_tables([pa.ipc.open_file(pa.memory_map(str(p))).read_all() for p in paths])

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
        # time first: the files sort in staging order, so ascending keys stay ascending
        name = f"{transaction_id}__{_target(database, table).encode().hex()}__{time.time_ns():020d}{uuid.uuid4().hex[:8]}"
        tmp = self._staging / (name + ".tmp")
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, rows.schema) as writer:
            writer.write_table(rows)
        fsync_path(tmp)
        tmp.rename(self._staging / (name + _STAGED_SUFFIX))
        fsync_path(self._staging)

    def check(self, transaction_id: int, unique: bool = True) -> None:
        """Raise DataError naming a key loaded twice or already present in the index.

        A director with non-unique keys (``unique=False``) takes any keys: nothing to check.
        """
        if not unique:
            return
        cur = self._conn.cursor()
        try:
            for target, paths in self._staged(transaction_id).items():
                keys = self._read(paths).column("key")
                dup = _duplicate(cur, keys)
                if dup is not None:
                    raise DataError(
                        f"duplicate director key {dup!r} in the load of {target}",
                        hint="director keys must be unique: remove the duplicate rows and load again",
                    )
                index = _index_name(*target.split(".", 1))
                if index not in self._published:
                    continue
                dup = _already_loaded(cur, _quote(index), keys)
                if dup is not None:
                    raise DataError(
                        f"director key {dup!r} of {target} is already loaded",
                        hint="director keys must be unique across loads: drop the rows already loaded",
                    )
        finally:
            cur.close()

    def check_orphans(self, transaction_id: int, database: str, children: Sequence[str]) -> None:
        """Raise DataError naming a director key of the load that ``children`` (children with
        their own positions) hold rows of that had no director row when they were loaded.

        Those rows are in the chunks of their own positions, not of the new director row, so a
        director-child join would miss them. Their keys are staged and published like director
        keys, under the child's name (:meth:`stage`).
        """
        cur = self._conn.cursor()
        try:
            for target, paths in self._staged(transaction_id).items():
                keys = self._read(paths).column("key")
                for child in children:
                    index = _index_name(database, child)
                    if index not in self._published:
                        continue
                    key = _already_loaded(cur, _quote(index), keys)
                    if key is not None:
                        raise DataError(
                            f"director key {key!r} of {target} has rows in child table {database}.{child} "
                            "loaded without a director row (they are in the chunks of their own positions)",
                            hint="load a director's rows before its children's: drop these director rows, "
                            "or reload the child after the director",
                        )
        finally:
            cur.close()

    def check_unmatched(self, transaction_id: int, sides: Sequence[tuple[str, str, int]]) -> None:
        """Raise DataError naming a director key of the load that a match table (database,
        table, side) holds pairs of that had no row of this director when they were loaded.

        Such a pair is stored once, in the chunk of its other side (loader/match.py), not in
        the chunk of the new director row, so a join to both directors would miss it.
        """
        cur = self._conn.cursor()
        try:
            for target, paths in self._staged(transaction_id).items():
                keys = self._read(paths).column("key")
                for database, match, side in sides:
                    index = _index_name(database, match_side_index(match, side))
                    if index not in self._published:
                        continue
                    key = _already_loaded(cur, _quote(index), keys)
                    if key is not None:
                        raise DataError(
                            f"director key {key!r} of {target} has pairs in match table {database}.{match} "
                            f"loaded without a {target} row (each stored once, in the chunk of its other side)",
                            hint="load the directors before their match tables: drop these director rows, "
                            f"or reload match table {database}.{match} after the director",
                        )
        finally:
            cur.close()

    def publish(self, transaction_id: int) -> None:
        """Move a transaction's staged keys into the index (idempotent)."""
        with self._write_lock:
            cur = self._conn.cursor()
            try:
                for target, paths in self._staged(transaction_id).items():
                    done = cur.execute(
                        f"SELECT 1 FROM {_PUBLISHED} WHERE transaction_id = ? AND target = ?",
                        [transaction_id, target],
                    ).fetchall()
                    if not done:
                        self._append(cur, transaction_id, target, self._read(paths))
                    for path in paths:  # after the commit: a restart before this finds `done`
                        path.unlink(missing_ok=True)
            finally:
                cur.close()

    def _append(
        self, cur: duckdb.DuckDBPyConnection, transaction_id: int, target: str, rows: pa.Table
    ) -> None:
        name = _index_name(*target.split(".", 1))
        index = _quote(name)
        keys = rows.column("key")
        ordered = _ascending(keys)
        if not ordered and _is_int(keys.type):
            rows = rows.take(pa.array(np.argsort(_int_keys(keys), kind="stable")))
            ordered = True
        cur.register("_rows", rows)
        try:
            with transaction(cur):
                cur.execute(f"CREATE TABLE IF NOT EXISTS {index} AS SELECT * FROM _rows LIMIT 0")
                # Sorted appends keep zone maps tight: a point lookup reads one row group.
                order = "" if ordered else " ORDER BY key"
                cur.execute(f"INSERT INTO {index} SELECT * FROM _rows{order}")
                cur.execute(f"INSERT INTO {_PUBLISHED} VALUES (?, ?)", [transaction_id, target])
        finally:
            cur.unregister("_rows")
        self._published.add(name)
        with self._cache_lock:
            self._generation += 1
            self._caches.clear()

    def abort(self, transaction_id: int) -> None:
        """Drop a transaction's staged keys (idempotent)."""
        with self._write_lock:
            for paths in self._staged(transaction_id).values():
                for path in paths:
                    path.unlink(missing_ok=True)

    # lookups (published keys only)

    def chunks_for_keys(self, database: str, table: str, keys: Sequence[object]) -> frozenset[int]:
        """Chunks holding any of ``keys`` of director ``database.table`` (absent keys ignored)."""
        if not keys:
            return frozenset()
        index = _index_name(database, table)
        if index not in self._published:
            return frozenset()
        if all(type(k) is int and _INT64_MIN <= k <= _INT64_MAX for k in keys):
            cache = self._cache(index)
            if cache is not None:
                return cache.chunks_for(keys)  # type: ignore[arg-type]  # checked ints above
        cur = self._conn.cursor()
        try:
            # an IN list of many keys becomes a join; zone maps prune both forms
            where = "key = ?" if len(keys) == 1 else f"key IN ({', '.join('?' for _ in keys)})"
            try:
                rows = cur.execute(f"SELECT chunk FROM {_quote(index)} WHERE {where}", list(keys)).fetchall()
            except duckdb.ConversionException:
                return frozenset()  # a key of the wrong type matches nothing
            return frozenset(int(r[0]) for r in rows)
        finally:
            cur.close()

    def chunks_for_range(
        self, database: str, table: str, low: int, high: int, max_chunks: int
    ) -> frozenset[int] | None:
        """Chunks holding a key in [low, high] of director ``database.table``; None when more
        than ``max_chunks`` do (the caller scans instead).

        Keys are appended key-sorted per transaction, so DuckDB's zone maps read only the row
        groups overlapping the range; the in-memory copy answers with two binary searches.
        """
        index = _index_name(database, table)
        if low > high or index not in self._published:
            return frozenset()
        low, high = max(low, _INT64_MIN), min(high, _INT64_MAX)
        cache = self._cache(index)
        if cache is not None:
            found = cache.chunks_in(low, high)
            return frozenset(int(c) for c in found) if len(found) <= max_chunks else None
        cur = self._conn.cursor()
        try:
            rows = cur.execute(
                f"SELECT DISTINCT chunk FROM {_quote(index)} WHERE key BETWEEN ? AND ? LIMIT ?",
                [low, high, max_chunks + 1],
            ).fetchall()
        except duckdb.Error:
            return None  # keys of another type (strings): no range lookup, scan instead
        finally:
            cur.close()
        return frozenset(int(r[0]) for r in rows) if len(rows) <= max_chunks else None

    def warm(self, database: str, table: str) -> bool:
        """Build the in-memory key copy of a director table now; whether one is in use."""
        index = _index_name(database, table)
        if index not in self._published:
            return False
        with self._cache_lock:
            generation = self._generation
        self._build(index, generation)
        with self._cache_lock:
            return self._caches.get(index) is not None

    def _cache(self, index: str) -> _KeyCache | None:
        """The key copy of ``index``, or None (then a background build starts if none runs)."""
        with self._cache_lock:
            if index in self._caches:
                return self._caches[index]
            if self._closed or index in self._builders:
                return None
            thread = threading.Thread(
                target=self._build, args=(index, self._generation), name="director-index-cache", daemon=True
            )
            self._builders[index] = thread
        thread.start()
        return None

    def _build(self, index: str, generation: int) -> None:
        cache: _KeyCache | None = None
        try:
            cache = self._load(index)
        except duckdb.Error:
            return  # closed meanwhile, or the table changed under us: DuckDB keeps answering
        finally:
            with self._cache_lock:
                if self._builders.get(index) is threading.current_thread():
                    del self._builders[index]
                if generation == self._generation and not self._closed:
                    self._caches.setdefault(index, cache)

    def _load(self, index: str) -> _KeyCache | None:
        """Read the published keys of ``index`` into memory (None: too many, or not integers)."""
        cur = self._conn.cursor()
        try:
            rows = cur.execute(f"SELECT count(*) FROM {_quote(index)}").fetchall()
            if int(rows[0][0]) > self._cache_max_keys:
                return None
            table = cur.sql(f"SELECT key, chunk FROM {_quote(index)} WHERE key IS NOT NULL").to_arrow_table()
        finally:
            cur.close()
        key_type = table.schema.field("key").type
        if not (pa.types.is_signed_integer(key_type) or key_type in (pa.uint8(), pa.uint16(), pa.uint32())):
            return None  # uint64 may not fit int64; other types compare by DuckDB's rules
        keys = (
            table.column("key").combine_chunks().to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
        )
        chunks = (
            table.column("chunk").combine_chunks().to_numpy(zero_copy_only=False).astype(np.int32, copy=False)
        )
        del table
        # appended sorted per transaction: usually ascending already, no sort needed
        if keys.size > 1 and not bool(np.all(keys[1:] >= keys[:-1])):
            order = np.argsort(keys, kind="stable")
            keys, chunks = keys[order], chunks[order]
        return _KeyCache(keys, chunks)

    def lookup(self, database: str, table: str, keys: pa.Array) -> pa.Array:
        """Chunk (int32) of each key of ``keys``, in order; null where the key is absent."""
        cur = self._conn.cursor()
        try:
            index = _index_name(database, table)
            if index not in self._published:
                return pa.nulls(len(keys), pa.int32())
            probe = pa.table({"pos": pa.array(np.arange(len(keys), dtype=np.int64)), "key": keys})
            cur.register("_probe", probe)
            # an inner join, scattered back by position: no sort of the probe
            found = cur.sql(
                f"SELECT p.pos, i.chunk FROM _probe p JOIN {_quote(index)} i ON p.key = i.key"
            ).to_arrow_table()
            chunks = np.zeros(len(keys), dtype=np.int32)
            present = np.zeros(len(keys), dtype=np.bool_)
            pos = found.column(0).to_numpy()
            chunks[pos] = found.column(1).to_numpy().astype(np.int32, copy=False)
            present[pos] = True
            return pa.array(chunks, pa.int32(), mask=~present)
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


def _is_int(t: pa.DataType) -> bool:
    return bool(pa.types.is_integer(t))


def _int_keys(keys: pa.ChunkedArray) -> np.ndarray:
    return keys.combine_chunks().to_numpy(zero_copy_only=False)


def _ascending(keys: pa.ChunkedArray) -> bool:
    """Integer keys in ascending order, without NULLs (cheap to tell; then nothing to sort)."""
    if not _is_int(keys.type) or keys.null_count:
        return False
    k = _int_keys(keys)
    return bool(np.all(k[1:] >= k[:-1]))


def _duplicate(cur: duckdb.DuckDBPyConnection, keys: pa.ChunkedArray) -> object | None:
    """A key that occurs twice in ``keys`` (None if all are distinct)."""
    if _is_int(keys.type) and not keys.null_count:
        k = _int_keys(keys)
        if not np.all(k[1:] > k[:-1]):  # strictly ascending (the usual case): no duplicate
            k = np.sort(k)
            same = np.flatnonzero(k[1:] == k[:-1])
            if same.size:
                return int(k[same[0]])
        return None
    cur.register("_keys", pa.table({"key": keys}))
    try:
        rows = cur.execute("SELECT key FROM _keys GROUP BY key HAVING count(*) > 1 LIMIT 1").fetchall()
    finally:
        cur.unregister("_keys")
    return rows[0][0] if rows else None


def _already_loaded(cur: duckdb.DuckDBPyConnection, index: str, keys: pa.ChunkedArray) -> object | None:
    """A key of ``keys`` already in ``index`` (None if none is)."""
    if _is_int(keys.type) and len(keys):
        k = _int_keys(keys)
        # zone maps answer this without reading the index when the key ranges are disjoint
        hit = cur.execute(
            f"SELECT 1 FROM {index} WHERE key BETWEEN ? AND ? LIMIT 1", [int(np.min(k)), int(np.max(k))]
        ).fetchall()
        if not hit:
            return None
    cur.register("_keys", pa.table({"key": keys}))
    try:
        rows = cur.execute(
            f"SELECT s.key FROM _keys s SEMI JOIN {index} i ON s.key = i.key LIMIT 1"
        ).fetchall()
    finally:
        cur.unregister("_keys")
    return rows[0][0] if rows else None
