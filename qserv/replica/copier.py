"""Carrying out the policy's copies and drops: chunk copies in flight, deferred deletions.

A copy is the target worker pulling the family chunk from the source (``PullChunk``, see
:mod:`worker.chunk_copy`); it runs on a thread of its own, and the replica is recorded in the
metadata store only once the target has committed it, so the czar never plans on a replica
without its rows. A copy must not miss a load: rows a transaction commits while the copy reads
its snapshot would be absent from the new replica. So a copy does not start while a load of the
family is committing, and is thrown away if a load published meanwhile (the rule of
:mod:`qserv.replica.loads`); the policy then asks for it again. A load merely open (its rows
staged) does not hold copies back: a stuck loader must not stop a recovery.

A drop forgets the replica in the store at once (new queries stop using it) and deletes its rows
on the worker ``drop_grace`` seconds later, so that a query planned on an older snapshot of the
placement still finds them. A later copy of the same chunk onto that worker cancels the pending
deletion (the copy replaces the rows anyway).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from qserv.catalog import Catalog
from qserv.config import ReplicationConfig
from qserv.errors import QservError
from qserv.log import event
from qserv.metadata import MetadataStore, Replica, ReplicaCheck, WorkerInfo
from qserv.replica.loads import Epoch, epoch, overtaken
from qserv.replica.policy import Copy, CopyTable, Drop
from qserv.replica.verify import digests
from qserv.rpc.client import TableChecksum, WorkerClient

log = logging.getLogger(__name__)

ReplicaKey = tuple[str, int, str]
"""(family, chunk, worker)."""


def family_databases(catalog: Catalog, family: str) -> list[str]:
    """The databases of one family (a family chunk holds the chunk of each)."""
    return sorted(db.name for db in catalog.databases if db.partitioning.family == family)


@dataclass
class _TableBatch:
    """Regular tables of one database copied from one source to one target in one call."""

    database: str
    source: str
    target: str
    tables: list[tuple[str, str]]
    since: Epoch  # the loads when it started (qserv.replica.loads)
    future: Future[list[TableChecksum]]


@dataclass
class _Batch:
    """Chunks of one family copied from one source to one target in one call."""

    family: str
    source: str
    target: str
    chunks: list[int]
    reasons: list[str]
    databases: list[str]
    since: Epoch  # the loads of the family's databases when it started (qserv.replica.loads)
    future: Future[list[TableChecksum]]


class Copier:
    """The copies in flight and the deletions pending; driven by the controller's rounds."""

    def __init__(
        self,
        store: MetadataStore,
        config: ReplicationConfig,
        client_of: Callable[[WorkerInfo], WorkerClient],
        on_done: Callable[[], None] = lambda: None,
    ) -> None:
        self._store = store
        self._config = config
        self._client_of = client_of
        self._on_done = on_done  # a copy finished: the controller's next round need not wait
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="chunk-copy")
        self._lock = threading.Lock()
        self._in_flight: dict[ReplicaKey, _Batch] = {}
        self._tables_flight: dict[tuple[str, str, str], _TableBatch] = {}  # (database, table, target)
        self._drops: dict[ReplicaKey, tuple[float, list[str]]] = {}  # -> (due time, databases)
        self._tables_on: dict[str, int] = {}  # worker -> number of catalog tables created there

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def busy(self) -> bool:
        """Copies in flight or deletions pending."""
        with self._lock:
            return bool(self._in_flight or self._drops or self._tables_flight)

    def deletions_pending(self) -> bool:
        return bool(self._drops)

    def pending_deletions(self) -> int:
        return len(self._drops)

    def in_flight(self) -> list[ReplicaKey]:
        """(family, chunk, target) of the copies not finished yet."""
        with self._lock:
            return sorted(self._in_flight)

    # -- copies -------------------------------------------------------------------------------

    def start(self, copies: list[Copy], workers: dict[str, WorkerInfo], catalog: Catalog) -> int:
        """Start ``copies``, one call per (family, source, target) and batch; how many chunks started.

        A family with a load open waits (its copies are asked for again next round).
        """
        groups: dict[tuple[str, str, str], list[Copy]] = {}
        for c in copies:
            key = (c.family, c.chunk, c.target)
            if key not in self._in_flight and c.source in workers and c.target in workers:
                groups.setdefault((c.family, c.source, c.target), []).append(c)
        started = 0
        quiet: dict[str, Epoch | None] = {}
        for (family, source, target), group in sorted(groups.items()):
            if family not in quiet:
                quiet[family] = epoch(self._store, family_databases(catalog, family))
            last = quiet[family]
            if last is None:
                continue
            databases = family_databases(catalog, family)
            client = self._client_of(workers[target])
            try:
                # both ends store the same tables (a table a worker never got rows of may be missing)
                self._ensure_tables(source, self._client_of(workers[source]), catalog, set(databases))
                self._ensure_tables(target, client, catalog, set(databases))
            except QservError as exc:
                event(log, "chunk copy not started", logging.WARNING, worker=target, error=exc.message)
                continue
            size = max(1, self._config.copy_batch_chunks)
            for i in range(0, len(group), size):
                part = group[i : i + size]
                chunks = [p.chunk for p in part]
                for chunk in chunks:  # the copy replaces the rows a pending deletion would remove
                    self._drops.pop((family, chunk, target), None)
                future = self._pool.submit(
                    client.pull_chunks,
                    workers[source].address,
                    databases,
                    chunks,
                    timeout=self._config.copy_timeout,
                )
                future.add_done_callback(lambda _: self._on_done())
                batch = _Batch(
                    family, source, target, chunks, [c.reason for c in part], databases, last, future
                )
                with self._lock:
                    for chunk in chunks:
                        self._in_flight[(family, chunk, target)] = batch
                started += len(chunks)
                event(
                    log,
                    "chunk copy started",
                    family=family,
                    chunks=_show(chunks),
                    source=source,
                    target=target,
                    reason=",".join(sorted(set(batch.reasons))),
                )
        return started

    def forget(self, worker: str) -> None:
        """The worker changed state (it may have restarted on an empty data dir)."""
        self._tables_on.pop(worker, None)

    def _ensure_tables(self, name: str, client: WorkerClient, catalog: Catalog, databases: set[str]) -> None:
        # a worker that joined, or missed a table creation while down, gets every table first
        if self._tables_on.get(name) == len(catalog.tables):
            return
        for t in catalog.tables:
            if t.database in databases:
                client.create_table(t.database, t.name, t.kind, t.worker_columns)
        self._tables_on[name] = len(catalog.tables)

    def collect(self, now: float) -> bool:
        """Record the finished copies' replicas (or throw away those a load overtook); whether
        any copy finished (the placement changed, or a copy must be made again)."""
        tables_done = self._collect_tables()
        with self._lock:
            done = {id(b): b for b in self._in_flight.values() if b.future.done()}
            for key in [k for k, b in self._in_flight.items() if id(b) in done]:
                del self._in_flight[key]
        for batch in done.values():
            try:
                tables = batch.future.result()
            except Exception as exc:  # the target rolled back: nothing changed there
                self._tables_on.pop(batch.target, None)  # its tables are checked again first
                message = exc.message if isinstance(exc, QservError) else f"{type(exc).__name__}: {exc}"
                event(
                    log,
                    "chunk copy failed",
                    logging.WARNING,
                    chunks=_show(batch.chunks),
                    source=batch.source,
                    target=batch.target,
                    error=message,
                )
                continue
            if overtaken(self._store, batch.databases, batch.since):
                event(log, "chunk copy overtaken by a load; copied again later", chunks=_show(batch.chunks))
                for c in batch.chunks:
                    self._drops[(batch.family, c, batch.target)] = (now, batch.databases)
                continue
            self._store.add_replicas([Replica(batch.family, c, batch.target) for c in batch.chunks])
            # a copy is as good as its source: recorded as verified (a repair clears "corrupt")
            found, at = digests(tables), time.time()
            self._store.record_checks(
                [
                    ReplicaCheck(batch.family, c, batch.target, found[c], False, at)
                    for c in batch.chunks
                    if c in found
                ]
            )
            event(
                log,
                "chunks copied",
                family=batch.family,
                chunks=_show(batch.chunks),
                source=batch.source,
                target=batch.target,
                rows=sum(t.rows for t in tables),
            )
        return tables_done or bool(done)

    # -- regular tables -----------------------------------------------------------------------

    def tables_in_flight(self) -> set[tuple[str, str, str]]:
        """(database, table, target), lower-case names, of the table copies not finished yet."""
        with self._lock:
            return {(d.lower(), t.lower(), w) for d, t, w in self._tables_flight}

    def start_tables(self, copies: list[CopyTable], workers: dict[str, WorkerInfo], catalog: Catalog) -> None:
        """Start the regular-table copies, one call per (database, source, target)."""
        groups: dict[tuple[str, str, str], list[str]] = {}
        for c in copies:
            if (c.database, c.table, c.target) in self._tables_flight:
                continue
            if c.source in workers and c.target in workers:
                groups.setdefault((c.database, c.source, c.target), []).append(c.table)
        for (database, source, target), tables in sorted(groups.items()):
            last = epoch(self._store, [database])
            if last is None:
                continue
            client = self._client_of(workers[target])
            try:
                self._ensure_tables(target, client, catalog, {database})
            except QservError as exc:
                event(log, "table copy not started", logging.WARNING, worker=target, error=exc.message)
                continue
            names = [(database, t) for t in sorted(tables)]
            future = self._pool.submit(
                client.pull_tables, workers[source].address, names, timeout=self._config.copy_timeout
            )
            future.add_done_callback(lambda _: self._on_done())
            batch = _TableBatch(database, source, target, names, last, future)
            with self._lock:
                for _, t in names:
                    self._tables_flight[(database, t, target)] = batch
            event(
                log,
                "table copy started",
                database=database,
                tables=",".join(tables),
                source=source,
                target=target,
            )

    def _collect_tables(self) -> bool:
        with self._lock:
            done = {id(b): b for b in self._tables_flight.values() if b.future.done()}
            for key in [k for k, b in self._tables_flight.items() if id(b) in done]:
                del self._tables_flight[key]
        for batch in done.values():
            what = ",".join(t for _, t in batch.tables)
            try:
                installed = batch.future.result()
            except Exception as exc:  # rolled back on the target: nothing changed there
                self._tables_on.pop(batch.target, None)
                message = exc.message if isinstance(exc, QservError) else f"{type(exc).__name__}: {exc}"
                event(
                    log, "table copy failed", logging.WARNING, tables=what, target=batch.target, error=message
                )
                continue
            if overtaken(self._store, [batch.database], batch.since):
                event(log, "table copy overtaken by a load; copied again later", tables=what)
                continue
            for database, table in batch.tables:
                self._store.record_table_copy(database, table, batch.target)
            event(
                log,
                "tables copied",
                database=batch.database,
                tables=what,
                source=batch.source,
                target=batch.target,
                rows=sum(t.rows for t in installed),
            )
        return bool(done)

    # -- drops --------------------------------------------------------------------------------

    def drop(self, action: Drop, catalog: Catalog, now: float) -> None:
        """Forget the replica now; delete its rows after ``drop_grace``."""
        self._store.remove_replica(Replica(action.family, action.chunk, action.worker))
        self._drops[(action.family, action.chunk, action.worker)] = (
            now + self._config.drop_grace,
            family_databases(catalog, action.family),
        )
        event(
            log,
            "replica dropped",
            family=action.family,
            chunk=action.chunk,
            worker=action.worker,
            reason=action.reason,
        )

    def schedule_orphans(self, keys: list[ReplicaKey], catalog: Catalog, now: float) -> None:
        """Delete rows no replica accounts for (:mod:`qserv.replica.garbage`) after the grace."""
        for family, chunk, worker in keys:
            self._drops.setdefault(
                (family, chunk, worker), (now + self._config.drop_grace, family_databases(catalog, family))
            )
        if keys:
            event(log, "rows without a replica found; deleted after the grace", chunks=len(keys))

    def pending(self) -> set[ReplicaKey]:
        """Copies in flight and deletions pending."""
        with self._lock:
            return set(self._in_flight) | set(self._drops)

    def delete_due(
        self,
        now: float,
        workers: dict[str, WorkerInfo],
        registered: set[ReplicaKey],
        loading: Collection[str] = (),
    ) -> None:
        """Delete the rows of dropped replicas whose grace is over, one call per worker and family
        (retried next round while a worker is away, or while a load of the family is open: its
        new chunks have rows before their replicas are visible)."""
        due: dict[tuple[str, str], list[int]] = {}
        for key, (when, _) in sorted(self._drops.items()):
            if when > now or key[0] in loading:
                continue
            family, chunk, worker = key
            if key in registered or key in self._in_flight or worker not in workers:
                del self._drops[key]  # a replica again (its rows are wanted), or a worker gone
                continue
            due.setdefault((worker, family), []).append(chunk)
        for (worker, family), chunks in sorted(due.items()):
            databases = self._drops[(family, chunks[0], worker)][1]
            try:
                self._client_of(workers[worker]).drop_chunks(databases, chunks)
            except QservError:
                continue  # unreachable now: tried again next round
            for chunk in chunks:
                del self._drops[(family, chunk, worker)]


def _show(chunks: list[int]) -> str:
    return ",".join(map(str, chunks[:8])) + (f",... ({len(chunks)})" if len(chunks) > 8 else "")
