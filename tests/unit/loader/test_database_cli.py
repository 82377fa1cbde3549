"""`qserv database create|list` through the real CLI against the czar's HTTP API."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

from loader_cluster import IngestCluster
from test_loader_cluster import director, write_objects

from qserv.catalog import Partitioning
from qserv.sphere.healpix import chunk_ids

REPO = Path(__file__).resolve().parents[3]


def qserv(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qserv.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )


def test_help_names_the_options() -> None:
    out = qserv("database", "create", "--help")
    assert out.returncode == 0
    for option in ("--chunk-order", "--subchunk-order", "--overlap", "--url"):
        assert option in out.stdout
    assert "create" in qserv("database", "--help").stdout
    assert "database" in qserv("--help").stdout


def test_create_then_list_then_load_uses_the_partitioning(cluster: IngestCluster, tmp_path: Path) -> None:
    url = ["--url", cluster.url]
    made = qserv("database", "create", "Deep", "--chunk-order", "4", "--subchunk-order", "9",
                 "--overlap", "0.02", *url)  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "database Deep created" in made.stdout and "chunk order 4" in made.stdout
    again = qserv("database", "create", "deep", "--chunk-order", "4", "--subchunk-order", "9",
                  "--overlap", "0.02", *url)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "database Deep exists" in again.stdout
    db = cluster.store.catalog().database("Deep")
    assert db is not None and db.partitioning == Partitioning(4, 9, 0.02)

    other = qserv("database", "create", "Deep", "--chunk-order", "5", *url)
    assert other.returncode == 1
    assert "qserv database: error: database 'Deep' already exists with partitioning" in other.stderr
    assert "Traceback" not in other.stderr

    listed = json.loads(qserv("database", "list", "--json", *url).stdout)
    mine = [d for d in listed if d["name"] == "Deep"]
    assert mine == [{"name": "Deep", "chunk_order": 4, "subchunk_order": 9, "overlap": 0.02,
                     "family": Partitioning(4, 9, 0.02).family}]  # fmt: skip
    table = qserv("database", "list", *url)
    assert table.returncode == 0
    lines = table.stdout.splitlines()
    assert lines[0].split()[:2] == ["DATABASE", "CHUNK"]
    assert any(line.split()[:4] == ["Deep", "4", "9", "0.020000"] for line in lines[1:])

    # a load into the database partitions at its chunk order
    objects = write_objects(tmp_path / "o.parquet", 2_000, seed=5)
    assert director(cluster, "Deep", tmp_path / "o.parquet") == 0
    want = Counter(int(c) for c in chunk_ids(objects["ra"].to_numpy(), objects["decl"].to_numpy(), 4))
    got = {r.chunk_id: r.rows for r in cluster.store.chunk_rows("Deep", "Object")}
    assert got == dict(want)


def test_bad_partitioning_is_refused_with_a_reason(cluster: IngestCluster) -> None:
    url = ["--url", cluster.url]
    cases = {
        ("--chunk-order", "8", "--subchunk-order", "8"): "need 0 <= chunk order < sub-chunk order <= 13",
        ("--subchunk-order", "14"): "need 0 <= chunk order < sub-chunk order <= 13",
        ("--overlap", "5"): "is not narrower than the narrowest chunk",
        ("--overlap", "-1"): "must be a positive number of degrees",
    }
    for i, (args, reason) in enumerate(cases.items()):
        out = qserv("database", "create", f"Bad{i}", *args, *url)
        assert out.returncode == 1, (args, out.stdout)
        assert reason in out.stderr, (args, out.stderr)
        assert f"Bad{i}" in out.stderr
    names = {d["name"] for d in json.loads(qserv("database", "list", "--json", *url).stdout)}
    assert not {f"Bad{i}" for i in range(len(cases))} & names
