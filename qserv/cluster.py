"""A local cluster of processes (``qserv up``): workers, czar and replication controller.

Each service runs as its own child process with its own log file under ``DATA_DIR/logs``;
the supervisor registers the workers in the metadata store, starts the services in order
(workers, then czar, then the replication controller), waits until each is ready, and on
SIGINT/SIGTERM stops them all (SIGTERM, then SIGKILL after a grace period).

The children die with the supervisor however it dies (qserv/lifeline.py). One data dir serves
one cluster at a time: the supervisor holds ``DATA_DIR/supervisor.lock`` (``fcntl.flock``) for
its lifetime and its children inherit that lock, so it is free again only once the supervisor
and every service it started are gone; a second ``qserv up`` on the same data dir meanwhile
fails with :class:`DataDirInUse`, naming the holder's pid.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from qserv.lifeline import Lifeline
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
    statement_timeout: float = 0.0  # the czar's default statement_timeout, seconds (0: none)
    worker_timeout: float = 600.0  # seconds a worker batch may run
    czar_args: tuple[str, ...] = ()  # extra `qserv czar` options (limits: --max-connections ...)
    evict_timeout: float = 120.0  # seconds a worker may be silent before its chunks are re-made
    health_interval: float = 2.0  # seconds between the replication controller's rounds

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


class DataDirInUse(RuntimeError):
    """Another live cluster holds the data dir (``qserv up`` exits non-zero with this message)."""


LOCK_FILE = "supervisor.lock"


class DataDirLock:
    """``DATA_DIR/supervisor.lock``, held (``flock``) by one supervisor and its children."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        self.fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise :class:`DataDirInUse` naming the pid that holds it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DataDirInUse(_in_use_message(self.path.parent, holder)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # the lock goes once the children that inherited it are gone too
            self.fd = None


def _in_use_message(data_dir: Path, holder: str) -> str:
    alive = holder.isdigit() and _pid_alive(int(holder))
    who = (
        f"a running qserv cluster (supervisor pid {holder})"
        if alive
        else f"the services of a qserv cluster whose supervisor (pid {holder}) is gone; they are stopping"
    )
    return f"data dir {data_dir} is in use by {who}: stop it first, or choose another --data-dir"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class LocalCluster:
    """Starts and stops the processes of a :class:`ClusterSpec`."""

    spec: ClusterSpec
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _lock: DataDirLock | None = field(default=None, init=False, repr=False)
    _lifeline: Lifeline | None = field(default=None, init=False, repr=False)

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        logs = self.spec.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        if self._lifeline is None:
            self._lifeline = Lifeline()
        lifeline = self._lifeline
        inherited = lifeline.pass_fds
        if self._lock is not None and self._lock.fd is not None:
            inherited += (self._lock.fd,)  # the data dir stays locked while any child lives
        out = open(logs / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child for its lifetime
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        proc = subprocess.Popen(
            [sys.executable, "-m", "qserv.cli", *args, *lifeline.child_args()],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            # a terminal's Ctrl-C reaches the supervisor only, which stops the services in order
            start_new_session=True,
            pass_fds=inherited,
        )
        out.close()
        self.procs[name] = proc
        return proc

    def worker_address(self, name: str) -> tuple[str, int]:
        index = self.spec.worker_names().index(name)
        return self.spec.host, self.spec.worker_port + index

    def start_worker(self, name: str, timeout: float = 60.0, port: int | None = None) -> None:
        """Start one worker process: one of the spec's, or (with ``port``) one more, which an
        operator then registers with ``qserv replica add-worker``."""
        host, port, proc = self._spawn_worker(name, port)
        wait_for_port(host, port, timeout, proc)

    def _spawn_worker(self, name: str, port: int | None = None) -> tuple[str, int, subprocess.Popen[bytes]]:
        host, port = (self.spec.host, port) if port is not None else self.worker_address(name)
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
        return host, port, proc

    def start(self, timeout: float = 60.0) -> None:
        """Start every service; raises :class:`DataDirInUse` if another cluster holds the data dir."""
        spec = self.spec
        spec.data_dir.mkdir(parents=True, exist_ok=True)
        if self._lock is None:
            lock = DataDirLock(spec.data_dir)
            lock.acquire()
            self._lock = lock
        store = open_store(spec.metadata())
        try:
            for name in spec.worker_names():
                host, port = self.worker_address(name)
                store.upsert_worker(WorkerInfo(name, host, port))
        finally:
            store.close()
        started = [self._spawn_worker(name) for name in spec.worker_names()]  # they start in parallel
        for host, port, proc in started:
            wait_for_port(host, port, timeout, proc)
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
                "--statement-timeout",
                f"{round(spec.statement_timeout * 1000)}ms",
                "--worker-timeout",
                str(spec.worker_timeout),
                *spec.czar_args,
            ],
        )
        wait_for_port(spec.host, spec.http_port, timeout, czar)
        wait_for_port(spec.host, spec.pg_port, timeout, czar)
        self.start_controller()
        event(log, "cluster ready", pg_port=spec.pg_port, http_port=spec.http_port, workers=spec.workers)

    def start_controller(self) -> None:
        """Start the replication controller (again, after a test killed it)."""
        spec = self.spec
        self._spawn(
            "replicad",
            [
                "replicad",
                "--data-dir",
                str(spec.data_dir),
                "--metadata",
                spec.metadata(),
                "--replicas",
                str(spec.replicas),
                "--evict-timeout",
                str(spec.evict_timeout),
                "--interval",
                str(spec.health_interval),
            ],
        )

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
        if self._lifeline is not None:
            self._lifeline.close()
            self._lifeline = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def failed(self) -> list[str]:
        return [n for n, p in self.procs.items() if p.poll() is not None]
