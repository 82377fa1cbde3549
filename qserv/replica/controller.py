"""The replication controller loop (``qserv replicad``): observe, decide, act.

This first version watches worker health and records it in the metadata store, so the czar
stops planning on dead workers; a worker coming back is brought up to date first
(:mod:`qserv.replica.rejoin`); re-replication and rebalance plug in as further decisions.
"""

from __future__ import annotations

import logging
import signal
import threading

from qserv.config import Config
from qserv.errors import QservError
from qserv.log import event
from qserv.metadata import WorkerState, open_store
from qserv.replica.health import HealthState, observe
from qserv.replica.rejoin import rejoin
from qserv.rpc.client import WorkerClient

log = logging.getLogger(__name__)


def run(config: Config, stop: threading.Event | None = None) -> None:
    """Probe every worker each ``health_interval`` seconds until ``stop`` (or a signal)."""
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    store = open_store(config.metadata_url())
    clients: dict[str, WorkerClient] = {}
    states: dict[str, HealthState] = {}
    event(log, "replication controller ready", metadata=config.metadata_url())
    try:
        while not stop.is_set():
            workers = store.workers()
            for w in workers:
                states.setdefault(w.name, HealthState(w.state))
            probes: dict[str, bool] = {}
            for w in workers:
                client = clients.get(w.address)
                if client is None:
                    client = clients[w.address] = WorkerClient(w.address)
                try:
                    client.health(timeout=2.0)
                    probes[w.name] = True
                except Exception:  # any failure to answer is a failed probe
                    probes[w.name] = False
            states, actions = observe(states, probes)
            by_name = {w.name: clients[w.address] for w in workers}
            for action in actions:
                if action.state is WorkerState.ACTIVE:
                    try:
                        rejoin(store, action.worker, by_name[action.worker])
                    except QservError as exc:  # not up to date: it stays down, tried again next round
                        event(log, "worker not rejoined yet", worker=action.worker, error=exc.message)
                        states[action.worker] = HealthState(WorkerState.DOWN)
                        continue
                store.set_worker_state(action.worker, action.state)
                event(
                    log,
                    "worker state changed",
                    logging.WARNING if action.state is WorkerState.DOWN else logging.INFO,
                    worker=action.worker,
                    state=action.state.value,
                )
            stop.wait(config.replication.health_interval)
    finally:
        store.close()
        event(log, "replication controller stopped")
