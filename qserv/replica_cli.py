"""``qserv replica ...``: the replication admin tool, a client of the czar's HTTP admin API.

Mounted by ``qserv/cli.py`` (:func:`add_arguments`, :func:`run`). Reads print tables for people
and, with ``--json``, the API's documents for scripts. Changes are carried out by the
replication controller: ``replicate``, ``rebalance``, ``purge`` and ``verify`` ask it for the
work and follow the cluster's status with a progress bar until it is done (``--no-wait``
returns at once).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote

from loader.czar_client import CzarClient
from qserv.errors import QservError

DESCRIPTION = """\
Inspect and steer replication: every chunk is kept on `level` workers; a worker silent for the
evict timeout is evicted and its chunks are copied from the surviving replicas; a new worker
gets a share of the replicas (moved, not added); replicas are verified by checksum and a corrupt
one is repaired from a good one. The replication controller (qserv replicad, started by
qserv up) does the work; this tool shows its state and asks it to act now."""

EPILOG = """\
examples:
  qserv replica status                      # replication level, chunks under-replicated and lost
  qserv replica status --json               # the same for scripts
  qserv replica workers                     # every worker, its state and replicas
  qserv replica chunks --standing under     # the chunks below the level and where they are
  qserv replica level 3                     # keep 3 replicas of every chunk from now on
  qserv replica replicate                   # copy until every chunk is at the level
  qserv replica add-worker worker-4 10.0.0.7:5040 && qserv replica rebalance
  qserv replica evict worker-2              # take a worker out; its chunks are copied elsewhere
  qserv replica verify                      # checksum every replica, repair corrupt ones
"""

WAIT_S = 600.0
POLL_S = 0.5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``replica`` subcommands to ``parser``."""
    parser.description = DESCRIPTION
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    sub = parser.add_subparsers(dest="replica_command", required=True, metavar="COMMAND")
    commands: list[argparse.ArgumentParser] = [
        sub.add_parser("status", help="replication level, chunks, under-replicated, lost; workers"),
        sub.add_parser("workers", help="every worker: address, state, replicas held"),
    ]
    chunks = sub.add_parser("chunks", help="every family chunk, its standing and its replicas")
    chunks.add_argument("--family", help="only the chunks of this family (see qserv database list)")
    chunks.add_argument(
        "--standing", choices=["ok", "under", "over", "lost"], help="only the chunks with this standing"
    )
    commands.append(chunks)
    waits = []
    for name, text in (
        ("replicate", "copy chunks below the level from good replicas until every chunk is at it"),
        ("rebalance", "move replicas from the most- to the least-loaded workers until even"),
        ("purge", "drop replicas above the level"),
        ("verify", "checksum every replica against the others of its chunk; repair corrupt ones"),
    ):
        waits.append(sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + "."))
    evict = sub.add_parser(
        "evict",
        help="take a worker out: queries stop using it and its chunks are copied elsewhere",
        description="Take a worker out of service (state disabled): queries stop using it, its "
        "replicas no longer count and its chunks are copied to other workers. It stays out until "
        "`qserv replica add-worker` brings it back (then it is reconciled before it serves).",
    )
    evict.add_argument("worker", metavar="WORKER", help="worker name")
    evict.add_argument(
        "--force", action="store_true", help="also when it holds the only good replica of some chunk"
    )
    add = sub.add_parser(
        "add-worker",
        help="register a running worker (or bring back an evicted one)",
        description="Register a worker that is running (qserv worker --name NAME ...): it is "
        "probed at ADDRESS first. The controller then moves replicas onto it. A worker that was "
        "evicted or disabled is reconciled first: replicas it may hold from before are dropped "
        "where good copies exist.",
    )
    add.add_argument("name", metavar="NAME", help="the worker's --name")
    add.add_argument("address", metavar="ADDRESS", help="HOST:PORT of its gRPC server")
    level = sub.add_parser(
        "level",
        help="show the replication level, or set it",
        description="Show the replication level, or set it for the whole cluster (it overrides "
        "--replicas of qserv up and qserv replicad, and outlives restarts).",
    )
    level.add_argument("level", metavar="N", type=int, nargs="?", help="the new level (1 to 16)")
    commands += waits + [evict, add, level]
    for p in commands:
        p.add_argument("--url", default="http://127.0.0.1:4048", help="czar HTTP API (default: %(default)s)")
        p.add_argument("--json", action="store_true", help="print the API's JSON document")
    for p in waits + [level]:
        p.add_argument("--no-wait", action="store_true", help="ask for the work and return at once")
        p.add_argument(
            "--timeout",
            type=float,
            default=WAIT_S,
            metavar="SECONDS",
            help="give up waiting after this long (the work goes on; default: %(default)s)",
        )


def run(args: argparse.Namespace) -> int:
    """Run one ``qserv replica`` command; 0 on success, 1 on error or an unfinished wait."""
    czar = CzarClient(args.url, timeout=60.0)
    try:
        return _COMMANDS[args.replica_command](czar, args)
    except QservError as e:
        print(f"qserv replica: error: {e.message}", file=sys.stderr)
        if e.hint:
            print(f"hint: {e.hint}", file=sys.stderr)
        return 1


def _status(czar: CzarClient, args: argparse.Namespace) -> int:
    doc = czar.api("GET", "/replica/status")
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(_summary(doc))
    print()
    _print_workers(doc["workers"])
    for c in doc["lost_chunks"][:20]:
        print(f"LOST: chunk {c['chunk']} of family {c['family']}: no replica left")
    return 0


def _summary(doc: dict[str, Any]) -> str:
    level = doc["replication_level"]
    capped = f" (capped at {doc['effective_level']} workers)" if doc["effective_level"] != level else ""
    controller = doc["controller"]
    if controller["running"]:
        ctl = "running, idle" if controller.get("idle") else "running, working"
    else:
        ctl = "NOT RUNNING" + (
            f" (last report {controller['last_report_s']} s ago)" if controller["last_report_s"] else ""
        )
    lines = [
        f"replication level  {level}{capped}",
        f"chunks             {doc['chunks']}",
        f"under-replicated   {doc['under_replicated']}",
        f"over-replicated    {doc['over_replicated']}",
        f"lost               {doc['lost']}",
        f"corrupt replicas   {doc['corrupt']}",
        f"copies in flight   {doc['copies_in_flight']}",
        f"controller         {ctl}",
    ]
    return "\n".join(lines)


def _print_workers(workers: list[dict[str, Any]]) -> None:
    rows = [("WORKER", "ADDRESS", "STATE", "REPLICAS", "CORRUPT")] + [
        (w["name"], w["address"], w["state"], str(w["replicas"]), str(w["corrupt"])) for w in workers
    ]
    _table(rows)


def _table(rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())


def _workers(czar: CzarClient, args: argparse.Namespace) -> int:
    workers = czar.api("GET", "/replica/workers")["workers"]
    if args.json:
        print(json.dumps(workers, indent=2))
    else:
        _print_workers(workers)
    return 0


def _chunks(czar: CzarClient, args: argparse.Namespace) -> int:
    query = "&".join(
        f"{k}={v}" for k, v in (("family", args.family), ("standing", args.standing)) if v is not None
    )
    chunks = czar.api("GET", "/replica/chunks" + (f"?{query}" if query else ""))["chunks"]
    if args.json:
        print(json.dumps(chunks, indent=2))
        return 0
    rows = [("FAMILY", "CHUNK", "STANDING", "GOOD", "REPLICAS")]
    for c in chunks:
        holders = ", ".join(
            r["worker"] + ("" if r["worker_state"] == "active" else f" ({r['worker_state']})")
            + (" (corrupt)" if r["corrupt"] else "")
            for r in c["replicas"]
        )  # fmt: skip
        rows.append((c["family"], str(c["chunk"]), c["standing"], str(c["good"]), holders or "-"))
    _table(rows)
    return 0


def _wait(czar: CzarClient, args: argparse.Namespace, done: Callable[[dict[str, Any]], bool]) -> int:
    """Follow the status until ``done`` says the controller has carried out the request."""
    from tqdm import tqdm

    deadline = time.monotonic() + args.timeout
    doc = czar.api("GET", "/replica/status")
    bar = tqdm(
        total=doc["chunks"],
        initial=_at_level(doc),
        unit="chunk",
        desc="chunks at level",
        disable=args.json,
        leave=False,
    )
    try:
        while True:
            bar.total = doc["chunks"]
            bar.set_postfix(copying=doc["copies_in_flight"], refresh=False)
            bar.update(_at_level(doc) - bar.n)
            if done(doc):
                break
            if not doc["controller"]["running"]:
                bar.close()
                print("qserv replica: error: the replication controller is not running", file=sys.stderr)
                print("hint: start it (qserv replicad, or qserv up)", file=sys.stderr)
                return 1
            if time.monotonic() > deadline:
                bar.close()
                print(
                    f"qserv replica: not done after {args.timeout:g} s (the controller goes on); "
                    "see qserv replica status",
                    file=sys.stderr,
                )
                return 1
            time.sleep(POLL_S)
            doc = czar.api("GET", "/replica/status")
    finally:
        bar.close()
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(_summary(doc))
    down = [w["name"] for w in doc["workers"] if w["state"] == "down"]
    if doc["under_replicated"] and down:
        print(
            f"qserv replica: {doc['under_replicated']} chunks wait for {', '.join(down)} (down, not evicted "
            "yet: a worker back within the evict timeout needs no copies)",
            file=sys.stderr,
        )
        print(f"hint: qserv replica evict {down[0]} copies its chunks now", file=sys.stderr)
        return 1
    return 1 if doc["lost"] else 0


def _at_level(doc: dict[str, Any]) -> int:
    return int(doc["chunks"] - doc["under_replicated"] - doc["lost"])


def _request(czar: CzarClient, args: argparse.Namespace) -> int:
    action = args.replica_command
    ticket = czar.api("POST", f"/replica/{action}")
    if args.no_wait:
        print(json.dumps(ticket) if args.json else f"{action} requested (request {ticket['request']})")
        return 0
    if action == "verify":
        code = _wait(czar, args, lambda d: d["verify_done"] >= ticket["request"])
        last = czar.api("GET", "/replica/status").get("last_verification") or {}
        if not args.json:
            for f, c, w in last.get("corrupt", [])[:20]:
                print(f"corrupt: chunk {c} of family {f} on {w} (being repaired from a good replica)")
            for f, c in last.get("conflicts", [])[:20]:
                print(f"CONFLICT: the replicas of chunk {c} of family {f} disagree; none can be told right")
        return code
    return _wait(czar, args, _carried_out(ticket["request"]))


def _evict(czar: CzarClient, args: argparse.Namespace) -> int:
    doc = czar.api("POST", f"/replica/workers/{quote(args.worker, safe='')}/evict", {"force": args.force})
    if args.json:
        print(json.dumps(doc))
    else:
        print(f"worker {doc['worker']} taken out (was {doc['was']}); its chunks are copied elsewhere")
    return 0


def _add_worker(czar: CzarClient, args: argparse.Namespace) -> int:
    doc = czar.api("POST", "/replica/workers", {"name": args.name, "address": args.address})
    if args.json:
        print(json.dumps(doc))
    elif doc["new"]:
        print(
            f"worker {doc['worker']} added at {doc['address']}; `qserv replica rebalance` moves replicas onto it"
        )
    else:
        print(f"worker {doc['worker']} at {doc['address']}: {doc['state']}")
    return 0


def _level(czar: CzarClient, args: argparse.Namespace) -> int:
    if args.level is None:
        doc = czar.api("GET", "/replica/level")
        print(json.dumps(doc) if args.json else doc["replication_level"])
        return 0
    ticket = czar.api("POST", "/replica/level", {"level": args.level})
    if not args.json:
        print(f"replication level set to {args.level}")
    if args.no_wait:
        return 0
    return _wait(czar, args, _carried_out(ticket["request"]))


def _carried_out(request: int) -> Callable[[dict[str, Any]], bool]:
    """Done: the controller has decided on a round that saw ``request`` and has nothing left to do."""

    def done(doc: dict[str, Any]) -> bool:
        ctl = doc["controller"]
        return int(ctl.get("round_request") or 0) >= request and bool(ctl.get("idle"))

    return done


_COMMANDS: dict[str, Callable[[CzarClient, argparse.Namespace], int]] = {
    "status": _status,
    "workers": _workers,
    "chunks": _chunks,
    "replicate": _request,
    "rebalance": _request,
    "purge": _request,
    "verify": _request,
    "evict": _evict,
    "add-worker": _add_worker,
    "level": _level,
}
