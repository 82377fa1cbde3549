"""Ingest recovery against the in-process czar API and real workers (fast companions of
tests/integration/test_load_recovery.py).

* A table recorded in the metadata store but created on no worker (what a czar killed between
  the two steps leaves) is created by the next load, for every table kind.
* Commits of two transactions with a common director key, sent at the same moment, leave one
  committed and the other aborted naming the key; the index holds every key once.
"""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from loader_cluster import IngestCluster
from test_loader_cluster import director, load, stats, write_objects

from loader.transaction import CzarClient
from qserv.catalog import Column, Table, TableKind
from qserv.errors import DataError, QservError
from qserv.metadata.store import TransactionState


def test_tables_recorded_but_on_no_worker_are_created_by_the_next_load(
    cluster: IngestCluster, tmp_path: Path
) -> None:
    db = "Rec1"
    CzarClient(cluster.url).create_database(db)
    objects = write_objects(tmp_path / "object.parquet", 5_000, seed=3)
    source = pa.table({"sourceId": pa.array(range(3_000), pa.int64()),
                       "objectId": pa.array([i % 5_000 for i in range(3_000)], pa.int64())})  # fmt: skip
    pq.write_table(source, tmp_path / "source.parquet")
    regular = pa.table({"filterId": pa.array(range(6), pa.int64()), "name": [f"f{i}" for i in range(6)]})
    pq.write_table(regular, tmp_path / "filter.parquet")
    # the metadata store has the tables (as the czar records them first); no worker has them
    big, text = Column("objectId", "BIGINT"), "VARCHAR"
    cluster.store.create_table(Table(db, "Object", TableKind.DIRECTOR,
                                     (big, Column("ra", "DOUBLE"), Column("decl", "DOUBLE"), Column("flux", "DOUBLE")),
                                     "objectId", "ra", "decl"))  # fmt: skip
    cluster.store.create_table(Table(db, "Source", TableKind.CHILD, (Column("sourceId", "BIGINT"), big),
                                     director="Object", key_column="objectId"))  # fmt: skip
    cluster.store.create_table(Table(db, "Filter", TableKind.REGULAR,
                                     (Column("filterId", "BIGINT"), Column("name", text))))  # fmt: skip

    assert director(cluster, db, tmp_path / "object.parquet") == 0
    assert sum(stats(cluster, db, "Object").values()) == 2 * 5_000  # two replicas of each row
    assert (
        load(cluster, db, "Source", "--child-of", "Object", "--key", "objectId", tmp_path / "source.parquet")
        == 0
    )
    assert sum(stats(cluster, db, "Source").values()) == 2 * 3_000
    assert load(cluster, db, "Filter", "--regular", tmp_path / "filter.parquet") == 0
    for c in cluster.clients:  # the whole regular table on every worker
        assert sum(s.rows for s in c.chunk_stats(db) if s.table == "Filter") == 6
    assert cluster.index.count(db, "Object") == objects.num_rows


def _keys(keys: range) -> pa.Table:
    return pa.table({"key": pa.array(keys, pa.int64()), "chunk": pa.array([k % 7 for k in keys], pa.int32()),
                     "subchunk": pa.array([0] * len(keys), pa.int64())})  # fmt: skip


@pytest.mark.parametrize("attempt", range(3))
def test_concurrent_commits_with_a_common_key_leave_one_winner(cluster: IngestCluster, attempt: int) -> None:
    db = "Rec2"
    czar = CzarClient(cluster.url)
    if czar.database(db) is None:
        czar.create_database(db)
    table = f"Race{attempt}"
    cluster.store.create_table(Table(db, table, TableKind.DIRECTOR,
                                     (Column("objectId", "BIGINT"), Column("ra", "DOUBLE"), Column("decl", "DOUBLE")),
                                     "objectId", "ra", "decl"))  # fmt: skip
    txns = [czar.begin(db, table, f"fp{attempt}-{i}").transaction_id for i in range(2)]
    czar.stage_index(txns[0], _keys(range(0, 20_000)))
    czar.stage_index(txns[1], _keys(range(15_000, 30_000)))
    barrier = threading.Barrier(2)
    outcome: dict[int, BaseException | None] = {}

    def commit(txn: int) -> None:
        client = CzarClient(cluster.url)
        barrier.wait()
        try:
            client.commit(txn, {}, 0)
            outcome[txn] = None
        except QservError as e:
            outcome[txn] = e

    threads = [threading.Thread(target=commit, args=(t,)) for t in txns]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    failed = [e for e in outcome.values() if e is not None]
    assert len(failed) == 1, outcome
    assert isinstance(failed[0], DataError) and "already loaded" in failed[0].message
    key = int(failed[0].message.split("director key ")[1].split()[0])
    assert 15_000 <= key < 20_000
    states = Counter(cluster.store.transaction(t).state for t in txns)  # type: ignore[union-attr]
    assert states == Counter({TransactionState.COMMITTED: 1, TransactionState.ABORTED: 1})
    winner = next(t for t in txns if outcome[t] is None)
    assert cluster.index.count(db, table) == (20_000 if winner == txns[0] else 15_000)
