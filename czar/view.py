"""A cached snapshot of the metadata the planner needs: catalog, replicas, non-empty chunks.

It is also the one home of the rule "plan only on complete copies": a query reading regular
tables runs only on live workers holding a complete copy of each (:meth:`ClusterView.holders_of`,
from ``MetadataStore.table_copies``), and its chunks only on replicas on those workers
(:meth:`ClusterView.placement_on`).

Reading the store on every query would cost milliseconds (more on a remote PostgreSQL) against
a point-lookup budget of a few; the snapshot is refreshed when older than ``max_age`` seconds
or when a name does not resolve (a table loaded a moment ago).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace

from qserv.catalog import Catalog
from qserv.errors import QservError, WorkerUnavailable
from qserv.log import event
from qserv.metadata import MetadataStore, WorkerInfo, WorkerState
from qserv.replica.settings import report_damaged

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClusterView:
    catalog: Catalog
    workers: tuple[WorkerInfo, ...]
    # family -> chunk -> live workers holding a committed replica
    placement: Mapping[str, Mapping[int, tuple[str, ...]]]
    # family -> live worker -> chunks it holds (for range chunk filters)
    held: Mapping[str, Mapping[str, frozenset[int]]]
    # (database lower, table lower) -> chunks with rows
    nonempty_chunks: Mapping[tuple[str, str], frozenset[int]]
    taken_at: float
    # (database lower, table lower) -> workers with a complete copy of that regular table; a
    # table absent has no recorded copies (not loaded yet, or loaded by an older qserv): any
    # live worker serves it, as before
    copies: Mapping[tuple[str, str], frozenset[str]] = field(default_factory=dict)
    # (database lower, table lower) -> committed rows: the sum of its chunks' row counts
    row_counts: Mapping[tuple[str, str], int] = field(default_factory=dict)
    # the store's placement version the snapshot was read at (MetadataStore.placement_version)
    version: int = 0
    # suspected workers the store still lists as serving (the controller has not caught up)
    suspected: frozenset[str] = frozenset()
    # planner cache valid for this snapshot only (see PlanContext.memo)
    memo: dict[object, object] = field(default_factory=dict, compare=False, repr=False)
    # placements restricted to some workers (placement_on): one object per worker set, so the
    # assignment memo (keyed by the placement's identity) stays valid
    restricted: dict[object, object] = field(default_factory=dict, compare=False, repr=False)

    @property
    def live_workers(self) -> tuple[str, ...]:
        return tuple(w.name for w in self.workers if w.state.serves)

    def worker(self, name: str) -> WorkerInfo | None:
        return next((w for w in self.workers if w.name == name), None)

    def family_placement(self, family: str) -> Mapping[int, tuple[str, ...]]:
        """Chunk -> live replicas of ``family``."""
        return self.placement.get(family, {})

    def family_held(self, family: str) -> Mapping[str, frozenset[int]]:
        """Live worker -> chunks of ``family`` it holds."""
        return self.held.get(family, {})

    def holders_of(self, regular: Collection[tuple[str, str]]) -> tuple[str, ...]:
        """Live workers holding a complete copy of every regular table in ``regular`` (keys
        lower-cased); raises WorkerUnavailable naming the tables when there is none."""
        workers = self.live_workers
        named: list[str] = []
        for key in sorted(set(regular)):
            copies = self.copies.get(key)
            if copies is None:
                continue
            named.append(self._name(key))
            workers = tuple(w for w in workers if w in copies)
            if not workers:
                what = (
                    f"a complete copy of regular table {named[0]} (complete copies: "
                    f"{', '.join(sorted(copies)) or 'none'})"
                    if len(named) == 1
                    else f"complete copies of all of the regular tables {', '.join(named)}"
                )
                raise WorkerUnavailable(
                    f"no live worker holds {what}",
                    hint="restart the workers holding it, or load the table again while every worker is up",
                )
        return workers

    def placement_on(
        self, family: str, workers: Collection[str]
    ) -> tuple[Mapping[int, tuple[str, ...]], Mapping[str, frozenset[int]]]:
        """``family``'s placement and held chunks on ``workers`` only (a subset of the live ones)."""
        keep = frozenset(workers)
        if keep >= frozenset(self.live_workers):
            return self.family_placement(family), self.family_held(family)
        key = (family, keep)
        cached = self.restricted.get(key)
        if cached is None:
            placement = {
                c: kept
                for c, ws in self.family_placement(family).items()
                for kept in [tuple(w for w in ws if w in keep)]
                if kept
            }
            held = {w: cs for w, cs in self.family_held(family).items() if w in keep}
            cached = self.restricted[key] = (placement, held)
        return cached  # type: ignore[return-value]

    def _name(self, key: tuple[str, str]) -> str:
        table = self.catalog.table(*key)
        return f"{table.database}.{table.name}" if table is not None else ".".join(key)


def _unchanged(old: ClusterView, new: ClusterView) -> bool:
    return (
        old.catalog,
        old.workers,
        old.placement,
        old.held,
        old.nonempty_chunks,
        old.copies,
        old.row_counts,
    ) == (
        new.catalog,
        new.workers,
        new.placement,
        new.held,
        new.nonempty_chunks,
        new.copies,
        new.row_counts,
    )


def read_view(store: MetadataStore, suspects: frozenset[str] = frozenset()) -> ClusterView:
    """Snapshot the store; ``suspects`` (workers this czar just failed to reach) count as DOWN,
    and so do replicas a verification found corrupt (a good one exists wherever one is)."""
    version = store.placement_version()  # read first: a change after it triggers a re-read
    catalog = store.catalog()
    stored = sorted(store.workers(), key=lambda w: w.name)
    corrupt = {(c.family, c.chunk_id, c.worker) for c in store.replica_checks() if c.corrupt}
    if all(w.name in suspects for w in stored if w.state.serves):
        suspects = frozenset()  # suspecting everyone would only turn retries into refusals
    workers = tuple(replace(w, state=WorkerState.DOWN) if w.name in suspects else w for w in stored)
    live = {w.name for w in workers if w.state.serves}
    placement: dict[str, dict[int, list[str]]] = {}
    held: dict[str, dict[str, set[int]]] = {}
    for r in store.replicas():
        if r.worker in live and (r.family, r.chunk_id, r.worker) not in corrupt:
            placement.setdefault(r.family, {}).setdefault(r.chunk_id, []).append(r.worker)
            held.setdefault(r.family, {}).setdefault(r.worker, set()).add(r.chunk_id)
    nonempty: dict[tuple[str, str], set[int]] = {}
    row_counts: dict[tuple[str, str], int] = {}
    with_rows: dict[str, set[int]] = {}  # family -> chunks with rows in any of its tables
    for db in catalog.databases:
        family_rows = with_rows.setdefault(db.partitioning.family, set())
        for cr in store.chunk_rows(db.name):
            key = (cr.database.lower(), cr.table.lower())
            row_counts[key] = row_counts.get(key, 0) + cr.rows
            if cr.rows > 0:
                nonempty.setdefault(key, set()).add(cr.chunk_id)
                family_rows.add(cr.chunk_id)
    # ``held`` bounds the chunk ranges a worker's filter may span (czar.plan.model.chunk_runs):
    # a range must not cover a chunk whose rows the worker may store without holding a replica
    # of it (a copy being installed or recorded, a dropped replica whose rows are deleted after
    # a grace period). So every chunk with rows counts as held by every worker; a range spans
    # only the chunks it wants and chunks no table of the family has rows in.
    blocked = {f: frozenset(cs) for f, cs in with_rows.items()}
    held_by = {
        f: {w: frozenset(cs) | blocked.get(f, frozenset()) for w, cs in by_worker.items()}
        for f, by_worker in held.items()
    }
    return ClusterView(
        catalog=catalog,
        workers=workers,
        placement={f: {c: tuple(sorted(ws)) for c, ws in chunks.items()} for f, chunks in placement.items()},
        held=held_by,
        nonempty_chunks={k: frozenset(v) for k, v in nonempty.items()},
        taken_at=time.monotonic(),
        copies={(c.database.lower(), c.table.lower()): c.workers for c in store.table_copies()},
        row_counts=row_counts,
        version=version,
        suspected=frozenset(w.name for w in stored if w.name in suspects and w.state.serves),
    )


class ViewCache:
    """Thread-safe holder of the latest :class:`ClusterView`.

    Reading the view costs ~100 ms with 12,000 chunks, so queries never wait for it once
    there is one: a view is refreshed in the background while the old one keeps serving, when
    the store's placement version moved (checked at most every ``check_every`` seconds: one
    tiny read) or when it is older than ``max_age``. So changes made anywhere (a worker marked
    down or back by the replication controller, a copy or drop, another czar's commit) show up
    within a fraction of a second; changes made through this czar call :meth:`invalidate`,
    after which the next query reads the store first; dispatch retries cover a worker that
    died meanwhile.
    """

    def __init__(
        self,
        store: MetadataStore,
        max_age: float = 15.0,
        suspect_for: float = 30.0,
        check_every: float = 0.25,
    ) -> None:
        self._store = store
        self._max_age = max_age
        self._suspect_for = suspect_for
        self._check_every = check_every
        self._checked = 0.0
        self._lock = threading.Lock()
        self._refreshing = False
        self._view: ClusterView | None = None
        # bumped whenever the snapshot is dropped (a commit, a failed worker): a background
        # refresh begun before that must not install its older reading, nor keep its memo
        self._generation = 0
        self._suspects: dict[str, float] = {}  # worker -> until (monotonic)

    def _current_suspects(self) -> frozenset[str]:
        now = time.monotonic()
        self._suspects = {w: until for w, until in self._suspects.items() if until > now}
        return frozenset(self._suspects)

    def mark_down(self, workers: set[str]) -> None:
        """Workers a query just failed to reach: plan around them at once, for ``suspect_for``
        seconds (the replication controller takes a few probes to mark them DOWN)."""
        with self._lock:
            until = time.monotonic() + self._suspect_for
            for w in workers:
                self._suspects[w] = until
            self._view = None
            self._generation += 1

    def report_damaged(self, damaged: dict[str, set[int]]) -> None:
        """Chunks a query found a worker could not read: the replication controller verifies
        them and repairs the damaged replicas (the worker keeps serving its other chunks)."""
        event(
            log,
            "damaged replicas reported",
            logging.ERROR,
            workers=",".join(sorted(damaged)),
            chunks=sum(len(c) for c in damaged.values()),
        )
        try:
            report_damaged(self._store, damaged)
        except Exception as exc:  # the store is away: scheduled verification still finds them
            event(log, "reporting damaged replicas failed", logging.WARNING, error=str(exc))

    def _prune(self, suspects: frozenset[str], view: ClusterView) -> None:
        """Stop suspecting the workers the store no longer lists as serving: the controller has
        caught up, and its states are the truth from now on (also when it marks them back).
        Called with the lock held."""
        for w in suspects - view.suspected:
            self._suspects.pop(w, None)

    def get(self, refresh: bool = False) -> ClusterView:
        with self._lock:
            view = self._view
            if refresh or view is None:
                suspects = self._current_suspects()
                view = self._view = read_view(self._store, suspects)
                self._prune(suspects, view)
                return view
            if not self._refreshing and (
                self._stale(view) or time.monotonic() - view.taken_at > self._max_age
            ):
                self._refreshing = True
                threading.Thread(target=self._refresh, name="view-refresh", daemon=True).start()
            return view

    def _stale(self, view: ClusterView) -> bool:
        """Whether the store's placement moved since ``view`` (read at most every ``check_every``)."""
        now = time.monotonic()
        if now - self._checked < self._check_every:
            return False
        self._checked = now
        try:
            return self._store.placement_version() != view.version
        except QservError:
            return False  # the store is away: keep the snapshot

    def _refresh(self) -> None:
        try:
            with self._lock:
                suspects = self._current_suspects()
                current, generation = self._view, self._generation
            try:
                view = read_view(self._store, suspects)
            except QservError as exc:
                # the store is unreachable or closing: keep planning on the snapshot we have
                event(log, "metadata refresh failed", logging.WARNING, error=exc.message)
                return
            if current is not None and _unchanged(current, view):
                # keep the same snapshot objects and its memo (plans, replica choice): most
                # refreshes find nothing new, and replanning a full scan costs ~0.2 s
                view = replace(
                    current, taken_at=view.taken_at, version=view.version, suspected=view.suspected
                )
            with self._lock:
                self._prune(suspects, view)
                if (
                    self._generation == generation
                    and self._view is not None
                    and self._view.taken_at < view.taken_at
                ):
                    self._view = view
        finally:
            with self._lock:
                self._refreshing = False

    def invalidate(self) -> None:
        with self._lock:
            self._view = None
            self._generation += 1
