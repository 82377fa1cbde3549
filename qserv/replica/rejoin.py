"""A worker coming back from DOWN is brought up to date before it is marked ACTIVE again.

While it was down it missed what the czar did on the live workers only: tables created (a new
table reaches the workers its loads send rows to; a chunk the worker still holds may be read
through a table it never got, which must exist even if it has no rows there), and commits of
transactions it had staged rows for (:mod:`qserv.metadata.copies` dropped its copies; the rows
it staged are garbage). Both steps are idempotent, so a failed rejoin is simply tried again at
the next successful probe.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection

from qserv.errors import QservError
from qserv.log import event
from qserv.metadata import MetadataStore, TargetOutcome
from qserv.rpc.client import WorkerClient

log = logging.getLogger(__name__)

ABORT_TIMEOUT_S = 10.0


def rejoin(store: MetadataStore, worker: str, client: WorkerClient) -> None:
    """Create every catalog table on ``worker`` and clear what it staged for ended transactions.

    Raises a QservError when the worker does not answer (it stays DOWN until it does).
    """
    for t in store.catalog().tables:
        client.create_table(t.database, t.name, t.kind, t.worker_columns)
    clear_missed(store, {worker}, lambda _, tid: client.abort(tid, timeout=ABORT_TIMEOUT_S))


def clear_missed(store: MetadataStore, workers: Collection[str], abort: Callable[[str, int], None]) -> int:
    """Have each of ``workers`` drop the rows it staged for transactions that ended without it
    (``abort(worker, transaction)``); how many (transaction, worker) pairs were cleared.

    Best effort for the workers that fail (asked again next time): staged rows of an ended
    transaction are never published, they only take disk space.
    """
    done = 0
    for transaction_id, name in store.missed_targets():
        if name not in workers:
            continue
        try:
            abort(name, transaction_id)
        except QservError as e:
            event(
                log, "staged rows not cleared yet", worker=name, transaction=transaction_id, error=e.message
            )
            continue
        store.set_target_outcome(transaction_id, name, TargetOutcome.CLEARED)
        done += 1
    return done
