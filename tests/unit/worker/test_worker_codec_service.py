"""Arrow IPC codec, and the worker as a process: ready line, SIGTERM, clean stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa

from qserv.rpc import codec


def test_ipc_round_trip_and_empty_schema() -> None:
    table = pa.table({"a": [1, 2, 3], "b": ["x", None, "z"]})
    assert codec.decode_ipc(codec.encode_ipc(table, table.schema)).equals(table)
    batches = table.to_batches()
    assert codec.decode_ipc(codec.encode_ipc(iter(batches), table.schema)).equals(table)
    empty = codec.decode_ipc(codec.encode_ipc([], table.schema))
    assert empty.num_rows == 0 and empty.schema == table.schema
    assert codec.empty_batch(table.schema).schema == table.schema


def test_split_batches_bounds_rows_and_bytes() -> None:
    table = pa.table({"a": pa.array(range(100_000), type=pa.int64())})
    parts = codec.split_batches(table, max_rows=30_000, max_bytes=80_000)
    assert sum(p.num_rows for p in parts) == 100_000
    assert max(p.num_rows for p in parts) <= 10_000  # 8 bytes a row: bytes bound first


def test_serve_until_sigterm(tmp_path: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from qserv import log; log.setup('worker');"
        "from qserv.config import WorkerConfig; from worker.service import serve;"
        "serve(WorkerConfig(name='w-proc', port=0, threads=1, memory_limit='128MB', data_dir=Path(sys.argv[1])))"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path / "w")], stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 30
        line = ""
        while "worker ready" not in line and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                break
        assert "worker ready" in line and "worker=w-proc" in line, line
        proc.send_signal(signal.SIGTERM)
        rest = proc.stderr.read()
        assert proc.wait(timeout=30) == 0
        assert "worker stopped" in rest
        assert (tmp_path / "w" / "worker.duckdb").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
