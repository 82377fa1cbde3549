"""A cached snapshot of the metadata the planner needs: catalog, replicas, non-empty chunks.

Reading the store on every query would cost milliseconds (more on a remote PostgreSQL) against
a point-lookup budget of a few; the snapshot is refreshed when older than ``max_age`` seconds
or when a name does not resolve (a table loaded a moment ago).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

from qserv.catalog import Catalog
from qserv.metadata import MetadataStore, WorkerInfo, WorkerState


@dataclass(frozen=True)
class ClusterView:
    catalog: Catalog
    workers: tuple[WorkerInfo, ...]
    # family -> chunk -> workers holding a committed replica (live ones first)
    placement: Mapping[str, Mapping[int, tuple[str, ...]]]
    # (database lower, table lower) -> chunks with rows
    nonempty_chunks: Mapping[tuple[str, str], frozenset[int]]
    taken_at: float

    @property
    def live_workers(self) -> tuple[str, ...]:
        return tuple(w.name for w in self.workers if w.state is WorkerState.ACTIVE)

    def worker(self, name: str) -> WorkerInfo | None:
        return next((w for w in self.workers if w.name == name), None)

    def family_placement(
        self, family: str, exclude: frozenset[str] = frozenset()
    ) -> dict[int, tuple[str, ...]]:
        """Chunk -> live replicas of ``family``, without the ``exclude``d workers."""
        live = set(self.live_workers) - exclude
        return {c: tuple(w for w in ws if w in live) for c, ws in self.placement.get(family, {}).items()}


def read_view(store: MetadataStore) -> ClusterView:
    catalog = store.catalog()
    workers = tuple(sorted(store.workers(), key=lambda w: w.name))
    placement: dict[str, dict[int, list[str]]] = {}
    for r in store.replicas():
        placement.setdefault(r.family, {}).setdefault(r.chunk_id, []).append(r.worker)
    nonempty: dict[tuple[str, str], set[int]] = {}
    for db in catalog.databases:
        for cr in store.chunk_rows(db.name):
            if cr.rows > 0:
                nonempty.setdefault((cr.database.lower(), cr.table.lower()), set()).add(cr.chunk_id)
    return ClusterView(
        catalog=catalog,
        workers=workers,
        placement={f: {c: tuple(sorted(ws)) for c, ws in chunks.items()} for f, chunks in placement.items()},
        nonempty_chunks={k: frozenset(v) for k, v in nonempty.items()},
        taken_at=time.monotonic(),
    )


class ViewCache:
    """Thread-safe holder of the latest :class:`ClusterView`."""

    def __init__(self, store: MetadataStore, max_age: float = 2.0) -> None:
        self._store = store
        self._max_age = max_age
        self._lock = threading.Lock()
        self._view: ClusterView | None = None

    def get(self, refresh: bool = False) -> ClusterView:
        with self._lock:
            view = self._view
            if refresh or view is None or time.monotonic() - view.taken_at > self._max_age:
                view = self._view = read_view(self._store)
            return view

    def invalidate(self) -> None:
        with self._lock:
            self._view = None
