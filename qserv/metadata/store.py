"""The metadata store interface shared by the SQLite and PostgreSQL backends.

It holds databases (with their partitioning), tables, workers, chunk replicas (per family),
per-table chunk row counts, and ingest transactions. Only server processes open it; clients
reach it through the czar's HTTP API.

Visibility rule: chunk row counts and replicas written under a transaction become visible
(returned by ``chunk_rows``/``replicas``) only once that transaction is COMMITTED.

Copies a transaction writes (its *targets*: chunk c on worker w, or a regular table's whole
copy on w) are recorded before any row is sent there, so the commit knows durably which
workers must publish it. A copy whose worker did not commit is dropped at commit (its replica
record removed; for a regular table, the worker is no longer a holder of a complete copy, see
``table_copies``) and its staged rows are cleared when the worker is reachable again.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from qserv.catalog import Catalog, Database, Table


class WorkerState(StrEnum):
    """A worker's state as the czar and the loader see it (set by the replication controller).

    ACTIVE and DOWN follow health probes; READ_ONLY and DISABLED are set by an operator; a worker
    DOWN for the controller's ``evict_timeout`` becomes EVICTED: its replicas no longer count and
    are re-made elsewhere, and it is reconciled before it serves again.
    """

    ACTIVE = "active"  # serves queries, receives new chunks and copies
    DOWN = "down"  # failed health probes; not chosen for queries or placement
    READ_ONLY = "read-only"  # serves queries; receives no new chunks or copies (being drained)
    DISABLED = "disabled"  # taken out by an operator: serves nothing, its replicas do not count
    EVICTED = "evicted"  # silent past evict_timeout: serves nothing until reconciled

    @property
    def serves(self) -> bool:
        """Whether queries may be planned on the worker's replicas."""
        return self in (WorkerState.ACTIVE, WorkerState.READ_ONLY)


@dataclass(frozen=True)
class WorkerInfo:
    name: str
    host: str
    port: int
    state: WorkerState = WorkerState.ACTIVE

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Replica:
    """One copy of a chunk (all tables of its family) on one worker."""

    family: str
    chunk_id: int
    worker: str


@dataclass(frozen=True)
class ReplicaCheck:
    """The last verification of one replica: its checksum and whether it disagreed with the others.

    ``checksum`` digests every table of the family chunk (:func:`qserv.replica.verify.digest`);
    ``checked_at`` is Unix time. A load that commits rows into the chunk forgets its checks.
    """

    family: str
    chunk_id: int
    worker: str
    checksum: str
    corrupt: bool
    checked_at: float


@dataclass(frozen=True)
class Target:
    """A copy a transaction writes rows to: chunk ``chunk_id`` on ``worker``.

    ``chunk_id`` None: the whole copy of a regular table on ``worker``.
    """

    chunk_id: int | None
    worker: str


class TargetOutcome(StrEnum):
    STAGED = "staged"  # rows may be staged there; the transaction has not ended
    COMMITTED = "committed"  # the worker published the transaction
    MISSED = "missed"  # the transaction ended without this worker: its staged rows must go
    CLEARED = "cleared"  # the worker dropped whatever it had staged (aborted there)


@dataclass(frozen=True)
class TableCopies:
    """The workers holding a complete copy of a regular table (every committed load of it)."""

    database: str
    table: str
    workers: frozenset[str]


class TransactionState(StrEnum):
    STARTED = "started"
    COMMITTING = "committing"  # workers told to publish; retried until done
    COMMITTED = "committed"
    ABORTED = "aborted"


@dataclass(frozen=True)
class Transaction:
    transaction_id: int
    database: str
    table: str
    state: TransactionState
    fingerprint: str  # identifies the input (files, options): a rerun finds its predecessor
    rows: int = 0


@dataclass(frozen=True)
class ChunkRows:
    database: str
    table: str
    chunk_id: int
    rows: int  # rows in the chunk proper (overlap rows not counted)


class MetadataStore(Protocol):
    # databases and tables
    def create_database(self, db: Database) -> None: ...
    def create_table(self, table: Table) -> None: ...
    def catalog(self) -> Catalog: ...

    # workers
    def upsert_worker(self, worker: WorkerInfo) -> None: ...
    def set_worker_state(self, name: str, state: WorkerState) -> None: ...
    def workers(self) -> list[WorkerInfo]: ...

    # replicas (visible once their transaction commits; transaction_id None: visible at once)
    def add_replicas(self, replicas: list[Replica], transaction_id: int | None = None) -> None: ...
    def remove_replica(self, replica: Replica) -> None: ...
    def replicas(self, family: str | None = None) -> list[Replica]: ...

    # verifications of replicas (see ReplicaCheck)
    def record_checks(self, checks: list[ReplicaCheck]) -> None: ...
    def replica_checks(self, family: str | None = None) -> list[ReplicaCheck]: ...
    def clear_checks(self, family: str, chunk_ids: Collection[int]) -> None: ...

    # cluster settings (the replication level an operator chose, requests to the controller)
    def setting(self, key: str) -> str | None: ...
    def set_setting(self, key: str, value: str) -> None: ...
    def bump_setting(self, key: str) -> int: ...
    def placement_version(self) -> int: ...

    # chunk row counts, accumulated per transaction
    def add_chunk_rows(self, transaction_id: int, rows: list[ChunkRows]) -> None: ...
    def chunk_rows(self, database: str, table: str | None = None) -> list[ChunkRows]: ...

    # transactions
    def begin_transaction(self, database: str, table: str, fingerprint: str) -> Transaction: ...
    def transaction(self, transaction_id: int) -> Transaction | None: ...
    def transactions(
        self, database: str | None = None, state: TransactionState | None = None
    ) -> list[Transaction]: ...
    def set_transaction_state(
        self, transaction_id: int, state: TransactionState, rows: int | None = None
    ) -> None: ...

    # copies written by transactions (see the module docstring)
    def add_targets(self, transaction_id: int, targets: list[Target]) -> None: ...
    def targets(self, transaction_id: int) -> list[Target]: ...
    def finish_transaction(
        self,
        transaction_id: int,
        state: TransactionState,
        reached: Collection[str],
        dropped: Collection[Replica] = (),
    ) -> None: ...
    def missed_targets(self) -> list[tuple[int, str]]: ...
    def set_target_outcome(self, transaction_id: int, worker: str, outcome: TargetOutcome) -> None: ...
    def table_copies(self) -> list[TableCopies]: ...
    def record_table_copy(self, database: str, table: str, worker: str) -> None: ...

    def close(self) -> None: ...


def open_store(url: str) -> MetadataStore:
    """Open the backend named by ``url``: ``sqlite:///PATH`` or ``postgresql://...``."""
    if url.startswith("sqlite:///"):
        from qserv.metadata.sqlite import SQLiteStore

        return SQLiteStore(url.removeprefix("sqlite:///"))
    if url.startswith(("postgresql://", "postgres://")):
        from qserv.metadata.postgres import PostgresStore

        return PostgresStore(url)
    raise ValueError(f"unsupported metadata URL {url!r}: use sqlite:///PATH or postgresql://...")
