"""The metadata store interface shared by the SQLite and PostgreSQL backends.

It holds databases (with their partitioning), tables, workers, chunk replicas (per family),
per-table chunk row counts, and ingest transactions. Only server processes open it; clients
reach it through the czar's HTTP API.

Visibility rule: chunk row counts and replicas written under a transaction become visible
(returned by ``chunk_rows``/``replicas``) only once that transaction is COMMITTED.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from qserv.catalog import Catalog, Database, Table


class WorkerState(StrEnum):
    ACTIVE = "active"
    DOWN = "down"  # failed health probes; not chosen for queries or placement


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
