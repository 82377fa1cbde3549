from __future__ import annotations

from qserv.metadata import WorkerState
from qserv.replica.health import HealthState, SetWorkerState, observe


def test_worker_goes_down_after_three_failed_probes_and_comes_back() -> None:
    states: dict[str, HealthState] = {}
    actions_seen = []
    for ok in (False, False, False, False, True):
        states, actions = observe(states, {"w1": ok, "w2": True})
        actions_seen.append(actions)
    assert actions_seen[:2] == [[], []]
    assert actions_seen[2] == [SetWorkerState("w1", WorkerState.DOWN)]
    assert actions_seen[3] == []
    assert actions_seen[4] == [SetWorkerState("w1", WorkerState.ACTIVE)]


def test_one_lost_probe_changes_nothing() -> None:
    states, actions = observe({}, {"w1": False})
    assert actions == [] and states["w1"].state is WorkerState.ACTIVE
    states, actions = observe(states, {"w1": True})
    assert actions == [] and states["w1"].failures == 0
