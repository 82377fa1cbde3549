"""Loads that are interrupted, or that race, never break the next load nor store a row twice.

On a real cluster of processes, through the real ``qserv load`` command: a worker that dies
while a table is created and comes back, a loader killed (SIGKILL, SIGINT) right after the
table was created and in the middle of its batches, a czar killed in the middle of a load.
After each, running the same command again succeeds and the data is there exactly once:
``COUNT(*)``, key uniqueness and a join through every worker, through psycopg, equal a single
DuckDB over the same files. Two loads of one director table with overlapping keys, started
at once, leave exactly one winner and no key stored twice.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq

from loader.transaction import COMMIT_BARRIER_ENV, CzarClient
from qserv.errors import QservError
from qserv.sample import SampleSpec, filters, objects
from tests.cluster import LiveCluster, free_ports, running_cluster, wait_until

DIRECTOR = ["--director", "--id", "objectId", "--lon", "ra", "--lat", "decl"]


def _reference(path: Path, sql: str) -> list[tuple]:
    ref = duckdb.connect()
    try:
        ref.execute(f"CREATE TABLE t AS SELECT * FROM read_parquet('{path}')")
        return ref.execute(sql).fetchall()
    finally:
        ref.close()


def _assert_once(tc: LiveCluster, table: str, key: str, path: Path) -> None:
    """``table`` holds exactly the rows of ``path``: same count, same key sum, no key twice."""
    want = _reference(path, f"SELECT COUNT(*), SUM({key}) FROM t")
    assert tc.query(f"SELECT COUNT(*), SUM({key}) FROM {table}") == want
    twice = tc.query(f"SELECT {key}, COUNT(*) FROM {table} GROUP BY {key} HAVING COUNT(*) > 1")
    assert twice == [], f"keys stored more than once in {table}: {twice[:5]}"


def _load_argv(tc: LiveCluster, table: str, path: Path, *kind: str) -> list[str]:
    return [sys.executable, "-m", "qserv.cli", "load", "--url", tc.url, "--database", "sky",
            "--table", table, "--no-progress", *kind, str(path)]  # fmt: skip


def _load(tc: LiveCluster, table: str, path: Path, *kind: str) -> subprocess.CompletedProcess[str]:
    return tc.load("--database", "sky", "--table", table, "--no-progress", *kind, str(path), check=False)


def _director_file(path: Path, n: int, seed: int, first_id: int = 1) -> pa.Table:
    rows = objects(SampleSpec(objects=n, seed=seed))
    rows = rows.set_column(0, "objectId", pa.array(np.arange(first_id, first_id + n, dtype=np.int64)))
    pq.write_table(rows, path)
    return rows


def _table_exists(url: str, name: str) -> bool:
    try:
        return CzarClient(url).table("sky", name) is not None
    except QservError:  # the database does not exist yet
        return False


def test_rerun_succeeds_after_a_worker_died_during_table_creation(tmp_path: Path) -> None:
    """The table is recorded, then reaches only some workers: the rerun creates it on the rest."""
    filters_path = tmp_path / "Filter2.parquet"
    pq.write_table(filters(), filters_path)
    objects_path = tmp_path / "Obj2.parquet"
    _director_file(objects_path, 3_000, seed=11)
    with running_cluster(tmp_path, workers=3, replicas=2, objects=2_000) as tc:
        # no health monitor: the dead worker stays "active", as it is for the seconds before
        # the controller notices, so the czar sends it the table and rows
        tc.cluster.kill("replicad")
        tc.cluster.kill("worker-2")
        first = _load(tc, "Filter2", filters_path, "--regular")
        assert first.returncode != 0, first.stderr
        first = _load(tc, "Obj2", objects_path, *DIRECTOR)
        assert first.returncode != 0, first.stderr
        assert _table_exists(tc.url, "Filter2") and _table_exists(
            tc.url, "Obj2"
        )  # recorded before the failure

        tc.cluster.start_worker("worker-2")
        for table, path, kind in (("Filter2", filters_path, ["--regular"]), ("Obj2", objects_path, DIRECTOR)):
            again = _load(tc, table, path, *kind)
            assert again.returncode == 0, again.stderr
        _assert_once(tc, "Filter2", "filterId", filters_path)
        _assert_once(tc, "Obj2", "objectId", objects_path)
        # the join runs in every chunk, on every worker: each has the whole regular table
        ref = tc.reference()
        ref.execute(f"CREATE TABLE Filter2 AS SELECT * FROM read_parquet('{filters_path}')")
        join = (
            "SELECT f.filterName, COUNT(*) FROM Source s JOIN Filter2 f ON s.filterId = f.filterId "
            "GROUP BY f.filterName ORDER BY f.filterName"
        )
        assert tc.query(join) == ref.execute(join).fetchall()
        # and a further load of the same files is a no-op
        assert _load(tc, "Obj2", objects_path, *DIRECTOR).returncode == 0
        _assert_once(tc, "Obj2", "objectId", objects_path)


def test_rerun_succeeds_after_the_loader_or_the_czar_is_killed(tmp_path: Path) -> None:
    path = tmp_path / "Obj3.parquet"
    _director_file(path, 6_000, seed=12)
    env = {**os.environ, "QSERV_LOADER_BATCH_DELAY": "0.3"}
    with running_cluster(tmp_path, workers=3, replicas=2, objects=0) as tc:
        argv = [*_load_argv(tc, "Obj3", path, *DIRECTOR), "--batch-rows", "500"]

        def interrupted(sig: signal.Signals, when) -> None:  # type: ignore[no-untyped-def]
            proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_until(
                    lambda: when() or proc.poll() is not None,
                    60,
                    "the loader reached the moment to interrupt",
                )
                assert proc.poll() is None, "the loader finished before it could be interrupted"
                proc.send_signal(sig)
                proc.wait(timeout=60)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()

        # 1. SIGKILL as soon as the table exists (the new database and table were just created)
        interrupted(signal.SIGKILL, lambda: _table_exists(tc.url, "Obj3"))
        # 2. SIGINT (Ctrl-C) in the middle of the batches
        rows_staged = _staged_marker(tc)
        interrupted(signal.SIGINT, rows_staged)
        # 3. SIGKILL of the czar in the middle of the batches; the loader fails, the czar restarts
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            wait_until(_staged_marker(tc), 60, "rows staged")
            tc.cluster.kill("czar")
            _, err = proc.communicate(timeout=120)
            assert proc.returncode != 0, err
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        tc.restart()
        assert tc.query("SELECT COUNT(*) FROM Obj3") == [(0,)]  # nothing of the interrupted loads

        again = _load(tc, "Obj3", path, *DIRECTOR)
        assert again.returncode == 0, again.stderr
        _assert_once(tc, "Obj3", "objectId", path)
        rerun = _load(tc, "Obj3", path, *DIRECTOR)
        assert rerun.returncode == 0 and "nothing to do" in rerun.stderr, rerun.stderr
        _assert_once(tc, "Obj3", "objectId", path)


def _staged_marker(tc: LiveCluster):  # type: ignore[no-untyped-def]
    """A condition true once some worker staged rows of a new load (a file in its staging dir)."""
    dirs = [tc.spec.data_dir / name / "staging" for name in tc.spec.worker_names()]
    before = {p.name for d in dirs if d.exists() for p in d.iterdir()}

    def staged() -> bool:
        return any(p.name not in before for d in dirs if d.exists() for p in d.iterdir())

    return staged


def test_two_loads_of_one_director_with_overlapping_keys_leave_one_winner(tmp_path: Path) -> None:
    # different sizes, so the count tells which load won; keys 1501..3000 are in both
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    _director_file(a, 3_000, seed=21, first_id=1)
    _director_file(b, 2_500, seed=22, first_id=1_501)
    overlap = set(range(1_501, 3_001))
    with running_cluster(tmp_path, workers=3, replicas=2, objects=2_000) as tc:
        for attempt in range(3):
            table = f"Race{attempt}"
            barrier = tmp_path / f"barrier{attempt}"
            barrier.mkdir()
            # both loaders reach their commit, then send it at the same moment
            env = {**os.environ, COMMIT_BARRIER_ENV: f"{barrier}:2"}
            procs = [
                subprocess.Popen(
                    _load_argv(tc, table, p, *DIRECTOR),
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                )  # fmt: skip
                for p in (a, b)
            ]
            errs = [p.communicate(timeout=300)[1] for p in procs]
            codes = [p.returncode for p in procs]
            assert sorted(codes) == [0, 1], f"attempt {attempt}: exit codes {codes}\n{errs}"
            winner = codes.index(0)
            loser_err = errs[1 - winner]
            named = [int(k) for k in re.findall(r"director key (\d+)", loser_err)]
            assert named and named[0] in overlap, f"the loser does not name a duplicate key: {loser_err}"
            twice = tc.query(f"SELECT objectId, COUNT(*) FROM {table} GROUP BY objectId HAVING COUNT(*) > 1")
            assert twice == [], f"attempt {attempt}: keys stored twice: {twice[:5]}"
            _assert_once(tc, table, "objectId", (a, b)[winner])


def test_demo_interrupted_while_loading_then_rerun_serves_the_sample_once(tmp_path: Path) -> None:
    """Ctrl-C of the first ``qserv demo`` while it loads, then ``qserv demo`` again: it comes up."""
    ports = free_ports(5)
    data = tmp_path / "demo"
    argv = [sys.executable, "-m", "qserv.cli", "demo", "--data-dir", str(data), "--workers", "3",
            "--replicas", "2", "--port", str(ports[0]), "--http-port", str(ports[1]),
            "--worker-port", str(ports[2]), "--objects", "20000"]  # fmt: skip
    url = f"http://127.0.0.1:{ports[1]}"

    first = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(
            lambda: _table_exists(url, "Source") or first.poll() is not None, 180, "the demo loads Source"
        )
        assert first.poll() is None, "the demo ended before it could be interrupted"
        first.send_signal(signal.SIGINT)
        first.wait(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()

    second = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert second.stdout is not None
        output = []
        for line in second.stdout:
            output.append(line)
            if "qserv demo is running" in line:
                break
        assert second.poll() is None, "".join(output)
        sample = data / "sample"
        dsn = f"host=127.0.0.1 port={ports[0]} user=qserv dbname=sky"
        with psycopg.connect(dsn, autocommit=True) as conn:
            for table, key in (("Object", "objectId"), ("Source", "sourceId"), ("Filter", "filterId")):
                want = _reference(sample / f"{table}.parquet", f"SELECT COUNT(*), SUM({key}) FROM t")
                assert conn.execute(f"SELECT COUNT(*), SUM({key}) FROM {table}").fetchall() == want, table
                twice = conn.execute(
                    f"SELECT {key}, COUNT(*) FROM {table} GROUP BY {key} HAVING COUNT(*) > 1"
                ).fetchall()
                assert twice == [], table
    finally:
        second.send_signal(signal.SIGINT)
        try:
            second.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            second.kill()
            second.communicate()
