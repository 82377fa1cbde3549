"""A copy that missed a commit is never served: loads while a worker is down, or dying mid-commit.

On a real cluster (3 workers, 2 replicas), through the real ``qserv load`` and psycopg. A worker
that is down while a table is loaded, or that dies after its rows were staged and before the
commit, holds copies without the load's rows; when it is back (ACTIVE again, and planned on by
the czar) every answer still equals a single DuckDB over the same files: counts, sums, GROUP
BY, director-child and regular joins, and regular-only queries repeated in enough variants to
be sent to every worker. A commit that would leave a chunk with no complete copy fails, naming
the chunk, and nothing of it is visible.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import duckdb
import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from loader.transaction import COMMIT_BARRIER_ENV
from qserv.metadata import TransactionState, WorkerState, open_store
from qserv.sample import FILTERS, SampleSpec, filters, objects, sources
from tests.cluster import LiveCluster, running_cluster

DIRECTOR = ["--director", "--id", "objectId", "--lon", "ra", "--lat", "decl"]
VARIANTS = 24  # regular-only queries are sent to one worker chosen by their text


@pytest.fixture
def tc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveCluster]:
    # one cluster per test: each kills workers in its own way; fast probes keep the waits short
    with running_cluster(
        tmp_path_factory.mktemp("stale"), workers=3, replicas=2, objects=2_000, health_interval=0.5
    ) as cluster:
        yield cluster


def _wait_for(what: str, cond, timeout: float = 90.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.1)


def _states(tc: LiveCluster) -> dict[str, WorkerState]:
    store = open_store(tc.spec.metadata())
    try:
        return {w.name: w.state for w in store.workers()}
    finally:
        store.close()


def _variants(sql: str) -> list[str]:
    """Texts of one regular-only query that differ only in a constant: spread over the workers."""
    return [sql.format(k=-k) for k in range(VARIANTS)]


def _planned_on(tc: LiveCluster) -> set[str]:
    """The workers the czar plans regular-only queries on now (the sample's Filter was loaded
    with every worker up, so its variants reach every worker the czar sees live)."""
    seen = set()
    with tc.connect() as conn:
        for sql in _variants("SELECT COUNT(*) FROM Filter WHERE filterId > {k}"):
            for (line,) in conn.execute(f"EXPLAIN {sql}").fetchall():
                seen.update(w.rstrip(":") for w in str(line).split() if w.startswith("worker-"))
    return seen


def _wait_live(tc: LiveCluster, live: set[str]) -> None:
    """Wait until replicad recorded exactly ``live`` as ACTIVE and the czar plans on them."""
    _wait_for(
        f"{sorted(live)} active",
        lambda: {n for n, s in _states(tc).items() if s is WorkerState.ACTIVE} == live,
    )
    _wait_for(f"the czar plans on {sorted(live)}", lambda: _planned_on(tc) == live)


def _kill(tc: LiveCluster, *names: str) -> None:
    for name in names:
        tc.cluster.kill(name)
    _wait_live(tc, set(tc.spec.worker_names()) - set(names) - _down(tc))


def _restart(tc: LiveCluster, *names: str) -> None:
    for name in names:
        tc.cluster.start_worker(name)
    _wait_live(tc, (set(tc.spec.worker_names()) - _down(tc)) | set(names))


def _down(tc: LiveCluster) -> set[str]:
    return {n for n, s in _states(tc).items() if s is WorkerState.DOWN}


def _load(tc: LiveCluster, table: str, kind: list[str], *paths: Path) -> subprocess.CompletedProcess[str]:
    done = tc.load(
        "--database", "sky", "--table", table, "--no-progress", *kind, *map(str, paths), check=False
    )
    assert done.returncode == 0, done.stderr
    return done


def _director(path: Path, n: int, seed: int, first_id: int) -> Path:
    rows = objects(SampleSpec(objects=n, seed=seed))
    pq.write_table(
        rows.set_column(0, "objectId", pa.array(np.arange(first_id, first_id + n, dtype=np.int64))), path
    )
    return path


def _filters(path: Path, suffix: str) -> Path:
    f = filters()
    names = pa.array([f"{n}{suffix}" for n in FILTERS])
    pq.write_table(f.set_column(f.schema.get_field_index("filterName"), "filterName", names), path)
    return path


def _reference(tc: LiveCluster, tables: dict[str, list[Path]]) -> duckdb.DuckDBPyConnection:
    ref = tc.reference()
    for name, paths in tables.items():
        files = ", ".join(f"'{p}'" for p in paths)
        ref.execute(f'CREATE TABLE "{name}" AS SELECT * FROM read_parquet([{files}])')
    return ref


def _assert_same(tc: LiveCluster, ref: duckdb.DuckDBPyConnection, queries: list[str]) -> None:
    with tc.connect() as conn:
        for sql in queries:
            got = conn.execute(sql).fetchall()
            want = ref.execute(sql).fetchall()
            assert got == want, f"{sql}\n cluster: {got[:5]}\n reference: {want[:5]}"


def _replicas_by_chunk(tc: LiveCluster) -> dict[int, set[str]]:
    store = open_store(tc.spec.metadata())
    try:
        by_chunk: dict[int, set[str]] = {}
        for r in store.replicas():
            by_chunk.setdefault(r.chunk_id, set()).add(r.worker)
        return by_chunk
    finally:
        store.close()


def test_tables_loaded_while_a_worker_is_down_are_not_served_from_it(tc: LiveCluster, tmp_path: Path) -> None:
    obj_a = _director(tmp_path / "Obj2a.parquet", 2_000, seed=31, first_id=1)
    obj_b = _director(tmp_path / "Obj2b.parquet", 2_000, seed=32, first_id=100_001)
    src = tmp_path / "Src2.parquet"
    pq.write_table(sources(SampleSpec(objects=2_000, seed=33), pa.concat_tables([pq.read_table(obj_a), pq.read_table(obj_b)])), src)  # fmt: skip
    filt_a, filt_b = (
        _filters(tmp_path / "Filter2a.parquet", ""),
        _filters(tmp_path / "Filter2b.parquet", "_b"),
    )
    band = tmp_path / "Band.parquet"
    pq.write_table(pa.table({"filterId": pa.array(range(len(FILTERS)), pa.int32()),
                             "band": pa.array([f"band{i}" for i in range(len(FILTERS))])}), band)  # fmt: skip

    # first loads with every worker up; then worker-3 dies and the tables grow without it
    _load(tc, "Obj2", DIRECTOR, obj_a)
    _load(tc, "Filter2", ["--regular"], filt_a)
    _kill(tc, "worker-3")
    _load(tc, "Obj2", DIRECTOR, obj_b)
    _load(tc, "Src2", ["--child-of", "Obj2", "--key", "objectId"], src)
    _load(tc, "Filter2", ["--regular"], filt_b)
    _load(tc, "Band", ["--regular"], band)
    _restart(tc, "worker-3")

    ref = _reference(tc, {"Obj2": [obj_a, obj_b], "Src2": [src], "Filter2": [filt_a, filt_b], "Band": [band]})
    _assert_same(
        tc,
        ref,
        [
            "SELECT COUNT(*), SUM(objectId), MIN(objectId), MAX(objectId) FROM Obj2",
            "SELECT extendedness, COUNT(*), SUM(objectId) FROM Obj2 GROUP BY extendedness ORDER BY extendedness",
            "SELECT COUNT(*), SUM(sourceId) FROM Src2",
            "SELECT COUNT(*), SUM(s.sourceId) FROM Obj2 o JOIN Src2 s ON o.objectId = s.objectId",
            "SELECT f.filterName, COUNT(*) FROM Src2 s JOIN Filter2 f ON s.filterId = f.filterId "
            "GROUP BY f.filterName ORDER BY f.filterName",
            "SELECT b.band, COUNT(*) FROM Source s JOIN Band b ON s.filterId = b.filterId GROUP BY b.band ORDER BY b.band",
            "SELECT COUNT(*), SUM(o.objectId) FROM Object o JOIN Source s ON o.objectId = s.objectId",
            "SELECT f.filterName, COUNT(*) FROM Source s JOIN Filter f ON s.filterId = f.filterId "
            "GROUP BY f.filterName ORDER BY f.filterName",
            "SELECT COUNT(*) FROM Filter2 f JOIN Band b ON f.filterId = b.filterId",
            *_variants("SELECT COUNT(*), SUM(filterId), MIN(filterName), MAX(filterName) FROM Filter2 WHERE filterId > {k}"),
            *_variants("SELECT COUNT(*), MIN(band) FROM Band WHERE filterId > {k}"),
        ],
    )  # fmt: skip

    # the copies worker-3 held lack those rows: they left the placement at the commits; the
    # replication controller copies those chunks back to the level and resyncs the regular
    # tables onto worker-3
    _wait_for(
        "every chunk back at 2 replicas", lambda: {len(ws) for ws in _replicas_by_chunk(tc).values()} == {2}
    )
    _wait_for(
        "Filter2 and Band resynced onto worker-3",
        lambda: _holders(tc, "Filter2") & _holders(tc, "Band") >= {"worker-3"},
    )
    _assert_same(
        tc, ref, ["SELECT COUNT(*), SUM(s.sourceId) FROM Obj2 o JOIN Src2 s ON o.objectId = s.objectId"]
    )

    # worker-3 alone now answers the regular tables it missed, from its resynced copies
    _kill(tc, "worker-1", "worker-2")
    try:
        _assert_same(
            tc,
            ref,
            [
                *_variants(
                    "SELECT COUNT(*), SUM(filterId), MIN(filterName), MAX(filterName) FROM Filter2 WHERE filterId > {k}"
                ),
                "SELECT COUNT(*), MIN(band) FROM Band",
            ],
        )
        # a regular table loaded while worker-3 is the one down has no complete copy on it,
        # and with no live source nothing can be resynced: a clear refusal
        _restart(tc, "worker-1", "worker-2")
        _kill(tc, "worker-3")
        _load(tc, "Band3", ["--regular"], band)
        for name in ("worker-1", "worker-2"):  # no live worker at all for a moment
            tc.cluster.kill(name)
        _wait_for("worker-1 and worker-2 down", lambda: _down(tc) == {"worker-1", "worker-2", "worker-3"})
        _restart(tc, "worker-3")
        with tc.connect() as conn:
            with pytest.raises(psycopg.Error) as err:
                conn.execute("SELECT COUNT(*) FROM Band3").fetchall()
            assert err.value.sqlstate == "08006", err.value
            assert "complete copy of regular table sky.Band3" in str(err.value), err.value
            # a table loaded with every worker up still answers from worker-3
            assert (
                conn.execute("SELECT COUNT(*) FROM Filter").fetchall()
                == ref.execute("SELECT COUNT(*) FROM Filter").fetchall()
            )
    finally:
        _restart(tc, "worker-1", "worker-2")


def _holders(tc: LiveCluster, table: str) -> set[str]:
    store = open_store(tc.spec.metadata())
    try:
        return next((set(c.workers) for c in store.table_copies() if c.table == table), set())
    finally:
        store.close()


def _loader(
    tc: LiveCluster, table: str, kind: list[str], path: Path, barrier: Path, n: int
) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "qserv.cli", "load", "--url", tc.url, "--database", "sky", "--table", table,
            "--no-progress", *kind, str(path)]  # fmt: skip
    env = {**os.environ, COMMIT_BARRIER_ENV: f"{barrier}:{n}"}
    return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _open_transactions(tc: LiveCluster, *tables: str) -> dict[str, int]:
    store = open_store(tc.spec.metadata())
    try:
        started = store.transactions("sky", TransactionState.STARTED)
        return {t.table: t.transaction_id for t in started if t.table in tables}
    finally:
        store.close()


def test_a_worker_that_dies_after_staging_misses_the_commit(tc: LiveCluster, tmp_path: Path) -> None:
    obj = _director(tmp_path / "Obj3.parquet", 3_000, seed=41, first_id=1)
    filt = _filters(tmp_path / "Filter3.parquet", "_3")
    _load(tc, "Filter3", ["--regular"], _filters(tmp_path / "Filter3a.parquet", "_first"))
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    # both loaders stage all their rows, then wait at the commit for a third mark (the test's)
    procs = [
        _loader(tc, "Obj3", DIRECTOR, obj, barrier, 3),
        _loader(tc, "Filter3", ["--regular"], filt, barrier, 3),
    ]
    try:
        _wait_for("both loads staged", lambda: len(list(barrier.glob("*.ready"))) == 2, 300)
        tids = _open_transactions(tc, "Obj3", "Filter3")
        staged = tc.spec.data_dir / "worker-2" / "staging"
        assert any(p.name.startswith(f"t{tids['Obj3']}__") for p in staged.iterdir())
        _kill(tc, "worker-2")
        (barrier / "test.ready").touch()
        errs = [p.communicate(timeout=300)[1] for p in procs]
        assert [p.returncode for p in procs] == [0, 0], errs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    _restart(tc, "worker-2")
    ref = _reference(tc, {"Obj3": [obj], "Filter3": [tmp_path / "Filter3a.parquet", filt]})
    _assert_same(
        tc,
        ref,
        [
            "SELECT COUNT(*), SUM(objectId), MAX(objectId) FROM Obj3",
            "SELECT extendedness, COUNT(*) FROM Obj3 GROUP BY extendedness ORDER BY extendedness",
            "SELECT f.filterName, COUNT(*) FROM Source s JOIN Filter3 f ON s.filterId = f.filterId "
            "GROUP BY f.filterName ORDER BY f.filterName",
            "SELECT COUNT(*), SUM(o.objectId) FROM Object o JOIN Source s ON o.objectId = s.objectId",
            *_variants("SELECT COUNT(*), MIN(filterName), MAX(filterName) FROM Filter3 WHERE filterId > {k}"),
        ],
    )
    # the next load tells worker-2 to drop the rows it staged for the transactions it missed
    _load(tc, "Tick", ["--regular"], _filters(tmp_path / "Tick.parquet", "_tick"))
    left = [p.name for p in staged.iterdir() if p.name.startswith(tuple(f"t{t}__" for t in tids.values()))]
    assert left == [], left


def test_a_commit_that_would_leave_a_chunk_without_a_copy_is_refused(tc: LiveCluster, tmp_path: Path) -> None:
    obj = _director(tmp_path / "Obj4.parquet", 3_000, seed=51, first_id=1)
    ref = _reference(tc, {"Obj4": [obj]})
    # the two workers holding the most chunks together: the load has rows in some of those
    pairs = Counter(frozenset(ws) for ws in _replicas_by_chunk(tc).values() if len(ws) == 2)
    victims = sorted(pairs.most_common(1)[0][0])
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    proc = _loader(tc, "Obj4", DIRECTOR, obj, barrier, 2)
    try:
        _wait_for("the load staged", lambda: len(list(barrier.glob("*.ready"))) == 1, 300)
        tid = _open_transactions(tc, "Obj4")["Obj4"]
        _kill(tc, *victims)  # both die after staging, before the commit
        (barrier / "test.ready").touch()
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        _restart(tc, *victims)
    # all or nothing: the count is 0 or the whole file, never a part of it
    count = "SELECT COUNT(*), SUM(objectId) FROM Obj4"
    assert tc.query(count) in ([(0, None)], ref.execute(count).fetchall())
    assert tc.query(count) == [(0, None)], "the commit should have been refused"
    assert proc.returncode != 0 and "aborted" in err, err
    store = open_store(tc.spec.metadata())
    try:
        targets: dict[int, set[str]] = {}
        for t in store.targets(tid):
            assert t.chunk_id is not None
            targets.setdefault(t.chunk_id, set()).add(t.worker)
    finally:
        store.close()
    orphans = [c for c, ws in targets.items() if ws <= set(victims)]
    assert orphans and any(f"chunk {c} of sky.Obj4" in err for c in orphans), err

    _load(tc, "Obj4", DIRECTOR, obj)  # the rerun loads it, exactly once
    _assert_same(
        tc,
        ref,
        [
            count,
            "SELECT objectId, COUNT(*) FROM Obj4 GROUP BY objectId HAVING COUNT(*) > 1",
            "SELECT extendedness, COUNT(*) FROM Obj4 GROUP BY extendedness ORDER BY extendedness",
        ],
    )
