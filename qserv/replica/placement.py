"""Pure chunk placement: which workers receive the replicas of new chunks.

A chunk's replicas hold every table of its family, so once a chunk has replicas the loader
reuses them (all tables of a family chunk stay together); only chunks the family has never
seen are placed here.

The new chunks, in id order, are cut into one contiguous segment per worker; segment k goes
to a ring of ``replication_level`` consecutive workers starting at the k-th least-loaded one.
Nested HEALPix ids are spatially coherent, so each worker holds a few long runs of chunks,
and a full scan can give each worker whole runs, which it filters by a few ranges instead
of thousands of ids (see ``czar.plan.model.chunk_filter``). Every worker gets about
``level / N`` of the chunks::

    >>> place_chunks([1, 2, 3, 4, 5, 6], ["w1", "w2", "w3"], 2)
    {1: ('w1', 'w2'), 2: ('w1', 'w2'), 3: ('w2', 'w3'), 4: ('w2', 'w3'), 5: ('w1', 'w3'), 6: ('w1', 'w3')}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from qserv.errors import WorkerUnavailable


def place_chunks(
    chunk_ids: Sequence[int],
    workers: Sequence[str],
    replication_level: int,
    load: Mapping[str, int] | None = None,
) -> dict[int, tuple[str, ...]]:
    """Choose workers for each new chunk in ``chunk_ids``.

    ``workers`` are the names of the workers eligible for placement (active ones);
    ``load`` is the number of replicas each already holds (missing: 0). The level is capped
    at the number of workers. Deterministic: same input, same answer.
    """
    if not chunk_ids:
        return {}
    if not workers:
        raise WorkerUnavailable(
            "no active worker to place chunks on", hint="start a worker or check `qserv replica workers`"
        )
    level = max(1, min(replication_level, len(workers)))
    counts = {w: (load or {}).get(w, 0) for w in workers}
    ring = sorted(counts, key=lambda w: (counts[w], w))  # least loaded first
    ids = sorted(set(chunk_ids))
    n = len(ring)
    segments = min(n, len(ids))  # a small load goes to the least-loaded workers
    placed: dict[int, tuple[str, ...]] = {}
    for k in range(segments):
        segment = ids[k * len(ids) // segments : (k + 1) * len(ids) // segments]
        chosen = tuple(sorted(ring[(k + j) % n] for j in range(level)))
        for chunk_id in segment:
            placed[chunk_id] = chosen
    return placed
