"""``qserv load``: bulk-load CSV/TSV/Parquet files into a qserv table, all or nothing.

Mounted by ``qserv/cli.py`` as the ``load`` subcommand (:func:`add_arguments`, :func:`run`);
also runnable as ``python -m loader.cli``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from qserv.catalog import TableKind
from qserv.errors import InvalidParameter, QservError
from qserv.memory import keep_freed_memory

if TYPE_CHECKING:
    from loader.spec import LoadSpec

DESCRIPTION = """\
Load CSV/TSV (with a header line) or Parquet files into one table of a qserv cluster.

The load is one transaction: rows are validated, partitioned into HEALPix chunks, sent once
to one replica's worker, which stages them on the chunk's other replicas, and become visible
on every replica all at once on commit. A bad value stops the load
with its file, line and column, and nothing is loaded. Rerunning the same command after a
crash loads the data exactly once; rerunning it after success does nothing.

The database is created with default partitioning on first use (`qserv database create`
chooses another). The table is created from --schema (a CREATE TABLE, MySQL column types
accepted), the Parquet schema, or types inferred from the whole CSV file. In CSV/TSV, \\N and
the empty field are NULL; binary (BLOB) fields are bytes as MySQL's SELECT ... INTO OUTFILE
writes them (\\0, \\t, \\n, \\r, \\Z, \\\\ escaped), as in Qserv's catalogs.

Table kinds:
  --director --id COL --lon COL --lat COL [--non-unique-key]
      partitioned by its own position, with overlap rows; keys unique unless
      --non-unique-key (then a key lookup returns every row with it)
  --child-of DIRECTOR --key COL [--lon COL --lat COL]
      rows go to the chunk of their DIRECTOR row; with --lon/--lat, a row whose key no
      director row has is kept in the chunk of its own position, and a row farther than
      the database's overlap from its director row's chunk is refused
  --match --left [DB.]DIRECTOR=COL --right [DB.]DIRECTOR=COL [--flag COL]
      N-to-M pairs between two directors of one family; each pair is stored in the chunk
      of its left row and in that of its right row, the flag column (COL, else a hidden
      one) saying which sides are in the chunk (bit 1 left, bit 2 right, bit 4 the
      pair's only copy: its other side has no director row); a row with neither side
      is refused
  --regular
      small table copied whole to every worker"""

EPILOG = """\
examples:
  qserv load --url http://127.0.0.1:4048 --database sky --table Object \\
      --director --id objectId --lon ra --lat dec object.csv
  qserv load --url http://127.0.0.1:4048 --database sky --table Source \\
      --child-of Object --key objectId source_*.parquet
  qserv load --url http://127.0.0.1:4048 --database sky --table RefObjMatch \\
      --match --left RefObject=refObjectId --right Object=objectId --flag flags match.csv
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
    excl.add_argument(
        "--match", action="store_true", help="N-to-M pairs of two directors; needs --left --right"
    )
    excl.add_argument("--regular", action="store_true", help="small table copied whole to every worker")
    kind.add_argument("--id", metavar="COL", help="director: key column (e.g. objectId)")
    kind.add_argument(
        "--non-unique-key",
        action="store_true",
        help="director: keys may repeat (Qserv's unique_primary_key: 0)",
    )
    kind.add_argument("--lon", metavar="COL", help="director, child: longitude / RA column, degrees")
    kind.add_argument("--lat", metavar="COL", help="director, child: latitude / Dec column, degrees")
    kind.add_argument("--key", metavar="COL", help="child: column holding the director key")
    kind.add_argument("--left", metavar="[DB.]DIRECTOR=COL", help="match: left director and its key column")
    kind.add_argument("--right", metavar="[DB.]DIRECTOR=COL", help="match: right director and its key column")
    kind.add_argument(
        "--flag", metavar="COL", help="match: integer column to hold the flag (default: hidden)"
    )
    parser.add_argument(
        "--schema", type=Path, metavar="FILE", help="a CREATE TABLE statement giving column types"
    )
    parser.add_argument(
        "--no-header",
        dest="header",
        action="store_false",
        help="CSV/TSV files have no header line (as Qserv's dumps): their columns are the table's, "
        "in order (--schema, or the existing table)",
    )
    parser.add_argument(
        "--enclosed-by",
        metavar="CHAR",
        help="with --no-header: fields may be enclosed in CHAR, as MySQL's FIELDS ENCLOSED BY writes "
        "them (a CHAR inside a field is escaped with a backslash or doubled)",
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
    # imported here, not at the top: every ``qserv`` command builds this parser, and only a
    # load needs the loader's modules (DuckDB, sqlglot, healpy: a second of start-up)
    from loader.spec import LoadSpec, director_option

    if args.director:
        kind = TableKind.DIRECTOR
    elif args.child_of:
        kind = TableKind.CHILD
    elif args.match:
        kind = TableKind.MATCH
    else:
        kind = TableKind.REGULAR
    misplaced = [
        option
        for option, value, kinds in (
            ("--id", args.id, (TableKind.DIRECTOR,)),
            ("--non-unique-key", args.non_unique_key, (TableKind.DIRECTOR,)),
            ("--lon", args.lon, (TableKind.DIRECTOR, TableKind.CHILD)),
            ("--lat", args.lat, (TableKind.DIRECTOR, TableKind.CHILD)),
            ("--key", args.key, (TableKind.CHILD,)),
            ("--left", args.left, (TableKind.MATCH,)),
            ("--right", args.right, (TableKind.MATCH,)),
            ("--flag", args.flag, (TableKind.MATCH,)),
        )
        if value and kind not in kinds
    ]
    if misplaced:
        raise InvalidParameter(f"{', '.join(misplaced)} cannot be used with a {kind.value} table")
    left = director_option(args.left, "--left") if args.left else (None, None)
    right = director_option(args.right, "--right") if args.right else (None, None)
    return LoadSpec(
        url=args.url,
        database=args.database,
        table=args.table,
        kind=kind,
        files=tuple(args.files),
        id_column=args.id,
        lon_column=args.lon,
        lat_column=args.lat,
        director=args.child_of,
        key_column=args.key,
        non_unique_key=args.non_unique_key,
        left_director=left[0],
        left_column=left[1],
        right_director=right[0],
        right_column=right[1],
        flag_column=args.flag,
        schema_file=args.schema,
        header=args.header,
        enclosed_by=args.enclosed_by,
        batch_bytes=max(1, args.batch_mb) << 20,
        batch_rows=max(1, args.batch_rows),
    )


def run(args: argparse.Namespace) -> int:
    """Run a load; 0 on success (or nothing to do), 1 on error (printed to stderr)."""
    from loader.czar_client import CzarClient
    from loader.transaction import load

    started = time.monotonic()
    keep_freed_memory()
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
