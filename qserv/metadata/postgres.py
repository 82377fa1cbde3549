"""The production metadata store backend: a PostgreSQL database, shared by several czars.

One psycopg 3 connection per store object, in autocommit mode: the shared
:class:`~qserv.metadata.sqlstore.SQLStore` issues BEGIN/COMMIT itself and holds its lock across
a transaction, so threads sharing the store never interleave statements. A connection found
broken (server restart, network) is replaced before the next transaction.
"""

from __future__ import annotations

import re

import psycopg

from qserv.errors import QservError
from qserv.metadata.schema import POSTGRES, Cursor
from qserv.metadata.sqlstore import SQLStore

CONNECT_TIMEOUT_S = 10


def redact(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``, fit for messages and logs."""
    return re.sub(r"(://[^:/@]+:)[^@/]*@", r"\1***@", url)


class PostgresStore(SQLStore):
    """The metadata store in the PostgreSQL database named by ``url`` (tables created if missing)."""

    def __init__(self, url: str) -> None:
        super().__init__(POSTGRES)
        self.url = url
        self._conn: psycopg.Connection | None = self._connect()
        self._init_schema()

    def _connect(self) -> psycopg.Connection:
        try:
            return psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
        except psycopg.Error as exc:
            raise QservError(
                f"cannot connect to the PostgreSQL metadata store {redact(self.url)}: {exc}".strip(),
                hint="check the --metadata URL and that the server is running and reachable",
            ) from exc

    def _cursor(self) -> Cursor:
        if self._conn is None:
            raise QservError(f"the PostgreSQL metadata store {redact(self.url)} is closed")
        if self._conn.broken or self._conn.closed:
            self._conn = self._connect()
        return self._conn.cursor()

    def _reconnect(self) -> bool:
        if self._conn is None or not self._conn.broken:
            return False
        self._conn.close()
        self._conn = self._connect()
        return True

    def _close_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __repr__(self) -> str:
        return f"PostgresStore({redact(self.url)!r})"
