"""Fixtures: an in-process ingest cluster (SQLite metadata, 3 real workers, the czar's HTTP API)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from czar.director_index import DirectorIndex
from czar.http.app import make_http_server
from qserv.config import WorkerConfig
from qserv.metadata.store import MetadataStore, WorkerInfo, open_store
from qserv.rpc.client import WorkerClient
from worker.service import RunningWorker, start


@dataclass
class IngestCluster:
    url: str
    store: MetadataStore
    index: DirectorIndex
    workers: list[RunningWorker]
    clients: list[WorkerClient]
    metadata_url: str
    root: Path


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IngestCluster]:
    root = tmp_path_factory.mktemp("ingest")
    metadata_url = f"sqlite:///{root / 'metadata.sqlite3'}"
    store = open_store(metadata_url)
    workers = []
    for i in range(3):
        config = WorkerConfig(name=f"w{i}", host="127.0.0.1", port=0, data_dir=root / f"w{i}",
                              threads=1, memory_limit="256MB")  # fmt: skip
        w = start(config)
        workers.append(w)
        store.upsert_worker(WorkerInfo(w.name, w.host, w.port))
    index = DirectorIndex(root / "czar" / "director_index.duckdb")
    server = make_http_server("127.0.0.1", 0, store, index, replication_level=2)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    clients = [WorkerClient(w.address) for w in workers]
    url = f"http://127.0.0.1:{server.server_address[1]}"
    yield IngestCluster(url, store, index, workers, clients, metadata_url, root)
    server.shutdown()
    server.server_close()
    for c in clients:
        c.close()
    for w in workers:
        w.stop()
    index.close()
    store.close()
