"""Worker health: probe results in, worker state changes out (pure).

A worker is marked DOWN after ``failures_to_down`` consecutive failed probes (one lost probe on
a busy machine must not evict it) and ACTIVE again on its first successful probe. Only ACTIVE
and DOWN follow probes: READ-ONLY and DISABLED are an operator's, EVICTED the replication
policy's (:mod:`qserv.replica.policy`), and a probe does not undo them. Each state also keeps
since when the worker has been silent, which the policy's eviction rule reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from qserv.metadata import WorkerState


@dataclass(frozen=True)
class HealthState:
    state: WorkerState
    failures: int = 0
    silent_since: float | None = None  # time of the first failed probe of the current run

    def silent_for(self, now: float) -> float:
        """Seconds the worker has not answered (0 when its last probe answered)."""
        return 0.0 if self.silent_since is None else max(0.0, now - self.silent_since)


@dataclass(frozen=True)
class SetWorkerState:
    worker: str
    state: WorkerState


def observe(
    states: Mapping[str, HealthState],
    probes: Mapping[str, bool],
    failures_to_down: int = 3,
    now: float = 0.0,
) -> tuple[dict[str, HealthState], list[SetWorkerState]]:
    """Fold one round of probes (at time ``now``) into ``states``; the new states and the changes."""
    new: dict[str, HealthState] = {}
    actions: list[SetWorkerState] = []
    for worker, ok in sorted(probes.items()):
        old = states.get(worker, HealthState(WorkerState.ACTIVE))
        if ok:
            state: WorkerState = WorkerState.ACTIVE if old.state is WorkerState.DOWN else old.state
            new[worker] = HealthState(state)
            if state is not old.state:
                actions.append(SetWorkerState(worker, state))
            continue
        failures = old.failures + 1
        follows = old.state is WorkerState.ACTIVE and failures >= failures_to_down
        state = WorkerState.DOWN if follows else old.state
        new[worker] = HealthState(state, failures, old.silent_since if old.silent_since is not None else now)
        if state is not old.state:
            actions.append(SetWorkerState(worker, state))
    return new, actions
