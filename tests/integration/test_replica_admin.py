"""The admin tool ``qserv replica ...`` against a live cluster, as an operator runs it.

One cluster (3 workers, replication 2, a few hundred chunks); the tests run in order and each
leaves the cluster at its level. Every change is made through the real command (a subprocess
talking to the czar's HTTP admin API), carried out by the real replication controller, and
checked both in the status the tool prints and in the answers queries give.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from qserv.metadata import open_store
from qserv.sample import SampleSpec, write
from tests.cluster import LiveCluster, free_ports, load_sample, running_cluster, wait_until

pytestmark = pytest.mark.slow

QUERIES = [
    "SELECT count(*), sum(objectId) FROM Object",
    "SELECT count(*), sum(s.sourceId) FROM Object o JOIN Source s ON s.objectId = o.objectId",
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveCluster]:
    tmp = tmp_path_factory.mktemp("replica-admin")
    with running_cluster(
        tmp, workers=3, replicas=2, objects=0, evict_timeout=60.0, health_interval=0.3
    ) as tc:
        tc.create_database("sky", order=3, sub_order=5)
        tc.sample = write(SampleSpec(objects=3_000, seed=11), tmp / "sample")
        load_sample(tc)
        yield tc


def replica(
    tc: LiveCluster, *args: str, check: bool = True, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "qserv.cli",
            "replica",
            *args,
            *(() if "--url" in args else ("--url", tc.url)),
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check:
        assert result.returncode == 0, result.stderr + result.stdout
    return result


def status(tc: LiveCluster) -> dict:
    return json.loads(replica(tc, "status", "--json").stdout)


def per_chunk(tc: LiveCluster) -> Counter:
    """Replicas per family chunk on serving workers, straight from the metadata store."""
    store = open_store(tc.spec.metadata())
    try:
        serving = {w.name for w in store.workers() if w.state.serves}
        return Counter((r.family, r.chunk_id) for r in store.replicas() if r.worker in serving)
    finally:
        store.close()


def assert_answers(tc: LiveCluster) -> None:
    ref = tc.reference()
    for q in QUERIES:
        assert tc.query(q) == ref.execute(q).fetchall(), q


def _state(tc: LiveCluster, worker: str) -> str:
    return next(w["state"] for w in status(tc)["workers"] if w["name"] == worker)


def test_status_of_a_healthy_cluster(cluster: LiveCluster) -> None:
    tc = cluster
    wait_until(lambda: status(tc)["controller"]["running"], 30, "the controller reports")
    doc = status(tc)
    chunks = per_chunk(tc)
    assert doc["replication_level"] == 2
    assert doc["chunks"] == len(chunks) > 50
    assert (doc["under_replicated"], doc["over_replicated"], doc["lost"], doc["corrupt"]) == (0, 0, 0, 0)
    assert set(chunks.values()) == {2}
    workers = {w["name"]: w for w in doc["workers"]}
    assert sorted(workers) == ["worker-1", "worker-2", "worker-3"]
    assert all(w["state"] == "active" for w in workers.values())
    assert sum(w["replicas"] for w in workers.values()) == 2 * len(chunks)

    text = replica(tc, "status").stdout
    assert "replication level  2" in text and "lost               0" in text
    assert "worker-1" in text and "active" in text
    listed = json.loads(replica(tc, "chunks", "--json").stdout)
    assert len(listed) == len(chunks) and all(c["standing"] == "ok" and c["good"] == 2 for c in listed)
    assert json.loads(replica(tc, "chunks", "--standing", "under", "--json").stdout) == []
    assert json.loads(replica(tc, "level", "--json").stdout) == {"replication_level": 2}


def test_bad_requests_get_clear_errors_and_change_nothing(cluster: LiveCluster) -> None:
    tc = cluster
    before = per_chunk(tc)
    r = replica(tc, "evict", "worker-9", check=False)
    assert r.returncode == 1 and 'worker "worker-9" is not registered' in r.stderr
    r = replica(tc, "level", "0", check=False)
    assert r.returncode == 1 and "replication level must be from 1 to 16" in r.stderr
    r = replica(tc, "add-worker", "worker-7", "127.0.0.1:notaport", check=False)
    assert r.returncode == 1 and "bad worker address" in r.stderr
    (port,) = free_ports(1)
    r = replica(tc, "add-worker", "worker-7", f"127.0.0.1:{port}", check=False)
    assert r.returncode == 1 and f"no worker answers at 127.0.0.1:{port}" in r.stderr
    r = replica(tc, "add-worker", "worker-7", tc.cluster.worker_address("worker-1")[0] + ":"
                + str(tc.cluster.worker_address("worker-1")[1]), check=False)  # fmt: skip
    assert r.returncode == 1 and "is named 'worker-1', not 'worker-7'" in r.stderr
    r = replica(tc, "status", "--url", "http://127.0.0.1:1", check=False)
    assert r.returncode == 1 and "cannot reach the czar" in r.stderr
    assert per_chunk(tc) == before
    assert [w["name"] for w in status(tc)["workers"]] == ["worker-1", "worker-2", "worker-3"]


def test_raise_the_level_then_lower_it(cluster: LiveCluster) -> None:
    tc = cluster
    out = replica(tc, "level", "3").stdout
    assert "replication level set to 3" in out
    chunks = per_chunk(tc)
    assert set(chunks.values()) == {3}, Counter(chunks.values())
    doc = status(tc)
    assert doc["replication_level"] == 3 and doc["under_replicated"] == 0
    assert_answers(tc)
    replica(tc, "level", "2")
    assert set(per_chunk(tc).values()) == {2}
    assert status(tc)["over_replicated"] == 0
    assert_answers(tc)


def test_add_a_worker_and_rebalance(cluster: LiveCluster, tmp_path: Path) -> None:
    tc = cluster
    (port,) = free_ports(1)
    tc.cluster.start_worker("worker-4", port=port)
    out = replica(tc, "add-worker", "worker-4", f"127.0.0.1:{port}").stdout
    assert "worker worker-4 added" in out
    replica(tc, "rebalance")
    doc = status(tc)
    held = {w["name"]: w["replicas"] for w in doc["workers"]}
    assert max(held.values()) - min(held.values()) <= 1, held
    assert held["worker-4"] >= 2 * doc["chunks"] // 4 - 1
    assert set(per_chunk(tc).values()) == {2}
    assert_answers(tc)


def test_evict_a_worker_and_bring_it_back(cluster: LiveCluster) -> None:
    tc = cluster
    out = replica(tc, "evict", "worker-1").stdout
    assert "worker worker-1 taken out" in out
    replica(tc, "replicate")
    doc = status(tc)
    workers = {w["name"]: w for w in doc["workers"]}
    assert workers["worker-1"]["state"] == "disabled"
    assert doc["under_replicated"] == 0 and doc["lost"] == 0
    assert set(per_chunk(tc).values()) == {2}  # on the three others
    assert_answers(tc)

    host, port = tc.cluster.worker_address("worker-1")
    assert "evicted" in replica(tc, "add-worker", "worker-1", f"{host}:{port}").stdout
    wait_until(
        lambda: _state(tc, "worker-1") == "active",
        60,
        "worker-1 is reconciled and active again",
    )
    replica(tc, "rebalance")
    doc = status(tc)
    held = {w["name"]: w["replicas"] for w in doc["workers"]}
    assert max(held.values()) - min(held.values()) <= 1, held
    assert set(per_chunk(tc).values()) == {2}
    assert_answers(tc)


def test_verify_finds_a_corrupt_replica_and_repairs_it(cluster: LiveCluster) -> None:
    tc = cluster
    out = replica(tc, "verify").stdout
    assert "corrupt replicas   0" in out
    # corrupt one chunk's rows on worker-2's disk while it is down, as a bad disk would
    store = open_store(tc.spec.metadata())
    try:
        chunk = min(r.chunk_id for r in store.replicas() if r.worker == "worker-2")
    finally:
        store.close()
    tc.cluster.kill("worker-2")
    db = duckdb.connect(str(tc.spec.data_dir / "worker-2" / "worker.duckdb"))
    changed = db.execute(
        'UPDATE sky."Object" SET "r_psfFlux" = coalesce("r_psfFlux", 0) + 1 WHERE _chunk = ? RETURNING 1',
        [chunk],
    ).fetchall()
    db.close()
    assert changed
    tc.cluster.start_worker("worker-2")
    # found when it rejoins (its replicas are verified) or by the operator's verify; repaired
    wait_until(lambda: _state(tc, "worker-2") == "active", 60, "worker-2 is back")
    replica(tc, "verify")
    wait_until(
        lambda: (d := status(tc))["corrupt"] == 0 and d["controller"]["idle"] and d["under_replicated"] == 0,
        60,
        "the corrupt replica is repaired",
    )
    db_rows = _chunk_rows(tc, "worker-2", chunk)
    other = next(w for w in ("worker-1", "worker-3", "worker-4") if _holds(tc, w, chunk))
    assert db_rows == _chunk_rows(tc, other, chunk)
    assert_answers(tc)


def _holds(tc: LiveCluster, worker: str, chunk: int) -> bool:
    store = open_store(tc.spec.metadata())
    try:
        return any(r.worker == worker and r.chunk_id == chunk for r in store.replicas())
    finally:
        store.close()


def _chunk_rows(tc: LiveCluster, worker: str, chunk: int) -> list:
    from qserv.rpc.client import WorkerClient

    store = open_store(tc.spec.metadata())
    try:
        address = next(w.address for w in store.workers() if w.name == worker)
        families = {r.family for r in store.replicas() if r.chunk_id == chunk}
    finally:
        store.close()
    assert len(families) == 1
    client = WorkerClient(address)
    try:
        return sorted((t.table, t.rows, t.checksum) for t in client.chunk_checksums(["sky"], [chunk]))
    finally:
        client.close()
