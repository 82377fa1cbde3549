"""A worker SIGKILLed, or stopped, in the middle of a query costs the client nothing when replicas
exist."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.cluster import LiveCluster, running_cluster


@pytest.fixture(scope="module")
def slow_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveCluster]:
    # every Execute on every worker starts 1.5 s late, so the kill lands mid-query
    with running_cluster(
        tmp_path_factory.mktemp("faults"), objects=5_000, env={"QSERV_FAULTS": "execute_delay_ms=1500"}
    ) as tc:
        yield tc


def _run_while_killing(
    tc: LiveCluster, sql: str, victim: str, kill: Callable[[str], None] | None = None
) -> list[tuple]:
    result: dict[str, object] = {}

    def run() -> None:
        try:
            result["rows"] = tc.query(sql)
        except Exception as exc:  # reported below
            result["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(0.7)
    (kill or tc.cluster.kill)(victim)
    thread.join(60)
    assert "error" not in result, result.get("error")
    return result["rows"]  # type: ignore[return-value]


def test_full_scan_survives_a_killed_worker(slow_cluster: LiveCluster, tmp_path: Path) -> None:
    ref = slow_cluster.reference()
    sql = "SELECT COUNT(*), SUM(extendedness), MIN(objectId), MAX(objectId) FROM Object"
    want = ref.execute(sql).fetchall()
    got = _run_while_killing(slow_cluster, sql, "worker-1")
    assert got == want
    # the kill really landed mid-query: the czar retried that worker's chunks on replicas
    czar_log = (slow_cluster.spec.data_dir / "logs" / "czar.log").read_text()
    assert "retrying on replicas" in czar_log and "worker=worker-1" in czar_log
    # and the cluster keeps answering with the worker gone (before and after eviction)
    sql2 = "SELECT f.filterName, COUNT(*) FROM Source s JOIN Filter f ON s.filterId = f.filterId GROUP BY 1"
    assert sorted(slow_cluster.query(sql2)) == sorted(ref.execute(sql2).fetchall())


@pytest.fixture(scope="module")
def slower_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveCluster]:
    # every Execute starts 4 s late: longer than a stopping worker's grace (2 s) for its calls
    with running_cluster(
        tmp_path_factory.mktemp("stop"), objects=5_000, env={"QSERV_FAULTS": "execute_delay_ms=4000"}
    ) as tc:
        yield tc


def test_full_scan_survives_a_worker_stopped_mid_query(slower_cluster: LiveCluster) -> None:
    # SIGTERM: the worker stops cleanly and its grace ends the calls still running; they are
    # the worker's loss, not the query's, and are retried on replicas (not failed with 57014)
    ref = slower_cluster.reference()
    sql = "SELECT COUNT(*), SUM(extendedness), MIN(objectId), MAX(objectId) FROM Object"

    def stop(name: str) -> None:
        proc = slower_cluster.cluster.procs[name]
        proc.terminate()
        proc.wait(60)

    assert _run_while_killing(slower_cluster, sql, "worker-2", stop) == ref.execute(sql).fetchall()
    czar_log = (slower_cluster.spec.data_dir / "logs" / "czar.log").read_text()
    assert "retrying on replicas" in czar_log and "worker=worker-2" in czar_log
