"""Ports for test servers that must be told their port before they start (a cluster's processes).

Two rules make a port found free stay free until its server binds it:

* below the kernel's ephemeral range (``/proc/sys/net/ipv4/ip_local_port_range``, 32768-60999 by
  default), where every outgoing connection takes a local port: a port probed free up there can
  be taken by any client a moment later. Ports are picked in 10000-32000 (capped below the
  ephemeral range if it starts lower);
* never shared between test processes on one machine: each process claims blocks of
  ``BLOCK`` ports by an ``fcntl.flock`` on a lock file per block (in the temp directory), held
  until the process exits (the kernel releases it even on SIGKILL), and hands out the ports of
  its blocks one after another, never twice. A port some other program uses is skipped.

Servers that can bind port 0 and report what they got (workers, the pgwire test server, the
HTTP API in unit tests) need none of this.
"""

from __future__ import annotations

import fcntl
import functools
import os
import socket
import tempfile
from pathlib import Path

LOW = 10_000
HIGH = 32_000
BLOCK = 64
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def ephemeral_low(default: int = 32_768) -> int:
    """The first port of the kernel's ephemeral range (Linux; ``default`` elsewhere)."""
    try:
        return int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return default


def is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether ``host:port`` can be bound now (a port in TIME_WAIT counts as taken)."""
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


class PortAllocator:
    """Hands out ports in ``[low, high)`` that no other process using the same ``lock_dir`` gets."""

    def __init__(
        self,
        low: int = LOW,
        high: int | None = None,
        block: int = BLOCK,
        lock_dir: Path | None = None,
    ) -> None:
        self.low = low
        self.high = min(HIGH, ephemeral_low()) if high is None else high
        self.block = block
        self.lock_dir = lock_dir or Path(tempfile.gettempdir()) / "qserv-test-ports"
        self._held: list[int] = []  # open lock files, one per claimed block
        self._next = 0  # next port to hand out in the current block
        self._end = 0  # end of the current block
        self._pid = os.getpid()

    def _claim_block(self) -> None:
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        blocks = (self.high - self.low) // self.block
        if blocks <= 0:
            raise RuntimeError(f"no room for a block of {self.block} ports in {self.low}-{self.high}")
        # start at a block keyed by the pid, so concurrent processes rarely even try the same lock
        first = os.getpid() % blocks
        for i in range(blocks):
            start = self.low + ((first + i) % blocks) * self.block
            fd = os.open(self.lock_dir / f"{start}.lock", os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            self._held.append(fd)
            self._next, self._end = start, start + self.block
            return
        raise RuntimeError(f"every block of ports in {self.low}-{self.high} is held by another test process")

    def take(self, count: int = 1) -> list[int]:
        """``count`` consecutive free ports (a cluster's workers listen on consecutive ports)."""
        if not 0 < count <= self.block:
            raise ValueError(f"between 1 and {self.block} ports at a time, not {count}")
        if os.getpid() != self._pid:
            # a forked child shares its parent's locks: it must not hand out the parent's ports
            self.close()
            self._pid = os.getpid()
        while True:
            if self._end - self._next < count:
                self._claim_block()
            ports = list(range(self._next, self._next + count))
            taken = [p for p in ports if not is_free(p)]
            if not taken:
                self._next += count
                return ports
            self._next = taken[-1] + 1  # used by some other program: skip past it

    def close(self) -> None:
        """Release the claimed blocks (the process's exit does the same)."""
        for fd in self._held:
            os.close(fd)
        self._held.clear()
        self._next = self._end = 0


@functools.cache
def _process_allocator() -> PortAllocator:
    # one per test process: its blocks stay claimed for the process's lifetime
    return PortAllocator()


def free_ports(count: int) -> list[int]:
    """``count`` consecutive ports below the ephemeral range, free and given to no other test."""
    return _process_allocator().take(count)
