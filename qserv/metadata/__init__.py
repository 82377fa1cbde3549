"""The metadata store: one interface (:class:`MetadataStore`), two backends."""

from qserv.metadata.store import (
    ChunkRows,
    MetadataStore,
    Replica,
    ReplicaCheck,
    TableCopies,
    Target,
    TargetOutcome,
    Transaction,
    TransactionState,
    WorkerInfo,
    WorkerState,
    open_store,
)

__all__ = [
    "ChunkRows",
    "MetadataStore",
    "Replica",
    "ReplicaCheck",
    "TableCopies",
    "Target",
    "TargetOutcome",
    "Transaction",
    "TransactionState",
    "WorkerInfo",
    "WorkerState",
    "open_store",
]
