"""The replication policy: what the controller should do next, as a pure function of state.

The controller loop (:mod:`qserv.replica.controller`) observes the cluster (worker probes, the
replicas the metadata store records, checksums of verifications) into a :class:`ClusterState`,
calls :func:`policy`, and carries out the actions it returns; nothing here talks to a worker,
so every rule is tested without a cluster (tests/unit/core/test_replica_policy.py).

The unit of replication is the *family chunk*: every table of every database of a family that
has rows in chunk ``c`` lives together on each worker holding ``c`` (near-neighbour and
director–child joins are chunk-local), so a copy or a drop always moves the whole family chunk.

Rules, applied in this order each round (later rules see the effect of earlier ones):

1. **Evict** a worker silent for ``evict_timeout`` seconds. Until then a down worker is only
   waited for: a restart of a few seconds must not trigger a cluster-wide copy storm.
2. **Count** a chunk's replicas: *good* ones are on serving workers (ENABLED or READ-ONLY, alive)
   and not corrupt; a replica being copied counts towards the level (no second copy is started),
   a replica on a worker that is down but not evicted is waited for, and one on an EVICTED or
   DISABLED worker never counts (an evicted worker that returns is never double-counted).
3. **Lost**: a chunk with no good replica, none being copied, and none on a worker that may
   come back is reported, every round, until an operator acts; nothing can be copied.
4. **Repair and re-replicate**: a chunk below the level gets copies from a good replica, first
   onto the ENABLED worker holding a corrupt replica of it (a repair in place), then onto the
   least-loaded ENABLED workers without it; at most ``max_copies_per_worker`` copies in flight
   per worker, as source or target, so a recovery does not starve queries.
5. **Reconcile**: the replicas of an evicted worker that answers again are dropped (they may
   be stale: the cluster went on without it) unless one is the last copy of its chunk (kept,
   and the chunk reported lost, for an operator to decide); once it holds none it is ENABLED
   again and rebalancing moves replicas onto it. A corrupt replica is dropped once its chunk
   is at its level without it (a repair in place was not needed, or it is on a READ-ONLY
   worker, which takes no copies).
6. **Purge** replicas above the level, from the most-loaded holders, only for chunks with no
   copy in flight.
7. **Rebalance** only a cluster with nothing else to do: while the most- and least-loaded
   ENABLED workers differ by more than one replica, copy a chunk from the most-loaded to the
   least-loaded (rule 6 then drops the extra copy from the most-loaded holder, its source:
   a move is a copy then a drop, never a moment below the level).
8. **Verify** replicas whose last verification is older than ``verify_interval``, oldest first,
   a bounded number per round.
9. **Resync regular tables**: every ENABLED worker holds every regular table whole; one that
   lacks a complete copy (it was down during a load of it, or joined later) gets the table
   copied from a serving worker that has one (within the same copy budget).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class WorkerMode(StrEnum):
    """A worker's administrative state (distinct from whether it answers probes)."""

    ENABLED = "enabled"  # serves queries, receives new replicas
    READ_ONLY = "read-only"  # serves queries, receives no replicas (being drained or full)
    DISABLED = "disabled"  # taken out by an operator: serves nothing, its replicas do not count
    EVICTED = "evicted"  # silent past evict_timeout: serves nothing, replicas re-made elsewhere


class ReplicaStatus(StrEnum):
    GOOD = "good"  # committed, checksum as recorded
    COPYING = "copying"  # a copy onto this worker is in flight
    CORRUPT = "corrupt"  # a verification found another checksum


@dataclass(frozen=True)
class WorkerView:
    """One worker as observed: its mode, whether its last probe answered, since when silent."""

    name: str
    mode: WorkerMode = WorkerMode.ENABLED
    alive: bool = True
    silent_for: float = 0.0  # seconds since the last answered probe (0 when alive)

    @property
    def serving(self) -> bool:
        return self.alive and self.mode in (WorkerMode.ENABLED, WorkerMode.READ_ONLY)

    @property
    def accepts_copies(self) -> bool:
        return self.alive and self.mode is WorkerMode.ENABLED


FamilyChunk = tuple[str, int]
"""(family, chunk id): what one replica holds."""


@dataclass(frozen=True)
class ReplicaView:
    family: str
    chunk: int
    worker: str
    status: ReplicaStatus = ReplicaStatus.GOOD
    verified_age: float | None = None  # seconds since last verified; None: never

    @property
    def key(self) -> FamilyChunk:
        return (self.family, self.chunk)


@dataclass(frozen=True)
class TableView:
    """A regular table: the workers holding a complete copy, and those a copy is in flight to."""

    database: str
    table: str
    holders: frozenset[str]
    copying: frozenset[str] = frozenset()


@dataclass(frozen=True)
class PolicyLimits:
    """The policy's knobs (from the one config object: ``config.replication``)."""

    evict_timeout: float = 60.0
    max_copies_per_worker: int = 2
    max_rebalance_moves: int = 4  # copies started by rebalancing per round
    verify_interval: float | None = None  # None: no scheduled verification
    max_verifications: int = 8  # per round


@dataclass(frozen=True)
class ClusterState:
    """One observation: the replication level, every worker, one replica per (family, chunk, worker)."""

    level: int
    workers: tuple[WorkerView, ...]
    replicas: tuple[ReplicaView, ...]
    tables: tuple[TableView, ...] = ()


# -- actions ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Evict:
    worker: str


@dataclass(frozen=True)
class Enable:
    """Re-admit an evicted worker that answers again and holds no replica."""

    worker: str


@dataclass(frozen=True)
class Copy:
    family: str
    chunk: int
    source: str
    target: str
    reason: str  # replicate | repair | rebalance


@dataclass(frozen=True)
class Drop:
    family: str
    chunk: int
    worker: str
    reason: str  # purge | stale | corrupt


@dataclass(frozen=True)
class CopyTable:
    """Copy a whole regular table from a worker with a complete copy onto one without."""

    database: str
    table: str
    source: str
    target: str


@dataclass(frozen=True)
class Lost:
    family: str
    chunk: int


@dataclass(frozen=True)
class Verify:
    family: str
    chunk: int
    worker: str


Action = Evict | Enable | Copy | CopyTable | Drop | Lost | Verify


# -- the policy -------------------------------------------------------------------------------


@dataclass
class _Round:
    """What the round has decided so far (loads and copies in flight include its own)."""

    workers: dict[str, WorkerView]
    load: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    copies: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    actions: list[Action] = field(default_factory=list)

    def can_copy(self, source: str, target: str, limits: PolicyLimits) -> bool:
        cap = limits.max_copies_per_worker
        return self.copies[source] < cap and self.copies[target] < cap

    def copy(self, key: FamilyChunk, source: str, target: str, reason: str) -> None:
        self.actions.append(Copy(key[0], key[1], source, target, reason))
        self.copies[source] += 1
        self.copies[target] += 1
        self.load[target] += 1


def policy(state: ClusterState, limits: PolicyLimits) -> list[Action]:
    """The actions to take now, deterministic for a given state (ties broken by name)."""
    workers = {w.name: w for w in state.workers}
    rnd = _Round(workers)
    for w in state.workers:  # rule 1
        if not w.alive and w.silent_for >= limits.evict_timeout and w.mode is not WorkerMode.EVICTED:
            rnd.actions.append(Evict(w.name))
            workers[w.name] = WorkerView(w.name, WorkerMode.EVICTED, False, w.silent_for)

    by_chunk: dict[FamilyChunk, list[ReplicaView]] = defaultdict(list)
    for r in state.replicas:
        by_chunk[r.key].append(r)
        if r.worker in workers and workers[r.worker].accepts_copies and r.status is not ReplicaStatus.CORRUPT:
            rnd.load[r.worker] += 1
        if r.status is ReplicaStatus.COPYING:
            rnd.copies[r.worker] += 1  # in flight: counts against the target's copy budget
    placeable = sorted(n for n, w in workers.items() if w.accepts_copies)
    level = min(state.level, len(placeable)) if placeable else 0

    busy = False  # anything below the level, being copied, or dropped: no rebalancing
    for key in sorted(by_chunk):
        busy |= _replicate(key, by_chunk[key], level, limits, rnd)
    busy |= _reconcile(state, by_chunk, level, rnd)
    for key in sorted(by_chunk):
        busy |= _purge(key, by_chunk[key], level, rnd)
    if not busy:
        _rebalance(by_chunk, placeable, limits, rnd)
    _verify(state.replicas, workers, limits, rnd)
    _resync_tables(state.tables, limits, rnd)
    return rnd.actions


def _good(replicas: Iterable[ReplicaView], workers: Mapping[str, WorkerView]) -> list[ReplicaView]:
    return [
        r
        for r in replicas
        if r.status is ReplicaStatus.GOOD and r.worker in workers and workers[r.worker].serving
    ]


def _replicate(
    key: FamilyChunk, replicas: list[ReplicaView], level: int, limits: PolicyLimits, rnd: _Round
) -> bool:
    """Rules 2-4 for one chunk; whether it is short of its level (or being copied)."""
    workers = rnd.workers
    good = _good(replicas, workers)
    copying = [
        r for r in replicas if r.status is ReplicaStatus.COPYING and workers.get(r.worker, _GONE).alive
    ]
    waiting = [
        r
        for r in replicas
        if r.status is ReplicaStatus.GOOD
        and r.worker in workers
        and not workers[r.worker].alive
        and workers[r.worker].mode in (WorkerMode.ENABLED, WorkerMode.READ_ONLY)
    ]
    if not good:
        if not copying and not waiting:
            rnd.actions.append(Lost(*key))
        return bool(copying)
    need = level - len(good) - len(copying) - len(waiting)  # a down worker is waited for (rule 1)
    if need <= 0:
        return bool(copying)
    holders = {r.worker for r in replicas if r.status is not ReplicaStatus.CORRUPT}
    corrupt = sorted(
        r.worker
        for r in replicas
        if r.status is ReplicaStatus.CORRUPT and workers.get(r.worker, _GONE).accepts_copies
    )
    others = sorted(
        (n for n, w in workers.items() if w.accepts_copies and n not in holders and n not in corrupt),
        key=lambda n: (rnd.load[n], n),
    )
    sources = [r.worker for r in good]
    for target, reason in [(t, "repair") for t in corrupt] + [(t, "replicate") for t in others]:
        if need <= 0:
            break
        for source in sorted(sources, key=lambda s: (rnd.copies[s], s)):
            if rnd.can_copy(source, target, limits):
                rnd.copy(key, source, target, reason)
                need -= 1
                break
    return True


def _reconcile(
    state: ClusterState, by_chunk: Mapping[FamilyChunk, list[ReplicaView]], level: int, rnd: _Round
) -> bool:
    """Rule 5: evicted workers that answer again, corrupt replicas nobody repairs."""
    acted = False
    held: dict[str, list[ReplicaView]] = defaultdict(list)
    for r in state.replicas:
        held[r.worker].append(r)
    for name in sorted(rnd.workers):
        w = rnd.workers[name]
        if w.mode is WorkerMode.EVICTED and w.alive:
            if not held[name]:
                rnd.actions.append(Enable(name))
            for r in sorted(held[name], key=lambda r: r.key):
                # never the last copy of a chunk: it stays, the chunk reported lost, for an operator
                if _good(by_chunk[r.key], rnd.workers):
                    rnd.actions.append(Drop(r.family, r.chunk, name, "stale"))
            acted = True
    for r in state.replicas:
        w = rnd.workers.get(r.worker, _GONE)
        if (
            r.status is ReplicaStatus.CORRUPT
            and w.alive
            and len(_good(by_chunk[r.key], rnd.workers)) >= level
        ):
            rnd.actions.append(Drop(r.family, r.chunk, r.worker, "corrupt"))
            acted = True
    return acted


def _purge(key: FamilyChunk, replicas: list[ReplicaView], level: int, rnd: _Round) -> bool:
    """Rule 6 for one chunk; whether a replica is dropped."""
    if any(r.status is ReplicaStatus.COPYING for r in replicas):
        return False
    good = _good(replicas, rnd.workers)
    extra = len(good) - level
    if extra <= 0 or level == 0:
        return False
    # the most-loaded holders give theirs up; READ-ONLY ones first (they are being drained)
    order = sorted(
        good,
        key=lambda r: (rnd.workers[r.worker].mode is not WorkerMode.READ_ONLY, -rnd.load[r.worker], r.worker),
    )
    for r in order[:extra]:
        rnd.actions.append(Drop(r.family, r.chunk, r.worker, "purge"))
        rnd.load[r.worker] -= 1
    return True


def _rebalance(
    by_chunk: Mapping[FamilyChunk, list[ReplicaView]], placeable: list[str], limits: PolicyLimits, rnd: _Round
) -> None:
    """Rule 7: copies from the most- to the least-loaded ENABLED worker."""
    if len(placeable) < 2:
        return
    holding: dict[str, set[FamilyChunk]] = defaultdict(set)
    for key, replicas in by_chunk.items():
        for r in _good(replicas, rnd.workers):
            holding[r.worker].add(key)
    moved: set[FamilyChunk] = set()
    for _ in range(limits.max_rebalance_moves):
        ranked = sorted(placeable, key=lambda n: (rnd.load[n], n))
        low, high = ranked[0], ranked[-1]
        if rnd.load[high] - rnd.load[low] <= 1 or not rnd.can_copy(high, low, limits):
            return
        candidates = sorted(holding[high] - holding[low] - moved)
        if not candidates:
            return
        key = candidates[0]
        rnd.copy(key, high, low, "rebalance")
        rnd.load[high] -= 1  # its copy is the one rule 6 drops once the move's copy is done
        holding[low].add(key)
        moved.add(key)


def _verify(
    replicas: Iterable[ReplicaView], workers: Mapping[str, WorkerView], limits: PolicyLimits, rnd: _Round
) -> None:
    """Rule 8: the replicas verified longest ago (never verified first)."""
    if limits.verify_interval is None:
        return
    interval = limits.verify_interval
    due = [
        r
        for r in replicas
        if r.status is ReplicaStatus.GOOD
        and workers.get(r.worker, _GONE).serving
        and (r.verified_age is None or r.verified_age >= interval)
    ]
    due.sort(key=lambda r: (r.verified_age is not None, -(r.verified_age or 0.0), r.key, r.worker))
    for r in due[: limits.max_verifications]:
        rnd.actions.append(Verify(r.family, r.chunk, r.worker))


def _resync_tables(tables: Iterable[TableView], limits: PolicyLimits, rnd: _Round) -> None:
    """Rule 9: a complete copy of every regular table on every ENABLED worker."""
    targets = sorted(n for n, w in rnd.workers.items() if w.accepts_copies)
    for t in sorted(tables, key=lambda t: (t.database, t.table)):
        sources = sorted(n for n in t.holders if n in rnd.workers and rnd.workers[n].serving)
        for target in targets:
            if target in t.holders or target in t.copying or not sources:
                continue
            source = min(sources, key=lambda s: (rnd.copies[s], s))
            if rnd.can_copy(source, target, limits):
                rnd.actions.append(CopyTable(t.database, t.table, source, target))
                rnd.copies[source] += 1
                rnd.copies[target] += 1


_GONE = WorkerView("", WorkerMode.EVICTED, alive=False)
"""Stands in for a worker the state does not list (removed from the cluster)."""


def summary(state: ClusterState) -> dict[str, int]:
    """Counts for ``qserv replica status``: chunks, under-replicated, over-replicated, lost."""
    workers = {w.name: w for w in state.workers}
    by_chunk: dict[FamilyChunk, list[ReplicaView]] = defaultdict(list)
    for r in state.replicas:
        by_chunk[r.key].append(r)
    under = over = lost = 0
    for replicas in by_chunk.values():
        good = len(_good(replicas, workers))
        if good == 0 and not any(
            r.status is not ReplicaStatus.CORRUPT
            and workers.get(r.worker, _GONE).mode in (WorkerMode.ENABLED, WorkerMode.READ_ONLY)
            for r in replicas
        ):
            lost += 1
        elif good < state.level:
            under += 1
        elif good > state.level:
            over += 1
    return {"chunks": len(by_chunk), "under_replicated": under, "over_replicated": over, "lost": lost}
