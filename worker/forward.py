"""Rows a worker stages and forwards: the replicas of a load are made worker to worker.

The loader sends each row once, to one replica's worker, naming the other replicas' workers
in the request's ``forward`` field. That worker stages the rows as usual and forwards each
received request untouched (the same bytes) to each of them, over one Ingest stream per
worker in the same transaction (:class:`~qserv.rpc.streams.IngestStreams`), marked as
forwarded so that their receivers only stage: rows travel one hop. The loader's stream
succeeds only once every forward stream has: a forward that fails fails the whole stream,
the local staging is discarded and the forward streams still open are cancelled (those
workers drop what they staged), and the loader aborts the transaction as for any failed
stream, which drops whatever a forward that had already finished staged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence

from qserv.errors import InvalidParameter
from qserv.rpc.ingest_wire import decode_ingest_request
from qserv.rpc.streams import IngestStreams
from worker.storage import StagedRows

_ADDRESS = re.compile(r"[A-Za-z0-9_.:\[\]-]{1,253}:([0-9]{1,5})")


def forward_targets(forward: Sequence[str]) -> tuple[str, ...]:
    """The forward addresses of a request, checked: distinct, each ``host:port``."""
    if len(set(forward)) != len(forward):
        raise InvalidParameter("ingest request forwards to the same worker twice")
    for address in forward:
        match = _ADDRESS.fullmatch(address)
        if match is None or not 0 < int(match.group(1)) < 65536:
            raise InvalidParameter(f"ingest forward address {address[:80]!r} is not host:port")
    return tuple(forward)


def new_forwards() -> IngestStreams[bytes]:
    """Forward streams of one Ingest call, keyed by address (serialised requests as items)."""
    return IngestStreams(None, lambda message: (message,), what="forward", forwarded=True)


def staged_parts(
    messages: Iterable[bytes], forwards: IngestStreams[bytes] | None, transactions: set[int]
) -> Iterator[StagedRows]:
    """Read each request to stage here, after handing it to its forward streams.

    ``forwards`` is None for a stream that was itself forwarded (its ``forward`` fields are
    ignored). Forwarding first lets the other workers stage a message while this one does.
    When the requests end, the forward streams are closed and waited for; a failure is raised
    here, inside the staging, so nothing of the stream is kept on this worker either.
    """
    for raw in messages:
        req = decode_ingest_request(raw)
        data = req.rows()
        if req.forward and forwards is not None:
            for address in forward_targets(req.forward):
                forwards.send(address, raw)
        transactions.add(req.transaction_id)
        yield StagedRows(req.transaction_id, req.database, req.table, req.overlap, data)
    if forwards is not None:
        forwards.close()
