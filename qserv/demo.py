"""``qserv demo``: load the generated sample catalog and tell the user how to connect."""

from __future__ import annotations

import argparse

from qserv.cluster import ClusterSpec
from qserv.sample import SampleSpec, load_arguments, sample_paths, write

EXAMPLE_QUERIES = (
    "SELECT COUNT(*) FROM Object",
    "SELECT objectId, ra, decl FROM Object WHERE qserv_areaspec_circle(10, 5, 0.5) ORDER BY objectId LIMIT 5",
    "SELECT o.objectId, COUNT(*) AS n, AVG(s.psfFlux) AS mean_flux FROM Object o JOIN Source s "
    "ON o.objectId = s.objectId WHERE o.objectId IN (1003, 1006, 1009) GROUP BY o.objectId ORDER BY o.objectId",
    "SELECT f.filterName, COUNT(*) FROM Source s JOIN Filter f ON s.filterId = f.filterId "
    "GROUP BY f.filterName ORDER BY f.filterName",
)


def _load(spec: ClusterSpec, argv: list[str]) -> None:
    from loader.cli import add_arguments, run

    parser = argparse.ArgumentParser(prog="qserv load")
    add_arguments(parser)
    args = parser.parse_args(["--url", f"http://{spec.host}:{spec.http_port}", "--database", "sky", *argv])
    code = run(args)
    if code != 0:
        raise SystemExit(f"loading the sample failed ({' '.join(argv[:2])}): exit {code}")


def load_sample(spec: ClusterSpec, objects: int) -> None:
    """Generate the sample (once) and load it; reloading is a no-op thanks to transactions."""
    out = spec.data_dir / "sample"
    if not (out / "Filter.parquet").exists():
        print(f"generating a sample catalog of {objects:,} objects in {out}", flush=True)
        write(SampleSpec(objects=objects), out)
    for argv in load_arguments(sample_paths(out)).values():
        _load(spec, argv)


def print_welcome(spec: ClusterSpec) -> None:
    psql = f"psql -h {spec.host} -p {spec.pg_port} -U qserv sky"
    lines = [
        "",
        f"qserv demo is running: {spec.workers} workers, {spec.replicas} replicas per chunk.",
        f"Connect with:   {psql}",
        f"or with psycopg: psycopg.connect('host={spec.host} port={spec.pg_port} user=qserv dbname=sky')",
        "",
        "Try:",
        *(f"  {q};" for q in EXAMPLE_QUERIES),
        "",
        f"Logs: {spec.data_dir / 'logs'}    Stop with Ctrl-C.",
        "",
    ]
    print("\n".join(lines), flush=True)
