"""The lifeline between a supervisor and its children (qserv/lifeline.py), without a cluster."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import pytest

from qserv.lifeline import Lifeline

CHILD = (
    "import sys, time\n"
    "from qserv.lifeline import follow\n"
    "follow(int(sys.argv[1]), None)\n"
    "print('following', flush=True)\n"
    "time.sleep(600)\n"
)


def test_a_child_stops_when_the_lifeline_is_cut() -> None:
    lifeline = Lifeline()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(lifeline.pass_fds[0])],
        pass_fds=lifeline.pass_fds,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "following\n"
        assert child.poll() is None
        lifeline.close()  # what the kernel does to the write end when the supervisor dies
        assert child.wait(60) == -signal.SIGTERM  # it stopped itself the way `qserv up` stops it
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only")
def test_parent_death_signal_only_from_the_main_thread() -> None:
    # PDEATHSIG fires when the spawning *thread* exits: a child spawned from another thread
    # must rely on the pipe alone, or it would die with that thread
    lifeline = Lifeline()
    try:
        assert "--supervisor-pid" in lifeline.child_args()
        from_thread: list[str] = []
        t = threading.Thread(target=lambda: from_thread.extend(lifeline.child_args()))
        t.start()
        t.join()
        assert from_thread[:1] == ["--lifeline"] and "--supervisor-pid" not in from_thread
    finally:
        lifeline.close()


def test_the_write_end_is_not_inherited() -> None:
    lifeline = Lifeline()
    try:
        # no child can hold the pipe open after the supervisor dies, even one started without
        # closing descriptors (close_fds=False: every inheritable descriptor goes along)
        write_end = lifeline._write
        assert not os.get_inheritable(write_end)
        code = "import os, sys; os.fstat(int(sys.argv[1]))"
        got = subprocess.run(
            [sys.executable, "-c", code, str(write_end)], close_fds=False, capture_output=True
        )
        assert got.returncode != 0
    finally:
        lifeline.close()
