"""The replication controller loop (``qserv replicad``): observe, decide, act.

Each round (every ``health_interval`` seconds) the controller

1. **observes**: probes every worker in parallel, folds the answers into the workers' health
   (:mod:`qserv.replica.health`: ACTIVE/DOWN, and since when each has been silent), and reads
   the replicas the metadata store records;
2. **decides**: :func:`qserv.replica.policy.policy` turns that state, with the copies it has in
   flight, into actions (evict, copy, drop, re-admit, report lost chunks);
3. **acts**: a worker coming back from DOWN is brought up to date before it serves again
   (:mod:`qserv.replica.rejoin`); copies run worker to worker on threads of their own and are
   recorded when committed (:mod:`qserv.replica.copier`); evictions and drops go to the store.

The controller holds no state the store does not also have, beyond copies in flight, deletions
pending and probe history: a restarted controller starts over from the store (a copy it had in
flight is simply made again; a worker's silence is timed again from the restart).
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from qserv.catalog import Catalog
from qserv.config import Config, ReplicationConfig
from qserv.errors import QservError
from qserv.log import event
from qserv.metadata import (
    MetadataStore,
    Replica,
    ReplicaCheck,
    WorkerInfo,
    WorkerState,
    open_store,
)
from qserv.replica import settings
from qserv.replica.copier import Copier, family_databases
from qserv.replica.garbage import GC_INTERVAL_S, orphans
from qserv.replica.health import HealthState, observe
from qserv.replica.loads import committing
from qserv.replica.policy import (
    Action,
    ClusterState,
    Copy,
    CopyTable,
    Drop,
    Enable,
    Evict,
    Lost,
    PolicyLimits,
    ReplicaStatus,
    ReplicaView,
    TableView,
    Verify,
    WorkerMode,
    WorkerView,
    summary,
)
from qserv.replica.policy import policy as decide
from qserv.replica.rejoin import rejoin
from qserv.replica.status import MODES
from qserv.replica.verifier import Verifier
from qserv.rpc.client import WorkerClient

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 2.0
MIN_ROUND_S = 0.25
FULL_CHECK_S = 30.0  # an idle cluster's replicas are read and decided on at least this often


def limits_of(config: ReplicationConfig) -> PolicyLimits:
    return PolicyLimits(
        evict_timeout=config.evict_timeout,
        max_copies_per_worker=config.max_copies_per_worker,
        max_rebalance_moves=config.max_rebalance_moves,
        verify_interval=config.verify_interval or None,
        max_verifications=config.max_verifications,
    )


class Controller:
    """One replication controller over one metadata store; :meth:`round` is one observe-decide-act."""

    def __init__(self, config: ReplicationConfig, store: MetadataStore) -> None:
        self._config = config
        self._store = store
        self._limits = limits_of(config)
        self._clients: dict[str, WorkerClient] = {}
        self._health: dict[str, HealthState] = {}
        self._probes = ThreadPoolExecutor(max_workers=16, thread_name_prefix="probe")
        # set when a copy or a verification ends: the loop runs the next round at once, so a
        # recovery goes at the speed of its copies, not one batch per health interval
        self.wake = threading.Event()
        self._copier = Copier(store, config, self._client, on_done=self.wake.set)
        self._verifier = Verifier(store, self._client, on_done=self.wake.set)
        self._verify_request = 0  # the operator's verification being carried out (0: none)
        self._wake = 0  # the last operator request for a round that was seen
        self._reported_lost: set[tuple[str, int]] = set()
        self._lost: list[tuple[str, int]] = []
        self._status: dict[str, object] | None = None
        self._moving = True  # whether the last decision moved replicas (copies, drops, states)
        self._signature: tuple[tuple[str, WorkerMode, bool], ...] = ()
        self._acted = True  # the first round decides
        self._full_check = 0.0
        self._next_gc = 0.0  # the first deciding round looks for rows without a replica

    def close(self) -> None:
        self._verifier.close()
        self._copier.close()
        self._probes.shutdown(wait=False, cancel_futures=True)
        for client in self._clients.values():
            client.close()

    def _client(self, worker: WorkerInfo) -> WorkerClient:
        client = self._clients.get(worker.address)
        if client is None:
            client = self._clients[worker.address] = WorkerClient(worker.address)
        return client

    def _probe(self, worker: WorkerInfo) -> bool:
        try:
            self._client(worker).health(timeout=PROBE_TIMEOUT_S)
            return True
        except Exception:  # any failure to answer is a failed probe
            return False

    def round(self, now: float | None = None) -> None:
        """Observe the cluster, decide, act (copies are started, not waited for)."""
        now = time.monotonic() if now is None else now
        workers = {w.name: w for w in self._store.workers()}
        for w in workers.values():
            # the store's state is the truth (an operator may have changed it); health keeps
            # the probe history
            old = self._health.get(w.name)
            self._health[w.name] = HealthState(w.state) if old is None else replace(old, state=w.state)
        names = sorted(workers)
        answers = dict(zip(names, self._probes.map(self._probe, [workers[n] for n in names]), strict=True))
        self._health, changes = observe(self._health, answers, now=now)
        for change in changes:
            if change.state is WorkerState.ACTIVE and not self._rejoin(workers[change.worker]):
                self._health[change.worker] = HealthState(WorkerState.DOWN)
                continue
            self._set_state(change.worker, change.state)
        if self._copier.collect(now):
            self._acted = True  # copies finished: the next ones may start now, not at a full check
        level = settings.replication_level(self._store, self._config.level)
        wake, verify = settings.requests(self._store)
        views = self._views(workers, answers, now)
        damaged = settings.take_damaged(self._store)
        if (
            self._quiet(views, now, wake)
            and not damaged
            and not self._verifier.busy()
            and verify <= self._verify_request
        ):
            self._report(level, views, None)
            return
        catalog = self._store.catalog()
        recorded = self._store.replicas()
        checks = {(c.family, c.chunk_id, c.worker): c for c in self._store.replica_checks()}
        state = self._state(views, recorded, checks, level)
        actions = decide(state, self._limits)
        for action in actions:
            self._act(action, workers, catalog, now)
        self._copier.start([a for a in actions if isinstance(a, Copy)], workers, catalog)
        self._copier.start_tables([a for a in actions if isinstance(a, CopyTable)], workers, catalog)
        self._acted = any(not isinstance(a, (Lost, Verify)) for a in actions)
        self._moving = any(isinstance(a, (Copy, CopyTable, Drop, Evict, Enable)) for a in actions)
        self._lost = [(a.family, a.chunk) for a in actions if isinstance(a, Lost)]
        if now >= self._next_gc:
            self._next_gc = now + GC_INTERVAL_S
            self._collect_garbage(workers, catalog, recorded, state, now)
        if self._copier.deletions_pending():
            registered = {(r.family, r.chunk_id, r.worker) for r in self._store.replicas()}
            self._copier.delete_due(now, workers, registered, self._loading(catalog))
        self._verify(verify, damaged, actions, state, workers, catalog)
        self._report(level, views, state)

    def _loading(self, catalog: Catalog) -> set[str]:
        """Families with a load committing."""
        families = {db.partitioning.family for db in catalog.databases}
        return committing(self._store, {f: family_databases(catalog, f) for f in families})

    def _collect_garbage(
        self,
        workers: dict[str, WorkerInfo],
        catalog: Catalog,
        recorded: list[Replica],
        state: ClusterState,
        now: float,
    ) -> None:
        """Find rows on serving workers that no replica accounts for (:mod:`qserv.replica.garbage`)."""
        serving = sorted(v.name for v in state.workers if v.serving)
        families = {db.name: db.partitioning.family for db in catalog.databases}

        def held(name: str) -> dict[tuple[str, str], set[int]]:
            out: dict[tuple[str, str], set[int]] = defaultdict(set)
            client = self._client(workers[name])
            for db, family in families.items():
                for stat in client.chunk_stats(db):
                    if stat.chunk_id >= 0 and stat.rows > 0:
                        out[(family, name)].add(stat.chunk_id)
            return out

        found: dict[tuple[str, str], set[int]] = {}
        try:
            for part in self._probes.map(held, serving):
                found.update(part)
        except QservError as exc:  # a worker went away: the next pass looks again
            event(log, "looking for rows without a replica failed", logging.WARNING, error=exc.message)
            return
        registered = {(r.family, r.chunk_id, r.worker) for r in recorded}
        lost = orphans(found, registered, self._copier.pending(), self._loading(catalog))
        self._copier.schedule_orphans(lost, catalog, now)

    def _verify(
        self,
        requested: int,
        damaged: dict[str, set[int] | None],
        actions: list[Action],
        state: ClusterState,
        workers: dict[str, WorkerInfo],
        catalog: Catalog,
    ) -> None:
        """Queue due, requested and damaged (reported by queries) verifications, start the next
        job, record what was found."""
        serving = {v.name for v in state.workers if v.serving}
        holders: dict[tuple[str, int], list[str]] = defaultdict(list)
        for r in state.replicas:
            if r.worker in serving and r.status is not ReplicaStatus.COPYING:
                holders[r.key].append(r.worker)
        if requested > self._verify_request:
            self._verify_request = requested
            self._verifier.request(holders)
            event(log, "verification of every replica requested", chunks=len(holders), request=requested)
        self._verifier.request((a.family, a.chunk) for a in actions if isinstance(a, Verify))
        if damaged:
            # queries could not read these chunks on these workers: verify every family's copy
            suspect = [key for key, hs in holders.items() if any(_reported(damaged, w, key[1]) for w in hs)]
            self._verifier.request(suspect)
            event(
                log,
                "verification of damaged replicas requested",
                logging.WARNING,
                workers=",".join(sorted(damaged)),
                chunks=len(suspect),
            )
        copying = {(f, c) for f, c, _ in self._copier.in_flight()}
        report = self._verifier.step(workers, dict(holders), catalog, copying)
        if report is not None:
            self._acted = True  # corrupt replicas are repaired in the next round
        if self._verify_request and not self._verifier.busy():
            settings.set_verified(self._store, self._verify_request)

    def _report(self, level: int, views: tuple[WorkerView, ...], state: ClusterState | None) -> None:
        """The controller's status for ``qserv replica status`` (a heartbeat every round)."""
        doc: dict[str, object] = {
            "at": time.time(),
            "level": level,
            "copies_in_flight": len(self._copier.in_flight()),
            "deletions_pending": self._copier.pending_deletions(),
            "verifying": self._verifier.busy(),
            # nothing left to do: the last decision found nothing and no copy is running
            "round_request": self._wake,  # the last operator request a decision saw
            # (verification is background work: not waited for by replicate, rebalance, purge)
            "idle": not self._moving and not self._copier.in_flight() and not self._copier.tables_in_flight(),
            "lost": [list(k) for k in self._lost[:1000]],
            "down": [v.name for v in views if not v.alive],
        }
        if state is not None:
            doc["summary"] = summary(state)
        last = self._verifier.last
        if last is not None:
            doc["last_verification"] = {
                "verified": last.verified,
                "corrupt": [list(k) for k in last.corrupt[:1000]],
                "conflicts": [list(k) for k in last.conflicts[:1000]],
            }
        previous = self._status
        if state is None and previous is not None:  # a quiet round: the last decisions stand
            doc = {
                **previous,
                **{
                    k: doc[k]
                    for k in (
                        "at",
                        "copies_in_flight",
                        "deletions_pending",
                        "verifying",
                        "idle",
                        "round_request",
                    )
                },
            }
        self._status = doc
        settings.set_controller_status(self._store, json.dumps(doc))

    def _quiet(self, views: tuple[WorkerView, ...], now: float, wake: int) -> bool:
        """Whether this round can skip reading the replicas: nothing changed since a round that
        found nothing to do (a full check still runs every ``FULL_CHECK_S``). Reading 20,000
        replicas and deciding costs ~0.2 s of CPU: every 2 s on an idle cluster, a tenth of a core.
        """
        signature = tuple((v.name, v.mode, v.alive) for v in views)
        waiting = any(not v.alive and v.mode in (WorkerMode.ENABLED, WorkerMode.READ_ONLY) for v in views)
        quiet = (
            signature == self._signature
            and wake == self._wake
            and not waiting
            and not self._acted
            and not self._copier.busy()
            and now - self._full_check < FULL_CHECK_S
        )
        if not quiet:
            self._signature, self._full_check, self._wake = signature, now, wake
        return quiet

    def _views(
        self, workers: dict[str, WorkerInfo], answers: dict[str, bool], now: float
    ) -> tuple[WorkerView, ...]:
        views = []
        for name in sorted(workers):
            health = self._health[name]
            alive = answers[name] and health.state is not WorkerState.DOWN
            views.append(WorkerView(name, MODES[health.state], alive, health.silent_for(now)))
        return tuple(views)

    def _state(
        self,
        views: tuple[WorkerView, ...],
        recorded: list[Replica],
        checks: dict[tuple[str, int, str], ReplicaCheck],
        level: int,
    ) -> ClusterState:
        wall = time.time()
        replicas = []
        for r in recorded:
            check = checks.get((r.family, r.chunk_id, r.worker))
            status = ReplicaStatus.CORRUPT if check is not None and check.corrupt else ReplicaStatus.GOOD
            age = None if check is None else max(0.0, wall - check.checked_at)
            replicas.append(ReplicaView(r.family, r.chunk_id, r.worker, status, age))
        held = {(r.family, r.chunk_id, r.worker) for r in recorded}
        replicas += [
            ReplicaView(f, c, w, ReplicaStatus.COPYING)
            for f, c, w in self._copier.in_flight()
            if (f, c, w) not in held
        ]
        flying = self._copier.tables_in_flight()
        tables = tuple(
            TableView(
                c.database,
                c.table,
                c.workers,
                frozenset(w for d, t, w in flying if (d, t) == (c.database.lower(), c.table.lower())),
            )
            for c in self._store.table_copies()
        )
        return ClusterState(level, views, tuple(replicas), tables)

    def _act(self, action: Action, workers: dict[str, WorkerInfo], catalog: Catalog, now: float) -> None:
        if isinstance(action, Evict):
            self._set_state(action.worker, WorkerState.EVICTED)
        elif isinstance(action, Enable):
            if self._rejoin(workers[action.worker]):
                self._set_state(action.worker, WorkerState.ACTIVE)
        elif isinstance(action, Drop):
            self._copier.drop(action, catalog, now)
        elif isinstance(action, Lost):
            key = (action.family, action.chunk)
            if key not in self._reported_lost:
                self._reported_lost.add(key)
                event(
                    log,
                    "chunk lost: no replica left on any worker that serves or may return",
                    logging.ERROR,
                    family=action.family,
                    chunk=action.chunk,
                )

    def _rejoin(self, worker: WorkerInfo) -> bool:
        try:
            rejoin(self._store, worker.name, self._client(worker))
        except QservError as exc:  # not up to date: it stays out, tried again next round
            event(log, "worker not rejoined yet", worker=worker.name, error=exc.message)
            return False
        # what it held while away may have been damaged with it: verified against the others
        self._verifier.request(
            (r.family, r.chunk_id) for r in self._store.replicas() if r.worker == worker.name
        )
        return True

    def _set_state(self, worker: str, state: WorkerState) -> None:
        self._store.set_worker_state(worker, state)
        self._copier.forget(worker)
        self._health[worker] = replace(self._health[worker], state=state)
        level = logging.WARNING if state in (WorkerState.DOWN, WorkerState.EVICTED) else logging.INFO
        event(log, "worker state changed", level, worker=worker, state=state.value)


def run(config: Config, stop: threading.Event | None = None) -> None:
    """Run rounds every ``health_interval`` seconds until ``stop`` (or SIGINT/SIGTERM)."""
    stop = stop or threading.Event()
    store = open_store(config.metadata_url())
    controller = Controller(config.replication, store)

    def halt(*_: object) -> None:
        stop.set()
        controller.wake.set()

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, halt)
    event(
        log,
        "replication controller ready",
        metadata=config.metadata_url(),
        level=config.replication.level,
        evict_timeout=config.replication.evict_timeout,
    )
    try:
        while not stop.is_set():
            started = time.monotonic()
            try:
                controller.round()
            except QservError as exc:  # the store or a worker failed this round: try the next
                event(log, "replication round failed", logging.WARNING, error=exc.message)
            controller.wake.wait(config.replication.health_interval)
            controller.wake.clear()
            # woken by a finished copy: never faster than this (copies failing at once must
            # not spin the loop)
            stop.wait(max(0.0, MIN_ROUND_S - (time.monotonic() - started)))
    finally:
        controller.close()
        store.close()
        event(log, "replication controller stopped")


def _reported(damaged: dict[str, set[int] | None], worker: str, chunk: int) -> bool:
    """Whether a query reported ``chunk`` unreadable on ``worker`` (None: all its chunks)."""
    if worker not in damaged:
        return False
    chunks = damaged[worker]
    return chunks is None or chunk in chunks
