"""The replication policy as a pure function: every rule, and convergence under simulation."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from qserv.replica.policy import (
    Action,
    ClusterState,
    Copy,
    CopyTable,
    Drop,
    Enable,
    Evict,
    Lost,
    PolicyLimits,
    ReplicaStatus,
    ReplicaView,
    TableView,
    Verify,
    WorkerMode,
    WorkerView,
    policy,
    summary,
)

LIMITS = PolicyLimits(evict_timeout=30.0, max_copies_per_worker=2, max_rebalance_moves=4)
GOOD, COPYING, CORRUPT = ReplicaStatus.GOOD, ReplicaStatus.COPYING, ReplicaStatus.CORRUPT


def ring(chunks: int, workers: list[str], level: int, family: str = "sky") -> tuple[ReplicaView, ...]:
    """Chunk c on workers c, c+1, ... (mod N): a balanced placement."""
    return tuple(
        ReplicaView(family, c, workers[(c + k) % len(workers)]) for c in range(chunks) for k in range(level)
    )


def alive(*names: str) -> tuple[WorkerView, ...]:
    return tuple(WorkerView(n) for n in names)


def of(actions: list[Action], kind: type) -> list:
    return [a for a in actions if isinstance(a, kind)]


def good_count(state: ClusterState) -> Counter:
    serving = {w.name for w in state.workers if w.serving}
    return Counter(r.key for r in state.replicas if r.status is GOOD and r.worker in serving)


def test_healthy_balanced_cluster_needs_nothing() -> None:
    state = ClusterState(2, alive("w1", "w2", "w3"), ring(30, ["w1", "w2", "w3"], 2))
    assert policy(state, LIMITS) == []
    assert summary(state) == {"chunks": 30, "under_replicated": 0, "over_replicated": 0, "lost": 0}


def test_a_down_worker_is_waited_for_until_evict_timeout() -> None:
    replicas = ring(12, ["w1", "w2", "w3"], 2)
    down = WorkerView("w3", alive=False, silent_for=29.0)
    assert policy(ClusterState(2, (*alive("w1", "w2"), down), replicas), LIMITS) == []


def test_eviction_starts_re_replication_in_the_same_round() -> None:
    names = ["w1", "w2", "w3", "w4"]
    replicas = ring(8, names, 2)
    down = WorkerView("w4", alive=False, silent_for=31.0)
    actions = policy(ClusterState(2, (*alive("w1", "w2", "w3"), down), replicas), LIMITS)
    assert actions[0] == Evict("w4")
    copies = of(actions, Copy)
    lost_on_w4 = {r.key for r in replicas if r.worker == "w4"}
    assert {(c.family, c.chunk) for c in copies} <= lost_on_w4
    for c in copies:
        holders = {r.worker for r in replicas if r.key == (c.family, c.chunk)}
        assert c.source in holders - {"w4"} and c.target not in holders and c.reason == "replicate"
    per_worker = Counter([c.source for c in copies] + [c.target for c in copies])
    assert max(per_worker.values()) <= LIMITS.max_copies_per_worker
    assert len({(c.family, c.chunk) for c in copies}) == len(copies)  # one copy per chunk short by one


def test_copies_in_flight_count_towards_the_level_and_the_budget() -> None:
    replicas = (
        ReplicaView("sky", 1, "w1"),
        ReplicaView("sky", 1, "w2", COPYING),
        ReplicaView("sky", 2, "w1"),
    )
    state = ClusterState(2, alive("w1", "w2", "w3"), replicas)
    actions = policy(state, LIMITS)
    assert [a for a in actions if isinstance(a, Copy) and a.chunk == 1] == []  # no second copy
    (copy,) = of(actions, Copy)
    assert copy.chunk == 2 and copy.source == "w1"
    assert copy.target == "w3"  # w2 already has a copy in flight and is as loaded


def test_a_disabled_worker_does_not_count_and_is_not_waited_for() -> None:
    replicas = ring(3, ["w1", "w2", "w3"], 2)
    workers = (*alive("w1", "w2"), WorkerView("w3", WorkerMode.DISABLED))
    actions = policy(ClusterState(2, workers, replicas), LIMITS)
    short = {r.key for r in replicas if r.worker == "w3"}
    assert {(c.family, c.chunk) for c in of(actions, Copy)} == short
    assert not of(actions, Drop)  # its replicas stay, for when it is enabled again


def test_a_chunk_with_no_surviving_replica_is_reported_lost() -> None:
    replicas = (ReplicaView("sky", 7, "w3"), ReplicaView("sky", 8, "w1"), ReplicaView("sky", 8, "w3"))
    workers = (*alive("w1", "w2"), WorkerView("w3", WorkerMode.EVICTED, alive=False, silent_for=500))
    actions = policy(ClusterState(2, workers, replicas), LIMITS)
    assert of(actions, Lost) == [Lost("sky", 7)]
    assert of(actions, Copy) == [Copy("sky", 8, "w1", "w2", "replicate")]
    assert summary(ClusterState(2, workers, replicas))["lost"] == 1


def test_a_chunk_whose_holder_is_only_down_is_not_lost() -> None:
    replicas = (ReplicaView("sky", 7, "w3"),)
    workers = (*alive("w1", "w2"), WorkerView("w3", alive=False, silent_for=5))
    assert policy(ClusterState(2, workers, replicas), LIMITS) == []


def test_a_corrupt_replica_is_repaired_in_place_from_a_good_one() -> None:
    replicas = (
        ReplicaView("sky", 1, "w1"),
        ReplicaView("sky", 1, "w2", CORRUPT),
        ReplicaView("sky", 2, "w3"),
    )
    state = ClusterState(2, alive("w1", "w2", "w3"), replicas)
    copies = [c for c in of(policy(state, LIMITS), Copy) if c.chunk == 1]
    assert copies == [Copy("sky", 1, "w1", "w2", "repair")]


def test_a_corrupt_replica_beyond_the_level_is_dropped_and_a_corrupt_only_chunk_is_lost() -> None:
    replicas = (
        ReplicaView("sky", 1, "w1"),
        ReplicaView("sky", 1, "w2"),
        ReplicaView("sky", 1, "w3", CORRUPT),
        ReplicaView("sky", 2, "w1", CORRUPT),
    )
    actions = policy(ClusterState(2, alive("w1", "w2", "w3"), replicas), LIMITS)
    assert Drop("sky", 1, "w3", "corrupt") in actions
    assert Lost("sky", 2) in actions and not [a for a in actions if isinstance(a, Drop) and a.chunk == 2]


def test_an_evicted_worker_that_returns_is_emptied_then_enabled_never_losing_a_last_copy() -> None:
    replicas = (
        ReplicaView("sky", 1, "w1"),
        ReplicaView("sky", 1, "w2"),
        ReplicaView("sky", 1, "w3"),  # stale: re-made elsewhere while w3 was evicted
        ReplicaView("sky", 2, "w3"),  # the only copy left anywhere
    )
    back = WorkerView("w3", WorkerMode.EVICTED, alive=True)
    actions = policy(ClusterState(2, (*alive("w1", "w2"), back), replicas), LIMITS)
    assert Drop("sky", 1, "w3", "stale") in actions
    assert not [a for a in actions if isinstance(a, Drop) and a.chunk == 2]
    assert Lost("sky", 2) in actions and not of(actions, Enable)
    emptied = ClusterState(2, (*alive("w1", "w2"), back), replicas[:2])
    assert Enable("w3") in policy(emptied, LIMITS)


def test_purge_drops_the_extra_replicas_from_the_most_loaded_holders() -> None:
    replicas = (
        *ring(6, ["w1", "w2", "w3"], 2),
        ReplicaView("sky", 0, "w3"),  # chunk 0 on w1, w2 and w3
        ReplicaView("sky", 9, "w1"),
        ReplicaView("sky", 9, "w2"),
    )
    actions = policy(ClusterState(2, alive("w1", "w2", "w3"), replicas), LIMITS)
    drops = of(actions, Drop)
    assert len(drops) == 1 and drops[0].chunk == 0 and drops[0].reason == "purge"
    loads = Counter(r.worker for r in replicas)
    assert loads[drops[0].worker] == max(loads[w] for w in ("w1", "w2", "w3"))


def test_no_purge_while_a_copy_of_the_chunk_is_in_flight() -> None:
    replicas = (
        ReplicaView("sky", 1, "w1"),
        ReplicaView("sky", 1, "w2"),
        ReplicaView("sky", 1, "w3"),
        ReplicaView("sky", 1, "w4", COPYING),
    )
    assert not of(policy(ClusterState(2, alive("w1", "w2", "w3", "w4"), replicas), LIMITS), Drop)


def test_a_new_worker_gets_replicas_moved_onto_it_not_added() -> None:
    old = ["w1", "w2", "w3"]
    replicas = ring(12, old, 2)
    state = ClusterState(2, alive(*old, "w4"), replicas)
    copies = of(policy(state, LIMITS), Copy)
    assert copies and all(c.target == "w4" and c.reason == "rebalance" for c in copies)
    assert len(copies) <= LIMITS.max_copies_per_worker  # w4's copy budget


def test_no_rebalance_while_anything_is_short() -> None:
    replicas = (*ring(12, ["w1", "w2", "w3"], 2)[:-1],)  # the last chunk is one replica short
    actions = policy(ClusterState(2, alive("w1", "w2", "w3", "w4"), replicas), LIMITS)
    assert all(c.reason == "replicate" for c in of(actions, Copy))


def test_the_level_is_capped_by_the_workers_that_take_copies() -> None:
    replicas = ring(4, ["w1", "w2"], 2)
    assert policy(ClusterState(3, alive("w1", "w2"), replicas), LIMITS) == []
    assert summary(ClusterState(3, alive("w1", "w2"), replicas))["under_replicated"] == 4


def test_read_only_workers_serve_but_take_no_copies() -> None:
    replicas = (ReplicaView("sky", 1, "w1"),)
    workers = (WorkerView("w1", WorkerMode.READ_ONLY), *alive("w2", "w3"))
    (copy,) = of(policy(ClusterState(2, workers, replicas), LIMITS), Copy)
    assert copy.source == "w1" and copy.target in ("w2", "w3")
    over = (ReplicaView("sky", 1, "w1"), ReplicaView("sky", 1, "w2"), ReplicaView("sky", 1, "w3"))
    assert of(policy(ClusterState(2, workers, over), LIMITS), Drop) == [Drop("sky", 1, "w1", "purge")]


def test_verification_is_scheduled_oldest_first_and_bounded() -> None:
    replicas = tuple(
        ReplicaView("sky", c, "w1", verified_age=None if c == 5 else float(c * 10)) for c in range(10)
    )
    limits = PolicyLimits(verify_interval=35.0, max_verifications=3)
    verifies = of(policy(ClusterState(1, alive("w1"), replicas), limits), Verify)
    assert [v.chunk for v in verifies] == [5, 9, 8]
    assert of(policy(ClusterState(1, alive("w1"), replicas), LIMITS), Verify) == []


def test_the_decision_does_not_depend_on_the_order_of_the_observations() -> None:
    names = ["w1", "w2", "w3", "w4"]
    replicas = list(ring(20, names, 2))
    workers = [*alive("w1", "w2", "w3"), WorkerView("w4", alive=False, silent_for=100)]
    expected = policy(ClusterState(2, tuple(workers), tuple(replicas)), LIMITS)
    rng = random.Random(3)
    for _ in range(5):
        rng.shuffle(replicas)
        rng.shuffle(workers)
        assert policy(ClusterState(2, tuple(workers), tuple(replicas)), LIMITS) == expected


# -- simulation: the controller carrying out the actions, one round at a time ---------------------


def apply(state: ClusterState, actions: list[Action]) -> ClusterState:
    """Copies land as COPYING and complete the round after; drops and mode changes are immediate."""
    workers = {w.name: w for w in state.workers}
    replicas = {(r.key, r.worker): r for r in state.replicas}
    for key, r in list(replicas.items()):  # last round's copies are done
        if r.status is COPYING:
            replicas[key] = ReplicaView(r.family, r.chunk, r.worker)
    for a in actions:
        if isinstance(a, Evict):
            w = workers[a.worker]
            workers[a.worker] = WorkerView(w.name, WorkerMode.EVICTED, w.alive, w.silent_for)
        elif isinstance(a, Enable):
            workers[a.worker] = WorkerView(a.worker)
        elif isinstance(a, Copy):
            replicas[((a.family, a.chunk), a.target)] = ReplicaView(a.family, a.chunk, a.target, COPYING)
        elif isinstance(a, Drop):
            del replicas[((a.family, a.chunk), a.worker)]
    return ClusterState(state.level, tuple(workers.values()), tuple(replicas.values()))


def run_until_quiet(state: ClusterState, limits: PolicyLimits = LIMITS, rounds: int = 200) -> ClusterState:
    for _ in range(rounds):
        actions = [a for a in policy(state, limits) if not isinstance(a, Lost | Verify)]
        if not actions and not any(r.status is COPYING for r in state.replicas):
            return state
        before = good_count(state)
        state = apply(state, actions)
        after = good_count(state)
        for key, n in before.items():  # a drop never takes a chunk below the level it had
            assert after[key] >= min(n, state.level), key
    raise AssertionError("the policy did not settle")


@pytest.mark.parametrize("seed", range(20))
def test_losing_workers_and_adding_one_settles_at_the_level_and_balanced(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.randint(3, 6)
    level = rng.randint(2, min(3, n - 1))
    names = [f"w{i}" for i in range(n)]
    families = ["sky", "deep"]
    replicas = tuple(
        ReplicaView(f, c, w)
        for f in families
        for c in range(rng.randint(5, 40))
        for w in rng.sample(names, level)
    )
    state = ClusterState(level, alive(*names), replicas)
    state = run_until_quiet(state)
    # kill level - 1 workers (nothing can be lost), evict them, then a new worker joins
    dead = set(rng.sample(names, level - 1))
    state = ClusterState(
        level,
        tuple(WorkerView(w.name, alive=False, silent_for=99) if w.name in dead else w for w in state.workers),
        state.replicas,
    )
    state = run_until_quiet(state)
    state = ClusterState(level, (*state.workers, WorkerView("new")), state.replicas)
    state = run_until_quiet(state)
    placeable = [w.name for w in state.workers if w.accepts_copies]
    counts = good_count(state)
    keys = {r.key for r in replicas}
    assert all(counts[k] == level for k in keys), "every chunk back at its level"
    loads = Counter(r.worker for r in state.replicas if r.worker in placeable)
    assert max(loads[w] for w in placeable) - min(loads[w] for w in placeable) <= 1
    assert summary(state)["lost"] == 0 and summary(state)["under_replicated"] == 0
    # a dead worker that comes back after eviction (its replicas still recorded: stale now)
    # is emptied, re-admitted and given its share
    back = sorted(dead)[0]
    assert any(r.worker == back for r in state.replicas)
    state = ClusterState(
        level,
        tuple(WorkerView(w.name, WorkerMode.EVICTED, True) if w.name == back else w for w in state.workers),
        state.replicas,
    )
    state = run_until_quiet(state)
    assert {w.name: w.mode for w in state.workers}[back] is WorkerMode.ENABLED
    assert all(good_count(state)[k] == level for k in keys)
    placeable = [w.name for w in state.workers if w.accepts_copies]
    loads = Counter(r.worker for r in state.replicas if r.worker in placeable)
    assert max(loads[w] for w in placeable) - min(loads[w] for w in placeable) <= 1


def test_regular_tables_are_copied_to_every_enabled_worker_lacking_a_complete_copy() -> None:
    workers = (
        WorkerView("w1"),
        WorkerView("w2"),
        WorkerView("w3"),
        WorkerView("w4", alive=False, silent_for=5.0),  # down: copied to once it answers
        WorkerView("w5", WorkerMode.READ_ONLY),  # takes no copies
        WorkerView("w6", WorkerMode.DISABLED),
    )
    tables = (
        TableView("sky", "Filter", frozenset({"w1", "w2"})),
        TableView("sky", "Band", frozenset({"w1", "w2", "w3"})),  # complete everywhere it can be
        TableView("sky", "Ccd", frozenset({"w2"}), copying=frozenset({"w3"})),  # in flight
        TableView("sky", "Lost", frozenset({"w4"})),  # its only copy is on a down worker
    )
    state = ClusterState(2, workers, ring(3, ["w1", "w2", "w3"], 2), tables)
    copies = of(policy(state, LIMITS), CopyTable)
    assert copies == [CopyTable("sky", "Ccd", "w2", "w1"), CopyTable("sky", "Filter", "w1", "w3")]


def test_regular_table_copies_share_the_copy_budget() -> None:
    tables = tuple(TableView("sky", f"T{i}", frozenset({"w1"})) for i in range(5))
    state = ClusterState(1, alive("w1", "w2"), (), tables)
    copies = of(policy(state, LIMITS), CopyTable)
    assert [c.table for c in copies] == ["T0", "T1"]  # max_copies_per_worker = 2
    assert {(c.source, c.target) for c in copies} == {("w1", "w2")}
