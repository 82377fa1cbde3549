"""Rows on a worker that no replica accounts for: found, and deleted after the drop grace.

Rows of a family chunk can outlive their replica record when the controller is not there to
finish what it began: a drop whose deferred deletion was pending when the controller stopped,
or a copy still running on the target when the controller died (the target installs it, nobody
records it, the new controller copies the chunk elsewhere). The rows are never read (the czar
plans only on recorded replicas, and a chunk range filter never spans a chunk with rows), but
they hold disk. At its start and then every ``GC_INTERVAL_S`` the controller asks each serving
worker which chunks it holds rows of and hands the orphans to the copier as drops; the
deletion re-checks, when due, that no replica, copy or load claimed the chunk meanwhile.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

GC_INTERVAL_S = 600.0

ReplicaKey = tuple[str, int, str]
"""(family, chunk, worker)."""


def orphans(
    held: Mapping[tuple[str, str], Iterable[int]],
    registered: Collection[ReplicaKey],
    busy: Collection[ReplicaKey],
    loading: Collection[str],
) -> list[ReplicaKey]:
    """The (family, chunk, worker) whose rows no replica accounts for.

    ``held``: (family, worker) -> chunks the worker stores rows of; ``busy``: copies in flight
    and deletions already pending; ``loading``: families with a load committing (skipped: its
    new chunks have rows on the workers before the commit makes their replicas visible).
    """
    found = []
    for (family, worker), chunks in sorted(held.items()):
        if family in loading:
            continue
        for chunk in sorted(set(chunks)):
            key = (family, chunk, worker)
            if key not in registered and key not in busy:
                found.append(key)
    return found
