"""Fixtures: a real worker (gRPC + locked-down DuckDB) on an ephemeral loopback port."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from worker_helpers import OBJECT_COLUMNS, worker_config

from qserv.catalog import TableKind
from qserv.rpc.client import WorkerClient
from worker.service import RunningWorker, start


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningWorker]:
    """One worker shared by a test module (tests use their own database names)."""
    running = start(worker_config(tmp_path_factory.mktemp("worker")))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(worker: RunningWorker) -> Iterator[WorkerClient]:
    c = WorkerClient(worker.address)
    yield c
    c.close()


_names = itertools.count()


@pytest.fixture
def db() -> str:
    """A fresh database name (mixed case: names must keep their case)."""
    return f"Sky{next(_names)}"


@pytest.fixture
def txn() -> int:
    return 1000 + next(_names)


@pytest.fixture
def object_table(client: WorkerClient, db: str) -> str:
    """A database with an empty director table Object."""
    client.create_table(db, "Object", TableKind.DIRECTOR, OBJECT_COLUMNS)
    return db
