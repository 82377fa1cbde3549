"""``qserv up`` through the real CLI: its services die with it, and one data dir serves one cluster.

A SIGKILLed supervisor cannot stop its children itself: they must notice (qserv/lifeline.py)
and go, freeing their ports and the data dir for the next ``qserv up``. A second ``qserv up``
on a data dir that a live cluster holds must refuse to start, and SIGINT/SIGTERM keep
stopping everything cleanly. The waits below are liveness waits (a deadline only bounds a
hang), never timing assertions.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from qserv.cluster import wait_for_port
from tests.cluster import wait_until
from tests.ports import free_ports

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")

WORKERS = 2
STARTUP_SECONDS = 120.0


def _status(pid: int) -> dict[str, str]:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def _alive(pid: int) -> bool:
    # a zombie has exited: only its parent (or an init that does not reap) keeps its entry
    state = _status(pid).get("State", "")
    return bool(state) and not state.startswith(("Z", "X"))


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _status(int(entry.name)).get("PPid", "").strip() == str(pid):
            found.append(int(entry.name))
    return sorted(p for p in found if _alive(p))


def _listening(port: int) -> bool:
    # SO_REUSEADDR: a connection in TIME_WAIT does not count, only a live listener
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


@dataclass
class Up:
    proc: subprocess.Popen[bytes]
    data_dir: Path
    ports: list[int]
    output: Path

    @property
    def pg_port(self) -> int:
        return self.ports[0]

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def query(self, sql: str) -> list[tuple]:
        with psycopg.connect(
            f"host=127.0.0.1 port={self.pg_port} user=qserv dbname=sky", autocommit=True
        ) as c:
            return c.execute(sql).fetchall()


def _start_up(data_dir: Path, ports: list[int], output: Path) -> Up:
    argv = [sys.executable, "-m", "qserv.cli", "up", "--data-dir", str(data_dir), "--workers", str(WORKERS)]
    argv += ["--port", str(ports[0]), "--http-port", str(ports[1]), "--worker-port", str(ports[2])]
    with output.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return Up(proc, data_dir, ports, output)


@contextmanager
def running_up(tmp: Path, name: str = "up") -> Iterator[Up]:
    """``qserv up`` ready (PG port accepts, every service started); killed at the end whatever happened."""
    up = _start_up(tmp / "data", free_ports(WORKERS + 2), tmp / f"{name}.out")
    seen: set[int] = set()

    def every_service_runs() -> bool:
        seen.update(_children(up.proc.pid))
        return len(_children(up.proc.pid)) == WORKERS + 2

    try:
        wait_for_port("127.0.0.1", up.pg_port, STARTUP_SECONDS, up.proc)
        # replicad is started right after the czar answers
        wait_until(every_service_runs, 60, "every service runs")
        yield up
    finally:
        if up.proc.poll() is None:
            seen.update(_children(up.proc.pid))
            up.proc.kill()
            up.proc.wait()
        for pid in seen:  # whatever the test found, no process of ours outlives it
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_sigkill_of_qserv_up_takes_every_service_down(tmp_path: Path) -> None:
    with running_up(tmp_path) as up:
        children = _children(up.proc.pid)
        assert up.query("SELECT 1") == [(1,)]
        up.proc.kill()  # SIGKILL: the supervisor runs no code of its own
        up.proc.wait()
        wait_until(lambda: not any(map(_alive, children)), 120, f"the services {children} exit")
        wait_until(lambda: not any(map(_listening, up.ports)), 60, "their ports are free")
        logs = (up.data_dir / "logs" / "worker-1.log").read_text()
        # a clean stop, begun by whichever came first: the kernel's parent-death SIGTERM or
        # the lifeline's end of file (the other may find the process already stopping)
        assert "supervisor gone; stopping" in logs or "signal=SIGTERM" in logs, logs
        assert "worker stopped" in logs, logs
    # the next `qserv up` on the same data dir and ports starts and serves
    with running_up(tmp_path, "again") as again:
        assert again.query("SELECT 1") == [(1,)]
        again.proc.send_signal(signal.SIGTERM)
        assert again.proc.wait(120) == 0


def test_second_qserv_up_on_a_held_data_dir_refuses(tmp_path: Path) -> None:
    with running_up(tmp_path) as first:
        children = _children(first.proc.pid)
        other_ports = free_ports(WORKERS + 2)
        second = subprocess.run(
            [sys.executable, "-m", "qserv.cli", "up", "--data-dir", str(first.data_dir), "--workers", "2"]
            + ["--port", str(other_ports[0]), "--http-port", str(other_ports[1])]
            + ["--worker-port", str(other_ports[2])],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode != 0
        assert f"data dir {first.data_dir} is in use" in second.stderr, second.stderr
        assert f"supervisor pid {first.proc.pid}" in second.stderr, second.stderr
        assert "Traceback" not in second.stderr + second.stdout
        assert not any(map(_listening, other_ports))  # it started nothing
        # the first keeps serving, with all of its services
        assert first.query("SELECT 1") == [(1,)]
        assert _children(first.proc.pid) == children
        # and SIGINT (Ctrl-C) still stops everything cleanly
        first.proc.send_signal(signal.SIGINT)
        assert first.proc.wait(120) == 0
        assert not any(map(_alive, children))
        logs = first.data_dir / "logs"
        assert "czar stopped" in (logs / "czar.log").read_text()
        assert all("worker stopped" in (logs / f"worker-{i + 1}.log").read_text() for i in range(WORKERS))
    # the data dir is free again
    from qserv.cluster import DataDirLock

    lock = DataDirLock(tmp_path / "data")
    lock.acquire()
    lock.release()
