"""``qserv database create|list``: databases and their partitioning, through the czar's HTTP API.

Mounted by ``qserv/cli.py`` as the ``database`` subcommand (:func:`add_arguments`, :func:`run`).
A database is created implicitly, with default partitioning, by its first load; ``create``
chooses the partitioning first (``POST /api/v1/databases``), ``list`` shows every database
(``GET /api/v1/databases``).
"""

from __future__ import annotations

import argparse
import json
import sys

from loader.czar_client import CzarClient
from qserv.catalog import Database, Partitioning
from qserv.errors import QservError

DESCRIPTION = """\
Create a database with the partitioning of its tables, or list the databases.

Databases with the same chunk order, sub-chunk order and overlap form a family: their chunks
live on the same workers, so their tables join chunk-locally. A database is created with the
default partitioning by its first load unless it was created here first."""

EPILOG = """\
examples:
  qserv database create sky --chunk-order 5 --subchunk-order 8 --overlap 0.016667
  qserv database list --url http://127.0.0.1:4048
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``create`` and ``list`` subcommands to ``parser``."""
    parser.description = DESCRIPTION
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    default = Partitioning()
    sub = parser.add_subparsers(dest="database_command", required=True, metavar="COMMAND")
    create = sub.add_parser(
        "create",
        help="create a database with the given partitioning (no-op if it exists with the same)",
        description="Create a database. If it exists with the same partitioning nothing changes; "
        "with another partitioning it is an error (the partitioning of a database never changes).",
    )
    create.add_argument("name", metavar="DB", help="database name")
    create.add_argument(
        "--chunk-order",
        type=int,
        default=default.order,
        metavar="N",
        help="HEALPix order of chunks: 12*4^N chunks on the sky (default: %(default)s)",
    )
    create.add_argument(
        "--subchunk-order",
        type=int,
        default=default.sub_order,
        metavar="M",
        help="HEALPix order of sub-chunks, above N, at most 13 (default: %(default)s)",
    )
    create.add_argument(
        "--overlap",
        type=float,
        default=default.overlap,
        metavar="DEG",
        help="margin of director rows stored beside each chunk, degrees: the largest "
        "near-neighbour join radius (default: %(default).6f)",
    )
    listing = sub.add_parser("list", help="list the databases and their partitioning")
    listing.add_argument("--json", action="store_true", help="print a JSON array instead of a table")
    for p in (create, listing):
        p.add_argument("--url", default="http://127.0.0.1:4048", help="czar HTTP API (default: %(default)s)")


def _describe(db: Database) -> str:
    p = db.partitioning
    return (
        f"chunk order {p.order}, sub-chunk order {p.sub_order}, overlap {p.overlap:.6f} deg "
        f"(family {p.family})"
    )


def run(args: argparse.Namespace) -> int:
    """Run ``database create`` or ``database list``; 0 on success, 1 on error (on stderr)."""
    try:
        czar = CzarClient(args.url)
        if args.database_command == "create":
            existed = czar.database(args.name) is not None
            db = czar.create_database(
                args.name, Partitioning(args.chunk_order, args.subchunk_order, args.overlap)
            )
            print(f"database {db.name} {'exists' if existed else 'created'}: {_describe(db)}")
            return 0
        databases = czar.databases()
    except QservError as e:
        print(f"qserv database: error: {e.message}", file=sys.stderr)
        if e.hint:
            print(f"hint: {e.hint}", file=sys.stderr)
        return 1
    if args.json:
        docs = [
            {"name": d.name, "chunk_order": d.partitioning.order, "subchunk_order": d.partitioning.sub_order,
             "overlap": d.partitioning.overlap, "family": d.partitioning.family}
            for d in databases
        ]  # fmt: skip
        print(json.dumps(docs, indent=2))
        return 0
    rows = [("DATABASE", "CHUNK ORDER", "SUBCHUNK ORDER", "OVERLAP (DEG)", "FAMILY")] + [
        (d.name, str(d.partitioning.order), str(d.partitioning.sub_order), f"{d.partitioning.overlap:.6f}",
         d.partitioning.family)
        for d in databases
    ]  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    return 0
