"""Lose a worker, lose nothing, get it all back: the replication controller on a live cluster.

4 workers, replication 2, a client loop running mixed queries throughout (answers checked
against one DuckDB holding the same rows). SIGKILL one worker: it is evicted after
``evict_timeout`` and every chunk it held is copied from the surviving replica; SIGKILL a
second: every answer is still right and the level is restored again; the first comes back
after its eviction: its stale replicas are dropped, it is re-admitted and gets its share.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from qserv.metadata import WorkerState, open_store
from qserv.sample import SampleSpec, write
from tests.cluster import LiveCluster, load_sample, running_cluster

EVICT_S = 4.0
QUERIES = [
    "SELECT count(*), sum(objectId) FROM Object WHERE ra >= 0",
    "SELECT count(*) FROM Object o JOIN Source s ON s.objectId = o.objectId WHERE o.decl > -30",
    "SELECT filterId, count(*), round(sum(psfFlux), 3) FROM Source WHERE decl < 45 GROUP BY filterId ORDER BY 1",
    "SELECT f.filterName, count(*) FROM Source s JOIN Filter f ON f.filterId = s.filterId "
    "WHERE s.ra < 180 GROUP BY 1 ORDER BY 1",
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveCluster]:
    tmp = tmp_path_factory.mktemp("replication")
    with running_cluster(
        tmp, workers=4, replicas=2, objects=0, evict_timeout=EVICT_S, health_interval=0.5
    ) as tc:
        # chunk order 3 (768 chunks): a few hundred chunks with rows, each worker holding ~half
        subprocess.run(
            [
                sys.executable,
                "-m",
                "qserv.cli",
                "database",
                "create",
                "sky",
                "--chunk-order",
                "3",
                "--url",
                tc.url,
            ],
            check=True,
            capture_output=True,
        )
        tc.sample = write(SampleSpec(objects=5_000, seed=7), tmp / "sample")
        load_sample(tc)
        yield tc


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


def test_kill_two_workers_one_after_the_other_and_bring_one_back(cluster: LiveCluster) -> None:
    tc = cluster
    states, per_chunk, _ = replication(tc)
    chunks = set(per_chunk)
    assert chunks and all(n == 2 for n in per_chunk.values())
    with QueryLoop(tc) as loop:
        time.sleep(1.0)
        tc.cluster.kill("worker-2")
        started = time.monotonic()
        wait_for_level(tc, chunks, 2, EVICT_S + 30, "after worker-2 was killed", evicted=("worker-2",))
        recovered_in = time.monotonic() - started

        tc.cluster.kill("worker-3")
        time.sleep(1.5)  # queries run while worker-3 is dead and not yet evicted
        per_worker = wait_for_level(
            tc, chunks, 2, EVICT_S + 30, "after worker-3 was killed", evicted=("worker-3",)
        )
        assert set(per_worker) == {"worker-1", "worker-4"}

        tc.cluster.start_worker("worker-2")  # back after its eviction, with its stale data dir
        deadline = time.monotonic() + 60
        while True:
            states, per_chunk, per_worker = replication(tc)
            if (
                states["worker-2"] is WorkerState.ACTIVE
                and per_worker["worker-2"] >= len(chunks) * 2 // 3 - 1
            ):
                break
            assert time.monotonic() < deadline, (
                f"worker-2 not re-admitted and rebalanced: {states} {per_worker}"
            )
            time.sleep(0.5)
        wait_for_level(tc, chunks, 2, 60, "after worker-2 came back")
        time.sleep(2.0)
    assert loop.failures == [], loop.failures[:5]
    assert loop.answered > 20
    assert recovered_in < EVICT_S + 30


def test_a_worker_killed_during_a_load_is_re_replicated_with_the_loaded_rows(
    cluster: LiveCluster, tmp_path: Path
) -> None:
    """Chunks committed while a holder was away are copied to the level, rows included."""
    tc = cluster
    states, _, _ = replication(tc)
    live = sorted(n for n, s in states.items() if s is WorkerState.ACTIVE)
    assert len(live) >= 3, states
    victim = live[-1]
    tc.cluster.kill(victim)
    deadline = time.monotonic() + 30
    while replication(tc)[0][victim] is WorkerState.ACTIVE:  # the load must not place rows there
        assert time.monotonic() < deadline, f"{victim} never marked down"
        time.sleep(0.2)
    tc.load(
        "--database",
        "sky",
        "--table",
        "Source2",
        "--child-of",
        "Object",
        "--key",
        "objectId",
        str(tc.sample["Source"]),
    )
    _, per_chunk, _ = replication(tc)
    wait_for_level(
        tc, set(per_chunk), 2, EVICT_S + 30, f"after {victim} was killed during a load", evicted=(victim,)
    )
    ref = tc.reference()
    expected = ref.execute('SELECT count(*), sum(sourceId) FROM "Source"').fetchall()
    assert tc.query("SELECT count(*), sum(sourceId) FROM Source2 WHERE ra >= 0") == expected
