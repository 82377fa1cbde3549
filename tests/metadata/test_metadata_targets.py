"""Copies written by transactions (targets), their outcomes, dropped replicas and the holders of
complete regular-table copies, on both backends; and the upgrade of a version 1 store."""

from __future__ import annotations

import sqlite3
from dataclasses import replace

import psycopg
import pytest

from qserv.errors import InvalidParameter
from qserv.metadata.schema import SCHEMA_VERSION
from qserv.metadata.store import (
    MetadataStore,
    Replica,
    TableCopies,
    Target,
    TargetOutcome,
    TransactionState,
    open_store,
)
from tests.metadata.test_metadata_store import FAMILY, FILTER, MATCH, OBJECT, SKY, SOURCE, load_catalog

COMMITTED, ABORTED = TransactionState.COMMITTED, TransactionState.ABORTED


def _regular_load(store: MetadataStore, workers: list[str], committed: list[str], fingerprint: str) -> int:
    t = store.begin_transaction("sky", "FILTER", fingerprint)
    store.add_targets(t.transaction_id, [Target(None, w) for w in workers])
    store.finish_transaction(t.transaction_id, COMMITTED, committed)
    return t.transaction_id


def test_targets_round_trip_and_need_an_open_transaction(store: MetadataStore) -> None:
    load_catalog(store)
    t = store.begin_transaction("Sky", "Object", "fp")
    targets = [Target(7, "w2"), Target(7, "w1"), Target(3, "w1")]
    store.add_targets(t.transaction_id, targets)
    store.add_targets(t.transaction_id, targets[:1])  # placement asked again: no duplicate
    assert store.targets(t.transaction_id) == [Target(3, "w1"), Target(7, "w1"), Target(7, "w2")]
    r = store.begin_transaction("Sky", "Filter", "fp")
    store.add_targets(r.transaction_id, [Target(None, "w1")])
    assert store.targets(r.transaction_id) == [Target(None, "w1")]
    store.finish_transaction(r.transaction_id, ABORTED, ["w1"])
    with pytest.raises(InvalidParameter, match="aborted"):
        store.add_targets(r.transaction_id, [Target(None, "w2")])


def test_commit_drops_missed_replicas_with_the_state_change(store: MetadataStore) -> None:
    load_catalog(store)
    store.add_replicas([Replica(FAMILY, 1, w) for w in ("w1", "w2", "w3")])
    t = store.begin_transaction("Sky", "Object", "fp")
    store.add_replicas([Replica(FAMILY, 2, "w1"), Replica(FAMILY, 2, "w2")], t.transaction_id)
    store.add_targets(t.transaction_id, [Target(c, w) for c in (1, 2) for w in ("w1", "w2")])
    dropped = [Replica(FAMILY, 1, "w2"), Replica(FAMILY, 1, "w3"), Replica(FAMILY, 2, "w2")]
    store.finish_transaction(t.transaction_id, COMMITTED, ["w1"], dropped)
    assert store.transaction(t.transaction_id).state is COMMITTED  # type: ignore[union-attr]
    assert store.replicas(FAMILY) == [Replica(FAMILY, 1, "w1"), Replica(FAMILY, 2, "w1")]
    assert store.missed_targets() == [(t.transaction_id, "w2")]
    store.finish_transaction(t.transaction_id, COMMITTED, ["w1", "w2"])  # again: a no-op
    assert store.missed_targets() == [(t.transaction_id, "w2")]
    store.set_target_outcome(t.transaction_id, "w2", TargetOutcome.CLEARED)
    assert store.missed_targets() == []
    with pytest.raises(InvalidParameter, match="already committed"):
        store.finish_transaction(t.transaction_id, ABORTED, [])


def test_an_abort_leaves_missed_workers_to_clear(store: MetadataStore) -> None:
    load_catalog(store)
    t = store.begin_transaction("Sky", "Object", "fp")
    store.add_replicas([Replica(FAMILY, 5, "w1")], t.transaction_id)
    store.add_targets(t.transaction_id, [Target(5, "w1"), Target(5, "w2")])
    store.finish_transaction(t.transaction_id, ABORTED, ["w1"])
    assert store.missed_targets() == [(t.transaction_id, "w2")]
    assert store.replicas() == []
    with pytest.raises(InvalidParameter, match="committed or aborted"):
        store.finish_transaction(t.transaction_id, TransactionState.COMMITTING, [])


def test_regular_copies_are_complete_only_where_every_load_committed(store: MetadataStore) -> None:
    load_catalog(store)
    assert store.table_copies() == []  # never loaded: nothing recorded, no restriction
    _regular_load(store, ["w1", "w2", "w3"], ["w1", "w2", "w3"], "first")
    assert store.table_copies() == [TableCopies("Sky", "Filter", frozenset({"w1", "w2", "w3"}))]
    # w3 down during the second load: its copy lacks these rows, whatever it commits later
    _regular_load(store, ["w1", "w2"], ["w1", "w2"], "second")
    # w2 did not commit the third (unreachable at commit); w3 committed it, but missed the second
    _regular_load(store, ["w1", "w2", "w3"], ["w1", "w3"], "third")
    assert store.table_copies() == [TableCopies("Sky", "Filter", frozenset({"w1"}))]
    # uncommitted loads do not count
    t = store.begin_transaction("Sky", "Filter", "open")
    store.add_targets(t.transaction_id, [Target(None, "w2")])
    assert store.table_copies() == [TableCopies("Sky", "Filter", frozenset({"w1"}))]


_V3_COLUMNS = (
    "non_unique_key",
    "left_director",
    "left_column",
    "right_director",
    "right_column",
    "flag_column",
)


def _downgrade_to_version_1(store_url: str) -> None:
    _downgrade(store_url, ("DROP TABLE transaction_targets", "UPDATE schema_version SET version = 1"))


def _downgrade(store_url: str, statements: tuple[str, ...]) -> None:
    """Run ``statements`` after dropping what versions 3 and 4 added (an older store's shape)."""
    statements = (
        tuple(f"ALTER TABLE tables DROP COLUMN {c}" for c in _V3_COLUMNS)
        + ("DROP TABLE replica_checks", "DROP TABLE settings")
        + statements
    )
    if store_url.startswith("sqlite"):
        conn = sqlite3.connect(store_url.removeprefix("sqlite:///"))
        with conn:
            for s in statements:
                conn.execute(s)
        conn.close()
    else:
        with psycopg.connect(store_url, autocommit=True) as pg:
            for s in statements:
                pg.execute(s)


def test_a_version_2_store_is_upgraded(store_url: str, store: MetadataStore) -> None:
    store.create_database(SKY)
    for table in (OBJECT, SOURCE, FILTER):
        store.create_table(table)
    store.close()
    _downgrade(store_url, ("UPDATE schema_version SET version = 2",))
    again = open_store(store_url)
    try:
        assert again.schema_version() == SCHEMA_VERSION == 4  # type: ignore[attr-defined]
        # tables of a version 2 store: unique keys, no match fields
        assert set(again.catalog().tables) == {OBJECT, SOURCE, FILTER}
        again.create_table(MATCH)
        dup = replace(OBJECT, name="Dup", non_unique_key=True)
        again.create_table(dup)
        assert again.catalog().table("Sky", "RefMatch") == MATCH
        assert again.catalog().table("Sky", "Dup") == dup
    finally:
        again.close()


def test_a_version_1_store_is_upgraded(store_url: str, store: MetadataStore) -> None:
    store.create_database(SKY)
    for table in (OBJECT, SOURCE, FILTER):
        store.create_table(table)
    t = store.begin_transaction("Sky", "Filter", "old")
    store.set_transaction_state(t.transaction_id, COMMITTED)
    store.close()
    _downgrade_to_version_1(store_url)
    again = open_store(store_url)
    try:
        assert again.schema_version() == SCHEMA_VERSION == 4  # type: ignore[attr-defined]
        # a load of version 1 recorded no targets: its copies count as complete everywhere
        assert again.targets(t.transaction_id) == []
        assert again.table_copies() == []
        _regular_load(again, ["w1", "w2"], ["w1"], "new")
        assert again.table_copies() == [TableCopies("Sky", "Filter", frozenset({"w1"}))]
    finally:
        again.close()
