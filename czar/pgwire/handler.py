"""The contract between the PostgreSQL front end and the rest of the czar.

The front end decodes the wire protocol, splits multi-statement strings, substitutes bound
parameters as SQL literals, and hands each single statement to a :class:`QueryHandler`. The
handler returns a :class:`QueryResult` whose ``columns`` are known before any row is produced:
``Describe`` (statement) reads ``columns`` of a dry run and closes ``batches`` unread, so a handler
that plans before it dispatches (an async generator that starts work on first iteration) makes
describing cheap.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import pyarrow as pa


@dataclass(frozen=True)
class SessionInfo:
    """One client connection, as established by the startup message."""

    user: str
    database: str
    application_name: str
    process_id: int
    parameters: Mapping[str, str] = field(default_factory=dict)


async def _no_batches() -> AsyncIterator[pa.RecordBatch]:
    return
    yield  # pragma: no cover - makes this an async generator


@dataclass
class QueryResult:
    """The answer to one statement: a schema, streamed rows and an optional command tag.

    ``columns`` empty means a command (no RowDescription, no rows). ``command_tag`` None means
    ``SELECT <rows sent>`` for queries; for commands the statement's first keyword is used.
    """

    columns: list[tuple[str, pa.DataType]]
    batches: AsyncIterator[pa.RecordBatch] = field(default_factory=_no_batches)
    command_tag: str | None = None


class QueryHandler(Protocol):
    """What the czar implements; the front end calls it, one statement at a time per session."""

    async def open_session(self, session: SessionInfo) -> None:
        """A client has authenticated; raise a ``QservError`` to refuse its startup settings."""
        ...

    async def execute(self, session: SessionInfo, sql: str) -> QueryResult:
        """Run one statement; raise a ``QservError`` subclass for any client-visible error."""
        ...

    async def cancel(self, process_id: int) -> None:
        """Cancel the running statement of that session (CancelRequest from another connection)."""
        ...

    async def close_session(self, session: SessionInfo) -> None:
        """The connection ended (Terminate, disconnect or protocol error)."""
        ...
