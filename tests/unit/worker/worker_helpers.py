"""Helpers of the worker tests (a module of its own: conftest is not importable by name)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from qserv.catalog import Column
from qserv.config import WorkerConfig
from qserv.rpc.client import WorkerClient

OBJECT_COLUMNS = (Column("objectId", "BIGINT"), Column("ra", "DOUBLE"), Column("decl", "DOUBLE"))
SOURCE_COLUMNS = (Column("sourceId", "BIGINT"), Column("objectId", "BIGINT"), Column("flux", "DOUBLE"))
FILTER_COLUMNS = (Column("filterId", "INTEGER"), Column("name", "VARCHAR"))


def worker_config(data_dir: Path) -> WorkerConfig:
    return WorkerConfig(
        name="test-worker", host="127.0.0.1", port=0, data_dir=data_dir, threads=1, memory_limit="256MB"
    )


def objects(n: int, chunks: int = 10, start: int = 0) -> pa.Table:
    """Director rows: ids start..start+n, spread over ``chunks`` chunks."""
    ids = np.arange(start, start + n, dtype=np.int64)
    return pa.table(
        {
            "objectId": ids,
            "ra": (ids % 360).astype(np.float64),
            "decl": ((ids % 180) - 90).astype(np.float64),
            "_chunk": (ids % chunks).astype(np.int32),
            "_subchunk": ids * 10,
        }
    )


def collect(client: WorkerClient, sql: str, chunk_ids: list[int] | None = None, **kw: Any) -> pa.Table:
    """Run ``execute`` to completion on a private event loop; all batches as one table."""

    async def run() -> list[pa.RecordBatch]:
        out = [b async for b in client.execute("test", sql, chunk_ids or [], **kw)]
        await client.aclose()
        return out

    return pa.Table.from_batches(asyncio.run(run()))
