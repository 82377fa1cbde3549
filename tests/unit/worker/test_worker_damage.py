"""A real worker over a data file damaged on disk: the damage is named, nothing else breaks.

Bytes of one data block are flipped while the worker is stopped (tests/damage.py); started
again, it answers every chunk whose rows lie elsewhere, refuses the damaged ones with
XX001 (no DuckDB text, no file path), reports them unreadable to a chunk checksum, and a chunk
installed over the damaged rows (the controller's repair) reads back whole. A file whose
headers are damaged stops the worker at start with a message that says what to do.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from worker_helpers import OBJECT_COLUMNS, collect, objects, worker_config

from qserv.catalog import TableKind
from qserv.errors import DataCorrupted
from qserv.rpc.client import WorkerClient
from tests.damage import damage_column
from worker.lockdown import DATABASE_FILE
from worker.service import start

CHUNKS = 40
ROWS = 400_000  # ~3 row groups; each column spans several blocks


def _loaded(data_dir: Path) -> None:
    w = start(worker_config(data_dir))
    with WorkerClient(w.address) as c:
        c.create_table("Sky", "Object", TableKind.DIRECTOR, OBJECT_COLUMNS)
        rows = objects(ROWS, chunks=CHUNKS).sort_by("_chunk")  # chunk by chunk, as a load writes
        c.ingest([(1, "Sky", "Object", False, rows)])
        c.commit(1)
    w.stop()


def _sum(client: WorkerClient, chunk: int) -> float:
    t = collect(client, f'SELECT sum(ra) AS s FROM "Sky"."Object" WHERE _chunk = {chunk}', [chunk])
    return t.column("s")[0].as_py()


def test_a_damaged_block_fails_only_its_chunks_with_xx001_and_a_reinstall_repairs_them(
    tmp_path: Path,
) -> None:
    _loaded(tmp_path)
    expected = objects(ROWS, chunks=CHUNKS).group_by("_chunk").aggregate([("ra", "sum")])
    want = dict(
        zip(expected.column("_chunk").to_pylist(), expected.column("ra_sum").to_pylist(), strict=True)
    )
    suspects = damage_column(tmp_path / DATABASE_FILE, "Sky", "Object", "ra", nth=1)
    w = start(worker_config(tmp_path))
    try:
        with WorkerClient(w.address) as c:
            damaged = []
            for chunk in range(CHUNKS):
                try:
                    assert _sum(c, chunk) == pytest.approx(want[chunk])
                except DataCorrupted as exc:
                    assert exc.sqlstate == "XX001"
                    assert "damaged" in exc.message and str(tmp_path) not in exc.message
                    damaged.append(chunk)
            assert damaged and set(damaged) <= suspects  # only chunks with rows in the block
            with pytest.raises(DataCorrupted):
                c.chunk_checksums(["Sky"], damaged)
            # one at a time, as the verifier asks after a batch failed: the others are readable
            for chunk in range(CHUNKS):
                if chunk not in damaged:
                    assert c.chunk_checksums(["Sky"], [chunk])[0].rows == ROWS // CHUNKS
            # the repair: the chunk's rows deleted and installed again from a good copy
            source = start(worker_config(tmp_path / "source"))
            try:
                with WorkerClient(source.address) as s:
                    s.create_table("Sky", "Object", TableKind.DIRECTOR, OBJECT_COLUMNS)
                    s.ingest([(1, "Sky", "Object", False, objects(ROWS, chunks=CHUNKS))])
                    s.commit(1)
                    c.pull_chunks(source.address, ["Sky"], damaged)
                    assert c.chunk_checksums(["Sky"], damaged) == s.chunk_checksums(["Sky"], damaged)
            finally:
                source.stop()
            for chunk in range(CHUNKS):
                assert _sum(c, chunk) == pytest.approx(want[chunk])
    finally:
        w.stop()
    # the repaired file survives a restart (its checkpoint rewrote the damaged row groups)
    w = start(worker_config(tmp_path))
    try:
        with WorkerClient(w.address) as c:
            assert all(_sum(c, chunk) == pytest.approx(want[chunk]) for chunk in range(CHUNKS))
    finally:
        w.stop()


def test_a_worker_whose_file_headers_are_damaged_stops_with_a_clear_message(tmp_path: Path) -> None:
    _loaded(tmp_path)
    with open(tmp_path / DATABASE_FILE, "r+b") as f:
        f.seek(4096 + 8)
        f.write(b"\xff" * 64)  # the first database header
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "qserv.cli",
            "worker",
            "--name",
            "w9",
            "--port",
            "0",
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "data file" in done.stderr and "damaged" in done.stderr and "move the file aside" in done.stderr
