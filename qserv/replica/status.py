"""What ``qserv replica status | workers | chunks`` show, as a pure function of the store's state.

The admin API (:mod:`czar.http.replica_admin`) reads the workers, replicas, verifications and
chunks with rows from the metadata store, and the controller's last report (its heartbeat,
copies in flight, lost chunks); :func:`cluster_status` and :func:`chunk_rows` turn them into the
documents the API serves. Counting follows the policy (:mod:`qserv.replica.policy`), so the
status says exactly what the controller will act on: a replica counts when its worker serves and
it is not corrupt; the level is capped at the workers that accept copies.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from qserv.metadata import Replica, ReplicaCheck, WorkerInfo, WorkerState
from qserv.replica.policy import ClusterState, ReplicaStatus, ReplicaView, WorkerMode, WorkerView

CONTROLLER_SILENT_S = 30.0  # a controller that has not reported for this long is taken as stopped

MODES = {
    WorkerState.ACTIVE: WorkerMode.ENABLED,
    WorkerState.DOWN: WorkerMode.ENABLED,  # enabled, not answering: waited for until evicted
    WorkerState.READ_ONLY: WorkerMode.READ_ONLY,
    WorkerState.DISABLED: WorkerMode.DISABLED,
    WorkerState.EVICTED: WorkerMode.EVICTED,
}


@dataclass(frozen=True)
class Observed:
    """The store's view of replication at one moment."""

    level: int  # the replication level asked for
    workers: list[WorkerInfo]
    replicas: list[Replica]
    checks: list[ReplicaCheck]
    chunks_with_rows: Mapping[str, set[int]]  # family -> chunks some table has rows in
    controller: dict[str, Any] | None  # the controller's last report
    now: float  # Unix time


def _state(obs: Observed) -> tuple[ClusterState, int]:
    views = tuple(WorkerView(w.name, MODES[w.state], w.state is not WorkerState.DOWN) for w in obs.workers)
    corrupt = {(c.family, c.chunk_id, c.worker) for c in obs.checks if c.corrupt}
    replicas = tuple(
        ReplicaView(
            r.family,
            r.chunk_id,
            r.worker,
            ReplicaStatus.CORRUPT if (r.family, r.chunk_id, r.worker) in corrupt else ReplicaStatus.GOOD,
        )
        for r in obs.replicas
    )
    placeable = sum(1 for v in views if v.accepts_copies)
    level = min(obs.level, placeable) if placeable else obs.level
    return ClusterState(level, views, replicas), level


def _unplaced(obs: Observed) -> list[tuple[str, int]]:
    """Chunks with rows that no worker is recorded to hold at all (lost as well)."""
    held = {(r.family, r.chunk_id) for r in obs.replicas}
    return sorted((f, c) for f, chunks in obs.chunks_with_rows.items() for c in chunks if (f, c) not in held)


@dataclass(frozen=True)
class ChunkStanding:
    family: str
    chunk: int
    standing: str  # ok | under | over | lost
    good: int  # replicas that count
    replicas: tuple[ReplicaView, ...]


def standings(obs: Observed) -> tuple[int, list[ChunkStanding]]:
    """The capped level and every family chunk's standing, by family and chunk."""
    state, level = _state(obs)
    workers = {v.name: v for v in state.workers}
    by_chunk: dict[tuple[str, int], list[ReplicaView]] = defaultdict(list)
    for r in state.replicas:
        by_chunk[r.key].append(r)
    for key in _unplaced(obs):
        by_chunk[key] = []
    out = []
    for (family, chunk), replicas in sorted(by_chunk.items()):
        good = sum(
            1
            for r in replicas
            if r.status is ReplicaStatus.GOOD and r.worker in workers and workers[r.worker].serving
        )
        out.append(
            ChunkStanding(family, chunk, _standing(good, level, replicas, workers), good, tuple(replicas))
        )
    return level, out


def cluster_status(obs: Observed) -> dict[str, Any]:
    """The document of ``qserv replica status --json``."""
    level, chunks = standings(obs)
    count: dict[str, int] = defaultdict(int)
    for c in chunks:
        count[c.standing] += 1
    per_worker: dict[str, int] = defaultdict(int)
    corrupt_on: dict[str, int] = defaultdict(int)
    for c in chunks:
        for r in c.replicas:
            per_worker[r.worker] += 1
            corrupt_on[r.worker] += r.status is ReplicaStatus.CORRUPT
    controller = obs.controller or {}
    age = obs.now - float(controller.get("at", 0.0)) if controller else None
    lost = [c for c in chunks if c.standing == "lost"]
    return {
        "replication_level": obs.level,
        "effective_level": level,
        "chunks": len(chunks),
        "under_replicated": count["under"],
        "over_replicated": count["over"],
        "lost": len(lost),
        "lost_chunks": [{"family": c.family, "chunk": c.chunk} for c in lost[:1000]],
        "corrupt": sum(corrupt_on.values()),
        "copies_in_flight": int(controller.get("copies_in_flight", 0)),
        "deletions_pending": int(controller.get("deletions_pending", 0)),
        "verifying": bool(controller.get("verifying", False)),
        "controller": {
            "running": age is not None and age < CONTROLLER_SILENT_S,
            "last_report_s": None if age is None else round(age, 1),
            "idle": bool(controller.get("idle", False)),  # its last decision moved nothing
            "round_request": int(controller.get("round_request", 0)),  # the last request it decided on
        },
        "last_verification": controller.get("last_verification"),
        "workers": [
            {
                "name": w.name,
                "address": w.address,
                "state": w.state.value,
                "replicas": per_worker[w.name],
                "corrupt": corrupt_on[w.name],
            }
            for w in obs.workers
        ],
    }


def chunk_rows(obs: Observed, family: str | None = None, only: str | None = None) -> list[dict[str, Any]]:
    """One row per family chunk for ``qserv replica chunks``: its holders and its standing
    (ok, under, over, lost); ``only`` keeps one standing."""
    _, chunks = standings(obs)
    states = {w.name: w.state.value for w in obs.workers}
    return [
        {
            "family": c.family,
            "chunk": c.chunk,
            "standing": c.standing,
            "good": c.good,
            "replicas": [
                {
                    "worker": r.worker,
                    "worker_state": states.get(r.worker, "removed"),
                    "corrupt": r.status is ReplicaStatus.CORRUPT,
                }
                for r in sorted(c.replicas, key=lambda r: r.worker)
            ],  # fmt: skip
        }
        for c in chunks
        if (family is None or c.family == family) and (only is None or c.standing == only)
    ]


def _standing(
    good: int, level: int, replicas: Iterable[ReplicaView], workers: Mapping[str, WorkerView]
) -> str:
    if good == 0:
        waiting = any(
            r.status is not ReplicaStatus.CORRUPT
            and r.worker in workers
            and workers[r.worker].mode in (WorkerMode.ENABLED, WorkerMode.READ_ONLY)
            for r in replicas
        )
        return "under" if waiting else "lost"
    if good < level:
        return "under"
    return "over" if good > level else "ok"
