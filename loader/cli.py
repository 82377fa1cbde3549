"""``qserv load``: bulk-load CSV/TSV/Parquet files into a qserv table, all or nothing.

Mounted by ``qserv/cli.py`` as the ``load`` subcommand (:func:`add_arguments`, :func:`run`);
also runnable as ``python -m loader.cli``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from loader.spec import LoadSpec
from loader.transaction import CzarClient, load
from qserv.catalog import TableKind
from qserv.errors import QservError

DESCRIPTION = """\
Load CSV/TSV (with a header line) or Parquet files into one table of a qserv cluster.

The load is one transaction: rows are validated, partitioned into HEALPix chunks, sent to
every replica's worker, and become visible all at once on commit. A bad value stops the load
with its file, line and column, and nothing is loaded. Rerunning the same command after a
crash loads the data exactly once; rerunning it after success does nothing.

The database is created with default partitioning on first use. The table is created from
--schema, the Parquet schema, or types inferred from the whole CSV file."""

EPILOG = """\
examples:
  qserv load --url http://127.0.0.1:4048 --database sky --table Object \\
      --director --id objectId --lon ra --lat dec object.csv
  qserv load --url http://127.0.0.1:4048 --database sky --table Source \\
      --child-of Object --key objectId source_*.parquet
  qserv load --url http://127.0.0.1:4048 --database sky --table Filter --regular filters.tsv
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``load`` options to ``parser`` (the qserv CLI's subparser or a standalone one)."""
    parser.description = DESCRIPTION
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--url", default="http://127.0.0.1:4048", help="czar HTTP API (default: %(default)s)")
    parser.add_argument("--database", required=True, help="target database (created if missing)")
    parser.add_argument("--table", required=True, help="target table (created if missing)")
    kind = parser.add_argument_group("table kind (exactly one)")
    excl = kind.add_mutually_exclusive_group(required=True)
    excl.add_argument(
        "--director", action="store_true", help="partitioned by its own position; needs --id --lon --lat"
    )
    excl.add_argument(
        "--child-of", metavar="DIRECTOR", help="rows go to the chunk of their DIRECTOR row; needs --key"
    )
    excl.add_argument("--regular", action="store_true", help="small table copied whole to every worker")
    kind.add_argument("--id", metavar="COL", help="director: unique key column (e.g. objectId)")
    kind.add_argument("--lon", metavar="COL", help="director: longitude / RA column, degrees")
    kind.add_argument("--lat", metavar="COL", help="director: latitude / Dec column, degrees")
    kind.add_argument("--key", metavar="COL", help="child: column holding the director key")
    parser.add_argument(
        "--schema", type=Path, metavar="FILE", help="a CREATE TABLE statement giving column types"
    )
    parser.add_argument(
        "--batch-mb", type=int, default=16, metavar="MB", help="CSV bytes per batch (default: %(default)s)"
    )
    parser.add_argument(
        "--batch-rows",
        type=int,
        default=256 * 1024,
        metavar="N",
        help="Parquet rows per batch (default: %(default)s)",
    )
    progress = parser.add_mutually_exclusive_group()
    progress.add_argument(
        "--progress", dest="progress", action="store_true", default=None, help="always show progress"
    )
    progress.add_argument("--no-progress", dest="progress", action="store_false", help="never show progress")
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help="CSV, TSV or Parquet files")


def spec_from_args(args: argparse.Namespace) -> LoadSpec:
    """The typed load specification of parsed arguments."""
    if args.director:
        kind = TableKind.DIRECTOR
    elif args.child_of:
        kind = TableKind.CHILD
    else:
        kind = TableKind.REGULAR
    return LoadSpec(
        url=args.url,
        database=args.database,
        table=args.table,
        kind=kind,
        files=tuple(args.files),
        id_column=args.id if kind is TableKind.DIRECTOR else None,
        lon_column=args.lon if kind is TableKind.DIRECTOR else None,
        lat_column=args.lat if kind is TableKind.DIRECTOR else None,
        director=args.child_of,
        key_column=args.key if kind is TableKind.CHILD else None,
        schema_file=args.schema,
        batch_bytes=max(1, args.batch_mb) << 20,
        batch_rows=max(1, args.batch_rows),
    )


def run(args: argparse.Namespace) -> int:
    """Run a load; 0 on success (or nothing to do), 1 on error (printed to stderr)."""
    started = time.monotonic()
    try:
        spec = spec_from_args(args)
        report = load(spec, CzarClient(spec.url), show_progress=args.progress)
    except QservError as e:
        print(f"qserv load: error: {e.message}", file=sys.stderr)
        if e.hint:
            print(f"hint: {e.hint}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("qserv load: interrupted; nothing was loaded", file=sys.stderr)
        return 130
    if report.already_loaded:
        print(
            f"{spec.database}.{spec.table}: already loaded by transaction {report.transaction_id}; nothing to do",
            file=sys.stderr,
        )
        return 0
    seconds = time.monotonic() - started
    rate = report.rows / seconds if seconds > 0 else 0.0
    print(
        f"{spec.database}.{spec.table}: loaded {report.rows:,} rows into {report.chunks:,} chunks "
        f"in {seconds:.1f} s ({rate:,.0f} rows/s), transaction {report.transaction_id}",
        file=sys.stderr,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="qserv load")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
