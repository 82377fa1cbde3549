"""Replica choice: every chunk goes to one live worker holding it, balancing load.

Chunks are taken in id order; each goes to the least-loaded of its live replicas, ties broken
by the placement's preference order, so the result is deterministic:

    placement {1: (a, b), 2: (a, b), 3: (b, c)}  -> a: [1], b: [2], c: [3]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from qserv.errors import WorkerUnavailable


def assign(
    chunk_ids: Sequence[int], placement: Mapping[int, tuple[str, ...]], workers: Sequence[str]
) -> dict[str, list[int]]:
    """worker -> sorted chunk ids; raises WorkerUnavailable for a chunk with no live replica."""
    live = set(workers)
    load: dict[str, int] = {}
    out: dict[str, list[int]] = {}
    for chunk_id in sorted(chunk_ids):
        candidates = [w for w in placement.get(chunk_id, ()) if w in live]
        if not candidates:
            raise WorkerUnavailable(
                f"chunk {chunk_id} has no live replica: wait for re-replication or restart its workers",
            )
        best = min(candidates, key=lambda w: (load.get(w, 0), candidates.index(w)))
        load[best] = load.get(best, 0) + 1
        out.setdefault(best, []).append(chunk_id)
    return out
