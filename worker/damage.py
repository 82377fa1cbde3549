"""Telling a damaged data file from a failed query.

DuckDB checksums every block it writes and checks it on each read; a block that fails, or a
file cut short, surfaces as an error on whichever statement first reads it (a query, a chunk
checksum, a chunk export), while every other block stays readable. Such an error says nothing
about the query: the same chunks are read from another replica, and the replica is repaired
(qserv/replica/verifier.py finds it, the policy copies a good one over it). The statement that
met the damage is what the client's error names, never DuckDB's text with the file's path.
"""

from __future__ import annotations

import re

from qserv.errors import DataCorrupted

_DAMAGE = re.compile(
    r"corrupt database file|does not match stored checksum|could not read enough bytes"
    r"|not a valid duckdb database file",
    re.IGNORECASE,
)


def damaged(exc: BaseException) -> DataCorrupted | None:
    """The :class:`DataCorrupted` error ``exc`` stands for, or None when it is not damage."""
    if isinstance(exc, DataCorrupted):
        return exc
    if not _DAMAGE.search(str(exc)):
        return None
    return DataCorrupted(
        "a worker's data file is damaged: a block failed its checksum or could not be read",
        hint="the chunks are read from other replicas; the replication controller verifies "
        "and repairs the damaged replicas (`qserv replica verify`)",
    )
