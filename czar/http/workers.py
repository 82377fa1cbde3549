"""gRPC clients of the workers, shared by the czar's HTTP threads (ingest and admin)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from qserv.errors import WorkerUnavailable
from qserv.metadata.store import WorkerInfo
from qserv.rpc.client import WorkerClient

T = TypeVar("T")


class WorkerClients:
    """One gRPC client per worker address, shared by the HTTP threads."""

    def __init__(self) -> None:
        self._clients: dict[str, WorkerClient] = {}
        self._lock = threading.Lock()

    def get(self, worker: WorkerInfo) -> WorkerClient:
        with self._lock:
            client = self._clients.get(worker.address)
            if client is None:
                client = self._clients[worker.address] = WorkerClient(worker.address)
            return client

    def call(self, worker: WorkerInfo, fn: Callable[[WorkerClient], T]) -> T:
        """``fn(client)``, once more on a new channel if the worker was unreachable.

        A channel that failed to connect waits out a reconnect backoff (seconds, growing) and
        fails every call meanwhile: a worker that came back would look dead until it ends.
        """
        try:
            return fn(self.get(worker))
        except WorkerUnavailable:
            with self._lock:
                stale = self._clients.pop(worker.address, None)
            if stale is not None:
                stale.close()
            return fn(self.get(worker))

    def close(self) -> None:
        with self._lock:
            for c in self._clients.values():
                c.close()
            self._clients.clear()
