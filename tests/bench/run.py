"""``make bench``: the cluster against one local DuckDB over the same data, side by side.

Generates a 10M-row Object catalog with Sources, loads it into a 3-worker cluster with 2
replicas (timing the loader), loads the same Parquet files into one in-process DuckDB, and
prints for each measurement the cluster's time, DuckDB's time and their ratio. Absolute times
on a shared machine are noise; the ratios measured in one run are the result.

``--planning`` measures only planning time (parse + analyze + plan p50, no cluster).

Environment: QSERV_BENCH_OBJECTS (default 10,000,000), QSERV_BENCH_DIR (default .bench),
QSERV_BENCH_PARTS (default ``scan,near``: ``near`` alone loads only Object and times the
near-neighbour self-joins, tests/bench/near.py; ``load`` alone only times the loader).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import psycopg
import pyarrow.parquet as pq

from qserv.cluster import ClusterSpec, LocalCluster
from qserv.sample import SampleSpec, load_arguments, sample_paths, write
from qserv.sphere.scisql import install_macros
from tests.bench.near import near_neighbour
from tests.cluster import free_ports


def _timed(fn: Callable[[], object], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def _pct(xs: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(xs), p))


PLANNING_BUDGET_MS = 2.0  # issue 6: parse + analyze + plan p50 of typical queries


def planning_times(repeat: int = 300) -> list[tuple[str, float, float]]:
    """(query kind, p50 ms, p95 ms) of parse + analyze + plan, without a cluster.

    The catalog is the differential tests' generated one at chunk order 5; every one of the
    12,288 chunks is non-empty and placed on 3 workers with 2 replicas, so a full scan plans
    over as many chunks as a whole-sky catalog has. Each run varies the query's constants
    (another key, another cone, threshold or radius), so no plan cache applies; the
    per-snapshot memo the pipeline keeps (non-empty chunk sets, replica choice) does, as it
    does in the czar. The kinds: cone search, point lookup, full-scan aggregate, GROUP BY
    aggregate, director-child join, near-neighbour self-join.
    """
    from czar.analyze import analyze
    from czar.parse import parse
    from czar.plan import PlanContext, plan
    from tests.differential.catalog import generate
    from tests.differential.harness import DictDirectorIndex

    generated = generate(n_objects=2000, order=5, other=False)
    db = generated.database.name.lower()
    ids = generated.rows("Object").column("objectId").to_pylist()
    chunks = frozenset(range(12 * 4**5))
    workers = ("w1", "w2", "w3")
    ctx = PlanContext(
        placement={c: (workers[c % 3], workers[(c + 1) % 3]) for c in chunks},
        nonempty_chunks={(db, "object"): chunks, (db, "source"): chunks},
        workers=workers,
        director_index=DictDirectorIndex({(db, "object"): {k: hash(k) % len(chunks) for k in ids}}),
        catalog=generated.catalog,
        memo={},
    )
    rng = np.random.default_rng(5)
    kinds: dict[str, Callable[[int], str]] = {
        "cone search": lambda i: (
            f"SELECT objectId, ra, decl FROM Object WHERE qserv_areaspec_circle("
            f"{rng.uniform(0, 360):.4f}, {rng.uniform(-80, 80):.4f}, 0.1)"
        ),
        "point lookup": lambda i: f"SELECT * FROM Object WHERE objectId = {ids[i % len(ids)]}",
        "full-scan aggregate": lambda i: (
            f"SELECT COUNT(*), AVG(gFlux), MIN(decl), MAX(decl) FROM Object WHERE flags > {i % 7}"
        ),
        "GROUP BY aggregate": lambda i: (
            f"SELECT flags, COUNT(*), AVG(gFlux), MAX(rFlux) FROM Object WHERE decl > {rng.uniform(-80, 80):.3f} "
            "GROUP BY flags"
        ),
        "director-child join": lambda i: (
            "SELECT o.objectId, COUNT(*), AVG(s.psfFlux) FROM Object o JOIN Source s ON s.objectId = o.objectId "
            f"WHERE o.flags = {i % 7} GROUP BY o.objectId"
        ),
        "near-neighbour join": lambda i: (
            "SELECT COUNT(*) FROM Object o1, Object o2 "
            f"WHERE scisql_angSep(o1.ra, o1.decl, o2.ra, o2.decl) < {rng.uniform(0.001, 0.015):.5f}"
        ),
    }
    out = []
    for label, make in kinds.items():
        times = []
        for i in range(repeat + 20):
            sql = make(i)
            t = time.perf_counter()
            plan(analyze(parse(sql), generated.catalog, db, sql=sql), ctx)
            if i >= 20:  # the first runs build the memoised describe database and chunk sets
                times.append((time.perf_counter() - t) * 1000)
        out.append((label, _pct(times, 50), _pct(times, 95)))
    return out


def print_planning_times() -> bool:
    """Print the planning times; whether every p50 is within the budget."""
    rows = planning_times()
    print(f"planning (parse + analyze + plan), budget p50 <= {PLANNING_BUDGET_MS} ms")
    print(f"{'query':24} {'p50 ms':>8} {'p95 ms':>8}")
    for label, p50, p95 in rows:
        print(f"{label:24} {p50:8.3f} {p95:8.3f}")
    return all(p50 <= PLANNING_BUDGET_MS for _, p50, _ in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--planning",
        "--only-planning",
        action="store_true",
        help="measure only planning (parse + analyze + plan p50/p95 per query kind, no cluster, "
        "a few seconds); exit status 1 when a p50 exceeds the budget",
    )
    args = parser.parse_args()
    if args.planning:
        return 0 if print_planning_times() else 1
    n_objects = int(os.environ.get("QSERV_BENCH_OBJECTS", "10000000"))
    parts = set(os.environ.get("QSERV_BENCH_PARTS", "scan,near").split(","))
    root = Path(os.environ.get("QSERV_BENCH_DIR", ".bench")).resolve()
    shutil.rmtree(root / "cluster", ignore_errors=True)
    sample_dir = root / f"sample-{n_objects}"
    if not (sample_dir / "Filter.parquet").exists():
        print(f"generating {n_objects:,} objects (and ~{n_objects:,} sources) ...", flush=True)
        write(SampleSpec(objects=n_objects, sources_per_object=1.0, seed=1), sample_dir)
    files = sample_paths(sample_dir)

    ports = free_ports(5)
    spec = ClusterSpec(
        data_dir=root / "cluster",
        workers=3,
        pg_port=ports[0],
        http_port=ports[1],
        worker_port=ports[2],
        replicas=2,
    )
    cluster = LocalCluster(spec)
    results: list[tuple[str, float, float]] = []
    notes: list[str] = []
    try:
        cluster.start()
        url = f"http://127.0.0.1:{spec.http_port}"

        def load(*args: str) -> float:
            t = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "qserv.cli", "load", "--url", url, "--database", "sky", *args],
                check=True,
            )
            return time.perf_counter() - t

        commands = load_arguments(files)
        t_obj = load(*commands["Object"])
        loader_note = (
            f"loader: Object {n_objects / t_obj:,.0f} rows/s ({n_objects:,} rows, {t_obj:.1f} s, "
            "replication 2, each row sent once)"
        )
        if parts & {"scan", "load"}:
            n_src = pq.ParquetFile(files["Source"]).metadata.num_rows
            t_src = load(*commands["Source"])
            load(*commands["Filter"])
            loader_note += f"; Source {n_src / t_src:,.0f} rows/s ({n_src:,} rows, {t_src:.1f} s)"
        notes.append(loader_note)
        if "scan" not in parts:  # only Object is needed
            files = {"Object": files["Object"]}
        if not parts & {"scan", "near"}:
            return _report(n_objects, results, notes)

        ref = duckdb.connect()
        ref.execute("SET threads = 2")
        install_macros(ref)
        t = time.perf_counter()
        for name, path in files.items():
            ref.execute(f"CREATE TABLE \"{name}\" AS SELECT * FROM read_parquet('{path}')")
        t_ref = time.perf_counter() - t
        notes.append(
            f"single DuckDB CREATE TABLE from Parquet: {sum(pq.ParquetFile(p).metadata.num_rows for p in files.values()) / t_ref:,.0f} rows/s"
        )
        conn = psycopg.connect(f"host=127.0.0.1 port={spec.pg_port} user=qserv dbname=sky", autocommit=True)
        if "near" in parts:
            results.extend(near_neighbour(conn, ref, n_objects))
        if "scan" not in parts:
            conn.close()
            return _report(n_objects, results, notes)

        def both(label: str, cluster_sql: str, ref_sql: str, repeat: int) -> None:
            conn.execute(cluster_sql).fetchall()
            ref.execute(ref_sql).fetchall()
            c = _timed(lambda: conn.execute(cluster_sql).fetchall(), repeat)
            r = _timed(lambda: ref.execute(ref_sql).fetchall(), repeat)
            results.append((label + " p50", statistics.median(c), statistics.median(r)))

        agg = "SELECT COUNT(*), AVG(g_psfFlux), MIN(decl), MAX(decl), SUM(extendedness) FROM Object"
        both("full-scan aggregate", agg, agg, 5)
        grp = "SELECT extendedness, COUNT(*), AVG(r_psfFlux) FROM Object GROUP BY extendedness"
        both("full-scan GROUP BY", grp, grp, 5)

        rng = np.random.default_rng(3)
        ids = ref.execute("SELECT objectId FROM Object USING SAMPLE 200 ROWS").fetchall()
        cones = [
            (float(rng.uniform(0, 360)), float(np.degrees(np.arcsin(rng.uniform(-1, 1))))) for _ in range(100)
        ]

        def series(
            label: str, run_c: Callable[[int], object], run_r: Callable[[int], object], n: int
        ) -> None:
            for i in range(min(5, n)):
                run_c(i)
                run_r(i)
            c, r = [], []
            for i in range(n):
                t = time.perf_counter()
                run_c(i)
                c.append((time.perf_counter() - t) * 1000)
                t = time.perf_counter()
                run_r(i)
                r.append((time.perf_counter() - t) * 1000)
            results.append((label + " p50", _pct(c, 50), _pct(r, 50)))
            results.append((label + " p95", _pct(c, 95), _pct(r, 95)))

        series(
            "cone search r=0.1deg",
            lambda i: conn.execute(
                "SELECT objectId, ra, decl FROM Object WHERE qserv_areaspec_circle(%s, %s, 0.1)", cones[i]
            ).fetchall(),
            lambda i: ref.execute(
                "SELECT objectId, ra, decl FROM Object WHERE scisql_s2PtInCircle(ra, decl, ?, ?, 0.1) = 1",
                cones[i],
            ).fetchall(),
            len(cones),
        )
        series(
            "point lookup by objectId",
            lambda i: conn.execute("SELECT * FROM Object WHERE objectId = %s", ids[i]).fetchall(),
            lambda i: ref.execute("SELECT * FROM Object WHERE objectId = ?", ids[i]).fetchall(),
            len(ids),
        )
        conn.close()
    finally:
        cluster.stop()
    return _report(n_objects, results, notes)


def _report(n_objects: int, results: list[tuple[str, float, float]], notes: list[str]) -> int:
    print()
    print(f"qserv-py bench: {n_objects:,} objects, 3 workers, 2 replicas, {os.cpu_count()} cores")
    print(f"{'measurement':34} {'cluster ms':>11} {'duckdb ms':>10} {'ratio':>7}")
    for label, c, r in results:
        print(f"{label:34} {c:11.2f} {r:10.2f} {c / r if r else float('inf'):7.2f}")
    for note in notes:
        print(note)
    print()
    print_planning_times()
    return 0


if __name__ == "__main__":
    sys.exit(main())
