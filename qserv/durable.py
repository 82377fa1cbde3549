"""Durable, all-or-nothing writes: staged ingest data must survive a crash before a commit may
count on it, and a publish must be whole or absent."""

from __future__ import annotations

import ctypes
import functools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb


def fsync_path(path: Path) -> None:
    """fsync a file, or a directory (so a rename or a new entry in it is durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_SYNC_FILE_RANGE_WRITE = 2


@functools.cache
def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """libc's sync_file_range, looked up once, on first use (None where there is none)."""
    try:
        fn = ctypes.CDLL(None).sync_file_range  # the process's own symbols include libc's
    except (OSError, AttributeError):  # not Linux
        return None
    fn.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    fn.restype = ctypes.c_int
    return fn  # type: ignore[no-any-return]


def start_writeback(fd: int, offset: int, nbytes: int) -> None:
    """Ask the kernel to start writing a file's byte range to disk, without waiting.

    A file written in one go and fsynced at the end otherwise reaches the disk all at once,
    while the writer waits; started early, the writes overlap the work that produces the
    rest and the final fsync finds little left to do. Best effort (no-op where unsupported).
    """
    fn = _sync_file_range()
    if fn is not None and nbytes > 0:
        fn(fd, offset, nbytes, _SYNC_FILE_RANGE_WRITE)


@contextmanager
def transaction(cur: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """BEGIN on ``cur``; COMMIT when the block finishes, ROLLBACK (and re-raise) if it fails."""
    cur.execute("BEGIN TRANSACTION")
    try:
        yield
        cur.execute("COMMIT")
    except BaseException:
        cur.execute("ROLLBACK")
        raise
