"""Cancellation end to end: psycopg's cancel stops a slow query on the czar and on every worker.

The slow query joins the director with six copies of the regular Filter table under a spatial
predicate that needs every copy: 20,000 objects x 6^6 combinations, nearly a billion angular
separations, minutes of DuckDB work. A CancelRequest from another thread must end it with
57014, leave the connection usable, and interrupt the DuckDB queries on the workers (their
running-query count drops to zero long before the query could have finished).
"""

from __future__ import annotations

import threading
import time

import psycopg

from qserv.rpc.client import WorkerClient
from tests.cluster import LiveCluster, wait_until

COPIES = 6
SLOW_SQL = (
    "SELECT COUNT(*) FROM Object o, "
    + ", ".join(f"Filter f{i}" for i in range(COPIES))
    + " WHERE scisql_angSep(o.ra, o.decl, ("
    + " + ".join(f"f{i}.filterId" for i in range(COPIES))
    + ") * 10, f0.photClam / 100) < 3"
)


def _running(clients: list[WorkerClient]) -> int:
    return sum(c.health().queries_running for c in clients)


def test_cancel_stops_the_query_everywhere(cluster: LiveCluster) -> None:
    clients = [
        WorkerClient(f"{h}:{p}") for h, p in map(cluster.cluster.worker_address, cluster.spec.worker_names())
    ]
    outcome: dict[str, BaseException | list[tuple]] = {}
    try:
        with cluster.connect() as conn:

            def run() -> None:
                try:
                    outcome["rows"] = conn.execute(SLOW_SQL).fetchall()
                except BaseException as exc:  # inspected below
                    outcome["error"] = exc

            thread = threading.Thread(target=run)
            thread.start()
            # the query really reached the workers before we cancel it
            wait_until(lambda: _running(clients) > 0, 30, "the workers run the query")
            # let the workers get past binding their 3,000-chunk batch: a cancel landing inside
            # the bind is lost by the worker (tests/unit/worker/test_worker_interrupt_race.py)
            time.sleep(1.0)
            conn.cancel_safe()
            thread.join(60)
            assert not thread.is_alive(), "the cancelled query did not return"
            error = outcome.get("error")
            assert isinstance(error, psycopg.errors.QueryCanceled), outcome
            assert error.diag.sqlstate == "57014"
            # the workers interrupted DuckDB: nothing keeps running there
            wait_until(lambda: _running(clients) == 0, 20, "the workers stop the cancelled query")
            # and the same connection answers the next query
            assert conn.execute("SELECT COUNT(*) FROM Filter").fetchone() == (6,)
            assert conn.execute("SELECT COUNT(*) FROM Object WHERE objectId = 1006").fetchone() == (1,)
    finally:
        for c in clients:
            c.close()
    logs = cluster.spec.data_dir / "logs"
    assert "cancel requested" in (logs / "czar.log").read_text()
    worker_logs = "".join((logs / f"{w}.log").read_text() for w in cluster.spec.worker_names())
    assert "QueryCanceled" in worker_logs or "cancelled" in worker_logs
