"""Fixtures: a pgwire server on a free port backed by an in-memory DuckDB, and a raw client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pgwire_helpers import DuckHandler, RawClient

from czar.pgwire import ServerThread, running_server


@pytest.fixture(scope="module")
def handler() -> DuckHandler:
    return DuckHandler()


@pytest.fixture(scope="module")
def server(handler: DuckHandler) -> Iterator[ServerThread]:
    with running_server(handler) as srv:
        yield srv


@pytest.fixture
def dsn(server: ServerThread) -> str:
    return f"host=127.0.0.1 port={server.port} user=qserv dbname=sky application_name=tests"


@pytest.fixture
def raw(server: ServerThread) -> Iterator[RawClient]:
    client = RawClient(server.port)
    yield client
    client.close()
