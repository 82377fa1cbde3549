"""Worker health: probe results in, worker state changes out (pure).

A worker is marked DOWN after ``failures_to_down`` consecutive failed probes (one lost probe on
a busy machine must not evict it) and ACTIVE again on its first successful probe.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from qserv.metadata import WorkerState


@dataclass(frozen=True)
class HealthState:
    state: WorkerState
    failures: int = 0


@dataclass(frozen=True)
class SetWorkerState:
    worker: str
    state: WorkerState


def observe(
    states: Mapping[str, HealthState], probes: Mapping[str, bool], failures_to_down: int = 3
) -> tuple[dict[str, HealthState], list[SetWorkerState]]:
    """Fold one round of probes into ``states``; return the new states and the changes to make."""
    new: dict[str, HealthState] = {}
    actions: list[SetWorkerState] = []
    for worker, ok in sorted(probes.items()):
        old = states.get(worker, HealthState(WorkerState.ACTIVE))
        if ok:
            new[worker] = HealthState(WorkerState.ACTIVE)
            if old.state is not WorkerState.ACTIVE:
                actions.append(SetWorkerState(worker, WorkerState.ACTIVE))
            continue
        failures = old.failures + 1
        state = WorkerState.DOWN if failures >= failures_to_down else old.state
        new[worker] = HealthState(state, failures)
        if state is not old.state:
            actions.append(SetWorkerState(worker, state))
    return new, actions
