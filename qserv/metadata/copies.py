"""Which copies a transaction leaves complete: the one commit rule, and regular-table holders.

Pure functions over metadata values (no store, no workers), so the rule is tested alone.

The commit rule. A copy of chunk ``c`` (all tables of its family) on worker ``w`` is complete
after transaction T only if ``w`` received T's rows for ``c`` (it is one of T's targets for
``c``), published them (it committed T), and holds the chunk's committed data (it is a replica
holder of ``c``, or ``c`` has none yet: T creates the chunk). Every other copy of ``c`` - a
target that did not commit (down, unreachable), a holder that was down when T was placed and
so got no rows, a target whose holder record a concurrent commit dropped - is dropped; if no
copy of ``c`` is left, T cannot commit::

    targets {1: (a, b)}, holders {1: (a, b, c)}, committed {a}
        -> dropped: chunk 1 on b and on c; no orphan
    targets {1: (a, b)}, holders {}, committed {a, b} -> nothing dropped (a new chunk)
    targets {1: (a, b)}, committed {c}  -> orphan chunk 1: the commit fails, nothing published

A regular table's copy (chunk None) follows the same rule; its holders are the workers that
committed every committed load of it (:func:`holders`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from qserv.metadata.store import Replica, Target


@dataclass(frozen=True)
class Settlement:
    """What a commit does to the copies it wrote."""

    dropped: tuple[Replica, ...]  # replica records to remove (copies that miss the commit)
    orphans: tuple[int | None, ...]  # chunks (None: the whole table) no complete copy would be left of
    complete: Mapping[int | None, tuple[str, ...]]  # chunk -> workers left with a complete copy


def settle(
    family: str,
    targets: Iterable[Target],
    holders: Mapping[int, Collection[str]],
    committed: Collection[str],
) -> Settlement:
    """Apply the commit rule (module docstring) to the chunks ``targets`` name.

    ``holders``: chunk -> workers with a committed replica record of it (any state);
    ``committed``: the workers that published (or will publish) the transaction.
    """
    by_chunk: dict[int | None, set[str]] = {}
    for t in targets:
        by_chunk.setdefault(t.chunk_id, set()).add(t.worker)
    done = set(committed)
    dropped: list[Replica] = []
    orphans: list[int | None] = []
    complete: dict[int | None, tuple[str, ...]] = {}
    for chunk in sorted(by_chunk, key=lambda c: -1 if c is None else c):
        sent = by_chunk[chunk]
        held = set(holders.get(chunk, ())) if chunk is not None else set()
        kept = sent & done & (held or sent)
        complete[chunk] = tuple(sorted(kept))
        if not kept:
            orphans.append(chunk)
        if chunk is not None:
            stale = (sent | held) - kept
            dropped.extend(Replica(family, chunk, w) for w in sorted(stale))
    return Settlement(tuple(dropped), tuple(orphans), complete)


def holders(loads: Iterable[tuple[int, str, bool]]) -> frozenset[str]:
    """Workers with a complete copy of a regular table, from its committed loads' targets.

    ``loads``: (transaction, worker, committed there) for every whole-table target of every
    committed load of the table. A worker holds a complete copy when it committed all of them
    (a worker that missed one load lacks its rows, whatever it committed later)::

        [(1, a, True), (1, b, True), (2, a, True), (2, b, False), (2, c, True)] -> {a}
    """
    per_load: dict[int, set[str]] = {}
    for transaction_id, worker, done in loads:
        got = per_load.setdefault(transaction_id, set())
        if done:
            got.add(worker)
    result: set[str] | None = None
    for _, got in sorted(per_load.items()):
        result = set(got) if result is None else result & got
    return frozenset(result or ())
