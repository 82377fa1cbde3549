"""Several store objects (as several processes) and several threads on one metadata store."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from qserv.catalog import Column, Database, Table, TableKind
from qserv.metadata.store import (
    ChunkRows,
    MetadataStore,
    Replica,
    TransactionState,
    WorkerInfo,
    WorkerState,
    open_store,
)

FAMILY = "healpix-o5-s8-ov0.016667"
SKY = Database("Sky")
FILTER = Table("Sky", "Filter", TableKind.REGULAR, (Column("filterId", "INTEGER"),))


def test_two_stores_see_each_other(open_many: Callable[[], MetadataStore]) -> None:
    czar, controller = open_many(), open_many()
    controller.create_database(SKY)
    controller.create_table(FILTER)
    assert czar.catalog().table("sky", "filter") == FILTER
    czar.upsert_worker(WorkerInfo("worker-1", "127.0.0.1", 5040))
    controller.set_worker_state("worker-1", WorkerState.DOWN)
    assert czar.workers() == [WorkerInfo("worker-1", "127.0.0.1", 5040, WorkerState.DOWN)]
    t = controller.begin_transaction("Sky", "Filter", "fp")
    controller.add_replicas([Replica(FAMILY, 9, "worker-1")], t.transaction_id)
    czar.add_chunk_rows(t.transaction_id, [ChunkRows("Sky", "Filter", 9, 3)])
    assert czar.replicas() == [] and czar.transaction(t.transaction_id) == t
    czar.set_transaction_state(t.transaction_id, TransactionState.COMMITTED, rows=3)
    assert controller.replicas() == [Replica(FAMILY, 9, "worker-1")]
    assert controller.chunk_rows("Sky", "Filter") == [ChunkRows("Sky", "Filter", 9, 3)]


def test_concurrent_begin_transaction_ids_are_unique(open_many: Callable[[], MetadataStore]) -> None:
    stores = [open_many(), open_many()]
    per_thread = 15

    def begin(i: int) -> list[int]:
        store = stores[i % 2]  # two threads share each store object
        return [store.begin_transaction("Sky", "T", f"{i}:{n}").transaction_id for n in range(per_thread)]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(begin, range(4)))
    ids = [tid for r in results for tid in r]
    assert len(set(ids)) == len(ids) == 4 * per_thread
    for r in results:
        assert r == sorted(r)  # increasing as seen by each caller
    assert [t.transaction_id for t in stores[0].transactions()] == sorted(ids)


def test_threads_share_one_store(store: MetadataStore) -> None:
    store.create_database(SKY)
    t = store.begin_transaction("Sky", "T", "fp")

    def work(i: int) -> None:
        store.upsert_worker(WorkerInfo(f"worker-{i}", "127.0.0.1", 5040 + i))
        store.add_replicas([Replica(FAMILY, c, f"worker-{i}") for c in range(10)], t.transaction_id)
        store.add_chunk_rows(t.transaction_id, [ChunkRows("Sky", "T", c, 1) for c in range(10)])
        store.catalog()

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(work, range(4)))
    store.set_transaction_state(t.transaction_id, TransactionState.COMMITTED)
    assert len(store.workers()) == 4
    assert len(store.replicas(FAMILY)) == 40
    assert store.chunk_rows("Sky", "T") == [ChunkRows("Sky", "T", c, 4) for c in range(10)]


def test_concurrent_first_open_and_create(store_url: str) -> None:
    """Processes starting together on a fresh store all create (or find) the same schema."""
    n = 4
    barrier = threading.Barrier(n)

    def first_open(i: int) -> MetadataStore:
        barrier.wait()
        store = open_store(store_url)
        store.create_database(SKY)  # the loader and the czar racing to create the same objects
        store.create_table(FILTER)
        return store

    with ThreadPoolExecutor(n) as pool:
        stores = list(pool.map(first_open, range(n)))
    try:
        for s in stores:
            assert s.catalog().tables == (FILTER,)
    finally:
        for s in stores:
            s.close()


_BEGIN_SCRIPT = """
import sys
from qserv.metadata.store import open_store
store = open_store(sys.argv[1])
print(" ".join(str(store.begin_transaction("Sky", "T", "fp").transaction_id) for _ in range(20)))
store.close()
"""


def test_processes_begin_transactions_together(store_url: str) -> None:
    """Real processes (czar, controller) on one store: schema race and id uniqueness."""
    procs = [
        subprocess.Popen([sys.executable, "-c", _BEGIN_SCRIPT, store_url], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    ids = [int(tid) for out in outputs for tid in out.split()]
    assert len(set(ids)) == len(ids) == 40
