"""Carrying out verifications: checksums of every holder of a family chunk, judged and recorded.

The controller hands the verifier family chunks (the policy's due ``Verify`` actions, every
chunk on ``qserv replica verify``, a rejoined worker's chunks); one job at a time runs on a
thread of its own and asks each serving holder for the checksums of its chunks, one call per
(worker, family) and batch. :func:`qserv.replica.verify.judge` decides each chunk and the
verdicts go to the store (:class:`~qserv.metadata.store.ReplicaCheck`), where the policy reads
them: a corrupt replica is repaired from a good one.

Holders commit a load one after the other, so a verification that overlaps a commit could see
two correct replicas disagree: families with a load committing are skipped, and the results of
a job that a load overtook are thrown away (as the copier does: :mod:`qserv.replica.loads`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from qserv.catalog import Catalog
from qserv.errors import QservError, WorkerUnavailable
from qserv.log import event
from qserv.metadata import MetadataStore, ReplicaCheck, WorkerInfo
from qserv.replica.copier import family_databases
from qserv.replica.loads import epoch, overtaken
from qserv.replica.verify import digests, judge
from qserv.rpc.client import TableChecksum, WorkerClient

log = logging.getLogger(__name__)

BATCH_CHUNKS = 64

FamilyChunk = tuple[str, int]


@dataclass(frozen=True)
class VerifyReport:
    """What one job found."""

    verified: int  # replicas whose verdict was recorded
    corrupt: list[tuple[str, int, str]]  # (family, chunk, worker)
    conflicts: list[FamilyChunk]  # chunks whose holders disagree with no way to tell who is right


class Verifier:
    """Verification jobs, one at a time, driven by the controller's rounds."""

    def __init__(
        self,
        store: MetadataStore,
        client_of: Callable[[WorkerInfo], WorkerClient],
        on_done: Callable[[], None] = lambda: None,
    ) -> None:
        self._store = store
        self._client_of = client_of
        self._on_done = on_done
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="verify")
        self._job: Future[VerifyReport] | None = None
        self._queued: set[FamilyChunk] = set()
        self._lock = threading.Lock()
        self.last: VerifyReport | None = None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def busy(self) -> bool:
        return self._job is not None or bool(self._queued)

    def request(self, chunks: Iterable[FamilyChunk]) -> None:
        """Verify these family chunks in a coming job."""
        with self._lock:
            self._queued.update(chunks)

    def step(
        self,
        workers: dict[str, WorkerInfo],
        holders: dict[FamilyChunk, list[str]],
        catalog: Catalog,
        skip: set[FamilyChunk],
    ) -> VerifyReport | None:
        """Collect a finished job (its report), and start the next one if chunks are queued.

        ``holders``: the serving workers holding each chunk; ``skip``: chunks being copied.
        """
        report = None
        if self._job is not None and self._job.done():
            try:
                report = self.last = self._job.result()
            except Exception as exc:  # the store failed: the chunks are verified another time
                event(log, "verification failed", logging.WARNING, error=str(exc))
            self._job = None
        if self._job is None and self._queued:
            with self._lock:
                todo, self._queued = self._queued, set()
            ready = {k for k in todo if k in holders and k not in skip}
            self._queued |= {k for k in todo - ready if k in holders}  # being copied: later
            if ready:
                plan = {k: holders[k] for k in ready}
                self._job = self._pool.submit(self._run, plan, workers, catalog)
                self._job.add_done_callback(lambda _: self._on_done())
        return report

    def _run(
        self, plan: dict[FamilyChunk, list[str]], workers: dict[str, WorkerInfo], catalog: Catalog
    ) -> VerifyReport:
        by_family: dict[str, list[int]] = defaultdict(list)
        for family, chunk in sorted(plan):
            by_family[family].append(chunk)
        checks: list[ReplicaCheck] = []
        corrupt: list[tuple[str, int, str]] = []
        conflicts: list[FamilyChunk] = []
        for family, chunks in sorted(by_family.items()):
            databases = family_databases(catalog, family)
            since = epoch(self._store, databases)
            if since is None:
                with self._lock:
                    self._queued.update((family, c) for c in chunks)  # a load is open: later
                continue
            values: dict[int, dict[str, str]] = defaultdict(dict)
            unreadable: dict[int, set[str]] = defaultdict(set)
            asked: dict[str, list[int]] = defaultdict(list)
            for c in chunks:
                for w in plan[(family, c)]:
                    asked[w].append(c)
            for w, mine in sorted(asked.items()):
                client = self._client_of(workers[w])
                for i in range(0, len(mine), BATCH_CHUNKS):
                    part = mine[i : i + BATCH_CHUNKS]
                    unread: set[int] = set()
                    try:
                        found = digests(client.chunk_checksums(databases, part))
                    except WorkerUnavailable:
                        continue  # not a verdict on its rows
                    except QservError as exc:  # the worker cannot read some: which ones
                        event(log, "replica unreadable", logging.ERROR, worker=w, error=exc.message)
                        split = _one_by_one(client, databases, part)
                        if split is None:
                            continue  # the worker went away meanwhile
                        found, unread = split
                    for c in part:
                        if c in unread:
                            unreadable[c].add(w)
                        else:
                            values[c][w] = found.get(c, _EMPTY)
            if overtaken(self._store, databases, since):
                with self._lock:
                    self._queued.update((family, c) for c in chunks)  # a load overtook it
                continue
            recorded = {
                (r.chunk_id, r.worker): r for r in self._store.replica_checks(family) if not r.corrupt
            }
            now = time.time()
            for c in chunks:
                if not values[c] and not unreadable[c]:
                    continue
                known = [r.checksum for (chunk, _), r in recorded.items() if chunk == c]
                verdict = judge(values[c], unreadable[c], known[0] if len(set(known)) == 1 else None)
                if verdict.conflict:
                    conflicts.append((family, c))
                    event(
                        log,
                        "replicas disagree and none can be told right: an operator must decide",
                        logging.ERROR,
                        family=family,
                        chunk=c,
                        holders=",".join(sorted(values[c])),
                    )
                    continue
                for w in sorted(set(values[c]) | unreadable[c]):
                    bad = w in verdict.corrupt
                    checks.append(ReplicaCheck(family, c, w, values[c].get(w, ""), bad, now))
                    if bad:
                        corrupt.append((family, c, w))
                        event(log, "corrupt replica found", logging.ERROR, family=family, chunk=c, worker=w)
        self._store.record_checks(checks)
        return VerifyReport(len(checks), corrupt, conflicts)


def _one_by_one(
    client: WorkerClient, databases: list[str], chunks: list[int]
) -> tuple[dict[int, str], set[int]] | None:
    """(digests, unreadable chunks), asking one chunk at a time after a batch failed: a damaged
    block spoils only the chunks with rows in it. None if the worker went away meanwhile."""
    found: dict[int, str] = {}
    bad: set[int] = set()
    for c in chunks:
        try:
            found.update(digests(client.chunk_checksums(databases, [c])))
        except WorkerUnavailable:
            return None
        except QservError:
            bad.add(c)
    return found, bad


_EMPTY = digests([TableChecksum("", "", 0, 0, "")])[0]
"""The digest of a chunk with no rows on a worker (it reported no table of it)."""
