"""Pure chunk placement: which workers receive the replicas of new chunks.

A chunk's replicas hold every table of its family, so once a chunk has replicas the loader
reuses them (all tables of a family chunk stay together); only chunks the family has never
seen are placed here. Each new chunk goes to the ``replication_level`` workers holding the
fewest replicas so far (ties broken by name), counting the chunks this call places as it
goes, so a large load spreads evenly::

    >>> place_chunks([7, 8, 9], ["w1", "w2", "w3"], 2, {"w1": 1})
    {7: ('w2', 'w3'), 8: ('w1', 'w2'), 9: ('w1', 'w3')}
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
    placed: dict[int, tuple[str, ...]] = {}
    for chunk_id in sorted(set(chunk_ids)):
        chosen = sorted(counts, key=lambda w: (counts[w], w))[:level]
        for w in chosen:
            counts[w] += 1
        placed[chunk_id] = tuple(sorted(chosen))
    return placed
