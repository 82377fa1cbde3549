"""Children die with their supervisor: a liveness pipe they watch, plus PR_SET_PDEATHSIG on Linux.

``qserv up`` runs each service as a child process in a session of its own (so a Ctrl-C in the
terminal reaches only the supervisor, which then stops the services in order). Without a link
to the supervisor, a SIGKILLed ``qserv up`` would leave them all running. Two mechanisms link
them, and either alone stops a child:

* **The lifeline pipe (portable, the primary mechanism).** The supervisor makes one pipe and
  keeps its write end, which no process ever writes and which is inherited by nobody (Python
  makes descriptors non-inheritable, and each child gets only the read end, by ``pass_fds``).
  A child's daemon thread blocks reading the read end: the read returns end-of-file exactly
  when every write end is closed, which the kernel does when the supervisor dies, however it
  dies (SIGKILL, crash, OOM killer). The child then sends itself SIGTERM, so the service stops
  as it does under ``qserv up``'s own stop (the worker checkpoints DuckDB), and exits hard if
  that clean stop has not finished after ``HARD_EXIT_SECONDS``. It does not depend on which
  thread of the supervisor started the child.
* **PR_SET_PDEATHSIG (Linux).** The kernel sends the child SIGTERM when its parent dies, even
  if the child's Python threads are all busy. The signal fires when the parent *thread* that
  forked the child exits, not the process: so the supervisor asks for it only when it spawns
  from its main thread (whose exit is the process's exit), and a child started from another
  thread relies on the pipe alone. The child sets it itself at startup, then checks that its
  parent is still the supervisor (if the supervisor died before that, no signal would come).

A fork of the supervisor that does not exec (``multiprocessing`` with the fork method) would
hold the write end too, and the children would outlive the supervisor until that fork exits.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field

from qserv.log import event

log = logging.getLogger(__name__)

HARD_EXIT_SECONDS = 60.0
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


@dataclass
class Lifeline:
    """The supervisor's side: one pipe for all its children (:meth:`child_args`, :attr:`pass_fds`)."""

    _read: int = field(init=False)
    _write: int = field(init=False)

    def __post_init__(self) -> None:
        self._read, self._write = os.pipe()  # both non-inheritable (PEP 446)

    @property
    def pass_fds(self) -> tuple[int, ...]:
        """Descriptors a child must inherit (``subprocess.Popen(pass_fds=...)``)."""
        return (self._read,)

    def child_args(self) -> list[str]:
        """Options of ``qserv czar|worker|replicad`` that make the child follow this supervisor."""
        args = ["--lifeline", str(self._read)]
        if sys.platform.startswith("linux") and threading.current_thread() is threading.main_thread():
            # PDEATHSIG follows the spawning thread: only the main thread lives as long as we do
            args += ["--supervisor-pid", str(os.getpid())]
        return args

    def close(self) -> None:
        """Cut the lifeline: every child still following it stops (as if the supervisor died)."""
        for fd in (self._read, self._write):
            try:
                os.close(fd)
            except OSError:
                pass


def _set_parent_death_signal(sig: int) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _stop_self(reason: str) -> None:
    event(log, "supervisor gone; stopping", logging.WARNING, reason=reason, pid=os.getpid())
    os.kill(os.getpid(), signal.SIGTERM)  # the service's own clean stop
    time.sleep(HARD_EXIT_SECONDS)
    event(log, "clean stop did not finish; exiting", logging.ERROR, seconds=HARD_EXIT_SECONDS)
    os._exit(70)


def _watch(fd: int) -> None:
    while True:
        try:
            data = os.read(fd, 1)
        except InterruptedError:  # pragma: no cover - PEP 475 retries; kept for clarity
            continue
        except OSError as exc:
            _stop_self(f"lifeline unreadable: {exc}")
            return
        if not data:  # end of file: every write end is closed
            _stop_self("lifeline closed")
            return


def follow(lifeline_fd: int | None, supervisor_pid: int | None) -> None:
    """The child's side: stop this process when its supervisor dies (call once at startup)."""
    if supervisor_pid is not None and _set_parent_death_signal(signal.SIGTERM):
        if os.getppid() != supervisor_pid:
            # the supervisor died before the signal was armed: nothing else would tell us
            _stop_self(f"supervisor {supervisor_pid} already gone")
    if lifeline_fd is not None:
        threading.Thread(target=_watch, args=(lifeline_fd,), name="lifeline", daemon=True).start()
