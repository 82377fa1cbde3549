"""The commit rule of ingest applied to the metadata store (used by :mod:`czar.http.ingest`).

Every copy a transaction sends rows to (chunk c on worker w; a regular table's whole copy on
w) is recorded in the store before the loader learns of it, so
the workers that must commit are durable. At commit, the one rule of
:mod:`qserv.metadata.copies` drops every copy of the transaction's chunks that will not hold
its rows (a worker down or unreachable at commit, or down when the chunk was placed): its
replica record goes in the same store step that makes the transaction COMMITTED, so the
planner never routes there, and the chunk is under-replicated until the replication controller
copies it again. A regular table's holders are the workers that committed every load of it
(``MetadataStore.table_copies``). If a chunk would be left with no complete copy, the commit
is refused before any worker publishes: the transaction is aborted, naming the chunk. A worker
that missed a transaction is told to drop its staged rows when it is reachable again (by the
replication controller when it comes back, see :mod:`qserv.replica.rejoin`, and by
:meth:`Ingest.clear_missed` at each ``begin`` and when the czar starts).
"""

from __future__ import annotations

from qserv.errors import WorkerUnavailable
from qserv.metadata.copies import Settlement, settle
from qserv.metadata.store import MetadataStore, Transaction


def settlement(store: MetadataStore, family: str, transaction_id: int, committed: set[str]) -> Settlement:
    """The commit rule for the transaction if exactly ``committed`` publish it."""
    targets = store.targets(transaction_id)
    chunks = {x.chunk_id for x in targets if x.chunk_id is not None}
    holders: dict[int, list[str]] = {}
    if chunks:
        for r in store.replicas(family):
            if r.chunk_id in chunks:
                holders.setdefault(r.chunk_id, []).append(r.worker)
    return settle(family, targets, holders, committed)


def orphan_error(store: MetadataStore, t: Transaction, s: Settlement, why: str) -> WorkerUnavailable:
    """The error of a commit that would leave ``s.orphans[0]`` without a complete copy."""
    chunk = s.orphans[0]
    what = f"table {t.database}.{t.table}" if chunk is None else f"chunk {chunk} of {t.database}.{t.table}"
    workers = sorted({x.worker for x in store.targets(t.transaction_id) if x.chunk_id == chunk})
    more = f" (and {len(s.orphans) - 1} more)" if len(s.orphans) > 1 else ""
    return WorkerUnavailable(
        f"transaction {t.transaction_id}: no worker holding {what}{more} can commit it "
        f"(its rows went to {', '.join(workers)}: down or unreachable); {why}",
        hint="restart the workers (or wait for the replication controller) and load again",
    )
