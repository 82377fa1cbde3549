"""Replication work beside loads: when a copy or a verification may use what it read.

A load (an ingest transaction) changes a family chunk's committed rows only while it is
COMMITTING: its workers publish one after the other. While it is STARTED its rows are only
staged, invisible, and a load may stay STARTED for a long time (a loader killed and never run
again), so replication must not wait for it. The rule, for work that reads committed rows
(a chunk or table copy, a verification):

* it does not start while a load of the family is COMMITTING (the holders disagree for a moment);
* what it read is thrown away if a load that was open when it started, or began after, has
  reached COMMITTING or COMMITTED by the time it ends (its rows may be missing from what was
  read). A load still STARTED is harmless: when it commits, the commit rule
  (:mod:`qserv.metadata.copies`) drops every replica that got none of its rows, a copy made
  meanwhile included.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from qserv.metadata import MetadataStore, TransactionState

_PUBLISHING = (TransactionState.COMMITTING, TransactionState.COMMITTED)


@dataclass(frozen=True)
class Epoch:
    """The loads of some databases when a piece of work started."""

    last: int  # the newest transaction id
    open: frozenset[int]  # those not ended yet


def epoch(store: MetadataStore, databases: Sequence[str]) -> Epoch | None:
    """The loads now; None while one is COMMITTING (the work must wait)."""
    last, open_ = 0, set()
    for db in databases:
        for t in store.transactions(db):
            if t.state is TransactionState.COMMITTING:
                return None
            if t.state is TransactionState.STARTED:
                open_.add(t.transaction_id)
            last = max(last, t.transaction_id)
    return Epoch(last, frozenset(open_))


def overtaken(store: MetadataStore, databases: Sequence[str], since: Epoch) -> bool:
    """Whether a load open at ``since`` or begun after it has published (or is publishing)."""
    for db in databases:
        for t in store.transactions(db):
            if (t.transaction_id > since.last or t.transaction_id in since.open) and t.state in _PUBLISHING:
                return True
    return False


def committing(store: MetadataStore, databases_by_family: dict[str, list[str]]) -> set[str]:
    """The families with a load COMMITTING (their new chunks have rows before their replicas
    are visible)."""
    return {
        family
        for family, databases in databases_by_family.items()
        if any(t.state is TransactionState.COMMITTING for db in databases for t in store.transactions(db))
    }
