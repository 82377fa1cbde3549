"""Streams partitioned rows to workers, each row once; prefetching and ordered maps.

Three kinds of threads overlap the work of a load:

* a reader thread parses input files (pyarrow releases the GIL and parses in its own pool)
  into a bounded queue of batches;
* two partition threads validate and partition the next batches (numpy and healpy release
  the GIL) while the caller's thread routes the rows of the current one;
* one sender thread per worker (:class:`qserv.rpc.streams.IngestStreams`) drains that
  worker's bounded queue into a single Ingest stream (gRPC serialisation and the network run
  there).

A row is sent to one replica's worker only, with the addresses of the chunk's other replicas:
that worker stages it and forwards it to them within the same stream, so every replica is
staged when the stream ends, the loader's bandwidth and CPU are spent once per row, and the
replicas become visible together at commit. When anything fails, every stream is cancelled
(its iterator raises, so the worker rolls its staging and its forwards back) before the
caller aborts the transaction.
"""

from __future__ import annotations

import collections
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import pyarrow as pa

from qserv.rpc.ingest_wire import IngestItem, ingest_requests
from qserv.rpc.streams import IngestStreams

T = TypeVar("T")
U = TypeVar("U")


class Uploader:
    """Per-worker ingest streams of one transaction."""

    def __init__(self, transaction_id: int, database: str, table: str, addresses: dict[str, str]) -> None:
        self.transaction_id = transaction_id
        self.database = database
        self.table = table
        self._addresses = addresses
        self._streams: IngestStreams[IngestItem] = IngestStreams(addresses, ingest_requests)

    def send(self, worker: str, rows: pa.Table, overlap: bool = False, forward: Sequence[str] = ()) -> None:
        """Queue rows for ``worker``, which also stages them on the ``forward`` workers."""
        addresses = tuple(self._addresses[w] for w in forward)
        self._streams.send(worker, (self.transaction_id, self.database, self.table, overlap, rows, addresses))

    def close(self) -> int:
        """End every stream and wait; the rows the loader's streams staged. Raises the first failure."""
        return self._streams.close()

    def cancel(self) -> None:
        """Cancel every stream (workers roll back what they staged) and wait for them."""
        self._streams.cancel()


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
