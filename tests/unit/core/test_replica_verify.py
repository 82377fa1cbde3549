"""Verification verdicts and the replication status, as pure functions (no cluster)."""

from __future__ import annotations

from qserv.metadata import Replica, ReplicaCheck, WorkerInfo, WorkerState
from qserv.replica.garbage import orphans
from qserv.replica.status import Observed, chunk_rows, cluster_status
from qserv.replica.verify import digests, judge
from qserv.rpc.client import TableChecksum


def test_digests_ignore_order_and_empty_tables() -> None:
    a = [TableChecksum("sky", "Object", 1, 5, "aa"), TableChecksum("sky", "Source", 1, 9, "bb")]
    b = [TableChecksum("sky", "Source", 1, 9, "bb"), TableChecksum("sky", "Object", 1, 5, "aa")]
    empty = [TableChecksum("sky", "Match", 1, 0, "0" * 16)]
    assert digests(a) == digests(b) == digests(a + empty)
    assert digests([TableChecksum("sky", "Object", 1, 5, "ab")]) != digests(a)
    assert digests([TableChecksum("SKY", "object", 2, 5, "aa")])[2] == digests(a[:1])[1]
    assert digests([]) == {}


def test_a_majority_decides() -> None:
    v = judge({"w1": "x", "w2": "x", "w3": "y"}, (), None)
    assert (v.reference, v.corrupt) == ("x", frozenset({"w3"}))
    assert judge({"w1": "x", "w2": "x"}, (), None).corrupt == frozenset()


def test_two_that_disagree_are_told_apart_by_the_recorded_value_only() -> None:
    assert judge({"w1": "x", "w2": "y"}, (), None).conflict
    v = judge({"w1": "x", "w2": "y"}, (), "y")
    assert (v.reference, v.corrupt) == ("y", frozenset({"w1"}))
    assert judge({"w1": "x", "w2": "y"}, (), "z").conflict  # history that matches neither


def test_an_unreadable_replica_is_corrupt() -> None:
    v = judge({"w1": "x"}, {"w2"}, None)
    assert (v.reference, v.corrupt) == ("x", frozenset({"w2"}))
    assert judge({}, {"w1", "w2"}, None).conflict  # nothing to repair from


def test_a_majority_outweighs_stale_history() -> None:
    v = judge({"w1": "new", "w2": "new", "w3": "old"}, (), "old")
    assert (v.reference, v.corrupt) == ("new", frozenset({"w3"}))


def _observed(**kw: object) -> Observed:
    base: dict[str, object] = dict(
        level=2,
        workers=[WorkerInfo("w1", "h", 1), WorkerInfo("w2", "h", 2), WorkerInfo("w3", "h", 3)],
        replicas=[],
        checks=[],
        chunks_with_rows={},
        controller={"at": 100.0, "copies_in_flight": 1, "idle": False},
        now=105.0,
    )
    base.update(kw)
    return Observed(**base)  # type: ignore[arg-type]


def test_status_counts_what_the_policy_counts() -> None:
    replicas = [
        Replica("f", 1, "w1"), Replica("f", 1, "w2"),  # ok
        Replica("f", 2, "w1"),  # under
        Replica("f", 3, "w1"), Replica("f", 3, "w2"), Replica("f", 3, "w3"),  # over
        Replica("f", 4, "w3"),  # on a disabled worker only: lost
        Replica("f", 5, "w1"), Replica("f", 5, "w2"),  # one corrupt: under
    ]  # fmt: skip
    workers = [
        WorkerInfo("w1", "h", 1),
        WorkerInfo("w2", "h", 2),
        WorkerInfo("w3", "h", 3, WorkerState.DISABLED),
    ]
    checks = [ReplicaCheck("f", 5, "w2", "x", True, 90.0)]
    obs = _observed(replicas=replicas, workers=workers, checks=checks, chunks_with_rows={"f": {1, 6}})
    doc = cluster_status(obs)
    assert doc["replication_level"] == doc["effective_level"] == 2
    assert doc["chunks"] == 6  # chunk 6 has rows and no replica anywhere
    assert (doc["under_replicated"], doc["over_replicated"], doc["lost"], doc["corrupt"]) == (2, 0, 2, 1)
    assert doc["lost_chunks"] == [{"family": "f", "chunk": 4}, {"family": "f", "chunk": 6}]
    assert {w["name"]: (w["state"], w["replicas"]) for w in doc["workers"]} == {
        "w1": ("active", 4), "w2": ("active", 3), "w3": ("disabled", 2),
    }  # fmt: skip
    assert doc["controller"] == {"running": True, "last_report_s": 5.0, "idle": False, "round_request": 0}
    assert doc["copies_in_flight"] == 1
    rows = {r["chunk"]: r["standing"] for r in chunk_rows(obs)}
    assert rows == {1: "ok", 2: "under", 3: "ok", 4: "lost", 5: "under", 6: "lost"}
    assert [r["chunk"] for r in chunk_rows(obs, only="lost")] == [4, 6]
    assert chunk_rows(obs, family="g") == []


def test_status_caps_the_level_and_waits_for_a_down_worker() -> None:
    workers = [WorkerInfo("w1", "h", 1), WorkerInfo("w2", "h", 2, WorkerState.DOWN)]
    obs = _observed(level=3, workers=workers, replicas=[Replica("f", 1, "w2"), Replica("f", 2, "w1")])
    doc = cluster_status(obs)
    assert (doc["replication_level"], doc["effective_level"]) == (3, 1)
    assert (doc["under_replicated"], doc["lost"]) == (1, 0)  # chunk 1 waits for w2
    assert cluster_status(_observed(controller=None))["controller"] == {
        "running": False,
        "last_report_s": None,
        "idle": False,
        "round_request": 0,
    }
    assert cluster_status(_observed(now=200.0))["controller"]["running"] is False


def test_orphans_are_rows_no_replica_copy_drop_or_load_accounts_for() -> None:
    held = {("f", "w1"): [1, 2, 3, 3], ("f", "w2"): [1, 4], ("g", "w1"): [9]}
    registered = {("f", 1, "w1"), ("f", 1, "w2")}
    busy = {("f", 2, "w1")}  # a copy in flight or a deletion already pending
    assert orphans(held, registered, busy, loading=()) == [("f", 3, "w1"), ("f", 4, "w2"), ("g", 9, "w1")]
    assert orphans(held, registered, busy, loading={"f"}) == [("g", 9, "w1")]
