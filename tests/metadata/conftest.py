"""Fixtures running every metadata test on both backends: an SQLite file and a real PostgreSQL.

The PostgreSQL server is private to the test session (tests/pgserver.py); each test gets a
fresh database on it. Missing server binaries fail the PostgreSQL tests with the remedy,
unless QSERV_SKIP_POSTGRES=1 says to skip them.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# tests/ is not a package: make `tests.pgserver` importable however pytest was started.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from qserv.metadata.store import MetadataStore, open_store  # noqa: E402
from tests.pgserver import PostgresServer, required_postgres  # noqa: E402

BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """One private PostgreSQL server for the session."""
    yield from required_postgres("the PostgreSQL metadata backend tests")


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a fresh, empty metadata store on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'metadata.sqlite3'}"
    server: PostgresServer = request.getfixturevalue("pg_server")
    # a schema per test: isolated like a database, but created in 0.1 ms instead of 200 ms
    return server.create_schema(f"meta_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def open_many(store_url: str) -> Iterator[Callable[[], MetadataStore]]:
    """Open further store objects on the same URL (as other processes would); closed at teardown."""
    opened: list[MetadataStore] = []

    def _open() -> MetadataStore:
        store = open_store(store_url)
        opened.append(store)
        return store

    yield _open
    for store in opened:
        store.close()


@pytest.fixture
def store(open_many: Callable[[], MetadataStore]) -> MetadataStore:
    """A store object on a fresh metadata store."""
    return open_many()
