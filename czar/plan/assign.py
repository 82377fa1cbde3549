"""Replica choice: every chunk goes to one live worker holding it, balancing load.

Chunks are taken in id order; each stays with the worker that took the previous chunk while
that worker holds it and has not taken its fair share, else goes to the least-loaded of its
live replicas (ties broken by the placement's preference order). Keeping runs of consecutive
chunks together lets the worker filter them by a few ranges instead of a long IN list
(``chunk_filter``). Deterministic:

    placement {1: (a, b), 2: (a, b), 3: (b, c), 4: (b, c)}  -> a: [1, 2], b: [3, 4]
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
    ids = sorted(set(chunk_ids))
    fair = -(-len(ids) // max(1, len(live)))  # ceil: a worker's fair share of the chunks
    previous: str | None = None
    for chunk_id in ids:
        candidates = [w for w in placement.get(chunk_id, ()) if w in live]
        if not candidates:
            raise WorkerUnavailable(
                f"chunk {chunk_id} has no live replica: wait for re-replication or restart its workers",
            )
        if previous in candidates and load.get(previous, 0) < fair:
            best = previous
        else:
            best = min(candidates, key=lambda w: (load.get(w, 0), candidates.index(w)))
        load[best] = load.get(best, 0) + 1
        out.setdefault(best, []).append(chunk_id)
        previous = best
    return out
