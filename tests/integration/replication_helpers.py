"""Helpers of the replication fault tests: a checked query loop, replica counts, waits."""

from __future__ import annotations

import threading
import time
from collections import Counter

from qserv.metadata import WorkerState, open_store
from tests.cluster import LiveCluster

QUERIES = [
    "SELECT count(*), sum(objectId) FROM Object WHERE ra >= 0",
    "SELECT count(*) FROM Object o JOIN Source s ON s.objectId = o.objectId WHERE o.decl > -30",
    "SELECT filterId, count(*), round(sum(psfFlux), 3) FROM Source WHERE decl < 45 GROUP BY filterId ORDER BY 1",
    "SELECT f.filterName, count(*) FROM Source s JOIN Filter f ON f.filterId = s.filterId "
    "WHERE s.ra < 180 GROUP BY 1 ORDER BY 1",
]


class QueryLoop:
    """Mixed queries in a loop on one connection; every answer compared with the reference."""

    def __init__(self, tc: LiveCluster) -> None:
        ref = tc.reference()
        self.expected = {q: ref.execute(q).fetchall() for q in QUERIES}
        self.tc = tc
        self.answered = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> QueryLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(120)

    def _run(self) -> None:
        conn = self.tc.connect()
        while not self._stop.is_set():
            for q in QUERIES:
                try:
                    got = conn.execute(q).fetchall()
                except Exception as exc:  # a failed query is what this test is about
                    self.failures.append(f"{q}: {type(exc).__name__}: {exc}")
                    conn.close()
                    conn = self.tc.connect()
                    continue
                if [tuple(r) for r in got] != [tuple(r) for r in self.expected[q]]:
                    self.failures.append(f"{q}: {got} != {self.expected[q]}")
                self.answered += 1
        conn.close()


def replication(tc: LiveCluster) -> tuple[dict[str, WorkerState], Counter, Counter]:
    """Worker states, live replicas per family chunk, and replicas per serving worker."""
    store = open_store(tc.spec.metadata())
    try:
        states = {w.name: w.state for w in store.workers()}
        serving = {n for n, s in states.items() if s.serves}
        replicas = [r for r in store.replicas() if r.worker in serving]
    finally:
        store.close()
    return states, Counter((r.family, r.chunk_id) for r in replicas), Counter(r.worker for r in replicas)


def wait_for_level(
    tc: LiveCluster, chunks: set, level: int, timeout: float, what: str, evicted: tuple[str, ...] = ()
) -> Counter:
    """Wait until ``evicted`` are EVICTED and every chunk has ``level`` replicas on serving workers."""
    deadline = time.monotonic() + timeout
    while True:
        states, per_chunk, per_worker = replication(tc)
        gone = all(states[w] is WorkerState.EVICTED for w in evicted)
        if gone and all(per_chunk[c] == level for c in chunks) and set(per_chunk) == chunks:
            return per_worker
        if time.monotonic() > deadline:
            short = sorted(c for c in chunks if per_chunk[c] != level)[:5]
            raise AssertionError(
                f"{what}: not at level {level} after {timeout:.0f} s: {states}, e.g. {short}"
            )
        time.sleep(0.5)
