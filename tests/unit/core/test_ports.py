"""The test port picker: ports below the ephemeral range, never the same for two processes."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.ports import BLOCK, PortAllocator, ephemeral_low, free_ports, is_free


def test_ports_are_below_the_ephemeral_range() -> None:
    ports = free_ports(5) + free_ports(1) + free_ports(BLOCK)
    assert all(10_000 <= p < 32_768 and p < ephemeral_low() for p in ports), ports
    assert len(set(ports)) == len(ports)  # never handed out twice
    # consecutive, as a cluster's workers need
    assert ports[:5] == list(range(ports[0], ports[0] + 5))


def test_a_port_in_use_is_skipped(tmp_path: Path) -> None:
    allocator = PortAllocator(lock_dir=tmp_path)
    try:
        first = allocator.take(1)[0]
        with socket.socket() as busy:
            try:
                busy.bind(("127.0.0.1", first + 1))
                busy.listen()
            except OSError:
                pass  # another program on this machine holds it already: just as busy
            assert not is_free(first + 1)
            got = allocator.take(2)
        assert first + 1 not in got and got == [got[0], got[0] + 1]
    finally:
        allocator.close()


def test_concurrent_processes_never_share_a_port(tmp_path: Path) -> None:
    # several processes take ports at once from the same lock directory: no port twice
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).resolve().parents[3])!r})
        from pathlib import Path
        from tests.ports import PortAllocator
        a = PortAllocator(lock_dir=Path({str(tmp_path)!r}))
        ports = a.take(3) + a.take(10) + a.take(1)
        print(" ".join(map(str, ports)), flush=True)
        sys.stdin.read()  # hold the blocks until the test has read every process's ports
        """
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        for _ in range(6)
    ]
    try:
        taken = [list(map(int, p.stdout.readline().split())) for p in procs]  # type: ignore[union-attr]
    finally:
        for p in procs:
            p.communicate("", timeout=30)
    flat = [port for ports in taken for port in ports]
    assert all(len(ports) == 14 for ports in taken), taken
    assert len(set(flat)) == len(flat), taken
    assert all(p < 32_768 for p in flat)


def test_blocks_run_out_with_a_clear_error(tmp_path: Path) -> None:
    one = PortAllocator(low=20_000, high=20_000 + BLOCK, lock_dir=tmp_path)
    two = PortAllocator(low=20_000, high=20_000 + BLOCK, lock_dir=tmp_path)
    try:
        one.take(1)
        with pytest.raises(RuntimeError, match="held by another test process"):
            two.take(1)
    finally:
        one.close()
        two.close()
