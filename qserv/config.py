"""One typed configuration object, built once by the CLI and passed down.

Every field has a default and help text (``field(metadata={"help": ...})``) so that
``--help`` and the docs can be generated from this module; nothing reads configuration
from a global.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


def _help(default: object, text: str) -> object:
    return field(default=default, metadata={"help": text})


@dataclass(frozen=True)
class CzarConfig:
    host: str = _help("127.0.0.1", "Address the czar's front ends listen on.")  # type: ignore[assignment]
    pg_port: int = _help(4040, "PostgreSQL wire protocol port.")  # type: ignore[assignment]
    http_port: int = _help(4048, "HTTP port (admin and ingest API).")  # type: ignore[assignment]
    data_dir: Path = _help(Path("data/czar"), "Czar state: director index, spill files.")  # type: ignore[assignment]
    worker_timeout: float = _help(
        600.0,
        "Seconds a worker batch may run; past it the statement fails with 57014 and its work on the "
        "workers is cancelled (a slow worker is not a dead one: it is neither retried nor marked down).",
    )  # type: ignore[assignment]
    statement_timeout: float = _help(
        0.0,
        "Default seconds a statement may run before it is cancelled with 57014, as PostgreSQL's "
        "statement_timeout (0: no limit); a session changes it with SET statement_timeout.",
    )  # type: ignore[assignment]
    # Bounds on what one client can make the czar hold (issue 5): each is checked before the
    # czar reads or allocates what a client announces.
    max_connections: int = _help(
        100,
        "PostgreSQL sessions at once; one more is refused with 53300 'sorry, too many clients "
        "already' (sockets still in startup do not count; startup_timeout ends them).",
    )  # type: ignore[assignment]
    startup_timeout: float = _help(
        60.0,
        "Seconds a new PostgreSQL connection may take to send its startup packet and "
        "authenticate before it is closed (PostgreSQL's authentication_timeout).",
    )  # type: ignore[assignment]
    max_message_bytes: int = _help(
        64 << 20,
        "Largest PostgreSQL frontend message (length field); a bigger one is refused with "
        "08P01 and the connection closed, without reading it.",
    )  # type: ignore[assignment]
    max_statement_length: int = _help(
        64 << 10,
        "Longest SQL statement in characters; a longer one is refused with 54001 'statement "
        "too complex'. Planning holds up to ~1.5 KB per character (IN (1,1,...)): ~100 MB at "
        "the default, which takes ~7k 8-digit keys. Split longer key lists.",
    )  # type: ignore[assignment]
    max_far_pairs: int = _help(
        100_000,
        "Most match pairs farther apart than the overlap one join of a match table to both its "
        "directors may answer (their keys go to the workers, their rows are joined at the czar); "
        "a query with more is refused with 54001, never answered in part.",
    )  # type: ignore[assignment]
    max_http_body_bytes: int = _help(
        128 << 20,
        "Largest HTTP API request body (Content-Length); a bigger one is answered 413 unread. "
        "The loader sends ~16 bytes per row per director-index batch (4 MiB at its default "
        "256k-row batches).",
    )  # type: ignore[assignment]


@dataclass(frozen=True)
class WorkerConfig:
    name: str = _help("worker-1", "Unique worker name, as registered in the metadata store.")  # type: ignore[assignment]
    host: str = _help("127.0.0.1", "Address the worker's gRPC server listens on.")  # type: ignore[assignment]
    port: int = _help(5040, "gRPC port.")  # type: ignore[assignment]
    data_dir: Path = _help(Path("data/worker-1"), "Directory holding the worker's DuckDB database.")  # type: ignore[assignment]
    threads: int = _help(2, "DuckDB threads per query.")  # type: ignore[assignment]
    memory_limit: str = _help("4GB", "DuckDB memory limit.")  # type: ignore[assignment]
    compression: str = _help(
        "uncompressed",
        "DuckDB storage compression: 'uncompressed' (fastest scans) or 'auto' (smaller files).",
    )  # type: ignore[assignment]


@dataclass(frozen=True)
class ReplicationConfig:
    level: int = _help(2, "Replicas kept of every chunk (capped at the number of workers).")  # type: ignore[assignment]
    health_interval: float = _help(2.0, "Seconds between worker health probes.")  # type: ignore[assignment]
    evict_timeout: float = _help(
        120.0, "Seconds a worker may stay silent before it is evicted and its chunks re-replicated."
    )  # type: ignore[assignment]
    max_copies_per_worker: int = _help(
        64, "Chunk copies in flight per worker (as source or target) during recovery and rebalancing."
    )  # type: ignore[assignment]
    copy_batch_chunks: int = _help(
        32, "Chunks copied from one worker to another in one call (one stream, one transaction)."
    )  # type: ignore[assignment]
    max_rebalance_moves: int = _help(64, "Chunk moves started per round when rebalancing.")  # type: ignore[assignment]
    copy_timeout: float = _help(600.0, "Seconds one chunk copy may take.")  # type: ignore[assignment]
    verify_interval: float = _help(
        86400.0,
        "Seconds between verifications of each replica by checksum against the other replicas of "
        "its chunk (0: only on `qserv replica verify`); a corrupt replica is repaired from a good one.",
    )  # type: ignore[assignment]
    max_verifications: int = _help(64, "Replicas whose scheduled verification is started per round.")  # type: ignore[assignment]
    drop_grace: float = _help(
        30.0,
        "Seconds between forgetting a replica and deleting its rows on the worker, so that queries "
        "planned on an older snapshot still find them.",
    )  # type: ignore[assignment]


@dataclass(frozen=True)
class MetadataConfig:
    url: str = _help(
        "", "Metadata store: sqlite:///PATH or postgresql://... (default: sqlite in the data dir)."
    )  # type: ignore[assignment]


@dataclass(frozen=True)
class Config:
    """The whole configuration of one process (or of a local cluster under ``qserv up``)."""

    data_dir: Path = _help(Path("data"), "Root of all state of a local cluster.")  # type: ignore[assignment]
    czar: CzarConfig = field(default_factory=CzarConfig)
    worker: WorkerConfig = field(default_factory=WorkerConfig)
    replication: ReplicationConfig = field(default_factory=ReplicationConfig)
    metadata: MetadataConfig = field(default_factory=MetadataConfig)

    def metadata_url(self) -> str:
        """The metadata store URL, defaulting to an SQLite file inside ``data_dir``."""
        if self.metadata.url:
            return self.metadata.url
        return f"sqlite:///{(self.data_dir / 'metadata.sqlite3').resolve()}"
