"""Lose a worker, lose nothing, get it all back: the replication controller on a live cluster.

4 workers, replication 2, a client loop running mixed queries throughout (answers checked
against one DuckDB holding the same rows). SIGKILL one worker: it is evicted after
``evict_timeout`` and every chunk it held is copied from the surviving replica; SIGKILL a
second: every answer is still right and the level is restored again; the first comes back
after its eviction: its stale replicas are dropped, it is re-admitted and gets its share.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from qserv.metadata import WorkerState
from qserv.sample import SampleSpec, write
from tests.cluster import LiveCluster, load_sample, running_cluster
from tests.integration.replication_helpers import QueryLoop, replication, wait_for_level

EVICT_S = 4.0


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


_STAGED = re.compile(r"rows staged transactions=\[(\d+)\] rows=(\d+) forwarded=(\d+) sender=(\w+)")


def test_each_loaded_row_left_the_loader_once(cluster: LiveCluster) -> None:
    """Every replica's rows were staged, but the loader sent each row to one worker only: the
    others got it from that worker (the workers' logs count both kinds of streams)."""
    client: Counter[int] = Counter()
    forwarded: Counter[int] = Counter()
    by_workers: Counter[int] = Counter()
    staged: Counter[int] = Counter()
    for name in cluster.spec.worker_names():
        for m in _STAGED.finditer((cluster.spec.data_dir / "logs" / f"{name}.log").read_text()):
            txn, rows, sent_on, sender = int(m[1]), int(m[2]), int(m[3]), m[4]
            staged[txn] += rows
            if sender == "client":
                client[txn] += rows
                forwarded[txn] += sent_on
            else:
                by_workers[txn] += rows
    assert len(staged) == 3  # Object, Filter, Source
    copies = {t: staged[t] / client[t] for t in staged}
    # a chunk's rows on its 2 replicas; the regular table's on all 4 workers
    assert sorted(copies.values()) == [2.0, 2.0, 4.0], copies
    for t in staged:
        assert forwarded[t] == by_workers[t] == staged[t] - client[t]
    # what the loader sent: every Source row once; every Object row once, plus its overlap rows
    sent = sorted(client[t] for t in staged if copies[t] == 2.0)
    n_sources = pq.ParquetFile(cluster.sample["Source"]).metadata.num_rows
    assert n_sources in sent
    assert 5_000 < sum(sent) - n_sources < 5_000 * 1.2


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
