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
MAX_LEVEL = 16


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
