"""The czar's metadata snapshot: suspected workers are planned around at once; regular tables
are read only where a complete copy is."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from czar.view import ClusterView, ViewCache
from qserv.catalog import Catalog, Column, Database, Table, TableKind
from qserv.errors import WorkerUnavailable
from qserv.metadata import (
    MetadataStore,
    Replica,
    Target,
    TransactionState,
    WorkerInfo,
    WorkerState,
    open_store,
)


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


class _GatedStore:
    """A metadata store whose next catalog() read waits for ``release`` (once armed)."""

    def __init__(self, store: MetadataStore) -> None:
        self._store = store
        self.armed = False
        self.entered = threading.Event()
        self.release = threading.Event()

    def catalog(self) -> Catalog:
        if self.armed:
            self.armed = False
            self.entered.set()
            self.release.wait(10)
        return self._store.catalog()

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)


def test_a_refresh_begun_before_a_commit_does_not_bring_back_the_old_memo(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'm.sqlite3'}")
    store.create_database(Database("sky"))
    store.upsert_worker(WorkerInfo("w1", "127.0.0.1", 1))
    gated = _GatedStore(store)
    views = ViewCache(gated, max_age=0.0)  # type: ignore[arg-type]
    views.get().memo["plan"] = "made before the commit"
    gated.armed = True
    views.get()  # starts a background refresh, which now waits inside its read
    assert gated.entered.wait(10)
    views.invalidate()  # a commit through this czar (the director index may have changed)
    fresh = views.get()
    assert "plan" not in fresh.memo
    fresh.memo["plan"] = "made after the commit"
    gated.release.set()
    deadline = time.monotonic() + 10
    while views._refreshing and time.monotonic() < deadline:  # noqa: SLF001 - waiting for the thread
        time.sleep(0.01)
    assert views.get().memo.get("plan") == "made after the commit"
    store.close()


def test_regular_tables_are_read_only_on_workers_holding_a_complete_copy(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'm.sqlite3'}")
    store.create_database(Database("sky"))
    family = Database("sky").partitioning.family
    for t in (Table("sky", "Filter", TableKind.REGULAR, (Column("id", "INTEGER"),)),
              Table("sky", "Band", TableKind.REGULAR, (Column("id", "INTEGER"),))):  # fmt: skip
        store.create_table(t)
    for name, port in (("w1", 1), ("w2", 2), ("w3", 3)):
        store.upsert_worker(WorkerInfo(name, "127.0.0.1", port))
    store.add_replicas([Replica(family, 7, "w1"), Replica(family, 7, "w2"), Replica(family, 8, "w3")])
    # Filter: w3 missed a load; Band: loaded on w2 and w3 only
    for table, sent, committed in (
        ("Filter", ["w1", "w2", "w3"], ["w1", "w2"]),
        ("Band", ["w2", "w3"], ["w2", "w3"]),
    ):
        t = store.begin_transaction("sky", table, table)
        store.add_targets(t.transaction_id, [Target(None, w) for w in sent])
        store.finish_transaction(t.transaction_id, TransactionState.COMMITTED, committed)
    view = ViewCache(store).get()
    assert view.holders_of([]) == ("w1", "w2", "w3")
    assert view.holders_of([("sky", "filter")]) == ("w1", "w2")
    assert view.holders_of([("sky", "filter"), ("sky", "band")]) == ("w2",)
    assert view.holders_of([("sky", "unrecorded")]) == ("w1", "w2", "w3")  # no copies recorded
    placement, held = view.placement_on(family, ("w2",))
    assert dict(placement) == {7: ("w2",)} and dict(held) == {"w2": frozenset({7})}
    assert view.placement_on(family, ("w2",))[0] is placement  # one object per worker set
    assert view.placement_on(family, view.live_workers)[0] is view.family_placement(family)
    store.set_worker_state("w2", WorkerState.DOWN)
    view = ViewCache(store).get()
    with pytest.raises(WorkerUnavailable, match=r"regular tables sky\.Band, sky\.Filter"):
        view.holders_of([("sky", "filter"), ("sky", "band")])
    store.set_worker_state("w1", WorkerState.DOWN)
    view = ViewCache(store).get()
    with pytest.raises(WorkerUnavailable, match=r"regular table sky\.Filter \(complete copies: w1, w2\)"):
        view.holders_of([("sky", "filter")])
    store.close()
