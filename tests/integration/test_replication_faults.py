"""Faults injected into the replication itself, on a live cluster with a checked query loop.

4 workers at replication 3; every chunk copy pauses between receiving its rows and installing
them (the worker's test hook ``QSERV_TEST_COPY_PAUSE``), so a kill lands in the middle of
copies. Two workers are SIGKILLed at once and the controller is killed and restarted while it
re-replicates their chunks; then the two come back, and the target of copies in flight is
killed; last, a loader killed at its commit leaves its load open, and a worker dies. Throughout,
every answer equals one DuckDB's; at the end every chunk is back at its level and no copy left
a trace.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from loader.transaction import COMMIT_BARRIER_ENV
from qserv.metadata import TransactionState, WorkerState, open_store
from qserv.replica import settings
from qserv.sample import SampleSpec, write
from tests.cluster import LiveCluster, load_sample, running_cluster, wait_until
from tests.integration.replication_helpers import QueryLoop, replication, wait_for_level
from worker.servicer import COPY_PAUSE_ENV

pytestmark = pytest.mark.slow

EVICT_S = 3.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveCluster]:
    tmp = tmp_path_factory.mktemp("replication-faults")
    with running_cluster(
        tmp,
        workers=4,
        replicas=3,
        objects=0,
        evict_timeout=EVICT_S,
        health_interval=0.3,
        env={COPY_PAUSE_ENV: "1.5"},
    ) as tc:
        tc.create_database("sky", order=3, sub_order=5)
        tc.sample = write(SampleSpec(objects=4_000, seed=23), tmp / "sample")
        load_sample(tc)
        yield tc


def copies_in_flight(tc: LiveCluster) -> int:
    store = open_store(tc.spec.metadata())
    try:
        report = settings.controller_status(store) or {}
    finally:
        store.close()
    return int(report.get("copies_in_flight", 0))


def spools(tc: LiveCluster, worker: str) -> list[str]:
    """Chunk-copy spool files in a worker's staging directory (what a copy cut short leaves)."""
    staging = tc.spec.data_dir / worker / "staging"
    return (
        sorted(p.name for p in staging.iterdir() if p.name.startswith("copy__")) if staging.exists() else []
    )


def log_of(tc: LiveCluster, name: str) -> str:
    return Path(tc.spec.data_dir / "logs" / f"{name}.log").read_text()


def test_two_workers_killed_at_once_and_the_controller_restarted_mid_recovery(cluster: LiveCluster) -> None:
    tc = cluster
    _, per_chunk, _ = replication(tc)
    chunks = set(per_chunk)
    assert len(chunks) > 50 and set(per_chunk.values()) == {3}
    with QueryLoop(tc) as loop:
        time.sleep(0.5)
        tc.cluster.kill("worker-1")
        tc.cluster.kill("worker-2")  # every chunk keeps at least one replica, on worker-3 or 4
        wait_until(lambda: copies_in_flight(tc) > 0, EVICT_S + 60, "re-replication has started")
        tc.cluster.kill("replicad")  # in the middle of its copies
        time.sleep(1.0)
        tc.cluster.start_controller()
        # the level is capped at the two workers left: every chunk on both
        wait_for_level(
            tc, chunks, 2, EVICT_S + 90, "after two workers died at once", evicted=("worker-1", "worker-2")
        )
        time.sleep(1.0)
    assert loop.failures == [], loop.failures[:5]
    assert loop.answered > 10
    assert "chunks copied" in log_of(tc, "replicad")
    for w in ("worker-3", "worker-4"):
        wait_until(lambda w=w: not spools(tc, w), 30, f"no copy spool left on {w}")


def test_a_worker_killed_while_copies_to_it_are_in_flight(cluster: LiveCluster) -> None:
    tc = cluster
    _, per_chunk, _ = replication(tc)
    chunks = set(per_chunk)
    with QueryLoop(tc) as loop:
        # both come back after their eviction: reconciled, re-admitted, and copied to level 3
        tc.cluster.start_worker("worker-1")
        tc.cluster.start_worker("worker-2")
        wait_until(
            lambda: replication(tc)[0]["worker-1"] is WorkerState.ACTIVE and copies_in_flight(tc) > 0,
            60,
            "copies to the returning workers are in flight",
        )
        time.sleep(0.3)
        tc.cluster.kill("worker-1")  # copies to it die half-done
        wait_for_level(
            tc, chunks, 3, EVICT_S + 90, "after worker-1 died during copies", evicted=("worker-1",)
        )
        time.sleep(1.0)
    assert loop.failures == [], loop.failures[:5]
    log = log_of(tc, "replicad")
    assert "chunk copy failed" in log and "target=worker-1" in log
    # the copies cut short left nothing on worker-1: spools are removed when it starts, and
    # no half-installed chunk exists (an install is one DuckDB transaction)
    tc.cluster.start_worker("worker-1")
    assert spools(tc, "worker-1") == []
    wait_until(lambda: replication(tc)[0]["worker-1"] is WorkerState.ACTIVE, 60, "worker-1 is back")
    wait_for_level(tc, chunks, 3, 90, "with every worker back")
    ref = tc.reference()
    q = "SELECT count(*), sum(objectId) FROM Object"
    assert tc.query(q) == ref.execute(q).fetchall()


def test_a_load_left_open_by_a_killed_loader_does_not_hold_back_recovery(
    cluster: LiveCluster, tmp_path: Path
) -> None:
    tc = cluster
    _, per_chunk, _ = replication(tc)
    chunks = set(per_chunk)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    # the loader stages its rows, waits at the commit for a second loader that never comes, and
    # is killed there: its transaction stays open (STARTED) until someone loads those files again
    argv = [sys.executable, "-m", "qserv.cli", "load", "--url", tc.url, "--database", "sky",
            "--table", "Stuck", "--no-progress", "--child-of", "Object", "--key", "objectId",
            str(tc.sample["Source"])]  # fmt: skip
    env = {**os.environ, COMMIT_BARRIER_ENV: f"{barrier}:2"}
    loader = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: list(barrier.glob("*.ready")), 120, "the loader staged its rows")
    finally:
        loader.kill()
        loader.wait()
    store = open_store(tc.spec.metadata())
    try:
        assert [t.table for t in store.transactions("sky", TransactionState.STARTED)] == ["Stuck"]
    finally:
        store.close()
    with QueryLoop(tc) as loop:
        tc.cluster.kill("worker-3")
        wait_for_level(tc, chunks, 3, EVICT_S + 90, "with a load left open", evicted=("worker-3",))
    assert loop.failures == [], loop.failures[:5]
