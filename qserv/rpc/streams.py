"""Ingest streams to many workers at once: one gRPC Ingest call per worker, fed by a queue.

Used by the loader (its rows, one stream per worker) and by a worker forwarding the rows it
receives to the other replicas of their chunks. Each stream has its own sender thread
(gRPC serialisation and the network run there) and a bounded queue, so memory stays at a
few messages per stream whatever the load's size, and a slow worker slows its producer
down instead of piling rows up. When one stream fails every other is cancelled (its
request iterator raises, so that worker drops what the stream staged) and the first
failure is raised to the producer.

Example::

    streams = IngestStreams({"w1": "127.0.0.1:5040"}, encode=lambda message: [message])
    streams.send("w1", message)      # blocks while w1's queue is full
    rows = streams.close()           # every stream ended and answered: rows staged
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

from qserv.errors import QservError, WorkerUnavailable
from qserv.rpc.client import WorkerClient

T = TypeVar("T")
QUEUE_DEPTH = 4
_END = object()
_CANCEL = object()
_POLL_S = 0.2


class _Cancelled(Exception):
    """Raised inside an ingest request iterator to cancel its gRPC stream."""


class IngestStreams(Generic[T]):
    """One Ingest stream per destination, opened on its first item.

    ``addresses`` maps a destination's name (a worker name) to its ``host:port``; without
    it, names are addresses; ``encode`` turns one item into the serialised requests it is sent as
    (it runs in the stream's sender thread); ``forwarded`` marks the streams as a worker's
    forwards (their receivers forward nothing).
    """

    def __init__(
        self,
        addresses: dict[str, str] | None,
        encode: Callable[[T], Iterable[bytes]],
        what: str = "ingest",
        forwarded: bool = False,
    ) -> None:
        self._addresses = addresses
        self._encode = encode
        self._what = what
        self._forwarded = forwarded
        self._queues: dict[str, queue.Queue[object]] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._errors: list[BaseException] = []
        self._failed = threading.Event()
        self.rows: dict[str, int] = {}

    def _start(self, name: str) -> queue.Queue[object]:
        if self._addresses is not None and name not in self._addresses:
            raise WorkerUnavailable(f"no address known for worker {name}")
        q: queue.Queue[object] = queue.Queue(maxsize=QUEUE_DEPTH)
        self._queues[name] = q
        thread = threading.Thread(target=self._run, args=(name, q), name=f"{self._what}-{name}", daemon=True)
        self._threads[name] = thread
        thread.start()
        return q

    def _run(self, name: str, q: queue.Queue[object]) -> None:
        def messages() -> Iterator[bytes]:
            while True:
                item = q.get()
                if item is _END:
                    return
                if item is _CANCEL:
                    raise _Cancelled
                yield from self._encode(item)  # type: ignore[arg-type]

        client = WorkerClient(name if self._addresses is None else self._addresses[name])
        try:
            self.rows[name] = client.ingest_messages(messages(), forwarded=self._forwarded)
        except BaseException as e:  # noqa: BLE001 - handed to the producer's thread
            if not isinstance(e, _Cancelled) and not self._failed.is_set():
                if not isinstance(e, QservError):
                    e = WorkerUnavailable(f"{self._what} into worker {name} failed: {e}")
                self._errors.append(e)
            self._failed.set()
            # drain so a producer blocked on put() wakes up
            while True:
                try:
                    q.get_nowait()
                except queue.Empty:
                    break
        finally:
            client.close()

    def raise_if_failed(self) -> None:
        """Raise the first stream's failure, if one failed."""
        if self._failed.is_set() and self._errors:
            raise self._errors[0]

    def send(self, name: str, item: T) -> None:
        """Queue ``item`` for ``name``'s stream (blocks while its queue is full)."""
        q = self._queues.get(name) or self._start(name)
        while True:
            self.raise_if_failed()
            try:
                q.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue

    def close(self) -> int:
        """End every stream and wait for the answers; the rows staged. Raises the first failure.

        Once a stream has failed the others are cancelled rather than ended; a stream that
        ended before the failure keeps what it staged (the transaction's abort drops it).
        """
        if self._failed.is_set():
            self.cancel()
            self.raise_if_failed()
        for q in self._queues.values():
            self._put_control(q, _END)
        for t in self._threads.values():
            t.join()
        self.raise_if_failed()
        return sum(self.rows.values())

    def cancel(self) -> None:
        """Cancel every stream (the workers drop what they staged) and wait for them."""
        self._failed.set()
        for q in self._queues.values():
            self._put_control(q, _CANCEL)
        for t in self._threads.values():
            t.join(timeout=30)

    def _put_control(self, q: queue.Queue[object], item: object) -> None:
        while True:
            try:
                q.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                if not any(t.is_alive() for t in self._threads.values()):
                    return
