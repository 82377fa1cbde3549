"""Timeouts end to end: slow is not dead.

A statement past its ``statement_timeout`` (per session ``SET statement_timeout``, default from
the czar's configuration) fails with 57014 "canceling statement due to statement timeout" and
its work on the workers is interrupted. A worker batch past the czar's ``worker_timeout`` fails
the statement with 57014 too; in neither case is the batch retried on other replicas or the
worker taken out of planning: afterwards a full scan runs on every worker without a retry.

The slow query is the one of test_cancel.py with one more copy of Filter: minutes of DuckDB
work, far beyond the timeouts used here.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import psycopg
import pytest

from qserv.metadata import WorkerState, open_store
from qserv.rpc.client import WorkerClient
from tests.cluster import LiveCluster, running_cluster, wait_until

COPIES = 7
SLOW_SQL = (
    "SELECT COUNT(*) FROM Object o, "
    + ", ".join(f"Filter f{i}" for i in range(COPIES))
    + " WHERE scisql_angSep(o.ra, o.decl, ("
    + " + ".join(f"f{i}.filterId" for i in range(COPIES))
    + ") * 10, f0.photClam / 100) < 3"
)
WORKER_TIMEOUT = 3.0
DEFAULT_STATEMENT_TIMEOUT = 600.0  # shown as 10min; far beyond any query of this module but SLOW_SQL


@pytest.fixture(scope="module")
def tc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveCluster]:
    with running_cluster(
        tmp_path_factory.mktemp("timeouts"),
        objects=3_000,
        worker_timeout=WORKER_TIMEOUT,
        statement_timeout=DEFAULT_STATEMENT_TIMEOUT,
    ) as live:
        yield live


def _clients(tc: LiveCluster) -> list[WorkerClient]:
    return [WorkerClient(f"{h}:{p}") for h, p in map(tc.cluster.worker_address, tc.spec.worker_names())]


def _running(clients: list[WorkerClient]) -> int:
    return sum(c.health().queries_running for c in clients)


def _slow_query_error(conn: psycopg.Connection) -> BaseException:
    """Run SLOW_SQL on ``conn`` and return how it failed (cancelled and failed here if it hangs)."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["rows"] = conn.execute(SLOW_SQL).fetchall()
        except BaseException as exc:  # inspected below
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(120)
    if thread.is_alive():
        conn.cancel_safe()
        thread.join(60)
        pytest.fail("the slow query outlived its timeout")
    error = outcome.get("error")
    assert isinstance(error, BaseException), outcome
    return error


def _czar_log(tc: LiveCluster) -> str:
    return (tc.spec.data_dir / "logs" / "czar.log").read_text()


def _assert_every_worker_planned_and_up(tc: LiveCluster, clients: list[WorkerClient]) -> None:
    # the workers interrupted DuckDB: nothing keeps running there
    wait_until(lambda: _running(clients) == 0, 60, "the workers stop the timed-out query")
    # the czar retried nothing and marked nobody down
    assert "retrying on replicas" not in _czar_log(tc)
    with tc.connect() as conn:
        # (a whole-table COUNT(*) is answered from the row counts: the WHERE makes it a scan)
        scan = "SELECT COUNT(*) FROM Object WHERE ra >= 0"
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + scan).fetchall())
        planned = {line.split()[1].rstrip(":") for line in plan.splitlines() if line.startswith("batch ")}
        assert planned == set(tc.spec.worker_names()), plan
        # a full scan on every worker succeeds, without a retry
        assert conn.execute(scan).fetchone() == (3_000,)
    done = [
        line for line in _czar_log(tc).splitlines() if "query done" in line and "strategy=full-scan" in line
    ]
    assert done and "retried_chunks=0" in done[-1] and f"workers={tc.spec.workers}" in done[-1], done[-1:]
    # nor did the replication controller: every worker is still ACTIVE in the metadata
    store = open_store(tc.spec.metadata())
    try:
        assert {w.name: w.state for w in store.workers()} == dict.fromkeys(
            tc.spec.worker_names(), WorkerState.ACTIVE
        )
    finally:
        store.close()


def test_statement_timeout_cancels_the_statement_everywhere(tc: LiveCluster) -> None:
    clients = _clients(tc)
    try:
        with tc.connect() as conn:
            conn.execute("SET statement_timeout = '500ms'")
            assert conn.execute("SHOW statement_timeout").fetchone() == ("500ms",)
            error = _slow_query_error(conn)
            assert isinstance(error, psycopg.errors.QueryCanceled), error
            assert error.diag.sqlstate == "57014"
            assert error.diag.message_primary == "canceling statement due to statement timeout"
            # the session keeps its setting and answers the next (fast) query
            assert conn.execute("SHOW statement_timeout").fetchone() == ("500ms",)
            assert conn.execute("SELECT COUNT(*) FROM Filter").fetchone() == (6,)
        _assert_every_worker_planned_and_up(tc, clients)
    finally:
        for c in clients:
            c.close()
    assert "statement timeout" in _czar_log(tc)


def test_worker_timeout_fails_the_statement_and_keeps_the_worker(tc: LiveCluster) -> None:
    clients = _clients(tc)
    try:
        with tc.connect() as conn:
            conn.execute("SET statement_timeout = 0")  # only the czar's worker_timeout applies
            error = _slow_query_error(conn)
            assert isinstance(error, psycopg.errors.QueryCanceled), error
            assert error.diag.sqlstate == "57014"
            assert "worker timeout" in (error.diag.message_primary or ""), error.diag.message_primary
            assert conn.execute("SELECT COUNT(*) FROM Filter").fetchone() == (6,)
        _assert_every_worker_planned_and_up(tc, clients)
    finally:
        for c in clients:
            c.close()


def test_statement_timeout_default_comes_from_the_czar_config(tc: LiveCluster) -> None:
    # the cluster's czar was started with --statement-timeout 600000ms (qserv czar option)
    with tc.connect() as conn:
        assert conn.execute("SHOW statement_timeout").fetchone() == ("10min",)
        conn.execute("SET statement_timeout = 5000")
        assert conn.execute("SHOW statement_timeout").fetchone() == ("5s",)
        conn.execute("RESET statement_timeout")
        assert conn.execute("SHOW statement_timeout").fetchone() == ("10min",)
        with pytest.raises(psycopg.errors.InvalidParameterValue) as info:
            conn.execute("SET statement_timeout = '5 fortnights'")
        assert 'invalid value for parameter "statement_timeout"' in str(info.value)
        assert conn.execute("SHOW statement_timeout").fetchone() == ("10min",)


def test_statement_timeout_from_the_startup_options(tc: LiveCluster) -> None:
    # libpq's options='-c name=value' (PGOPTIONS): the session's default, RESET returns to it
    with psycopg.connect(tc.dsn, autocommit=True, options="-c statement_timeout=1234") as conn:
        assert conn.execute("SHOW statement_timeout").fetchone() == ("1234ms",)
        conn.execute("SET statement_timeout = '2s'")
        conn.execute("RESET statement_timeout")
        assert conn.execute("SHOW statement_timeout").fetchone() == ("1234ms",)
    with psycopg.connect(tc.dsn, autocommit=True, options="-c statement_timeout=400ms") as conn:
        error = _slow_query_error(conn)
        assert isinstance(error, psycopg.errors.QueryCanceled), error
        assert error.diag.message_primary == "canceling statement due to statement timeout"
    # a bad value refuses the session, as PostgreSQL does, and the czar goes on serving
    with pytest.raises(psycopg.OperationalError) as info:
        psycopg.connect(tc.dsn, autocommit=True, options="-c statement_timeout=5fortnights")
    assert 'invalid value for parameter "statement_timeout"' in str(info.value)
    assert tc.query("SELECT COUNT(*) FROM Filter") == [(6,)]
