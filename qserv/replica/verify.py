"""Verifying replicas: which copies of a family chunk are corrupt, from their checksums.

Pure functions, used by the controller's verifier (:mod:`qserv.replica.verifier`). A worker
reports a row count and an order-independent checksum per table of a family chunk
(``ChunkChecksum``); :func:`digests` folds them into one value per chunk, and :func:`judge`
decides, from the values of every holder, which holders are corrupt.

The reference value is, in this order: the value a strict majority of the holders report;
else the value recorded at the chunk's last verification or copy (kept until a load changes
the chunk), if a holder reports it; else the one value every holder that
could read the chunk reports. Anything else is a conflict: nothing is marked and an operator
is told (two replicas that disagree with no history cannot say which one is right).
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from qserv.rpc.client import TableChecksum


def digests(tables: Iterable[TableChecksum]) -> dict[int, str]:
    """One value per chunk over every non-empty table of it (a missing empty table is no difference)."""
    parts: dict[int, list[str]] = defaultdict(list)
    for t in tables:
        parts.setdefault(t.chunk_id, [])
        if t.rows:
            parts[t.chunk_id].append(f"{t.database.lower()}.{t.table.lower()}:{t.rows}:{t.checksum}")
    return {
        chunk: hashlib.sha256("\n".join(sorted(p)).encode()).hexdigest()[:32] for chunk, p in parts.items()
    }


@dataclass(frozen=True)
class Verdict:
    """The outcome for one family chunk."""

    reference: str | None  # the value taken as right; None: a conflict
    corrupt: frozenset[str]  # holders whose rows differ from it, or could not be read

    @property
    def conflict(self) -> bool:
        return self.reference is None


def judge(values: Mapping[str, str], unreadable: Iterable[str], recorded: str | None) -> Verdict:
    """Decide one chunk: ``values`` holder -> digest, holders that failed to read it, the last
    recorded good digest (None: never verified since it last changed)."""
    unreadable = frozenset(unreadable)
    holders = len(values) + len(unreadable)
    counts = Counter(values.values())
    reference = None
    if counts:
        top, n = counts.most_common(1)[0]
        if 2 * n > holders:
            reference = top
        elif recorded is not None and recorded in counts:
            reference = recorded
        elif len(counts) == 1:
            reference = top
    if reference is None:
        return Verdict(None, frozenset())
    return Verdict(reference, unreadable | {w for w, v in values.items() if v != reference})
