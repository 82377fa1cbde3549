"""SQL of transaction targets (``transaction_targets``), run inside one store transaction.

:class:`~qserv.metadata.sqlstore.SQLStore` wraps each function in its own database
transaction; they live here to keep the store module readable. A regular table's whole copy is
stored as chunk -1 (a primary key column cannot be NULL) and read back as chunk None.
"""

from __future__ import annotations

from collections.abc import Collection

from qserv.metadata.copies import holders
from qserv.metadata.schema import Tx
from qserv.metadata.store import Replica, TableCopies, Target, TargetOutcome, TransactionState

WHOLE_TABLE = -1


def add_targets(tx: Tx, transaction_id: int, targets: Collection[Target]) -> None:
    tx.many(
        "INSERT INTO transaction_targets (transaction_id, chunk_id, worker, outcome) VALUES (?, ?, ?, ?) "
        "ON CONFLICT DO NOTHING",
        [
            (
                transaction_id,
                WHOLE_TABLE if t.chunk_id is None else t.chunk_id,
                t.worker,
                TargetOutcome.STAGED.value,
            )
            for t in targets
        ],
    )


def targets(tx: Tx, transaction_id: int) -> list[Target]:
    rows = tx.all(
        "SELECT chunk_id, worker FROM transaction_targets WHERE transaction_id = ? ORDER BY chunk_id, worker",
        (transaction_id,),
    )
    return [Target(None if int(c) == WHOLE_TABLE else int(c), w) for c, w in rows]


def settle_targets(
    tx: Tx,
    transaction_id: int,
    state: TransactionState,
    reached: Collection[str],
    dropped: Collection[Replica],
) -> None:
    """Record each target worker's outcome and drop the replicas that miss the transaction."""
    done = TargetOutcome.COMMITTED if state is TransactionState.COMMITTED else TargetOutcome.CLEARED
    tx.many(
        "UPDATE transaction_targets SET outcome = ? WHERE transaction_id = ? AND worker = ?",
        [(done.value, transaction_id, w) for w in sorted(set(reached))],
    )
    tx.run(
        "UPDATE transaction_targets SET outcome = ? WHERE transaction_id = ? AND outcome = ?",
        (TargetOutcome.MISSED.value, transaction_id, TargetOutcome.STAGED.value),
    )
    tx.many(
        "DELETE FROM replicas WHERE family = ? AND chunk_id = ? AND worker = ?",
        [(r.family, r.chunk_id, r.worker) for r in dropped],
    )


def missed_targets(tx: Tx) -> list[tuple[int, str]]:
    rows = tx.all(
        "SELECT DISTINCT transaction_id, worker FROM transaction_targets WHERE outcome = ? "
        "ORDER BY transaction_id, worker",
        (TargetOutcome.MISSED.value,),
    )
    return [(int(t), w) for t, w in rows]


def set_target_outcome(tx: Tx, transaction_id: int, worker: str, outcome: TargetOutcome) -> None:
    tx.run(
        "UPDATE transaction_targets SET outcome = ? WHERE transaction_id = ? AND worker = ?",
        (outcome.value, transaction_id, worker),
    )


def table_copies(tx: Tx) -> list[TableCopies]:
    """Holders of every regular table with a committed load whose targets were recorded."""
    rows = tx.all(
        "SELECT t.database_name, t.table_name, g.transaction_id, g.worker, g.outcome "
        "FROM transaction_targets g JOIN transactions t ON t.transaction_id = g.transaction_id "
        "WHERE g.chunk_id = ? AND t.state = ? ORDER BY g.transaction_id, g.worker",
        (WHOLE_TABLE, TransactionState.COMMITTED.value),
    )
    loads: dict[tuple[str, str], list[tuple[int, str, bool]]] = {}
    names: dict[tuple[str, str], tuple[str, str]] = {}
    for database, table, transaction_id, worker, outcome in rows:
        key = (database.lower(), table.lower())
        names.setdefault(key, (database, table))
        loads.setdefault(key, []).append(
            (int(transaction_id), worker, outcome == TargetOutcome.COMMITTED.value)
        )
    return [TableCopies(*names[key], holders(loads[key])) for key in sorted(loads)]
