"""Streams partitioned rows to workers: one gRPC Ingest stream per worker, fed by a queue.

Three kinds of threads overlap the work of a load:

* a reader thread parses input files (pyarrow releases the GIL and parses in its own pool)
  into a bounded queue of batches;
* two partition threads validate and partition the next batches (numpy and healpy release
  the GIL) while the caller's thread routes the rows of the current one;
* one sender thread per worker drains that worker's bounded queue into a single
  ``WorkerClient.ingest`` stream (gRPC serialisation and the network run here).

Queues are bounded, so memory stays at a few batches whatever the file size. When anything
fails, every stream is cancelled (its iterator raises, so the worker rolls its staging back)
before the caller aborts the transaction.
"""

from __future__ import annotations

import collections
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import pyarrow as pa

from qserv.errors import QservError, WorkerUnavailable
from qserv.rpc.client import IngestItem, WorkerClient

T = TypeVar("T")
U = TypeVar("U")
QUEUE_DEPTH = 4
_END = object()
_CANCEL = object()


class _Cancelled(Exception):
    """Raised inside an ingest request iterator to cancel its gRPC stream."""


class Uploader:
    """Per-worker ingest streams of one transaction."""

    def __init__(self, transaction_id: int, database: str, table: str, addresses: dict[str, str]) -> None:
        self.transaction_id = transaction_id
        self.database = database
        self.table = table
        self._queues: dict[str, queue.Queue[object]] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._errors: list[BaseException] = []
        self._failed = threading.Event()
        self._addresses = addresses
        self.rows_sent: dict[str, int] = {}

    def _start(self, worker: str) -> queue.Queue[object]:
        q: queue.Queue[object] = queue.Queue(maxsize=QUEUE_DEPTH)
        self._queues[worker] = q
        thread = threading.Thread(target=self._run, args=(worker, q), name=f"ingest-{worker}", daemon=True)
        self._threads[worker] = thread
        thread.start()
        return q

    def _run(self, worker: str, q: queue.Queue[object]) -> None:
        def items() -> Iterator[IngestItem]:
            while True:
                item = q.get()
                if item is _END:
                    return
                if item is _CANCEL:
                    raise _Cancelled
                yield item  # type: ignore[misc]

        client = WorkerClient(self._addresses[worker])
        try:
            self.rows_sent[worker] = client.ingest(items())
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
            if not isinstance(e, _Cancelled) and not self._failed.is_set():
                if not isinstance(e, QservError):
                    e = WorkerUnavailable(f"ingest into worker {worker} failed: {e}")
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

    def _raise_if_failed(self) -> None:
        if self._failed.is_set() and self._errors:
            raise self._errors[0]

    def send(self, worker: str, rows: pa.Table, overlap: bool = False) -> None:
        """Queue rows for one worker (blocks while its queue is full)."""
        q = self._queues.get(worker) or self._start(worker)
        item: IngestItem = (self.transaction_id, self.database, self.table, overlap, rows)
        while True:
            self._raise_if_failed()
            try:
                q.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def close(self) -> int:
        """End every stream and wait; the rows workers staged. Raises the first failure."""
        for q in self._queues.values():
            self._put_control(q, _END)
        for t in self._threads.values():
            t.join()
        self._raise_if_failed()
        return sum(self.rows_sent.values())

    def cancel(self) -> None:
        """Cancel every stream (workers roll back what they staged) and wait for them."""
        self._failed.set()
        for q in self._queues.values():
            self._put_control(q, _CANCEL)
        for t in self._threads.values():
            t.join(timeout=30)

    def _put_control(self, q: queue.Queue[object], item: object) -> None:
        while True:
            try:
                q.put(item, timeout=0.2)
                return
            except queue.Full:
                if not any(t.is_alive() for t in self._threads.values()):
                    return


def prefetch(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """Iterate ``items`` in a background thread, ``depth`` ahead (errors re-raised here)."""
    q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def run() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(("item", item), timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(("end", None))
        except BaseException as e:  # noqa: BLE001 - re-raised in the consumer
            q.put(("error", e))

    thread = threading.Thread(target=run, name="reader", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        while thread.is_alive():
            try:
                q.get(timeout=0.1)
            except queue.Empty:
                pass


def ordered_map(fn: Callable[[T], U], items: Iterable[T], threads: int = 2) -> Iterator[tuple[T, U]]:
    """``(item, fn(item))`` in order, computing up to ``threads`` items ahead in a pool.

    Partitioning is numpy and healpy work that releases the GIL, so the next batches are
    partitioned while this one is sent (errors are raised in order, at their item).
    """
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="partition")
    pending: collections.deque[tuple[T, Future[U]]] = collections.deque()
    try:
        for item in items:
            pending.append((item, pool.submit(fn, item)))
            if len(pending) > threads:
                done, future = pending.popleft()
                yield done, future.result()
        while pending:
            done, future = pending.popleft()
            yield done, future.result()
    finally:
        for _, future in pending:
            future.cancel()
        pool.shutdown(wait=True)
