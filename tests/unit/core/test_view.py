"""The czar's metadata snapshot: suspected workers are planned around at once."""

from __future__ import annotations

import time
from pathlib import Path

from czar.view import ClusterView, ViewCache
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


def _refreshed(views: ViewCache, old: object) -> object:
    """The snapshot after a background refresh (``max_age=0``: every get starts one)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        view = views.get()
        if view is not old:
            return view
        time.sleep(0.01)
    raise AssertionError("the snapshot was never refreshed")


def test_a_refresh_that_finds_nothing_new_keeps_the_plan_memo(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'm.sqlite3'}")
    store.create_database(Database("sky"))
    family = Database("sky").partitioning.family
    store.upsert_worker(WorkerInfo("w1", "127.0.0.1", 1))
    store.add_replicas([Replica(family, 7, "w1")])
    views = ViewCache(store, max_age=0.0)
    first = views.get()
    first.memo["plan"] = "cached"
    same = _refreshed(views, first)
    assert isinstance(same, ClusterView)
    assert same.memo is first.memo and same.placement is first.placement
    store.add_replicas([Replica(family, 8, "w1")])
    changed = _refreshed(views, same)
    assert isinstance(changed, ClusterView)
    assert 8 in changed.family_placement(family) and "plan" not in changed.memo
    store.close()
