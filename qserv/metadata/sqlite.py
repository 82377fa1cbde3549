"""The embedded metadata store backend: one SQLite file, shared by the local processes.

WAL mode lets readers run while a writer commits; ``busy_timeout`` makes a writer wait for
another process's short transaction instead of failing. One connection per store object,
guarded by the :class:`~qserv.metadata.sqlstore.SQLStore` lock, serves all its threads.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from qserv.errors import QservError
from qserv.metadata.schema import SQLITE, Cursor
from qserv.metadata.sqlstore import SQLStore

BUSY_TIMEOUT_MS = 30_000  # a writer waits this long for another process's transaction


def _enable_wal(conn: sqlite3.Connection) -> None:
    """Switch the file to WAL mode (persistent: later opens find it set).

    The switch needs an exclusive lock and SQLite reports "database is locked" at once,
    without calling the busy handler, when another process opens the fresh file at the same
    moment: retry until the busy timeout instead.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL").fetchall()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


class SQLiteStore(SQLStore):
    """The metadata store in the SQLite database file ``path`` (created if missing)."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(SQLITE)
        self.path = str(path)
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: the sqlite3 module never opens transactions by itself;
            # SQLStore issues BEGIN IMMEDIATE / COMMIT explicitly.
            self._conn: sqlite3.Connection | None = sqlite3.connect(
                self.path,
                timeout=BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
            self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            _enable_wal(self._conn)
            # NORMAL is durable across process crashes in WAL mode (only an OS crash can lose
            # the last commits), and avoids an fsync per metadata update.
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._conn.execute("PRAGMA foreign_keys = ON")
        except (sqlite3.Error, OSError) as exc:
            raise QservError(
                f"cannot open the SQLite metadata store {self.path!r}: {exc}",
                hint="check that the directory exists and is writable, or pass another --metadata URL",
            ) from exc
        self._init_schema()

    def _cursor(self) -> Cursor:
        if self._conn is None:
            raise QservError(f"the SQLite metadata store {self.path!r} is closed")
        return self._conn.cursor()

    def _close_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"
