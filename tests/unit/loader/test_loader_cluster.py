"""End to end: `qserv load` against real workers, the czar's HTTP API and a SQLite store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from loader_cluster import IngestCluster

from loader.cli import main
from qserv.metadata.store import TransactionState
from qserv.sphere.healpix import chunk_ids

REPO = Path(__file__).resolve().parents[3]


def write_objects(path: Path, n: int, seed: int = 1, start: int = 0) -> pa.Table:
    """Director rows clumped around a chunk corner, so many rows fall in overlaps."""
    rng = np.random.default_rng(seed)
    ids = np.arange(start, start + n, dtype=np.int64)
    ra = np.where(ids % 2 == 0, rng.normal(45.0, 1.5, n) % 360, rng.uniform(0, 360, n))
    dec = np.clip(np.where(ids % 2 == 0, rng.normal(0.0, 1.5, n), rng.uniform(-90, 90, n)), -90, 90)
    table = pa.table({"objectId": ids, "ra": ra, "decl": dec, "flux": rng.uniform(0, 1, n)})
    if path.suffix == ".parquet":
        pq.write_table(table, path)
    else:
        with open(path, "w") as f:
            f.write("objectId,ra,decl,flux\n")
            for i, r, d, x in zip(ids, ra, dec, table.column("flux").to_numpy(), strict=True):
                f.write(f"{i},{float(r)!r},{float(d)!r},{float(x)!r}\n")
    return table


def stats(cluster: IngestCluster, db: str, table: str) -> Counter[int]:
    """Committed rows per chunk of ``table``, summed over all workers (replicas counted)."""
    out: Counter[int] = Counter()
    for c in cluster.clients:
        for s in c.chunk_stats(db):
            if s.table == table:
                out[s.chunk_id] += s.rows
    return out


def load(cluster: IngestCluster, db: str, table: str, *args: str | Path) -> int:
    argv = ["--url", cluster.url, "--database", db, "--table", table, "--no-progress", *map(str, args)]
    return main(argv)


def director(cluster: IngestCluster, db: str, *files: Path) -> int:
    return load(
        cluster, db, "Object", "--director", "--id", "objectId", "--lon", "ra", "--lat", "decl", *files
    )


def test_director_child_regular(
    cluster: IngestCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = "Sky1"
    objects = write_objects(tmp_path / "object.csv", 20_000)
    assert director(cluster, db, tmp_path / "object.csv") == 0

    # every chunk on 2 workers; per-chunk counts match the metadata store
    chunks = chunk_ids(objects.column("ra").to_numpy(), objects.column("decl").to_numpy(), 5)
    expected = Counter(int(c) for c in chunks)
    assert stats(cluster, db, "Object") == Counter({c: 2 * n for c, n in expected.items()})
    assert {r.chunk_id: r.rows for r in cluster.store.chunk_rows(db, "Object")} == dict(expected)
    assert sum(stats(cluster, db, "Object__overlap").values()) > 0
    replicas = [r for r in cluster.store.replicas() if r.chunk_id in expected]
    assert Counter(r.chunk_id for r in replicas) == Counter(dict.fromkeys(expected, 2))
    assert cluster.index.count(db, "Object") == 20_000
    assert cluster.index.chunks_for_keys(db, "Object", [0, 1]) == {int(chunks[0]), int(chunks[1])}

    # child rows land in their director row's chunk
    rng = np.random.default_rng(2)
    parents = rng.integers(0, 20_000, 30_000)
    source = pa.table({"sourceId": np.arange(30_000), "objectId": parents, "flux": rng.uniform(size=30_000)})
    pq.write_table(source, tmp_path / "source.parquet")
    assert (
        load(cluster, db, "Source", "--child-of", "Object", "--key", "objectId", tmp_path / "source.parquet")
        == 0
    )
    child_expected = Counter(int(chunks[p]) for p in parents)
    assert {r.chunk_id: r.rows for r in cluster.store.chunk_rows(db, "Source")} == dict(child_expected)
    assert stats(cluster, db, "Source") == Counter({c: 2 * n for c, n in child_expected.items()})
    # ... and on the same workers as the director chunk (a family chunk stays together)
    for c in cluster.clients:
        held = {s.chunk_id for s in c.chunk_stats(db) if s.table == "Object"}
        assert {s.chunk_id for s in c.chunk_stats(db) if s.table == "Source"} <= held

    # regular: whole table on every worker
    (tmp_path / "filter.tsv").write_text("filterId\tname\n" + "".join(f"{i}\tf{i}\n" for i in range(6)))
    assert load(cluster, db, "Filter", "--regular", tmp_path / "filter.tsv") == 0
    for c in cluster.clients:
        assert sum(s.rows for s in c.chunk_stats(db) if s.table == "Filter") == 6

    # a second run of a completed load is a no-op
    capsys.readouterr()
    assert director(cluster, db, tmp_path / "object.csv") == 0
    assert "already loaded" in capsys.readouterr().err
    assert stats(cluster, db, "Object") == Counter({c: 2 * n for c, n in expected.items()})


def test_bad_rows_load_nothing(
    cluster: IngestCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = "Sky2"
    write_objects(tmp_path / "good.csv", 5_000)
    lines = (tmp_path / "good.csv").read_text().splitlines()
    lines[4000] = "3999,10.0,95.5,0.1"  # line 4001: latitude out of range
    (tmp_path / "bad.csv").write_text("\n".join(lines) + "\n")
    assert director(cluster, db, tmp_path / "good.csv", tmp_path / "bad.csv") == 1
    err = capsys.readouterr().err
    assert "bad.csv line 4001, column decl: 95.5 is not a valid latitude" in err
    assert not stats(cluster, db, "Object")
    assert cluster.index.count(db, "Object") == 0
    states = {t.state for t in cluster.store.transactions(db)}
    assert states == {TransactionState.ABORTED}

    # duplicate keys across files: refused at commit, nothing visible
    write_objects(tmp_path / "dup.csv", 10, start=4990)
    assert director(cluster, db, tmp_path / "good.csv", tmp_path / "dup.csv") == 1
    assert "duplicate director key" in capsys.readouterr().err
    assert not stats(cluster, db, "Object")

    # a child row whose director row does not exist
    assert director(cluster, db, tmp_path / "good.csv") == 0
    (tmp_path / "orphan.csv").write_text("sourceId,objectId\n1,10\n2,999999\n")
    assert (
        load(cluster, db, "Source", "--child-of", "Object", "--key", "objectId", tmp_path / "orphan.csv") == 1
    )
    assert "orphan.csv line 3, column objectId: no Object row has key 999999" in capsys.readouterr().err
    assert not stats(cluster, db, "Source")


def test_killed_loader_leaves_nothing_and_rerun_loads_once(cluster: IngestCluster, tmp_path: Path) -> None:
    db = "Sky3"
    objects = write_objects(tmp_path / "object.parquet", 40_000)
    argv = [sys.executable, "-m", "loader.cli", "--url", cluster.url, "--database", db, "--table", "Object",
            "--director", "--id", "objectId", "--lon", "ra", "--lat", "decl", "--no-progress",
            "--batch-rows", "4000", str(tmp_path / "object.parquet")]  # fmt: skip
    env = {**os.environ, "QSERV_LOADER_BATCH_DELAY": "0.5"}
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            started = [t for t in cluster.store.transactions(db) if t.state is TransactionState.STARTED]
            if started:
                break
            time.sleep(0.05)
        assert started, "the loader never began its transaction"
        time.sleep(1.5)  # a few batches staged on workers and in the director index
        assert proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()  # type: ignore[union-attr]
    assert not stats(cluster, db, "Object")
    assert cluster.index.count(db, "Object") == 0
    assert cluster.store.chunk_rows(db, "Object") == []

    assert director(cluster, db, tmp_path / "object.parquet") == 0
    chunks = chunk_ids(objects.column("ra").to_numpy(), objects.column("decl").to_numpy(), 5)
    expected = Counter(int(c) for c in chunks)
    assert stats(cluster, db, "Object") == Counter({c: 2 * n for c, n in expected.items()})
    assert cluster.index.count(db, "Object") == 40_000
    states = Counter(t.state for t in cluster.store.transactions(db))
    assert states == Counter({TransactionState.ABORTED: 1, TransactionState.COMMITTED: 1})


def test_http_errors_and_resume(cluster: IngestCluster) -> None:
    from czar.http.ingest import resume_transactions
    from loader.transaction import CzarClient
    from qserv.errors import InvalidParameter, UndefinedTable

    czar = CzarClient(cluster.url)
    with pytest.raises(UndefinedTable, match="no endpoint"):
        czar._json("GET", "/nothing")
    with pytest.raises(UndefinedTable, match="does not exist"):
        czar.begin("Sky1", "NoSuchTable", "fp")
    with pytest.raises(InvalidParameter, match="transaction 999999 does not exist"):
        czar.abort(999999)

    # a commit interrupted after COMMITTING is finished when the czar starts again
    czar.create_database("Sky4")
    (Path(cluster.root) / "f.csv").write_text("filterId,name\n1,u\n")
    assert load(cluster, "Sky4", "Filter", "--regular", cluster.root / "f.csv") == 0
    t = cluster.store.begin_transaction("Sky4", "Filter", "manual")
    cluster.store.set_transaction_state(t.transaction_id, TransactionState.COMMITTING)
    assert resume_transactions(cluster.store, cluster.index) == [t.transaction_id]
    assert cluster.store.transaction(t.transaction_id).state is TransactionState.COMMITTED  # type: ignore[union-attr]
