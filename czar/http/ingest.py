"""The czar side of ingest: databases, tables, transactions, placement, director index.

The loader (a client) drives a load through the HTTP API (:mod:`czar.http.app`); every
request lands in one method of :class:`Ingest`, which reads and writes the metadata store,
the director index and the workers. A transaction moves::

    STARTED --commit--> COMMITTING --(index published, every worker committed)--> COMMITTED
       \\--abort / rerun with the same fingerprint--> ABORTED

COMMITTING is recorded before any worker publishes, so a commit interrupted by a crash is
finished by :func:`resume_transactions` when the czar starts again (worker commits and
index publication are idempotent). A rerun of a load finds its predecessor by fingerprint:
COMMITTED means "already loaded" (nothing to do), STARTED means a killed loader (its
staged rows are dropped and a new transaction begins).

Tables on workers. Recording a table and creating it on the workers cannot be one atomic
step (a crash, or a worker that is down, falls between them), so a worker never relies on an
earlier creation: every transaction creates its table (idempotently: same columns, no-op) on
each worker before that worker may receive its rows, on every active worker at ``begin``
for a regular table (``begin`` answers those workers: the loader sends to them and no
other), and on each worker of a chunk when :meth:`Ingest.placement` hands the chunk out.
Whatever an interrupted load or a worker that was down left behind, the next load is whole.

Copies that miss a commit: every copy a transaction sends rows to is recorded before the
loader learns of it; the commit drops the copies that will not hold its rows, or refuses the
commit before anything is published when a chunk would be left without one (see
:mod:`czar.http.copies`).

Uniqueness of director keys. The duplicate check and the publication of a load's keys in
the director index are one step per table, under a per-table lock: a commit checks, records
COMMITTING and publishes its keys before the next commit of the table checks (keys of a
COMMITTING transaction left by a crash are published first). Of two loads with a common key
exactly one commits. The lock is in this czar process: the director index is a file of the
czar, so two czars never see each other's keys anyway (see DESIGN §2, several czars).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pyarrow as pa

from czar.director_index import DirectorIndex, match_side_index
from czar.http.copies import orphan_error, settlement
from czar.http.workers import WorkerClients
from qserv.catalog import MATCH_SIDE_LEFT, MATCH_SIDE_RIGHT, Database, Partitioning, Table, TableKind
from qserv.catalog_json import database_to_json, table_to_json
from qserv.errors import InvalidParameter, QservError, UndefinedDatabase, UndefinedTable, WorkerUnavailable
from qserv.metadata.store import (
    ChunkRows,
    MetadataStore,
    Replica,
    Target,
    Transaction,
    TransactionState,
    WorkerInfo,
    WorkerState,
)
from qserv.replica.placement import place_chunks
from qserv.replica.rejoin import ABORT_TIMEOUT_S, clear_missed
from qserv.replica.settings import replication_level
from qserv.sphere.overlap import check_overlap

_log = logging.getLogger(__name__)
T = TypeVar("T")

PROBE_TIMEOUT_S = 2.0  # a worker that does not answer a health probe this fast cannot commit


def transaction_to_json(t: Transaction) -> dict[str, Any]:
    return {
        "transaction_id": t.transaction_id,
        "database": t.database,
        "table": t.table,
        "state": t.state.value,
        "fingerprint": t.fingerprint,
        "rows": t.rows,
    }


class Ingest:
    """The ingest API's core: each public method serves one endpoint."""

    def __init__(
        self,
        store: MetadataStore,
        director_index: DirectorIndex,
        replication_level: int,
        clients: WorkerClients | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self._on_change = on_change or (lambda: None)
        self.index = director_index
        self.replication_level = replication_level
        self.clients = clients or WorkerClients()
        self._lock = threading.RLock()  # begin and placement decisions are serialised
        # chunks placed under transactions not yet committed (txn -> (family, placement)):
        # concurrent transactions reuse them so a family chunk never splits across workers
        self._pending: dict[int, tuple[str, dict[int, tuple[str, ...]]]] = {}
        # workers on which a transaction's table was created (txn -> worker names)
        self._ready: dict[int, set[str]] = {}
        # one lock per table (lower-case db, table): begin, commit and abort of its
        # transactions; taken before ``_lock``, never while holding it
        self._table_locks: dict[tuple[str, str], threading.Lock] = {}
        self._table_locks_lock = threading.Lock()

    # catalog

    def databases(self) -> list[dict[str, Any]]:
        return [database_to_json(d) for d in self.store.catalog().databases]

    def create_database(self, doc: dict[str, Any]) -> dict[str, Any]:
        """Create a database (no-op if it exists with the same partitioning)."""
        name = doc.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidParameter("a database needs a name")
        default = Partitioning()
        try:
            p = Partitioning(
                order=int(doc.get("order", default.order)),
                sub_order=int(doc.get("sub_order", default.sub_order)),
                overlap=float(doc.get("overlap", default.overlap)),
            )
        except (TypeError, ValueError) as e:
            raise InvalidParameter(
                f"database {name!r}: order and sub_order must be integers, overlap a number: {e}"
            ) from e
        if not 0 <= p.order < p.sub_order <= 13:
            raise InvalidParameter(
                f"invalid partitioning of database {name!r}: chunk order {p.order}, sub-chunk order "
                f"{p.sub_order}; need 0 <= chunk order < sub-chunk order <= 13"
            )
        if p.overlap != 0.0:  # 0: no overlap rows (no near-neighbour joins)
            try:
                check_overlap(p.order, p.overlap)
            except InvalidParameter as e:
                raise InvalidParameter(f"database {name!r}: {e.message}") from e
        self.store.create_database(Database(name, p))
        self._on_change()
        db = self.store.catalog().database(name)
        assert db is not None
        return database_to_json(db)

    def _database(self, name: str) -> Database:
        db = self.store.catalog().database(name)
        if db is None:
            raise UndefinedDatabase(f"database {name!r} does not exist")
        return db

    def tables(self, database: str) -> list[dict[str, Any]]:
        self._database(database)
        return [table_to_json(t) for t in self.store.catalog().tables_of(database)]

    def table(self, database: str, name: str) -> Table:
        t = self.store.catalog().table(database, name)
        if t is None:
            raise UndefinedTable(f"table {database}.{name} does not exist")
        return t

    def create_table(self, table: Table) -> dict[str, Any]:
        """Record the table and create it on the active workers that answer (idempotent).

        A worker that does not answer gets the table from the first load that sends it rows
        (see the module docstring), so it does not fail the creation.
        """
        self.store.create_table(table)
        self._on_change()
        table = self.table(table.database, table.name)
        for w in self._active_workers():
            try:
                self._create_on(w, table)
            except WorkerUnavailable as e:
                _log.warning("table %s.%s not created on worker %s yet: %s", table.database, table.name,
                             w.name, e.message)  # fmt: skip
        return table_to_json(table)

    def _ensure_table(self, transaction_id: int, table: Table, workers: Sequence[WorkerInfo]) -> None:
        """Create the transaction's table on ``workers`` (once per transaction and worker)."""
        with self._lock:
            ready = set(self._ready.get(transaction_id, ()))
        for w in workers:
            if w.name in ready:
                continue
            try:
                self._create_on(w, table)
            except WorkerUnavailable as e:
                raise WorkerUnavailable(
                    f"cannot create table {table.database}.{table.name} on worker {w.name} ({w.address}): "
                    f"{e.message}",
                    hint="start the worker (or let the replication controller mark it down) and load again",
                ) from e
            with self._lock:
                self._ready.setdefault(transaction_id, set()).add(w.name)

    def _create_on(self, worker: WorkerInfo, table: Table) -> None:
        columns = table.worker_columns
        self.clients.call(worker, lambda c: c.create_table(table.database, table.name, table.kind, columns))

    def _table_lock(self, database: str, table: str) -> threading.Lock:
        key = (database.lower(), table.lower())
        with self._table_locks_lock:
            lock = self._table_locks.get(key)
            if lock is None:
                lock = self._table_locks[key] = threading.Lock()
            return lock

    def workers(self) -> list[dict[str, Any]]:
        return [
            {"name": w.name, "host": w.host, "port": w.port, "address": w.address, "state": w.state.value}
            for w in self.store.workers()
        ]

    def _active_workers(self) -> list[WorkerInfo]:
        """Workers that serve queries (ACTIVE or READ-ONLY): each copy they hold gets every load."""
        return [w for w in self.store.workers() if w.state.serves]

    # transactions

    def _transaction(self, transaction_id: int) -> Transaction:
        t = self.store.transaction(transaction_id)
        if t is None:
            raise InvalidParameter(f"transaction {transaction_id} does not exist")
        return t

    def _open(self, transaction_id: int) -> Transaction:
        t = self._transaction(transaction_id)
        if t.state is not TransactionState.STARTED:
            raise InvalidParameter(
                f"transaction {transaction_id} is {t.state.value}, not started",
                hint="begin a new transaction",
            )
        return t

    def get_transaction(self, transaction_id: int) -> dict[str, Any]:
        return transaction_to_json(self._transaction(transaction_id))

    def begin(self, database: str, table: str, fingerprint: str) -> dict[str, Any]:
        """Begin a transaction, unless the same input was loaded already.

        Returns ``already_loaded: true`` with the committed transaction when one has the same
        fingerprint; a STARTED one (a killed loader) is aborted first. ``workers`` are the
        active workers, the ones a regular table's rows go to (it was created on each).
        """
        t = self.table(database, table)
        self.clear_missed()
        with self._table_lock(t.database, t.name), self._lock:
            for old in self.store.transactions(t.database):
                if old.table.lower() != t.name.lower() or old.fingerprint != fingerprint:
                    continue
                if old.state is TransactionState.COMMITTING:
                    self._finish(old.transaction_id)
                    old = self._transaction(old.transaction_id)
                if old.state is TransactionState.COMMITTED:
                    return {**transaction_to_json(old), "already_loaded": True}
                if old.state is TransactionState.STARTED:
                    _log.info("aborting transaction %d left by an earlier run", old.transaction_id)
                    self._abort(old.transaction_id)
            new = self.store.begin_transaction(t.database, t.name, fingerprint)
        workers = self._active_workers()
        if t.kind is TableKind.REGULAR:
            try:
                # its whole copy goes to each of these workers: recorded before any row is sent
                self.store.add_targets(new.transaction_id, [Target(None, w.name) for w in workers])
                self._ensure_table(new.transaction_id, t, workers)
            except QservError:
                with self._table_lock(t.database, t.name):
                    self._abort(new.transaction_id)
                raise
        return {
            **transaction_to_json(new),
            "already_loaded": False,
            "workers": [{"name": w.name, "address": w.address} for w in workers],
        }

    def placement(self, transaction_id: int, chunk_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
        """Workers of each chunk: existing family replicas, else newly placed ones."""
        t = self._open(transaction_id)
        family = self._database(t.database).partitioning.family
        active = {w.name: w for w in self._active_workers()}
        with self._lock:
            holders: dict[int, list[str]] = {}
            load: dict[str, int] = dict.fromkeys(active, 0)
            held_down: dict[int, list[str]] = {}
            for r in self.store.replicas(family):
                if r.worker in active:
                    holders.setdefault(r.chunk_id, []).append(r.worker)
                    load[r.worker] += 1
                else:
                    held_down.setdefault(r.chunk_id, []).append(r.worker)
            for c in sorted(set(chunk_ids)):
                if c in held_down and c not in holders:
                    # a new copy would hold this load's rows only, not the family's other tables
                    raise WorkerUnavailable(
                        f"cannot load rows into chunk {c} of {t.database}.{t.table}: every worker holding "
                        f"the chunk is down ({', '.join(sorted(held_down[c]))})",
                        hint="restart those workers (or let the replication controller copy the chunk) "
                        "and load again",
                    )
            pending: dict[int, tuple[str, ...]] = {}
            for fam, placed in self._pending.values():
                if fam == family:
                    pending.update(placed)
            for chunk, workers in pending.items():
                for w in workers:
                    if w in load and w not in holders.get(chunk, ()):
                        load[w] += 1
            result: dict[int, tuple[str, ...]] = {}
            fresh = []
            for c in sorted(set(chunk_ids)):
                if c in holders:
                    result[c] = tuple(sorted(holders[c]))
                elif c in pending and all(w in active for w in pending[c]):
                    result[c] = pending[c]
                else:
                    fresh.append(c)
            # new chunks go to ACTIVE workers only: a READ-ONLY one is being drained
            placeable = sorted(n for n, w in active.items() if w.state is WorkerState.ACTIVE)
            level = replication_level(self.store, self.replication_level)  # an operator may have changed it
            result.update(place_chunks(fresh, placeable, level, load))
            # Recorded under the transaction: visible only if it commits.
            new = [Replica(family, c, w) for c, ws in result.items() if c not in holders for w in ws]
            self.store.add_replicas(new, transaction_id)
            # the copies this load writes, durable before the loader may send a row to them
            self.store.add_targets(transaction_id, [Target(c, w) for c, ws in result.items() for w in ws])
            mine = self._pending.setdefault(transaction_id, (family, {}))[1]
            for c in fresh:
                mine[c] = result[c]
        # the table exists on every worker before it is told to send rows there
        with self._lock:
            ready = self._ready.get(transaction_id, set())
            needed = sorted({w for ws in result.values() for w in ws} - ready)
        if needed:
            self._ensure_table(transaction_id, self.table(t.database, t.table), [active[w] for w in needed])
        return {
            c: [{"name": w, "address": active[w].address} for w in workers] for c, workers in result.items()
        }

    def stage_index(self, transaction_id: int, rows: pa.Table) -> None:
        """Stage director index rows (key, chunk, subchunk) of a director load; of a match load,
        the keys of one side without a director row (``subchunk``: the side, loader/match.py)."""
        t = self._open(transaction_id)
        table = self.table(t.database, t.table)
        if table.kind is TableKind.MATCH:
            sides = set(rows.column(2).to_pylist()) if rows.num_columns == 3 else set()
            if len(sides) != 1 or not sides <= {MATCH_SIDE_LEFT, MATCH_SIDE_RIGHT}:
                raise InvalidParameter("match index rows must be (key, chunk, side) of one side (1 or 2)")
            self.index.stage(transaction_id, table.database, match_side_index(table.name, sides.pop()), rows)
            return
        if table.kind is not TableKind.DIRECTOR and not (table.kind is TableKind.CHILD and table.lon_column):
            raise InvalidParameter(f"{table.database}.{table.name} is not a director table")
        # a child with its own position: the keys of its rows without a director row
        self.index.stage(transaction_id, table.database, table.name, rows)

    def lookup(self, database: str, table: str, keys: pa.Array) -> pa.Array:
        """Chunk of each director key (null when absent)."""
        t = self.table(database, table)
        if t.kind is not TableKind.DIRECTOR:
            raise InvalidParameter(f"{t.database}.{t.name} is not a director table")
        if t.non_unique_key:  # a key may be in several chunks: no one chunk to answer
            raise InvalidParameter(
                f"director {t.database}.{t.name} has non-unique keys: a key names no one chunk"
            )
        return self.index.lookup(t.database, t.name, keys)

    def commit(self, transaction_id: int, chunk_rows: dict[int, int], rows: int) -> dict[str, Any]:
        """Record row counts, then publish everywhere; a DataError aborts the transaction."""
        t = self._transaction(transaction_id)
        if t.state is TransactionState.COMMITTED:
            return transaction_to_json(t)
        # check, COMMITTING and the index publication: one step per table (module docstring)
        with self._table_lock(t.database, t.table):
            t = self._transaction(transaction_id)
            if t.state is TransactionState.STARTED:
                self._check_copies(t)
                self._publish_committing(t)
                table = self.table(t.database, t.table)
                try:
                    # a child's staged keys are those of rows without a director row: any repeat
                    self.index.check(
                        transaction_id, unique=table.kind is TableKind.DIRECTOR and not table.non_unique_key
                    )
                    if table.kind is TableKind.DIRECTOR:
                        self.index.check_orphans(
                            transaction_id, table.database, self._positioned_children(table)
                        )
                        self.index.check_unmatched(transaction_id, self._match_sides(table))
                except QservError:
                    self._abort(transaction_id)
                    raise
                self.store.add_chunk_rows(
                    transaction_id,
                    [ChunkRows(t.database, t.table, c, n) for c, n in sorted(chunk_rows.items())],
                )
                self.store.set_transaction_state(transaction_id, TransactionState.COMMITTING, rows)
                self.index.publish(transaction_id)
            elif t.state is not TransactionState.COMMITTING:
                raise InvalidParameter(
                    f"transaction {transaction_id} is {t.state.value}; it cannot be committed",
                    hint="begin a new transaction",
                )
        self._finish(transaction_id)
        return transaction_to_json(self._transaction(transaction_id))

    def _positioned_children(self, director: Table) -> list[str]:
        """Children of ``director`` loaded with their own positions (they may hold rows it lacks)."""
        return [
            c.name
            for c in self.store.catalog().tables_of(director.database)
            if c.kind is TableKind.CHILD
            and c.lon_column
            and (c.director or "").lower() == director.name.lower()
        ]

    def _match_sides(self, director: Table) -> list[tuple[str, str, int]]:
        """(database, match table, side) of the match tables with ``director`` on a side."""
        name = f"{director.database}.{director.name}".lower()
        return [
            (m.database, m.name, side)
            for m in self.store.catalog().tables
            if m.kind is TableKind.MATCH
            for side, d in ((MATCH_SIDE_LEFT, m.left_director), (MATCH_SIDE_RIGHT, m.right_director))
            if (d or "").lower() == name
        ]

    def _publish_committing(self, t: Transaction) -> None:
        """Publish the keys of the table's other COMMITTING transactions (a crash left them)."""
        for other in self.store.transactions(t.database, TransactionState.COMMITTING):
            if other.transaction_id != t.transaction_id and other.table.lower() == t.table.lower():
                self.index.publish(other.transaction_id)

    def _check_copies(self, t: Transaction) -> None:
        """Abort ``t`` (error naming the chunk) if a chunk of it could be left without a complete copy.

        Runs before anything is published: the workers that can commit are the active target
        workers that answer a health probe now.
        """
        targets = self.store.targets(t.transaction_id)
        names = {x.worker for x in targets}
        candidates = [w for w in self._active_workers() if w.name in names]
        with ThreadPoolExecutor(max_workers=max(1, len(candidates)), thread_name_prefix="probe") as pool:
            answers = list(pool.map(self._answers, candidates))
        reachable = {w.name for w, ok in zip(candidates, answers, strict=True) if ok}
        s = settlement(self.store, self._family(t), t.transaction_id, reachable)
        if s.orphans:
            self._abort(t.transaction_id)
            raise orphan_error(self.store, t, s, "the transaction was aborted and nothing of it is visible")

    def _family(self, t: Transaction) -> str:
        return self._database(t.database).partitioning.family

    def _answers(self, worker: WorkerInfo) -> bool:
        try:
            self.clients.call(worker, lambda c: c.health(timeout=PROBE_TIMEOUT_S))
            return True
        except QservError:
            return False

    def _finish(self, transaction_id: int) -> None:
        """Publish a COMMITTING transaction: index, every worker, then COMMITTED (idempotent).

        A target worker that is down or fails to commit misses the transaction: its copies are
        dropped (module docstring). If a chunk would be left without a complete copy (its
        workers all failed since the commit's check), the transaction stays COMMITTING and is
        finished when they are back (a rerun of the load, or a czar restart).
        """
        t = self._transaction(transaction_id)
        workers = self._active_workers()
        failures: dict[str, QservError] = {}

        def commit_on(w: WorkerInfo) -> None:
            try:
                self.clients.call(w, lambda c: c.commit(transaction_id))
            except WorkerUnavailable as e:
                failures[w.name] = e

        # Workers publish in parallel (each sorts its staged rows), and so does the index.
        with ThreadPoolExecutor(max_workers=len(workers) + 1, thread_name_prefix="commit") as pool:
            futures = [pool.submit(commit_on, w) for w in workers]
            futures.append(pool.submit(self.index.publish, transaction_id))
            for f in futures:
                f.result()
        committed = {w.name for w in workers} - set(failures)
        s = settlement(self.store, self._family(t), transaction_id, committed)
        if s.orphans:
            raise orphan_error(self.store, t, s, "it stays committing until those workers are back")
        if failures and not self.store.targets(transaction_id):
            raise next(iter(failures.values()))  # a transaction of a store without targets
        self.store.finish_transaction(transaction_id, TransactionState.COMMITTED, committed, s.dropped)
        # the chunks' rows changed: their replicas' last verifications say nothing of them now
        changed = {x.chunk_id for x in self.store.targets(transaction_id) if x.chunk_id is not None}
        if changed:
            self.store.clear_checks(self._family(t), changed)
        if s.dropped:
            _log.warning(
                "transaction %d: dropped %d copies that missed the commit (now under-replicated): %s",
                transaction_id, len(s.dropped), ", ".join(f"chunk {r.chunk_id} on {r.worker}" for r in s.dropped[:20]),
            )  # fmt: skip
        self._forget(transaction_id)
        self._on_change()

    def abort(self, transaction_id: int) -> dict[str, Any]:
        t = self._transaction(transaction_id)
        with self._table_lock(t.database, t.table):  # not while its commit is checking
            t = self._transaction(transaction_id)
            if t.state in (TransactionState.COMMITTING, TransactionState.COMMITTED):
                raise InvalidParameter(
                    f"transaction {transaction_id} is {t.state.value}; it cannot be aborted"
                )
            self._abort(transaction_id)
        return transaction_to_json(self._transaction(transaction_id))

    def _abort(self, transaction_id: int) -> None:
        cleared = set()
        for w in self._active_workers():
            try:
                self.clients.call(w, lambda c: c.abort(transaction_id))
                cleared.add(w.name)
            except WorkerUnavailable:
                _log.warning("worker %s unreachable while aborting transaction %d", w.name, transaction_id)
        self.index.abort(transaction_id)
        # target workers that did not answer clear their staged rows later (clear_missed)
        self.store.finish_transaction(transaction_id, TransactionState.ABORTED, cleared)
        self._forget(transaction_id)

    def clear_missed(self) -> int:
        """Tell active workers that missed a transaction to drop its staged rows (best effort;
        the replication controller does it too when a worker comes back); how many did."""
        if not self.store.missed_targets():
            return 0
        active = {w.name: w for w in self._active_workers()}

        def abort(name: str, transaction_id: int) -> None:
            self.clients.call(active[name], lambda c: c.abort(transaction_id, timeout=ABORT_TIMEOUT_S))

        return clear_missed(self.store, set(active), abort)

    def _forget(self, transaction_id: int) -> None:
        # Once a transaction ends its replicas are committed (store) or gone (aborted).
        with self._lock:
            self._pending.pop(transaction_id, None)
            self._ready.pop(transaction_id, None)


def resume_transactions(
    store: MetadataStore, director_index: DirectorIndex, clients: WorkerClients | None = None
) -> list[int]:
    """Finish commits interrupted by a czar restart; the ids of the transactions finished."""
    ingest = Ingest(store, director_index, 1, clients)
    ingest.clear_missed()
    done = []
    for t in store.transactions(state=TransactionState.COMMITTING):
        try:
            ingest._finish(t.transaction_id)
            done.append(t.transaction_id)
        except QservError as e:
            _log.warning("transaction %d still committing: %s", t.transaction_id, e)
    if clients is None:
        ingest.clients.close()
    return done
