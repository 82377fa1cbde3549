"""The ``qserv`` command: run services, a local cluster, the demo, and the bulk loader."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from dataclasses import fields, replace
from pathlib import Path

from qserv import log as qlog
from qserv.config import Config, CzarConfig, MetadataConfig, ReplicationConfig, WorkerConfig

EXAMPLES = """\
examples:
  qserv up --data-dir data --workers 3            # a local cluster, foreground until Ctrl-C
  qserv demo                                       # the same with a sample sky catalog loaded
  qserv load --url http://127.0.0.1:4048 --database sky --table Object \\
      --director --id objectId --lon ra --lat decl Object.csv
  qserv database create sky --chunk-order 5 --subchunk-order 8 --overlap 0.016667
  qserv database list
  qserv replica status                             # replication: chunks, replicas, workers
  psql -h 127.0.0.1 -p 4040 -U qserv sky -c 'SELECT COUNT(*) FROM Object'
"""
# CzarConfig bounds on what clients can make the czar hold: `qserv czar --max-connections ...`
CZAR_LIMITS = (
    "max_connections",
    "startup_timeout",
    "max_message_bytes",
    "max_statement_length",
    "max_http_body_bytes",
    "max_far_pairs",
)


def _add_cluster_args(p: argparse.ArgumentParser, data_dir: str) -> None:
    p.add_argument(
        "--data-dir", type=Path, default=Path(data_dir), help="state of all services (default: %(default)s)"
    )
    p.add_argument("--workers", type=int, default=3, help="number of worker processes (default: %(default)s)")
    p.add_argument("--port", type=int, default=4040, help="PostgreSQL wire port (default: %(default)s)")
    p.add_argument("--http-port", type=int, default=4048, help="HTTP API port (default: %(default)s)")
    p.add_argument(
        "--worker-port", type=int, default=5040, help="first worker gRPC port (default: %(default)s)"
    )
    p.add_argument(
        "--replicas",
        type=int,
        default=2,
        help="replicas of every chunk, capped at --workers (default: %(default)s)",
    )
    p.add_argument("--metadata", default="", help="metadata store URL (default: SQLite file in the data dir)")
    _add_timeout_args(p)
    _add_evict_arg(p)


def _duration(text: str) -> float:
    """An argparse type: a PostgreSQL time setting (``5000`` ms, ``'30s'``, ``'2min'``) in seconds."""
    from czar.session import parse_duration_ms
    from qserv.errors import InvalidParameter

    try:
        return parse_duration_ms(text) / 1000
    except InvalidParameter as exc:
        raise argparse.ArgumentTypeError(f"{exc.message} ({exc.hint or 'e.g. 30s, 5min'})") from None


def _add_timeout_args(p: argparse.ArgumentParser) -> None:
    defaults = CzarConfig()
    p.add_argument(
        "--statement-timeout",
        type=_duration,
        default=defaults.statement_timeout,
        metavar="DURATION",
        help="default statement_timeout of every session, as PostgreSQL's: 5000 (ms), 30s, 5min; "
        "0 means none (default: 0)",
    )
    p.add_argument(
        "--worker-timeout",
        type=_positive_seconds,
        default=defaults.worker_timeout,
        metavar="SECONDS",
        help="the server's upper bound on one worker batch, whatever a session's statement_timeout: "
        "past it the statement fails with 57014 (default: %(default)s)",
    )


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:  # also refuses NaN
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds: {text!r}")
    return value


def _add_evict_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--evict-timeout",
        type=_positive_seconds,
        default=ReplicationConfig.evict_timeout,
        metavar="SECONDS",
        help="a worker silent this long is evicted and its chunks are copied from the surviving "
        "replicas until every chunk is back at the replication level (default: %(default)s)",
    )


def _add_supervision_args(p: argparse.ArgumentParser) -> None:
    # set by `qserv up` for its children (qserv/lifeline.py), not by users
    p.add_argument("--lifeline", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--supervisor-pid", type=int, default=None, help=argparse.SUPPRESS)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qserv",
        description="qserv-py: a distributed, sharded SQL database for astronomical catalogs.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default: %(default)s)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser(
        "up",
        help="run a local cluster (czar, workers, replication controller) in the foreground",
        description="Run a local cluster in the foreground until SIGINT/SIGTERM, which stops every "
        "service cleanly. Ready when the PostgreSQL port accepts connections. Restarting with the "
        "same --data-dir serves the same data.",
    )
    _add_cluster_args(up, "data")

    demo = sub.add_parser(
        "demo",
        help="a local cluster with a generated sample catalog (Object, Source, Filter)",
        description="Start a local cluster, load a generated sample sky catalog into database 'sky' "
        "(Object director, Source child, Filter regular), print how to connect, and run until Ctrl-C.",
    )
    _add_cluster_args(demo, ".demo")
    demo.add_argument(
        "--objects", type=int, default=100_000, help="sample Object rows (default: %(default)s)"
    )

    czar = sub.add_parser("czar", help="run the czar (PostgreSQL wire + HTTP front ends)")
    czar.add_argument(
        "--data-dir", type=Path, default=Path("data"), help="cluster data dir (czar state in DIR/czar)"
    )
    czar.add_argument("--host", default="127.0.0.1", help="listen address (default: %(default)s)")
    czar.add_argument("--port", type=int, default=4040, help="PostgreSQL wire port (default: %(default)s)")
    czar.add_argument("--http-port", type=int, default=4048, help="HTTP API port (default: %(default)s)")
    czar.add_argument("--replicas", type=int, default=2, help="replication level for new chunks")
    czar.add_argument("--metadata", default="", help="metadata store URL (default: SQLite in the data dir)")
    _add_timeout_args(czar)
    _add_supervision_args(czar)
    for f in fields(CzarConfig):
        if f.name in CZAR_LIMITS:
            czar.add_argument(
                "--" + f.name.replace("_", "-"),
                type=type(f.default),
                default=f.default,
                help=f"{f.metadata['help']} (default: %(default)s)",
            )

    worker = sub.add_parser("worker", help="run one worker (gRPC server over a DuckDB database)")
    worker.add_argument("--name", required=True, help="unique worker name, e.g. worker-1")
    worker.add_argument("--host", default="127.0.0.1", help="listen address (default: %(default)s)")
    worker.add_argument("--port", type=int, default=5040, help="gRPC port (default: %(default)s)")
    worker.add_argument(
        "--data-dir", type=Path, required=True, help="directory of the worker's DuckDB database"
    )
    worker.add_argument("--threads", type=int, default=2, help="DuckDB threads (default: %(default)s)")
    worker.add_argument("--memory-limit", default="4GB", help="DuckDB memory limit (default: %(default)s)")
    worker.add_argument(
        "--compression",
        default="uncompressed",
        choices=["uncompressed", "auto"],
        help="storage compression: uncompressed scans fastest, auto makes smaller files (default: %(default)s)",
    )
    _add_supervision_args(worker)

    replicad = sub.add_parser("replicad", help="run the replication controller (worker health)")
    replicad.add_argument("--data-dir", type=Path, default=Path("data"), help="cluster data dir")
    replicad.add_argument(
        "--metadata", default="", help="metadata store URL (default: SQLite in the data dir)"
    )
    replicad.add_argument("--interval", type=float, default=2.0, help="seconds between health probes")
    replicad.add_argument(
        "--replicas",
        type=int,
        default=2,
        help="replication level kept for every chunk (default: %(default)s)",
    )
    _add_evict_arg(replicad)
    _add_supervision_args(replicad)

    load = sub.add_parser(
        "load",
        help="bulk-load CSV/TSV/Parquet files into a table (one all-or-nothing transaction)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from loader.cli import add_arguments

    add_arguments(load)

    database = sub.add_parser(
        "database",
        help="create a database with its partitioning, or list the databases",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from loader.database_cli import add_arguments as add_database_arguments

    add_database_arguments(database)

    replica = sub.add_parser(
        "replica",
        help="replication admin: status, workers, chunks, replicate, rebalance, evict, verify, level",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from qserv.replica_cli import add_arguments as add_replica_arguments

    add_replica_arguments(replica)
    return parser


def _config(args: argparse.Namespace) -> Config:
    data_dir: Path = args.data_dir
    return Config(
        data_dir=data_dir,
        czar=CzarConfig(
            host=getattr(args, "host", "127.0.0.1"),
            pg_port=getattr(args, "port", 4040),
            http_port=getattr(args, "http_port", 4048),
            data_dir=data_dir / "czar",
            statement_timeout=getattr(args, "statement_timeout", CzarConfig.statement_timeout),
            worker_timeout=getattr(args, "worker_timeout", CzarConfig.worker_timeout),
            **{name: getattr(args, name) for name in CZAR_LIMITS if hasattr(args, name)},
        ),
        replication=replace(
            ReplicationConfig(),
            level=getattr(args, "replicas", 2),
            health_interval=getattr(args, "interval", 2.0),
            evict_timeout=getattr(args, "evict_timeout", ReplicationConfig.evict_timeout),
        ),
        metadata=MetadataConfig(url=getattr(args, "metadata", "") or ""),
    )


def _wait_for_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass


def _cluster_spec(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from qserv.cluster import ClusterSpec

    return ClusterSpec(
        data_dir=args.data_dir.resolve(),
        workers=args.workers,
        pg_port=args.port,
        http_port=args.http_port,
        worker_port=args.worker_port,
        replicas=min(args.replicas, args.workers),
        metadata_url=args.metadata,
        statement_timeout=args.statement_timeout,
        worker_timeout=args.worker_timeout,
        evict_timeout=args.evict_timeout,
    )


def _run_cluster(args: argparse.Namespace, demo: bool) -> int:
    from qserv.cluster import LocalCluster

    spec = _cluster_spec(args)
    cluster = LocalCluster(spec)
    try:
        cluster.start()
        if demo:
            from qserv.demo import load_sample, print_welcome

            load_sample(spec, args.objects)
            print_welcome(spec)
        else:
            print(
                f"qserv is up: psql -h {spec.host} -p {spec.pg_port} -U qserv DB   "
                f"(HTTP API http://{spec.host}:{spec.http_port}, logs in {spec.data_dir / 'logs'})",
                flush=True,
            )
        _wait_for_signal()
    finally:
        cluster.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # `qserv replica chunks | head`: the reader is gone, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    qlog.setup(args.command, args.log_level)
    if args.command in ("up", "demo"):
        from qserv.cluster import DataDirInUse

        try:
            return _run_cluster(args, demo=args.command == "demo")
        except DataDirInUse as exc:
            print(f"qserv {args.command}: {exc}", file=sys.stderr, flush=True)
            return 1
    if args.command in ("czar", "worker", "replicad"):
        from qserv.lifeline import follow

        follow(args.lifeline, args.supervisor_pid)  # no-op unless started by `qserv up`
    if args.command == "czar":
        from czar.service import serve

        serve(_config(args))
        return 0
    if args.command == "worker":
        from qserv.errors import QservError
        from worker.service import serve as serve_worker

        try:
            serve_worker(
                WorkerConfig(
                    name=args.name,
                    host=args.host,
                    port=args.port,
                    data_dir=args.data_dir,
                    threads=args.threads,
                    memory_limit=args.memory_limit,
                    compression=args.compression,
                )
            )
        except QservError as exc:  # a damaged data file, a taken port: said, not a traceback
            hint = f" ({exc.hint})" if exc.hint else ""
            print(f"qserv worker {args.name}: {exc.message}{hint}", file=sys.stderr, flush=True)
            return 1
        return 0
    if args.command == "replicad":
        from qserv.replica.controller import run

        run(_config(args))
        return 0
    if args.command == "load":
        from loader.cli import run as run_load

        return run_load(args)
    if args.command == "database":
        from loader.database_cli import run as run_database

        return run_database(args)
    if args.command == "replica":
        from qserv.replica_cli import run as run_replica

        return run_replica(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
