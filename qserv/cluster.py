"""A local cluster of processes (``qserv up``): workers, czar and replication controller.

Each service runs as its own child process with its own log file under ``DATA_DIR/logs``;
the supervisor registers the workers in the metadata store, starts the services in order
(workers, then czar, then the replication controller), waits until each is ready, and on
SIGINT/SIGTERM stops them all (SIGTERM, then SIGKILL after a grace period).
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from qserv.log import event
from qserv.metadata import WorkerInfo, open_store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClusterSpec:
    data_dir: Path
    workers: int = 3
    host: str = "127.0.0.1"
    pg_port: int = 4040
    http_port: int = 4048
    worker_port: int = 5040
    replicas: int = 2
    metadata_url: str = ""
    worker_threads: int = 0  # DuckDB threads per worker; 0: as many as the machine has cores
    czar_args: tuple[str, ...] = ()  # extra `qserv czar` options (limits: --max-connections ...)

    def threads_per_worker(self) -> int:
        """Every worker may use every core: measured on 2 cores with 3 workers, one thread each
        made full scans ~10% slower than two (a worker's share is often idle while others run)."""
        if self.worker_threads > 0:
            return self.worker_threads
        return max(1, os.cpu_count() or 1)

    def metadata(self) -> str:
        return self.metadata_url or f"sqlite:///{(self.data_dir / 'metadata.sqlite3').resolve()}"

    def worker_names(self) -> list[str]:
        return [f"worker-{i + 1}" for i in range(self.workers)]


def wait_for_port(host: str, port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until ``host:port`` accepts TCP connections (or the process died)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with status {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout:.0f}s")


@dataclass
class LocalCluster:
    """Starts and stops the processes of a :class:`ClusterSpec`."""

    spec: ClusterSpec
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        logs = self.spec.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        out = open(logs / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child for its lifetime
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        proc = subprocess.Popen(
            [sys.executable, "-m", "qserv.cli", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        out.close()
        self.procs[name] = proc
        return proc

    def worker_address(self, name: str) -> tuple[str, int]:
        index = self.spec.worker_names().index(name)
        return self.spec.host, self.spec.worker_port + index

    def start_worker(self, name: str, timeout: float = 60.0) -> None:
        host, port = self.worker_address(name)
        proc = self._spawn(
            name,
            [
                "worker",
                "--name",
                name,
                "--host",
                host,
                "--port",
                str(port),
                "--data-dir",
                str(self.spec.data_dir / name),
                "--threads",
                str(self.spec.threads_per_worker()),
            ],
        )
        wait_for_port(host, port, timeout, proc)

    def start(self, timeout: float = 60.0) -> None:
        spec = self.spec
        spec.data_dir.mkdir(parents=True, exist_ok=True)
        store = open_store(spec.metadata())
        try:
            for name in spec.worker_names():
                host, port = self.worker_address(name)
                store.upsert_worker(WorkerInfo(name, host, port))
        finally:
            store.close()
        for name in spec.worker_names():
            self.start_worker(name, timeout)
        czar = self._spawn(
            "czar",
            [
                "czar",
                "--data-dir",
                str(spec.data_dir),
                "--host",
                spec.host,
                "--port",
                str(spec.pg_port),
                "--http-port",
                str(spec.http_port),
                "--replicas",
                str(spec.replicas),
                "--metadata",
                spec.metadata(),
                *spec.czar_args,
            ],
        )
        wait_for_port(spec.host, spec.http_port, timeout, czar)
        wait_for_port(spec.host, spec.pg_port, timeout, czar)
        self._spawn("replicad", ["replicad", "--data-dir", str(spec.data_dir), "--metadata", spec.metadata()])
        event(log, "cluster ready", pg_port=spec.pg_port, http_port=spec.http_port, workers=spec.workers)

    def kill(self, name: str) -> None:
        """SIGKILL one service (fault injection)."""
        proc = self.procs[name]
        proc.kill()
        proc.wait()

    def stop(self, grace: float = 10.0) -> None:
        # czar first so no new work reaches the workers
        order = ["replicad", "czar"] + [n for n in self.procs if n.startswith("worker")]
        for name in order:
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + grace
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()

    def failed(self) -> list[str]:
        return [n for n, p in self.procs.items() if p.poll() is not None]
