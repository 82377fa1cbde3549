"""The czar's metadata snapshot: suspected workers are planned around at once."""

from __future__ import annotations

from pathlib import Path

from czar.view import ViewCache
from qserv.catalog import Database
from qserv.metadata import Replica, WorkerInfo, open_store


def test_mark_down_removes_a_worker_from_placement_until_it_expires(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'm.sqlite3'}")
    store.create_database(Database("sky"))
    family = Database("sky").partitioning.family
    for name, port in (("w1", 1), ("w2", 2)):
        store.upsert_worker(WorkerInfo(name, "127.0.0.1", port))
    store.add_replicas([Replica(family, 7, "w1"), Replica(family, 7, "w2")])
    views = ViewCache(store, suspect_for=60.0)
    assert views.get().family_placement(family)[7] == ("w1", "w2")
    views.mark_down({"w1"})
    view = views.get()
    assert view.family_placement(family)[7] == ("w2",)
    assert view.live_workers == ("w2",)
    # suspecting every live worker would refuse every query: then nobody is suspected
    views.mark_down({"w2"})
    assert views.get().live_workers == ("w1", "w2")
    store.close()


def test_suspicion_expires(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'm.sqlite3'}")
    store.upsert_worker(WorkerInfo("w1", "127.0.0.1", 1))
    store.upsert_worker(WorkerInfo("w2", "127.0.0.1", 2))
    views = ViewCache(store, suspect_for=0.0)
    views.mark_down({"w1"})
    assert views.get().live_workers == ("w1", "w2")
    store.close()
