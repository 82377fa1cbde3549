"""The replication admin API's core (``/api/v1/replica/...``, ``qserv replica ...``).

Reads come straight from the metadata store and the controller's last report
(:mod:`qserv.replica.status`); changes go to the store, where the replication controller picks
them up at its next round (:mod:`qserv.replica.settings`): the czar never copies or drops a
replica itself, so there is one decision maker. Requests (replicate, rebalance, purge, verify)
return at once with a request number; the admin tool then follows the status until its work
is done.
"""

from __future__ import annotations

import time
from typing import Any

from czar.http.workers import WorkerClients
from qserv.errors import InvalidParameter, QservError, UndefinedObject, WorkerUnavailable
from qserv.metadata import MetadataStore, WorkerInfo, WorkerState
from qserv.replica import settings
from qserv.replica.policy import ReplicaStatus
from qserv.replica.status import Observed, chunk_rows, cluster_status, standings

HEALTH_TIMEOUT_S = 5.0
STANDINGS = ("ok", "under", "over", "lost")


def parse_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` of a worker's gRPC server."""
    host, sep, port = address.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidParameter(
            f"bad worker address {address[:100]!r}", hint="give HOST:PORT, e.g. 10.0.0.7:5040"
        )
    return host.strip("[]"), int(port)


class ReplicaAdmin:
    """Each public method serves one endpoint of the replication admin API."""

    def __init__(self, store: MetadataStore, default_level: int, clients: WorkerClients) -> None:
        self.store = store
        self.default_level = default_level
        self.clients = clients

    def _observe(self) -> Observed:
        catalog = self.store.catalog()
        with_rows: dict[str, set[int]] = {}
        for db in catalog.databases:
            chunks = with_rows.setdefault(db.partitioning.family, set())
            chunks.update(r.chunk_id for r in self.store.chunk_rows(db.name) if r.rows > 0)
        return Observed(
            level=self.level(),
            workers=self.store.workers(),
            replicas=self.store.replicas(),
            checks=self.store.replica_checks(),
            chunks_with_rows=with_rows,
            controller=settings.controller_status(self.store),
            now=time.time(),
        )

    def status(self) -> dict[str, Any]:
        doc = cluster_status(self._observe())
        doc["verify_request"] = settings.requests(self.store)[1]
        doc["verify_done"] = settings.verified(self.store)
        return doc

    def workers(self) -> list[dict[str, Any]]:
        return list(cluster_status(self._observe())["workers"])

    def chunks(self, family: str | None, standing: str | None) -> list[dict[str, Any]]:
        if standing is not None and standing not in STANDINGS:
            raise InvalidParameter(
                f"unknown standing {standing[:40]!r}", hint="one of " + ", ".join(STANDINGS)
            )
        return chunk_rows(self._observe(), family, standing)

    def level(self) -> int:
        return settings.replication_level(self.store, self.default_level)

    def set_level(self, level: object) -> dict[str, Any]:
        if isinstance(level, bool) or not isinstance(level, int):
            raise InvalidParameter(f"replication level must be an integer, not {str(level)[:40]!r}")
        settings.set_replication_level(self.store, level)
        return {"replication_level": level, "request": self.store.bump_setting(settings.WAKE)}

    def request(self, action: str) -> dict[str, Any]:
        """replicate, rebalance, purge: a round now; verify: every replica checked."""
        key = settings.VERIFY if action == "verify" else settings.WAKE
        return {"action": action, "request": self.store.bump_setting(key)}

    def _worker(self, name: str) -> WorkerInfo:
        for w in self.store.workers():
            if w.name == name:
                return w
        raise UndefinedObject(f'worker "{name[:100]}" is not registered', hint="see qserv replica workers")

    def evict(self, name: str, force: bool) -> dict[str, Any]:
        """Take a worker out (DISABLED): queries stop using it, its chunks are copied elsewhere."""
        worker = self._worker(name)
        if not force and worker.state.serves:
            _, chunks = standings(self._observe())
            last = [
                c
                for c in chunks
                if c.good == 1
                and any(r.worker == name and r.status is ReplicaStatus.GOOD for r in c.replicas)
            ]
            if last:
                raise InvalidParameter(
                    f"worker {name} holds the only good replica of {len(last)} chunks "
                    f"(e.g. chunk {last[0].chunk} of family {last[0].family}): evicting it would lose them",
                    hint="raise the level or wait for replication (qserv replica status), or pass --force",
                )
        self.store.set_worker_state(name, WorkerState.DISABLED)
        self.store.bump_setting(settings.WAKE)
        return {"worker": name, "state": WorkerState.DISABLED.value, "was": worker.state.value}

    def add_worker(self, name: object, address: object) -> dict[str, Any]:
        """Register a worker (or bring an evicted or disabled one back, to be reconciled)."""
        if not isinstance(name, str) or not name or len(name) > 100:
            raise InvalidParameter("a worker needs a name (at most 100 characters)")
        if not isinstance(address, str):
            raise InvalidParameter("a worker needs an address HOST:PORT")
        host, port = parse_address(address)
        info = WorkerInfo(name, host, port)
        try:
            health = self.clients.call(info, lambda c: c.health(timeout=HEALTH_TIMEOUT_S))
        except QservError as e:  # its words are gRPC's: not shown to a client
            raise WorkerUnavailable(
                f"no worker answers at {host}:{port}",
                hint=f"start it first: qserv worker --name {name} --port {port} --data-dir DIR",
            ) from e
        if health.name != name:
            raise InvalidParameter(
                f"the worker at {host}:{port} is named {health.name!r}, not {name!r}",
                hint="use the --name it was started with",
            )
        known = {w.name: w for w in self.store.workers()}
        old = known.get(name)
        self.store.upsert_worker(info)
        if old is None:
            state = WorkerState.ACTIVE
        elif old.state in (WorkerState.DISABLED, WorkerState.EVICTED):
            # it may hold replicas that missed loads while out: the controller reconciles it
            # (drops them where good copies exist) before it serves and takes copies again
            state = WorkerState.EVICTED
        else:
            state = WorkerState.ACTIVE
        self.store.set_worker_state(name, state)
        self.store.bump_setting(settings.WAKE)
        return {"worker": name, "address": f"{host}:{port}", "state": state.value, "new": old is None}
