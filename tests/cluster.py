"""A real cluster of processes on loopback for tests: workers, czar, replication controller.

Ports are picked free at start, below the ephemeral range and apart from other test processes
(tests/ports.py); the sample catalog is loaded through the real ``qserv load``
command, and a single-node DuckDB holding the same Parquet files serves as the reference for
differential checks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import psycopg
import pytest

from qserv.cluster import ClusterSpec, LocalCluster
from qserv.sample import SampleSpec, load_arguments, write
from qserv.sphere.scisql import install_macros
from tests.ports import free_ports

__all__ = ["LiveCluster", "free_ports", "load_sample", "running_cluster", "wait_until"]


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail the test naming ``what`` after ``timeout`` s.

    A liveness wait, not a timing assertion: the deadline only bounds a hang.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting until {what}")
        time.sleep(0.05)


@dataclass
class LiveCluster:
    spec: ClusterSpec
    cluster: LocalCluster
    sample: dict[str, Path]

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.spec.pg_port} user=qserv dbname=sky"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.spec.http_port}"

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.dsn, autocommit=True)

    def query(self, sql: str) -> list[tuple]:
        with self.connect() as conn:
            return conn.execute(sql).fetchall()

    def explain(self, sql: str) -> str:
        """The text ``EXPLAIN sql`` returns, one line per row."""
        return "\n".join(r[0] for r in self.query("EXPLAIN " + sql))

    def load(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "qserv.cli", "load", "--url", self.url, *args],
            capture_output=True,
            text=True,
            check=check,
            timeout=600,
        )

    def create_database(self, name: str, order: int, sub_order: int, overlap: float | None = None) -> None:
        """Create a database with its partitioning before its first load (HTTP API)."""
        body: dict[str, object] = {"name": name, "order": order, "sub_order": sub_order}
        if overlap is not None:
            body["overlap"] = overlap
        request = urllib.request.Request(
            f"{self.url}/api/v1/databases",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200, response.read()

    def restart(self) -> None:
        """Stop every process and start the cluster again on the same data dir, ports and metadata."""
        self.cluster.stop()
        self.cluster = LocalCluster(self.spec)
        self.cluster.start()

    def reference(self) -> duckdb.DuckDBPyConnection:
        """A single-node DuckDB holding the same sample tables."""
        ref = duckdb.connect()
        install_macros(ref)
        for name, path in self.sample.items():
            ref.execute(f"CREATE TABLE \"{name}\" AS SELECT * FROM read_parquet('{path}')")
        return ref


def load_sample(tc: LiveCluster) -> None:
    """Load the sample with ``qserv load``: Object and Filter at once, then Source (its child)."""
    loads = load_arguments(tc.sample)
    with ThreadPoolExecutor(max_workers=2) as pool:
        for done in [pool.submit(tc.load, "--database", "sky", *loads[t]) for t in ("Object", "Filter")]:
            done.result()
    tc.load("--database", "sky", *loads["Source"])


@contextmanager
def running_cluster(
    tmp: Path,
    workers: int = 3,
    replicas: int = 2,
    objects: int = 20_000,
    env: dict[str, str] | None = None,
    metadata_url: str = "",
    statement_timeout: float = 0.0,
    worker_timeout: float = 600.0,
    czar_args: tuple[str, ...] = (),
    evict_timeout: float = 120.0,
    health_interval: float = 2.0,
) -> Iterator[LiveCluster]:
    """Start a cluster in ``tmp``, load the sample catalog, yield it, and stop it.

    ``objects=0`` starts an empty cluster (no sample is written or loaded); ``metadata_url``
    selects the metadata store (default: SQLite in the data dir); ``statement_timeout`` and
    ``worker_timeout`` (seconds) configure the czar; ``czar_args`` are extra ``qserv czar``
    options (its limits: ``--max-connections`` ...); ``evict_timeout`` and ``health_interval``
    (seconds) configure the replication controller.
    """
    ports = free_ports(workers + 2)
    spec = ClusterSpec(
        data_dir=tmp / "cluster",
        workers=workers,
        pg_port=ports[0],
        http_port=ports[1],
        worker_port=ports[2],
        replicas=replicas,
        metadata_url=metadata_url,
        statement_timeout=statement_timeout,
        worker_timeout=worker_timeout,
        czar_args=czar_args,
        evict_timeout=evict_timeout,
        health_interval=health_interval,
    )
    sample = write(SampleSpec(objects=objects, seed=7), tmp / "sample") if objects else {}
    old_env = dict(os.environ)
    os.environ.update(env or {})
    tc = LiveCluster(spec, LocalCluster(spec), sample)
    try:
        tc.cluster.start()
        if sample:
            load_sample(tc)
        yield tc
    finally:
        tc.cluster.stop()  # the current one: restart() replaces it
        os.environ.clear()
        os.environ.update(old_env)
