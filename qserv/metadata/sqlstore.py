"""The one implementation of the metadata store over SQL, shared by both backends.

:class:`SQLStore` implements :class:`~qserv.metadata.store.MetadataStore` on a DB-API
connection and the schema of :mod:`qserv.metadata.schema`; a backend
(:class:`~qserv.metadata.sqlite.SQLiteStore`, :class:`~qserv.metadata.postgres.PostgresStore`)
only supplies the connection and its :class:`~qserv.metadata.schema.Dialect`. The row <->
dataclass mapping lives here and nowhere else.
"""

from __future__ import annotations

import math
import threading
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import replace
from types import TracebackType
from typing import Any

from qserv.catalog import Catalog, Column, Database, Partitioning, Table, TableKind
from qserv.errors import DuplicateObject, InvalidParameter, UndefinedDatabase
from qserv.metadata import targets_sql
from qserv.metadata.replica_state import ReplicaStateSQL, bump_placement_version
from qserv.metadata.schema import Cursor, Dialect, Tx, ensure_schema
from qserv.metadata.store import (
    ChunkRows,
    Replica,
    TableCopies,
    Target,
    TargetOutcome,
    Transaction,
    TransactionState,
    WorkerInfo,
    WorkerState,
)
from qserv.metadata.tables import checked_table

# --- row <-> dataclass mapping (the only place that knows column order) -------------------

_TABLE_COLS = (
    "database_key, name_key, name, kind, id_column, lon_column, lat_column, director, key_column, "
    "non_unique_key, left_director, left_column, right_director, right_column, flag_column"
)
_TX_COLS = "transaction_id, database_name, table_name, state, fingerprint, row_count"


def _database_of(row: tuple[Any, ...]) -> Database:
    name, order, sub_order, overlap = row
    return Database(name, Partitioning(int(order), int(sub_order), float(overlap)))


def _table_of(row: tuple[Any, ...], database: str, columns: tuple[Column, ...]) -> Table:
    _db_key, _key, name, kind, id_col, lon_col, lat_col, director, key_col, non_unique, *match = row
    left_director, left_column, right_director, right_column, flag_column = match
    return Table(database, name, TableKind(kind), columns, id_col, lon_col, lat_col, director, key_col,
                 bool(non_unique), left_director, left_column, right_director, right_column,
                 flag_column)  # fmt: skip


def _table_row(table: Table) -> tuple[Any, ...]:
    return (
        table.database.lower(),
        table.name.lower(),
        table.name,
        table.kind.value,
        table.id_column,
        table.lon_column,
        table.lat_column,
        table.director,
        table.key_column,
        int(table.non_unique_key),
        table.left_director,
        table.left_column,
        table.right_director,
        table.right_column,
        table.flag_column,
    )


def _worker_of(row: tuple[Any, ...]) -> WorkerInfo:
    name, host, port, state = row
    return WorkerInfo(name, host, int(port), WorkerState(state))


def _transaction_of(row: tuple[Any, ...]) -> Transaction:
    tid, database, table, state, fingerprint, rows = row
    return Transaction(int(tid), database, table, TransactionState(state), fingerprint, int(rows))


def _table_diff(old: Table, new: Table) -> str:
    """Say briefly how two definitions of one table differ (for DuplicateObject)."""
    if old.kind is not new.kind:
        return f"kind {old.kind.value} vs {new.kind.value}"
    if old.columns != new.columns:
        show = ", ".join
        return f"columns ({show(f'{c.name} {c.type}' for c in old.columns)}) vs ({show(f'{c.name} {c.type}' for c in new.columns)})"
    return "key, position or director columns differ"


_TERMINAL = (TransactionState.COMMITTED, TransactionState.ABORTED)
_OPEN = (TransactionState.STARTED.value, TransactionState.COMMITTING.value)


class SQLStore(ReplicaStateSQL, ABC):
    """:class:`~qserv.metadata.store.MetadataStore` over one DB-API connection.

    Every public method runs one short database transaction under ``self._lock``: the store
    object may be shared by threads, and a DB-API connection carries one transaction at a time.
    """

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._lock = threading.Lock()

    # --- what a backend supplies -------------------------------------------------------------

    @abstractmethod
    def _cursor(self) -> Cursor:
        """A cursor on a live connection in autocommit mode (reconnecting if needed)."""

    @abstractmethod
    def _close_connection(self) -> None:
        """Close the connection (idempotent)."""

    def _reconnect(self) -> bool:
        """Replace a broken connection; False if it is not broken (or cannot be replaced)."""
        return False

    # --- plumbing -----------------------------------------------------------------------------

    @contextmanager
    def _tx(self, write: bool = True, placement: bool = False) -> Iterator[Tx]:
        """One store transaction; ``placement``: it changes what the czar plans on (workers,
        replicas, committed loads), so the placement version is bumped with it."""
        with self._lock:
            begin = self.dialect.begin_write if write else self.dialect.begin_read
            cur = self._cursor()
            try:
                try:
                    cur.execute(begin)
                except Exception:
                    # A server restart or idle timeout shows only now; nothing ran yet, so
                    # reconnecting and beginning again is safe.
                    if not self._reconnect():
                        raise
                    cur.close()
                    cur = self._cursor()
                    cur.execute(begin)
                try:
                    tx = Tx(cur, self.dialect)
                    yield tx
                    if placement:
                        bump_placement_version(tx)
                    cur.execute("COMMIT")
                except BaseException:
                    try:
                        cur.execute("ROLLBACK")
                    except Exception:  # a broken connection rolls back on its own
                        pass
                    raise
            finally:
                cur.close()

    def _init_schema(self) -> None:
        """Create or upgrade the schema; safe when several processes open a fresh store at once."""
        with self._tx() as tx:
            ensure_schema(tx, self.dialect)

    def schema_version(self) -> int:
        """The schema version recorded in the store."""
        with self._tx(write=False) as tx:
            row = tx.one("SELECT MAX(version) FROM schema_version")
        return int(row[0]) if row and row[0] is not None else 0

    def close(self) -> None:
        """Close the connection; the store object is unusable afterwards."""
        with self._lock:
            self._close_connection()

    def __enter__(self) -> SQLStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- databases and tables -----------------------------------------------------------------

    def create_database(self, db: Database) -> None:
        """Create ``db``; a no-op if it exists with the same partitioning, else DuplicateObject."""
        p = db.partitioning
        with self._tx() as tx:
            inserted = tx.run(
                "INSERT INTO databases (name_key, name, chunk_order, sub_order, overlap) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (name_key) DO NOTHING",
                (db.name.lower(), db.name, p.order, p.sub_order, p.overlap),
            )
            if inserted:
                return
            old = self._database(tx, db.name)
        assert old is not None  # the conflicting row is committed and never deleted
        q = old.partitioning
        if q.order != p.order or q.sub_order != p.sub_order or not math.isclose(q.overlap, p.overlap):
            raise DuplicateObject(
                f"database {old.name!r} already exists with partitioning {q} (family {q.family}), not {p}",
                hint="load into it without partitioning options, or choose another database name",
            )

    def _database(self, tx: Tx, name: str) -> Database | None:
        row = tx.one(
            "SELECT name, chunk_order, sub_order, overlap FROM databases WHERE name_key = ?",
            (name.lower(),),
        )
        return None if row is None else _database_of(row)

    def _table(self, tx: Tx, database: Database, name: str) -> Table | None:
        key = (database.name.lower(), name.lower())
        row = tx.one(f"SELECT {_TABLE_COLS} FROM tables WHERE database_key = ? AND name_key = ?", key)
        if row is None:
            return None
        cols = tx.all(
            "SELECT name, type FROM table_columns WHERE database_key = ? AND table_key = ? ORDER BY ordinal",
            key,
        )
        return _table_of(row, database.name, tuple(Column(n, t) for n, t in cols))

    def create_table(self, table: Table) -> None:
        """Create ``table`` in its (existing) database; idempotent for the same definition.

        Raises UndefinedDatabase, UndefinedTable (a child's director is missing),
        InvalidParameter (inconsistent definition) or DuplicateObject (exists, differs).
        """
        with self._tx() as tx:
            db = self._database(tx, table.database)
            if db is None:
                raise UndefinedDatabase(
                    f"database {table.database!r} does not exist",
                    hint=f"create the database before its table {table.name!r}",
                )
            table = replace(table, database=db.name)
            table = self._check_table(tx, db, table)
            if tx.run(
                f"INSERT INTO tables ({_TABLE_COLS}) VALUES ({', '.join('?' * 15)}) "
                "ON CONFLICT (database_key, name_key) DO NOTHING",
                _table_row(table),
            ):
                tx.many(
                    "INSERT INTO table_columns (database_key, table_key, ordinal, name, type) "
                    "VALUES (?, ?, ?, ?, ?)",
                    [
                        (db.name.lower(), table.name.lower(), i, c.name, c.type)
                        for i, c in enumerate(table.columns)
                    ],
                )
                return
            old = self._table(tx, db, table.name)
        assert old is not None
        if replace(table, name=old.name) != old:
            raise DuplicateObject(
                f"table {old.database}.{old.name} already exists with a different definition "
                f"({_table_diff(old, table)})",
                hint="load with the same schema and table options, or choose another table name",
            )

    def _check_table(self, tx: Tx, db: Database, table: Table) -> Table:
        """The definition with canonical names, or a refusal (:mod:`qserv.metadata.tables`)."""

        def lookup(database: str, name: str) -> tuple[Database, Table | None] | None:
            other = self._database(tx, database)
            return None if other is None else (other, self._table(tx, other, name))

        return checked_table(db, table, lookup)

    def catalog(self) -> Catalog:
        """A consistent snapshot of all databases and tables."""
        with self._tx(write=False) as tx:
            dbs = tx.all("SELECT name, chunk_order, sub_order, overlap FROM databases ORDER BY name_key")
            trows = tx.all(f"SELECT {_TABLE_COLS} FROM tables ORDER BY database_key, name_key")
            crows = tx.all(
                "SELECT database_key, table_key, name, type FROM table_columns "
                "ORDER BY database_key, table_key, ordinal"
            )
        databases = tuple(_database_of(r) for r in dbs)
        db_names = {d.name.lower(): d.name for d in databases}
        columns: dict[tuple[str, str], list[Column]] = {}
        for db_key, t_key, name, type_ in crows:
            columns.setdefault((db_key, t_key), []).append(Column(name, type_))
        tables = tuple(_table_of(r, db_names[r[0]], tuple(columns.get((r[0], r[1]), ()))) for r in trows)
        return Catalog(databases, tables)

    # --- workers --------------------------------------------------------------------------------

    def upsert_worker(self, worker: WorkerInfo) -> None:
        """Register a worker, or update its address; a registered worker keeps its state.

        Why: ``qserv up`` registers every worker at each start, and an evicted or disabled
        worker must not come back to service by a restart: only the replication controller
        (after reconciling it) or an operator changes a state.
        """
        with self._tx(placement=True) as tx:
            tx.run(
                "INSERT INTO workers (name, host, port, state) VALUES (?, ?, ?, ?) ON CONFLICT (name) "
                "DO UPDATE SET host = excluded.host, port = excluded.port",
                (worker.name, worker.host, worker.port, worker.state.value),
            )

    def set_worker_state(self, name: str, state: WorkerState) -> None:
        """Set a registered worker's state."""
        with self._tx(placement=True) as tx:
            if not tx.run("UPDATE workers SET state = ? WHERE name = ?", (state.value, name)):
                raise InvalidParameter(
                    f"worker {name!r} is not registered", hint="register it (upsert_worker) first"
                )

    def workers(self) -> list[WorkerInfo]:
        """All registered workers, by name."""
        with self._tx(write=False) as tx:
            rows = tx.all("SELECT name, host, port, state FROM workers ORDER BY name")
        return [_worker_of(r) for r in rows]

    # --- replicas -------------------------------------------------------------------------------

    def add_replicas(self, replicas: list[Replica], transaction_id: int | None = None) -> None:
        """Record replicas; under a transaction they become visible when it commits."""
        with self._tx(placement=True) as tx:
            if transaction_id is not None:
                self._open_transaction(tx, transaction_id, "add replicas")
            tx.many(
                "INSERT INTO replicas (family, chunk_id, worker, transaction_id) VALUES (?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                [(r.family, r.chunk_id, r.worker, transaction_id or 0) for r in replicas],
            )

    def remove_replica(self, replica: Replica) -> None:
        """Forget a replica (under every transaction that added it); a no-op if unknown."""
        with self._tx(placement=True) as tx:
            tx.run(
                "DELETE FROM replicas WHERE family = ? AND chunk_id = ? AND worker = ?",
                (replica.family, replica.chunk_id, replica.worker),
            )

    def replicas(self, family: str | None = None) -> list[Replica]:
        """Visible replicas (of one family), by family, chunk and worker."""
        where = "" if family is None else " AND r.family = ?"
        with self._tx(write=False) as tx:
            rows = tx.all(
                "SELECT DISTINCT r.family, r.chunk_id, r.worker FROM replicas r "
                "LEFT JOIN transactions t ON t.transaction_id = r.transaction_id "
                f"WHERE (r.transaction_id = 0 OR t.state = ?){where} "
                "ORDER BY r.family, r.chunk_id, r.worker",
                (TransactionState.COMMITTED.value, *(() if family is None else (family,))),
            )
        return [Replica(f, int(c), w) for f, c, w in rows]

    # --- chunk row counts -----------------------------------------------------------------------

    def add_chunk_rows(self, transaction_id: int, rows: list[ChunkRows]) -> None:
        """Add row counts under an open transaction (counts for the same chunk accumulate)."""
        with self._tx() as tx:
            self._open_transaction(tx, transaction_id, "add chunk rows")
            names: dict[tuple[str, str], tuple[str, str]] = {}
            for r in rows:
                key = (r.database.lower(), r.table.lower())
                if key not in names:
                    names[key] = self._canonical_names(tx, r.database, r.table)
            tx.many(
                "INSERT INTO chunk_rows (transaction_id, database_key, table_key, chunk_id, "
                "database_name, table_name, row_count) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (transaction_id, database_key, table_key, chunk_id) "
                "DO UPDATE SET row_count = chunk_rows.row_count + excluded.row_count",
                [
                    (transaction_id, *key, r.chunk_id, *names[key], r.rows)
                    for r in rows
                    for key in [(r.database.lower(), r.table.lower())]
                ],
            )

    def _canonical_names(self, tx: Tx, database: str, table: str) -> tuple[str, str]:
        """The names as created in the catalog (the given ones if not created yet)."""
        db = self._database(tx, database)
        if db is None:
            return database, table
        row = tx.one(
            "SELECT name FROM tables WHERE database_key = ? AND name_key = ?",
            (database.lower(), table.lower()),
        )
        return db.name, (row[0] if row else table)

    def chunk_rows(self, database: str, table: str | None = None) -> list[ChunkRows]:
        """Committed row counts per chunk, summed over transactions, by table and chunk."""
        params: list[Any] = [TransactionState.COMMITTED.value, database.lower()]
        where = ""
        if table is not None:
            where = " AND c.table_key = ?"
            params.append(table.lower())
        with self._tx(write=False) as tx:
            rows = tx.all(
                "SELECT MIN(c.database_name), MIN(c.table_name), c.chunk_id, SUM(c.row_count) "
                "FROM chunk_rows c JOIN transactions t ON t.transaction_id = c.transaction_id "
                f"WHERE t.state = ? AND c.database_key = ?{where} "
                "GROUP BY c.database_key, c.table_key, c.chunk_id "
                "ORDER BY c.table_key, c.chunk_id",
                params,
            )
        return [ChunkRows(d, t, int(c), int(n)) for d, t, c, n in rows]

    # --- transactions ---------------------------------------------------------------------------

    def begin_transaction(self, database: str, table: str, fingerprint: str) -> Transaction:
        """Start an ingest transaction; ids are unique and increasing."""
        with self._tx() as tx:
            db_name, table_name = self._canonical_names(tx, database, table)
            row = tx.one(
                "INSERT INTO transactions (database_key, database_name, table_name, state, "
                f"fingerprint, row_count) VALUES (?, ?, ?, ?, ?, 0) RETURNING {_TX_COLS}",
                (db_name.lower(), db_name, table_name, TransactionState.STARTED.value, fingerprint),
            )
        assert row is not None
        return _transaction_of(row)

    def transaction(self, transaction_id: int) -> Transaction | None:
        """The transaction with this id, or None."""
        with self._tx(write=False) as tx:
            row = tx.one(f"SELECT {_TX_COLS} FROM transactions WHERE transaction_id = ?", (transaction_id,))
        return None if row is None else _transaction_of(row)

    def transactions(
        self, database: str | None = None, state: TransactionState | None = None
    ) -> list[Transaction]:
        """Transactions (of one database, in one state), by id."""
        conds: list[str] = []
        params: list[Any] = []
        if database is not None:
            conds.append("database_key = ?")
            params.append(database.lower())
        if state is not None:
            conds.append("state = ?")
            params.append(state.value)
        where = f" WHERE {' AND '.join(conds)}" if conds else ""
        with self._tx(write=False) as tx:
            rows = tx.all(f"SELECT {_TX_COLS} FROM transactions{where} ORDER BY transaction_id", params)
        return [_transaction_of(r) for r in rows]

    def set_transaction_state(
        self, transaction_id: int, state: TransactionState, rows: int | None = None
    ) -> None:
        """Move a transaction to ``state`` (and record its row count).

        Setting the current state again is a no-op; a COMMITTED or ABORTED transaction never
        changes state (InvalidParameter), so committed data cannot vanish nor aborted appear.
        """
        with self._tx(placement=True) as tx:
            current = self._transaction_state(tx, transaction_id)
            if current in _TERMINAL and state is not current:
                raise InvalidParameter(
                    f"transaction {transaction_id} is already {current.value}; it cannot become {state.value}",
                    hint="start a new transaction to load the data again",
                )
            if rows is None:
                tx.run(
                    "UPDATE transactions SET state = ? WHERE transaction_id = ?",
                    (state.value, transaction_id),
                )
            else:
                tx.run(
                    "UPDATE transactions SET state = ?, row_count = ? WHERE transaction_id = ?",
                    (state.value, rows, transaction_id),
                )

    # --- copies written by transactions (targets_sql) ---------------------------------------

    def add_targets(self, transaction_id: int, targets: list[Target]) -> None:
        """Record copies the open transaction is about to send rows to (idempotent)."""
        with self._tx() as tx:
            self._open_transaction(tx, transaction_id, "add targets")
            targets_sql.add_targets(tx, transaction_id, targets)

    def targets(self, transaction_id: int) -> list[Target]:
        """The copies the transaction wrote, by chunk (None, a whole table, first) and worker."""
        with self._tx(write=False) as tx:
            return targets_sql.targets(tx, transaction_id)

    def finish_transaction(
        self,
        transaction_id: int,
        state: TransactionState,
        reached: Collection[str],
        dropped: Collection[Replica] = (),
    ) -> None:
        """End a transaction in one step: its state, each target's outcome, the dropped replicas.

        ``reached``: the workers that committed it (COMMITTED) or cleared its staged rows
        (ABORTED); every other target worker has MISSED it. Finishing again in the same
        state is a no-op; a terminal transaction never changes state (InvalidParameter).
        """
        if state not in _TERMINAL:
            raise InvalidParameter(f"a transaction finishes committed or aborted, not {state.value}")
        with self._tx(placement=True) as tx:
            current = self._transaction_state(tx, transaction_id)
            if current is state:
                return
            if current in _TERMINAL:
                raise InvalidParameter(
                    f"transaction {transaction_id} is already {current.value}; it cannot become {state.value}",
                    hint="start a new transaction to load the data again",
                )
            targets_sql.settle_targets(tx, transaction_id, state, reached, dropped)
            tx.run(
                "UPDATE transactions SET state = ? WHERE transaction_id = ?", (state.value, transaction_id)
            )

    def missed_targets(self) -> list[tuple[int, str]]:
        """(transaction, worker) pairs whose staged rows are still to be cleared."""
        with self._tx(write=False) as tx:
            return targets_sql.missed_targets(tx)

    def set_target_outcome(self, transaction_id: int, worker: str, outcome: TargetOutcome) -> None:
        """Record what became of the transaction on ``worker`` (e.g. CLEARED after an abort there)."""
        with self._tx() as tx:
            targets_sql.set_target_outcome(tx, transaction_id, worker, outcome)

    def table_copies(self) -> list[TableCopies]:
        """Workers with a complete copy of each regular table whose loads recorded targets.

        A table absent here has no such load (none yet, or only loads of a version 1 store,
        whose copies count as complete everywhere, as version 1 assumed).
        """
        with self._tx(write=False) as tx:
            return targets_sql.table_copies(tx)

    def _transaction_state(self, tx: Tx, transaction_id: int) -> TransactionState:
        # lock the row so a concurrent commit/abort waits for this write to finish (PostgreSQL)
        row = tx.one(
            f"SELECT state FROM transactions WHERE transaction_id = ?{self.dialect.lock_row}",
            (transaction_id,),
        )
        if row is None:
            raise InvalidParameter(
                f"transaction {transaction_id} does not exist", hint="begin a transaction first"
            )
        return TransactionState(row[0])

    def _open_transaction(self, tx: Tx, transaction_id: int, what: str) -> None:
        state = self._transaction_state(tx, transaction_id)
        if state.value not in _OPEN:
            raise InvalidParameter(
                f"cannot {what} under transaction {transaction_id}: it is {state.value}",
                hint="begin a new transaction",
            )
