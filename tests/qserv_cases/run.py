"""Run Qserv's integration cases against a qserv-py cluster and against MariaDB + sciSQL.

Not part of ``make test``: it needs the case data of the public lsst/qserv repository (read in
place, never copied here) and a MariaDB server with the sciSQL UDFs, both prepared by hand::

    python -m tests.qserv_cases.run --data /path/to/qserv/data --cases case01,case02 \\
        --mariadb-socket /tmp/mariadb.sock --work /tmp/qcases

Every table of a case is loaded with ``qserv load`` (kind options from the case's ingest
JSON, column types from its MySQL schema) into a local cluster, and with ``LOAD DATA`` into
MariaDB; every query is sent to the cluster in the MySQL dialect (``-c qserv.dialect=mysql``)
in its Qserv form and to MariaDB in its plain form, and the rows are compared (as sets under
``-- pragma sortresult``; floats to 1e-5 relative, MariaDB prints FLOAT columns with 6 digits).
Prints one line per query and a summary, and writes ``report.json`` in the work dir.
"""

from __future__ import annotations

import argparse
import datetime as dt
import decimal
import gzip
import json
import math
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pymysql

from qserv.cluster import ClusterSpec, LocalCluster
from tests.ports import free_ports
from tests.qserv_cases.case import PARTITION_COLUMNS, Case, CaseQuery, read_case

LIMIT_NO_ORDER = re.compile(r"\bLIMIT\s+(\d+)\s*$", re.IGNORECASE)
ORDER_BY = re.compile(r"\bORDER\s+BY\b", re.IGNORECASE)


def _plain(path: Path) -> bytes:
    return gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()


def prepare_files(case: Case, work: Path) -> dict[str, tuple[Path, Path]]:
    """Per table with data: (its CREATE TABLE for qserv load, the data file uncompressed)."""
    out: dict[str, tuple[Path, Path]] = {}
    work.mkdir(parents=True, exist_ok=True)
    for t in case.tables:
        if t.data is None:
            continue
        raw = _plain(t.data)
        ext = ".tsv" if t.delimiter == "\t" else ".csv"
        plain = work / f"{t.name}.plain{ext}"
        plain.write_bytes(raw)
        schema = work / f"{t.name}.sql"
        schema.write_text(t.create_table())
        out[t.name] = (schema, plain)
    return out


def load_mariadb(case: Case, files: dict[str, tuple[Path, Path]], socket: str) -> None:
    conn = pymysql.connect(unix_socket=socket, user="root", local_infile=True, autocommit=True)
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{case.database}`")
        cur.execute(f"CREATE DATABASE `{case.database}`")
        cur.execute(f"USE `{case.database}`")
        for t in case.tables:
            if t.name not in files or t.mysql_schema is None:
                continue
            for statement in t.mysql_schema.read_text().split(";"):
                if statement.strip() and not statement.strip().startswith("--"):
                    cur.execute(statement)
            # the reference tables hold the columns the data files hold (no partition columns)
            cur.execute(f"SHOW COLUMNS FROM `{t.name}`")
            have = [r[0] for r in cur.fetchall()]
            for extra in [c for c in have if c.lower() in PARTITION_COLUMNS and c not in dict(t.columns)]:
                cur.execute(f"ALTER TABLE `{t.name}` DROP COLUMN `{extra}`")
            # a column the data hold and the .schema lacks (case03 RefDeepSrcMatch.flags)
            for name, mysql_type in t.columns:
                if name.lower() not in {c.lower() for c in have}:
                    cur.execute(f"ALTER TABLE `{t.name}` ADD COLUMN `{name}` {mysql_type}")
            delim = "\\t" if t.delimiter == "\t" else t.delimiter
            cur.execute(
                f"LOAD DATA LOCAL INFILE '{files[t.name][1]}' INTO TABLE `{t.name}` "
                f"FIELDS TERMINATED BY '{delim}'"
                + (f" ENCLOSED BY '{t.enclosed_by}'" if t.enclosed_by else "")
            )
    conn.close()


def load_cluster(case: Case, files: dict[str, tuple[Path, Path]], url: str) -> dict[str, str]:
    """Load every table; returns table -> error for the tables that could not be loaded."""
    cli = [sys.executable, "-m", "qserv.cli"]
    subprocess.run(
        [*cli, "database", "create", case.database, "--overlap", str(case.overlap), "--url", url],
        capture_output=True,
        text=True,
    )
    failed: dict[str, str] = {}
    for t in case.tables:
        if t.name not in files:
            failed[t.name] = "data file absent from the repository"
            continue
        schema, plain = files[t.name]
        # the dump as MySQL wrote it (no header line, MySQL's escapes): read by --no-header
        done = subprocess.run(
            [
                *cli,
                "load",
                "--url",
                url,
                "--database",
                case.database,
                "--table",
                t.name,
                *t.kind_args,
                "--schema",
                str(schema),
                "--no-header",
                *(("--enclosed-by", t.enclosed_by) if t.enclosed_by else ()),
                "--no-progress",
                str(plain),
            ],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            failed[t.name] = (done.stderr.strip().splitlines() or ["?"])[-1]
    return failed


def _norm(v: Any) -> Any:
    if isinstance(v, (memoryview, bytearray)):
        return bytes(v)
    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, dt.datetime):
        return v.replace(tzinfo=None)
    return v


def _same(a: Any, b: Any) -> bool:
    a, b = _norm(a), _norm(b)
    # MariaDB returns a BIT(1) as its raw byte; we load it as BOOLEAN
    if isinstance(a, int) and isinstance(b, bytes) and len(b) == 1:
        return a == b[0]
    if isinstance(b, int) and isinstance(a, bytes) and len(a) == 1:
        return b == a[0]
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, float) or isinstance(b, float):
            if math.isnan(float(a)) and math.isnan(float(b)):
                return True
            return math.isclose(float(a), float(b), rel_tol=1e-5, abs_tol=1e-9)
        return a == b
    if isinstance(a, bytes) and isinstance(b, str):
        return a == b.encode()
    if isinstance(b, bytes) and isinstance(a, str):
        return b == a.encode()
    return bool(a == b)


def _key(row: tuple[Any, ...]) -> tuple[Any, ...]:
    def k(v: Any) -> tuple[int, Any]:
        v = _norm(v)
        if v is None:
            return (0, "")
        if isinstance(v, (int, float)):
            return (1, round(float(v), 4))
        return (2, str(v))

    return tuple(k(v) for v in row)


def compare(ours: list[tuple[Any, ...]], theirs: list[tuple[Any, ...]], sort: bool) -> str | None:
    """None when the rows agree, else what differs."""
    if len(ours) != len(theirs):
        return f"{len(ours)} rows, MariaDB {len(theirs)}"
    a, b = (sorted(ours, key=_key), sorted(theirs, key=_key)) if sort else (ours, theirs)
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        if len(x) != len(y) or not all(_same(p, q) for p, q in zip(x, y, strict=True)):
            if not sort and compare(ours, theirs, True) is None:
                return "same rows in another order (ties under ORDER BY?)"
            return f"row {i}: {x!r:.300} vs MariaDB {y!r:.300}"
    return None


def run_query(q: CaseQuery, dsn: str, socket: str, database: str) -> dict[str, Any]:
    result: dict[str, Any] = {"query": q.name}
    # LIMIT without ORDER BY: any n rows of the whole answer are right, so compare with all of it
    unordered_limit = LIMIT_NO_ORDER.search(q.mysql_sql) and not ORDER_BY.search(q.mysql_sql)
    try:
        conn = pymysql.connect(unix_socket=socket, user="root", database=database)
        with conn.cursor() as cur:
            cur.execute(LIMIT_NO_ORDER.sub("", q.mysql_sql) if unordered_limit else q.mysql_sql)
            theirs = list(cur.fetchall())
        conn.close()
    except Exception as e:  # noqa: BLE001 - reported, not raised: the case set has MySQL-only forms
        return {**result, "status": "mariadb-error", "detail": str(e)[:300]}
    try:
        with psycopg.connect(dsn, autocommit=True, options="-c qserv.dialect=mysql") as c:
            ours = c.execute(q.qserv_sql).fetchall()
    except psycopg.Error as e:
        state = getattr(e, "sqlstate", None)
        return {**result, "status": "refused", "detail": f"{state}: {str(e).strip()[:300]}"}
    if unordered_limit:
        limit = int(LIMIT_NO_ORDER.search(q.mysql_sql).group(1))  # type: ignore[union-attr]
        pool = Counter(_key(r) for r in theirs)
        taken = Counter(_key(r) for r in ours)
        if len(ours) == min(limit, len(theirs)) and all(pool[k] >= n for k, n in taken.items()):
            return {**result, "status": "match", "rows": len(ours)}
        return {**result, "status": "mismatch", "detail": f"{len(ours)} rows not a subset of the answer"}
    diff = compare(ours, theirs, q.sort)
    if diff is None:
        return {**result, "status": "match", "rows": len(ours)}
    return {**result, "status": "mismatch", "detail": diff}


def run_case(case: Case, work: Path, socket: str, url: str, pg_port: int) -> list[dict[str, Any]]:
    files = prepare_files(case, work / case.name)
    load_mariadb(case, files, socket)
    failed = load_cluster(case, files, url)
    for table, why in failed.items():
        print(f"  {case.name}: table {table} not loaded: {why}")
    dsn = f"host=127.0.0.1 port={pg_port} user=qserv dbname={case.database}"
    results = []
    missing = {t.lower() for t in failed}
    for q in case.queries:
        absent = sorted(q.tables() & missing)
        partition_column = q.tables() & PARTITION_COLUMNS
        if absent and all(failed[t].startswith("data file absent") for t in failed if t.lower() in absent):
            r = {"query": q.name, "status": "skipped", "detail": f"no data for {', '.join(absent)}"}
        elif partition_column:
            r = {
                "query": q.name,
                "status": "skipped",
                "detail": "reads Qserv's own chunkId/subChunkId columns",
            }
        else:
            r = run_query(q, dsn, socket, case.database)
        r["case"] = case.name
        print(f"  {case.name}/{r['query']}: {r['status']} {r.get('detail', '')}"[:400], flush=True)
        results.append(r)
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="the data/ directory of an lsst/qserv checkout")
    p.add_argument("--cases", default="case01,case02,case03,case04")
    p.add_argument("--mariadb-socket", default="/tmp/mariadb.sock")
    p.add_argument("--work", type=Path, default=Path("/tmp/qcases"))
    p.add_argument("--workers", type=int, default=3)
    args = p.parse_args(argv)
    ports = free_ports(args.workers + 2)
    spec = ClusterSpec(
        data_dir=args.work / "cluster",
        workers=args.workers,
        pg_port=ports[0],
        http_port=ports[1],
        worker_port=ports[2],
        replicas=2,
    )
    cluster = LocalCluster(spec)
    cluster.start()
    results: list[dict[str, Any]] = []
    try:
        for name in args.cases.split(","):
            case = read_case(args.data / name)
            results += run_case(
                case, args.work, args.mariadb_socket, f"http://127.0.0.1:{ports[1]}", ports[0]
            )
    finally:
        cluster.stop()
    counts = Counter(r["status"] for r in results)
    print("summary:", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())), f"of {len(results)}")
    (args.work / "report.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
