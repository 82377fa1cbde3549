"""The worker process: locked-down DuckDB storage behind a gRPC server.

``serve(config)`` is what ``qserv worker`` runs: it blocks until SIGINT/SIGTERM, then stops
the server (in-flight queries are cancelled, which interrupts DuckDB), checkpoints and closes
the database. :func:`start` does the same set-up without blocking and returns a
:class:`RunningWorker` (bound port, ``stop()``), for ``qserv up`` and tests (port 0 picks a
free port).
"""

from __future__ import annotations

import logging
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import FrameType

import grpc

import qserv
from qserv.config import WorkerConfig
from qserv.errors import InvalidParameter
from qserv.log import event
from qserv.rpc.codec import CHANNEL_OPTIONS
from worker.faults import interceptors_from_env
from worker.lockdown import open_database
from worker.servicer import WorkerServicer, add_to_server
from worker.storage import Storage

_log = logging.getLogger(__name__)

GRPC_THREADS = 16
STOP_GRACE_SECONDS = 2.0


@dataclass(frozen=True)
class RunningWorker:
    """A started worker: where it listens and how to stop it (idempotent)."""

    name: str
    host: str
    port: int
    _stop: threading.Event = field(repr=False)
    _server: grpc.Server = field(repr=False)
    _storage: Storage = field(repr=False)
    _stop_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """Stop serving (running queries are cancelled after ``grace`` s) and close DuckDB."""
        with self._stop_lock:
            if self._stop.is_set():
                return
            self._stop.set()
            self._server.stop(grace).wait()
            self._storage.close()
            event(_log, "worker stopped", worker=self.name)


def start(config: WorkerConfig) -> RunningWorker:
    """Open the storage and start the gRPC server on ``config.host:config.port`` (0: any)."""
    conn = open_database(config.data_dir, config.threads, config.memory_limit, config.compression)
    storage = Storage(conn)
    server = grpc.server(
        ThreadPoolExecutor(max_workers=GRPC_THREADS, thread_name_prefix=f"{config.name}-rpc"),
        # no SO_REUSEPORT: a second worker on a taken port must fail, not share the port
        options=[*CHANNEL_OPTIONS, ("grpc.so_reuseport", 0)],
        interceptors=interceptors_from_env(),
    )
    add_to_server(WorkerServicer(config.name, storage), server)
    try:
        port = server.add_insecure_port(f"{config.host}:{config.port}")
    except RuntimeError as exc:
        storage.close()
        raise InvalidParameter(
            f"worker {config.name} cannot listen on {config.host}:{config.port}: {exc}",
            hint="choose a free port",
        ) from exc
    server.start()
    staged = storage.staged_transactions()
    event(
        _log,
        "worker ready",
        worker=config.name,
        address=f"{config.host}:{port}",
        data_dir=config.data_dir,
        version=qserv.__version__,
        threads=config.threads,
        memory_limit=config.memory_limit,
        staged_transactions=",".join(map(str, staged)) or "none",
    )
    return RunningWorker(config.name, config.host, port, threading.Event(), server, storage)


def serve(config: WorkerConfig) -> None:
    """Run a worker in the foreground until SIGINT or SIGTERM (main thread only)."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        event(_log, "worker stopping", worker=config.name, signal=signal.Signals(signum).name)
        stop.set()

    # handlers first: a signal arriving right after "worker ready" must still stop cleanly
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        worker = start(config)
        try:
            stop.wait()
        finally:
            worker.stop()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
