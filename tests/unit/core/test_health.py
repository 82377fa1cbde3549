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


def test_probes_do_not_undo_an_operator_or_policy_state_and_silence_is_timed() -> None:
    states = {
        "ro": HealthState(WorkerState.READ_ONLY),
        "off": HealthState(WorkerState.DISABLED),
        "gone": HealthState(WorkerState.EVICTED),
    }
    for t in (10.0, 12.0, 14.0, 16.0):
        states, actions = observe(states, {"ro": False, "off": False, "gone": False}, now=t)
        assert actions == []
    assert {n: s.state for n, s in states.items()} == {
        "ro": WorkerState.READ_ONLY,
        "off": WorkerState.DISABLED,
        "gone": WorkerState.EVICTED,
    }
    assert states["gone"].silent_for(20.0) == 10.0
    states, actions = observe(states, {"ro": True, "off": True, "gone": True}, now=21.0)
    assert actions == [] and states["gone"].state is WorkerState.EVICTED
    assert states["gone"].silent_for(30.0) == 0.0
