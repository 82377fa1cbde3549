"""Keep freed memory for reuse in processes that stream gigabytes through short-lived buffers.

A loader or a worker allocates a few-megabyte buffer for every batch it reads, partitions,
sends or receives, and frees it a moment later. By default glibc serves such sizes with
``mmap`` and returns them at ``free``, and Arrow's allocator returns idle pages too, so the next
batch's buffer is fresh memory that the kernel zeroes page by page (with transparent huge
pages, 2 MB at a time): measured on a 10M-row load, a fifth of the loader's CPU time went
to that. Serving them from the heap and not trimming it keeps the pages mapped and reused;
the process's peak memory is unchanged (it is a few batches either way).
"""

from __future__ import annotations

import ctypes

import pyarrow as pa

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_HEAP_LIMIT = 512 << 20  # the largest block served from the heap (glibc caps the setting)


def keep_freed_memory() -> bool:
    """Make this process reuse freed buffers instead of returning them; False if unsupported."""
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own symbols include libc's
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    ok = bool(mallopt(_M_MMAP_THRESHOLD, _HEAP_LIMIT)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    if ok:
        pa.set_memory_pool(pa.system_memory_pool())  # Arrow's buffers from the same heap
    return ok
