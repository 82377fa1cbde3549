"""The replication admin API's core on a real (SQLite) metadata store, without a cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from czar.http.replica_admin import ReplicaAdmin, parse_address
from czar.http.workers import WorkerClients
from qserv.errors import InvalidParameter, UndefinedObject, WorkerUnavailable
from qserv.metadata import MetadataStore, Replica, WorkerInfo, WorkerState, open_store
from qserv.replica import settings
from tests.ports import free_ports


@pytest.fixture
def store(tmp_path: Path) -> MetadataStore:
    s = open_store(f"sqlite:///{tmp_path / 'm.sqlite3'}")
    for i in (1, 2, 3):
        s.upsert_worker(WorkerInfo(f"w{i}", "127.0.0.1", 5000 + i))
    # chunk 1 on w1 and w2; chunk 2 only on w1
    s.add_replicas([Replica("f", 1, "w1"), Replica("f", 1, "w2"), Replica("f", 2, "w1")])
    return s


def admin(store: MetadataStore) -> ReplicaAdmin:
    return ReplicaAdmin(store, 2, WorkerClients())


def test_evicting_the_holder_of_a_last_replica_is_refused_unless_forced(store: MetadataStore) -> None:
    a = admin(store)
    with pytest.raises(
        InvalidParameter, match="only good replica of 1 chunks \\(e.g. chunk 2 of family f\\)"
    ):
        a.evict("w1", force=False)
    assert {w.name: w.state for w in store.workers()}["w1"] is WorkerState.ACTIVE
    assert a.evict("w2", force=False)["state"] == "disabled"  # chunk 1 keeps its replica on w1
    assert a.evict("w1", force=True)["was"] == "active"
    doc = a.status()
    assert doc["lost"] == 2 and doc["chunks"] == 2
    with pytest.raises(UndefinedObject, match='worker "w9" is not registered'):
        a.evict("w9", force=False)


def test_level_and_requests_go_to_the_store(store: MetadataStore) -> None:
    a = admin(store)
    assert a.level() == 2
    assert a.set_level(3)["replication_level"] == 3
    assert a.level() == 3 == settings.replication_level(store, 1)
    for bad in (0, 17, "3", True, None):
        with pytest.raises(InvalidParameter):
            a.set_level(bad)
    assert a.level() == 3
    first, second = a.request("replicate")["request"], a.request("rebalance")["request"]
    assert second == first + 1 and settings.requests(store)[0] == second
    assert a.request("verify")["request"] == 1 == settings.requests(store)[1]


def test_adding_a_worker_needs_one_that_answers_to_its_name(store: MetadataStore) -> None:
    a = admin(store)
    for bad in ("nohost", "h:", ":5", "h:0", "h:70000", "h:5x"):
        with pytest.raises(InvalidParameter, match="bad worker address"):
            parse_address(bad)
    assert parse_address("[::1]:5040") == ("::1", 5040)
    (port,) = free_ports(1)
    with pytest.raises(WorkerUnavailable, match=f"no worker answers at 127.0.0.1:{port}"):
        a.add_worker("w4", f"127.0.0.1:{port}")
    with pytest.raises(InvalidParameter, match="needs a name"):
        a.add_worker("", "127.0.0.1:1")
    assert [w.name for w in store.workers()] == ["w1", "w2", "w3"]
