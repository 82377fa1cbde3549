"""The cluster settings of replication in the metadata store, and the controller's reports.

The admin API (the czar's HTTP port) and the replication controller never talk to each other
directly: both open the metadata store, and these named settings carry what passes between
them. The replication level an operator chose overrides the level the processes were started
with (``--replicas``); a request is a counter the admin API bumps and the controller answers
by setting its ``.done`` twin once carried out; the controller writes its status every round,
which doubles as its heartbeat.
"""

from __future__ import annotations

import json
from typing import Any

from qserv.errors import InvalidParameter
from qserv.metadata import MetadataStore

LEVEL = "replication.level"
WAKE = "replication.request.round"  # replicate, rebalance, purge: decide now
VERIFY = "replication.request.verify"
VERIFIED = "replication.request.verify.done"
STATUS = "replication.controller.status"
DAMAGED = "replication.request.damaged"  # worker -> chunks a query found it could not read
MAX_LEVEL = 16
MAX_DAMAGED_CHUNKS = 20_000  # per worker; past it, every chunk of the worker is verified


def replication_level(store: MetadataStore, default: int) -> int:
    """The level an operator set with ``qserv replica level N``, else ``default``."""
    value = store.setting(LEVEL)
    return int(value) if value is not None and value.isdigit() else default


def set_replication_level(store: MetadataStore, level: int) -> None:
    if not 1 <= level <= MAX_LEVEL:
        raise InvalidParameter(f"replication level must be from 1 to {MAX_LEVEL}, not {level}")
    store.set_setting(LEVEL, str(level))


def requests(store: MetadataStore) -> tuple[int, int]:
    """The counters of requested rounds and verifications."""
    return _counter(store, WAKE), _counter(store, VERIFY)


def verified(store: MetadataStore) -> int:
    """The last verification request the controller has carried out."""
    return _counter(store, VERIFIED)


def set_verified(store: MetadataStore, request: int) -> None:
    if verified(store) < request:
        store.set_setting(VERIFIED, str(request))


def report_damaged(store: MetadataStore, damaged: dict[str, set[int]]) -> None:
    """Add chunks that workers failed to read back (a czar's queries) to the controller's list.

    Read, merged and written back: a report racing the controller's :func:`take_damaged` may be
    lost, and the next query that meets the damage reports it again (scheduled verification
    finds it in any case).
    """
    merged = _damaged(store)
    for worker, chunks in damaged.items():
        known = merged.get(worker, set())
        if known is None:
            continue
        known = known | chunks
        merged[worker] = None if len(known) > MAX_DAMAGED_CHUNKS else known
    store.set_setting(DAMAGED, _damaged_doc(merged))


def take_damaged(store: MetadataStore) -> dict[str, set[int] | None]:
    """The reported chunks per worker (None: all of its chunks), the list emptied."""
    found = _damaged(store)
    if found:
        store.set_setting(DAMAGED, "{}")
    return found


def _damaged(store: MetadataStore) -> dict[str, set[int] | None]:
    value = store.setting(DAMAGED)
    try:
        doc = json.loads(value) if value else {}
    except ValueError:
        return {}
    if not isinstance(doc, dict):
        return {}
    out: dict[str, set[int] | None] = {}
    for worker, chunks in doc.items():
        if chunks is None:
            out[str(worker)] = None
        elif isinstance(chunks, list):
            out[str(worker)] = {int(c) for c in chunks if isinstance(c, int)}
    return out


def _damaged_doc(damaged: dict[str, set[int] | None]) -> str:
    return json.dumps({w: None if cs is None else sorted(cs) for w, cs in sorted(damaged.items())})


def controller_status(store: MetadataStore) -> dict[str, Any] | None:
    """The controller's last report (None: no controller ever ran on this store)."""
    value = store.setting(STATUS)
    if value is None:
        return None
    try:
        doc = json.loads(value)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def set_controller_status(store: MetadataStore, doc: str) -> None:
    store.set_setting(STATUS, doc)


def _counter(store: MetadataStore, key: str) -> int:
    value = store.setting(key)
    return int(value) if value is not None and value.isdigit() else 0
