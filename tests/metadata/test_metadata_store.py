"""Round trips, idempotent creation and the transaction visibility rule, on both backends."""

from __future__ import annotations

from dataclasses import replace

import pytest

from qserv.catalog import Catalog, Column, Database, Partitioning, Table, TableKind
from qserv.errors import DuplicateObject, InvalidParameter, QservError, UndefinedDatabase, UndefinedTable
from qserv.metadata.schema import SCHEMA_VERSION
from qserv.metadata.store import (
    ChunkRows,
    MetadataStore,
    Replica,
    ReplicaCheck,
    TransactionState,
    WorkerInfo,
    WorkerState,
    open_store,
)

FAMILY = Partitioning().family
SKY = Database("Sky")
WIDE = Database("Wide", Partitioning(order=4, sub_order=7, overlap=0.05))

OBJECT = Table(
    "Sky",
    "Object",
    TableKind.DIRECTOR,
    (Column("objectId", "BIGINT"), Column("ra", "DOUBLE"), Column("dec", "DOUBLE"), Column("g", "REAL")),
    id_column="objectId",
    lon_column="ra",
    lat_column="dec",
)
SOURCE = Table(
    "Sky",
    "Source",
    TableKind.CHILD,
    (Column("sourceId", "BIGINT"), Column("objectId", "BIGINT"), Column("flux", "DOUBLE")),
    director="Object",
    key_column="objectId",
)
FILTER = Table("Sky", "Filter", TableKind.REGULAR, (Column("filterId", "INTEGER"), Column("name", "VARCHAR")))
MATCH = Table(
    "Sky",
    "RefMatch",
    TableKind.MATCH,
    (Column("a", "BIGINT"), Column("b", "BIGINT"), Column("flags", "INTEGER")),
    left_director="Sky.Object",
    left_column="a",
    right_director="Sky.Object",
    right_column="b",
    flag_column="flags",
)


def load_catalog(store: MetadataStore) -> None:
    store.create_database(SKY)
    store.create_database(WIDE)
    for t in (OBJECT, SOURCE, FILTER, MATCH):
        store.create_table(t)


def test_catalog_round_trip(store: MetadataStore) -> None:
    assert store.catalog() == Catalog()  # each test starts from an empty store
    load_catalog(store)
    cat = store.catalog()
    assert cat.databases == (SKY, WIDE)
    assert set(cat.tables) == {OBJECT, SOURCE, FILTER, MATCH}
    assert cat.table("Sky", "Object") == OBJECT
    assert cat.tables_of("Wide") == ()


def test_catalog_lookups_are_case_insensitive(store: MetadataStore) -> None:
    load_catalog(store)
    cat = store.catalog()
    assert cat.database("SKY") == SKY
    assert cat.table("sky", "OBJECT") == OBJECT
    assert cat.table("sKy", "source") == SOURCE
    assert {t.name for t in cat.tables_of("sky")} == {"Object", "Source", "Filter", "RefMatch"}
    assert cat.table("sky", "nothing") is None


def test_creation_is_idempotent(store: MetadataStore) -> None:
    load_catalog(store)
    load_catalog(store)  # the loader reruns
    store.create_database(Database("SKY"))  # another spelling of the same database
    store.create_table(Table("sky", "OBJECT", OBJECT.kind, OBJECT.columns, "objectId", "ra", "dec"))
    cat = store.catalog()
    assert cat.databases == (SKY, WIDE)  # names keep the case they were created with
    assert len(cat.tables) == 4 and cat.table("Sky", "Object") == OBJECT


def test_different_definition_is_a_duplicate(store: MetadataStore) -> None:
    load_catalog(store)
    with pytest.raises(DuplicateObject, match="partitioning"):
        store.create_database(Database("sky", Partitioning(order=6)))
    with pytest.raises(DuplicateObject, match="columns"):
        store.create_table(Table("Sky", "Filter", TableKind.REGULAR, (Column("filterId", "BIGINT"),)))
    with pytest.raises(DuplicateObject, match="kind"):
        store.create_table(replace(MATCH, name="filter"))
    assert store.catalog().table("Sky", "Filter") == FILTER


def test_invalid_tables_are_refused(store: MetadataStore) -> None:
    with pytest.raises(UndefinedDatabase):
        store.create_table(OBJECT)
    store.create_database(SKY)
    with pytest.raises(UndefinedTable, match="director"):
        store.create_table(SOURCE)  # its director is not there yet
    with pytest.raises(InvalidParameter, match="lat column"):
        store.create_table(Table("Sky", "Bad", TableKind.DIRECTOR, OBJECT.columns, "objectId", "ra", "decl"))
    with pytest.raises(InvalidParameter, match="duplicate"):
        store.create_table(Table("Sky", "Twice", TableKind.REGULAR, (Column("a", "INT"), Column("A", "INT"))))
    assert store.catalog().tables == ()


def test_workers_round_trip(store: MetadataStore) -> None:
    w1, w2 = WorkerInfo("worker-2", "127.0.0.1", 5041), WorkerInfo("worker-1", "10.0.0.1", 5040)
    store.upsert_worker(w1)
    store.upsert_worker(w2)
    assert store.workers() == [w2, w1]
    store.set_worker_state("worker-2", WorkerState.DOWN)
    assert store.workers()[1].state is WorkerState.DOWN
    # re-registers (as `qserv up` does at each start): new address, same state; only the
    # replication controller or an operator changes a state
    store.upsert_worker(WorkerInfo("worker-2", "127.0.0.2", 6000))
    assert store.workers() == [w2, WorkerInfo("worker-2", "127.0.0.2", 6000, WorkerState.DOWN)]
    for state in WorkerState:
        store.set_worker_state("worker-2", state)
        assert store.workers()[1].state is state
    with pytest.raises(InvalidParameter, match="not registered"):
        store.set_worker_state("worker-9", WorkerState.DOWN)


def test_replicas_round_trip(store: MetadataStore) -> None:
    other = WIDE.partitioning.family
    reps = [Replica(FAMILY, 7, "worker-2"), Replica(FAMILY, 7, "worker-1"), Replica(other, 3, "worker-1")]
    store.add_replicas(reps)
    store.add_replicas(reps[:1])  # adding again is a no-op
    assert store.replicas(FAMILY) == [Replica(FAMILY, 7, "worker-1"), Replica(FAMILY, 7, "worker-2")]
    assert store.replicas() == sorted(reps, key=lambda r: (r.family, r.chunk_id, r.worker))
    store.remove_replica(reps[0])
    store.remove_replica(reps[0])  # removing an unknown replica is a no-op
    assert store.replicas(FAMILY) == [Replica(FAMILY, 7, "worker-1")]
    assert store.replicas("no-such-family") == []


def test_transactions_round_trip(store: MetadataStore) -> None:
    load_catalog(store)
    t1 = store.begin_transaction("sky", "object", "files:a.csv")
    t2 = store.begin_transaction("Wide", "Thing", "files:b.csv")
    assert t1.transaction_id < t2.transaction_id
    assert (t1.database, t1.table, t1.state, t1.fingerprint, t1.rows) == (
        "Sky",  # canonical names of existing objects
        "Object",
        TransactionState.STARTED,
        "files:a.csv",
        0,
    )
    assert store.transaction(t1.transaction_id) == t1
    assert store.transaction(t2.transaction_id + 1000) is None
    store.set_transaction_state(t1.transaction_id, TransactionState.COMMITTING)
    store.set_transaction_state(t1.transaction_id, TransactionState.COMMITTED, rows=1234)
    store.set_transaction_state(t1.transaction_id, TransactionState.COMMITTED)  # again: no-op
    done = store.transaction(t1.transaction_id)
    assert done is not None and (done.state, done.rows) == (TransactionState.COMMITTED, 1234)
    assert store.transactions() == [done, t2]
    assert store.transactions(database="SKY") == [done]
    assert store.transactions(state=TransactionState.STARTED) == [t2]
    assert store.transactions("wide", TransactionState.COMMITTED) == []


def test_finished_transactions_do_not_change(store: MetadataStore) -> None:
    t = store.begin_transaction("Sky", "Object", "fp")
    store.set_transaction_state(t.transaction_id, TransactionState.ABORTED)
    with pytest.raises(InvalidParameter, match="already aborted"):
        store.set_transaction_state(t.transaction_id, TransactionState.COMMITTED)
    with pytest.raises(InvalidParameter, match="aborted"):
        store.add_chunk_rows(t.transaction_id, [ChunkRows("Sky", "Object", 1, 5)])
    with pytest.raises(InvalidParameter, match="does not exist"):
        store.set_transaction_state(t.transaction_id + 1, TransactionState.COMMITTED)


def test_chunk_rows_accumulate_and_sum(store: MetadataStore) -> None:
    load_catalog(store)
    t1 = store.begin_transaction("Sky", "Object", "fp1")
    store.add_chunk_rows(
        t1.transaction_id, [ChunkRows("Sky", "Object", 10, 5), ChunkRows("sky", "object", 11, 1)]
    )
    store.add_chunk_rows(
        t1.transaction_id, [ChunkRows("Sky", "Object", 10, 2), ChunkRows("Sky", "Source", 10, 9)]
    )
    store.set_transaction_state(t1.transaction_id, TransactionState.COMMITTED)
    t2 = store.begin_transaction("Sky", "Object", "fp2")
    store.add_chunk_rows(t2.transaction_id, [ChunkRows("Sky", "Object", 11, 3)])
    store.set_transaction_state(t2.transaction_id, TransactionState.COMMITTED)
    assert store.chunk_rows("SKY", "OBJECT") == [
        ChunkRows("Sky", "Object", 10, 7),
        ChunkRows("Sky", "Object", 11, 4),
    ]
    assert store.chunk_rows("sky") == [
        ChunkRows("Sky", "Object", 10, 7),
        ChunkRows("Sky", "Object", 11, 4),
        ChunkRows("Sky", "Source", 10, 9),
    ]
    assert store.chunk_rows("Wide") == []


def test_visibility_follows_the_transaction(store: MetadataStore) -> None:
    load_catalog(store)
    base = Replica(FAMILY, 1, "worker-1")
    store.add_replicas([base])  # no transaction: visible at once
    t = store.begin_transaction("Sky", "Object", "fp")
    tid = t.transaction_id
    new = [Replica(FAMILY, 2, "worker-1"), Replica(FAMILY, 2, "worker-2"), base]
    store.add_replicas(new, tid)
    store.add_chunk_rows(tid, [ChunkRows("Sky", "Object", 2, 100)])
    assert store.replicas() == [base]
    assert store.chunk_rows("Sky") == []
    store.set_transaction_state(tid, TransactionState.COMMITTING)
    store.add_chunk_rows(tid, [ChunkRows("Sky", "Object", 1, 1)])  # still open while committing
    assert store.replicas() == [base] and store.chunk_rows("Sky") == []
    store.set_transaction_state(tid, TransactionState.COMMITTED, rows=101)
    assert store.replicas() == [base, *new[:2]]
    assert store.chunk_rows("Sky") == [ChunkRows("Sky", "Object", 1, 1), ChunkRows("Sky", "Object", 2, 100)]
    with pytest.raises(InvalidParameter, match="committed"):
        store.add_replicas([Replica(FAMILY, 3, "worker-1")], tid)


def test_aborted_transaction_stays_invisible(store: MetadataStore) -> None:
    load_catalog(store)
    kept = store.begin_transaction("Sky", "Object", "fp")
    lost = store.begin_transaction("Sky", "Object", "fp")
    shared = Replica(FAMILY, 5, "worker-1")
    store.add_replicas([shared], kept.transaction_id)
    store.add_replicas([shared, Replica(FAMILY, 6, "worker-1")], lost.transaction_id)
    store.add_chunk_rows(lost.transaction_id, [ChunkRows("Sky", "Object", 6, 10)])
    store.set_transaction_state(lost.transaction_id, TransactionState.ABORTED)
    assert store.replicas() == [] and store.chunk_rows("Sky") == []
    store.set_transaction_state(kept.transaction_id, TransactionState.COMMITTED)
    assert store.replicas() == [shared]  # committed by the other transaction that added it
    assert store.chunk_rows("Sky") == []


def test_store_survives_reopening(store_url: str, store: MetadataStore) -> None:
    load_catalog(store)
    store.upsert_worker(WorkerInfo("worker-1", "127.0.0.1", 5040))
    cat = store.catalog()
    store.close()
    store.close()  # closing twice is harmless
    with pytest.raises(QservError, match="closed"):
        store.workers()
    again = open_store(store_url)
    try:
        assert again.catalog() == cat
        assert [w.name for w in again.workers()] == ["worker-1"]
        assert again.schema_version() == SCHEMA_VERSION  # type: ignore[attr-defined]
    finally:
        again.close()


def test_unreachable_store_raises(store_url: str, tmp_path: object) -> None:
    if store_url.startswith("sqlite"):
        blocker = f"{store_url.removeprefix('sqlite:///')}.file"
        open(blocker, "w").close()  # a file where the store's directory should be
        bad = f"sqlite:///{blocker}/metadata.sqlite3"
    else:
        bad = store_url.replace("qserv@", "qserv:secret@").rsplit("/", 1)[0] + "/no_such_database"
    with pytest.raises(QservError, match="cannot") as err:
        open_store(bad)
    assert "secret" not in str(err.value)


def test_store_reconnects_after_server_drops_it(store_url: str, store: MetadataStore) -> None:
    if not store_url.startswith("postgresql"):
        pytest.skip("SQLite has no server connection to lose")
    import psycopg

    store.create_database(SKY)
    with psycopg.connect(store_url, autocommit=True) as admin:
        # as a server restart or an idle-connection timeout would
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE pid <> pg_backend_pid() AND datname = current_database()"
        )
    assert store.catalog().databases == (SKY,)
    store.create_database(WIDE)
    assert store.catalog().databases == (SKY, WIDE)


def test_settings_and_counters(store: MetadataStore) -> None:
    assert store.setting("replication.level") is None
    store.set_setting("replication.level", "3")
    store.set_setting("replication.level", "2")
    assert store.setting("replication.level") == "2"
    assert [store.bump_setting("n") for _ in range(3)] == [1, 2, 3]
    assert store.setting("n") == "3"


def test_replica_checks_are_replaced_and_cleared(store: MetadataStore) -> None:
    store.record_checks(
        [ReplicaCheck("f", 1, "w1", "aa", False, 10.0), ReplicaCheck("f", 2, "w1", "bb", False, 10.0)]
    )
    store.record_checks(
        [ReplicaCheck("f", 1, "w1", "cc", True, 20.0), ReplicaCheck("g", 1, "w2", "dd", False, 5.0)]
    )
    assert store.replica_checks("f") == [
        ReplicaCheck("f", 1, "w1", "cc", True, 20.0),
        ReplicaCheck("f", 2, "w1", "bb", False, 10.0),
    ]
    store.clear_checks("f", [1, 1, 7])
    assert store.replica_checks() == [
        ReplicaCheck("f", 2, "w1", "bb", False, 10.0),
        ReplicaCheck("g", 1, "w2", "dd", False, 5.0),
    ]


def test_the_placement_version_moves_with_what_queries_are_planned_on(store: MetadataStore) -> None:
    v = store.placement_version()
    store.upsert_worker(WorkerInfo("w1", "h", 1))
    store.set_worker_state("w1", WorkerState.DOWN)
    store.add_replicas([Replica(FAMILY, 1, "w1")])
    store.remove_replica(Replica(FAMILY, 1, "w1"))
    assert store.placement_version() == v + 4
    v = store.placement_version()
    store.record_checks([ReplicaCheck("f", 1, "w1", "aa", False, 1.0)])  # a good verdict: nothing moves
    store.set_setting("other", "x")
    assert store.placement_version() == v
    store.record_checks([ReplicaCheck("f", 1, "w1", "bb", True, 2.0)])  # corrupt: planned around
    store.record_checks([ReplicaCheck("f", 1, "w1", "aa", False, 3.0)])  # repaired
    assert store.placement_version() == v + 2
