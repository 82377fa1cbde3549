"""Verifications of replicas and cluster settings in the SQL stores (schema version 4).

A mixin of :class:`~qserv.metadata.sqlstore.SQLStore`: each method runs one short store
transaction. Settings are a few named values that outlive the processes: the replication level
an operator chose (``qserv replica level N``), counters by which the admin API asks the
replication controller for a round or a verification, and the controller's last status report.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from contextlib import AbstractContextManager

from qserv.metadata.schema import Tx
from qserv.metadata.store import ReplicaCheck, TargetOutcome, TransactionState
from qserv.metadata.targets_sql import WHOLE_TABLE

PLACEMENT_VERSION = "placement.version"
_BUMP = (
    "INSERT INTO settings (name, value) VALUES (?, '1') ON CONFLICT (name) DO UPDATE "
    "SET value = CAST(CAST(settings.value AS BIGINT) + 1 AS TEXT)"
)


def bump_placement_version(tx: Tx) -> None:
    """Count one change of what queries are planned on, inside the transaction making it."""
    tx.run(_BUMP, (PLACEMENT_VERSION,))


def _corrupt(tx: Tx) -> set[tuple[str, int, str]]:
    """The replicas marked corrupt (few: read whole, no index needed)."""
    return {
        (f, int(c), w)
        for f, c, w in tx.all("SELECT family, chunk_id, worker FROM replica_checks WHERE corrupt = 1")
    }


class ReplicaStateSQL:
    """Replica checks and settings over the store's ``_tx``."""

    _tx: Callable[..., AbstractContextManager[Tx]]

    def record_checks(self, checks: list[ReplicaCheck]) -> None:
        """Record (or replace) the last verification of each replica."""
        with self._tx() as tx:
            before = _corrupt(tx)
            tx.many(
                "INSERT INTO replica_checks (family, chunk_id, worker, checksum, corrupt, checked_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (family, chunk_id, worker) DO UPDATE SET "
                "checksum = excluded.checksum, corrupt = excluded.corrupt, checked_at = excluded.checked_at",
                [(c.family, c.chunk_id, c.worker, c.checksum, int(c.corrupt), c.checked_at) for c in checks],
            )
            if _corrupt(tx) != before:  # the czar plans around corrupt replicas: it must look again
                bump_placement_version(tx)

    def replica_checks(self, family: str | None = None) -> list[ReplicaCheck]:
        """The last verification of every replica verified since its chunk last changed."""
        where, params = ("", ()) if family is None else (" WHERE family = ?", (family,))
        with self._tx(write=False) as tx:
            rows = tx.all(
                "SELECT family, chunk_id, worker, checksum, corrupt, checked_at FROM replica_checks"
                f"{where} ORDER BY family, chunk_id, worker",
                params,
            )
        return [ReplicaCheck(f, int(c), w, s, bool(k), float(t)) for f, c, w, s, k, t in rows]

    def clear_checks(self, family: str, chunk_ids: Collection[int]) -> None:
        """Forget the checks of chunks whose rows changed (a load committed into them)."""
        with self._tx() as tx:
            before = _corrupt(tx)
            tx.many(
                "DELETE FROM replica_checks WHERE family = ? AND chunk_id = ?",
                [(family, c) for c in sorted(set(chunk_ids))],
            )
            if _corrupt(tx) != before:
                bump_placement_version(tx)

    def record_table_copy(self, database: str, table: str, worker: str) -> None:
        """``worker`` now holds a complete copy of a regular table (copied from one that did).

        Recorded as the worker having committed every committed load of the table, which is
        what the copy holds (``table_copies`` then counts it as a holder).
        """
        with self._tx(placement=True) as tx:
            rows = tx.all(
                "SELECT DISTINCT t.transaction_id, t.table_name FROM transactions t "
                "JOIN transaction_targets g ON g.transaction_id = t.transaction_id "
                "WHERE t.database_key = ? AND t.state = ? AND g.chunk_id = ?",
                (database.lower(), TransactionState.COMMITTED.value, WHOLE_TABLE),
            )
            tx.many(
                "INSERT INTO transaction_targets (transaction_id, chunk_id, worker, outcome) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (transaction_id, chunk_id, worker) DO UPDATE SET outcome = excluded.outcome",
                [
                    (int(t), WHOLE_TABLE, worker, TargetOutcome.COMMITTED.value)
                    for t, name in rows
                    if str(name).lower() == table.lower()
                ],
            )

    def placement_version(self) -> int:
        """A number that grows with every change of what queries are planned on."""
        value = self.setting(PLACEMENT_VERSION)
        return int(value) if value is not None else 0

    def setting(self, key: str) -> str | None:
        """A setting's value, None if it was never set."""
        with self._tx(write=False) as tx:
            row = tx.one("SELECT value FROM settings WHERE name = ?", (key,))
        return None if row is None else str(row[0])

    def set_setting(self, key: str, value: str) -> None:
        with self._tx() as tx:
            tx.run(
                "INSERT INTO settings (name, value) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def bump_setting(self, key: str) -> int:
        """Add one to an integer setting (0 when unset) in one store transaction; the new value."""
        with self._tx() as tx:
            tx.run(_BUMP, (key,))  # one statement: concurrent bumps (several czars) lose no count
            row = tx.one("SELECT value FROM settings WHERE name = ?", (key,))
        value = int(row[0]) if row is not None else 0
        return value
