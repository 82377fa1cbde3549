"""One load as one transaction: read, validate, partition and stream the rows, then commit.

The czar's side of the transaction (``begin``, ``placement``, ``stage_index``, ``lookup``,
``commit``/``abort``) is :class:`loader.czar_client.CzarClient`.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import pyarrow as pa

from loader.czar_client import Begun, CzarClient
from loader.match import absent_keys, match_rows
from loader.partition import (
    Partitioned,
    Router,
    child_rows,
    chunk_counts,
    director_rows,
    fan_out,
    validate,
)
from loader.progress import Progress
from loader.read import Batch, infer_schema, input_file, read_batches, unify_schemas
from loader.spec import LoadSpec, arrow_schema_of, columns_of, content_hash, fingerprint, parse_schema
from loader.upload import Uploader, ordered_map, prefetch
from qserv.catalog import FLAG_COLUMN, Column, Database, Table, TableKind
from qserv.errors import (
    DataError,
    DuplicateObject,
    InvalidParameter,
    QservError,
    WorkerUnavailable,
)

DELAY_ENV = "QSERV_LOADER_BATCH_DELAY"  # seconds to sleep after each batch (tests only)
# "DIR:N" (tests only): before committing, wait until N loaders are ready to commit (each marks
# itself with a file in DIR), so a test can send concurrent commits at the same moment
COMMIT_BARRIER_ENV = "QSERV_LOADER_COMMIT_BARRIER"


# ---------------------------------------------------------------------------------------------
# one load, as one transaction


@dataclass(frozen=True)
class LoadReport:
    """What a load did."""

    transaction_id: int
    rows: int  # rows of the input (director overlap copies not counted)
    already_loaded: bool
    chunks: int = 0


def _target_table(spec: LoadSpec, czar: CzarClient) -> tuple[Database, Table, pa.Schema]:
    """The database (created if missing) and the table definition (created if missing)."""
    db = czar.database(spec.database)
    if db is None:
        try:
            db = czar.create_database(spec.database)
        except DuplicateObject:  # created concurrently with other partitioning
            db = czar.database(spec.database)
            assert db is not None
    existing = czar.table(db.name, spec.table)
    if existing is not None:
        wanted = _definition(spec, db, existing.name, existing.columns)
        if _options(wanted) != _options(existing):
            raise InvalidParameter(
                f"table {db.name}.{existing.name} exists as {_describe(existing)}, not {_describe(wanted)}",
                hint="load with the table's own kind options, or choose another table name",
            )
        return db, existing, arrow_schema_of(existing.columns)
    if spec.schema_file is not None:
        columns, schema = parse_schema(spec.schema_file.read_text(), str(spec.schema_file))
    elif not spec.header:
        raise InvalidParameter(
            f"files without a header line (--no-header) need --schema: table {db.name}.{spec.table} does not exist",
            hint="give a CREATE TABLE with --schema (its columns, in the files' order)",
        )
    else:
        files = [input_file(p) for p in spec.files]
        schema = unify_schemas([(f, infer_schema(f, spec.batch_bytes)) for f in files])
        columns = columns_of(schema)
    by_lower = {c.name.lower(): c.name for c in columns}
    roles = (("id", spec.id_column), ("lon", spec.lon_column), ("lat", spec.lat_column),
             ("key", spec.key_column), ("left", spec.left_column), ("right", spec.right_column),
             ("flag", spec.flag_column))  # fmt: skip
    for role, col in roles:
        if col is not None and col.lower() not in by_lower:
            raise DataError(
                f"--{role} column {col!r} is not a column of the input",
                hint=f"columns are {', '.join(c.name for c in columns)}",
            )
    for role, col in (("lon", spec.lon_column), ("lat", spec.lat_column)):
        if col is not None:
            t = schema.field(by_lower[col.lower()]).type
            if not pa.types.is_floating(t) and not pa.types.is_integer(t):
                raise DataError(f"--{role} column {by_lower[col.lower()]} must be numeric, not {t}")

    def spell(col: str | None) -> str | None:
        return by_lower[col.lower()] if col is not None else None

    spelled = replace(spec, id_column=spell(spec.id_column), lon_column=spell(spec.lon_column),
                      lat_column=spell(spec.lat_column), key_column=spell(spec.key_column),
                      left_column=spell(spec.left_column), right_column=spell(spec.right_column),
                      flag_column=spell(spec.flag_column))  # fmt: skip
    table = _definition(spelled, db, spec.table, columns)
    return db, czar.create_table(table), schema


def _definition(spec: LoadSpec, db: Database, name: str, columns: tuple[Column, ...]) -> Table:
    """The table definition a load asks for (match directors as ``db.table``)."""

    def qualified(director: str | None) -> str | None:
        return director if director is None or "." in director else f"{db.name}.{director}"

    match = spec.kind is TableKind.MATCH
    return Table(db.name, name, spec.kind, columns, spec.id_column, spec.lon_column, spec.lat_column,
                 spec.director, spec.key_column, spec.non_unique_key, qualified(spec.left_director),
                 spec.left_column, qualified(spec.right_director), spec.right_column,
                 (spec.flag_column or FLAG_COLUMN) if match else None)  # fmt: skip


def _options(t: Table) -> tuple[object, ...]:
    low = lambda s: s.lower() if s else None  # noqa: E731
    return (
        t.kind,
        low(t.id_column),
        low(t.lon_column),
        low(t.lat_column),
        low(t.director),
        low(t.key_column),
        t.non_unique_key,
        low(t.left_director),
        low(t.left_column),
        low(t.right_director),
        low(t.right_column),
        low(t.flag_column),
    )


def _describe(t: Table) -> str:
    if t.kind is TableKind.DIRECTOR:
        unique = " --non-unique-key" if t.non_unique_key else ""
        return f"director (--id {t.id_column} --lon {t.lon_column} --lat {t.lat_column}{unique})"
    if t.kind is TableKind.CHILD:
        position = f" --lon {t.lon_column} --lat {t.lat_column}" if t.lon_column else ""
        return f"child (--child-of {t.director} --key {t.key_column}{position})"
    if t.kind is TableKind.MATCH:
        flag = "" if t.hidden_flag else f" --flag {t.flag_column}"
        return f"match (--left {t.left_director}={t.left_column} --right {t.right_director}={t.right_column}{flag})"
    return t.kind.value


def _resolved(spec: LoadSpec, table: Table) -> LoadSpec:
    """The spec with column names spelled as the table spells them."""
    return replace(
        spec,
        table=table.name,
        id_column=table.id_column,
        lon_column=table.lon_column,
        lat_column=table.lat_column,
        key_column=table.key_column,
        left_director=table.left_director,
        left_column=table.left_column,
        right_director=table.right_director,
        right_column=table.right_column,
        flag_column=table.flag_column,
    )


def load(spec: LoadSpec, czar: CzarClient, show_progress: bool | None = None) -> LoadReport:
    """Load ``spec.files`` into one table, all or nothing; a rerun of a finished load is a no-op."""
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="hash") as pool:
        hashes = {p: pool.submit(content_hash, p) for p in spec.files}
        db, table, schema = _target_table(spec, czar)
        spec = _resolved(spec, table)
        fp = fingerprint(spec, {p: h.result() for p, h in hashes.items()})
    begun = czar.begin(db.name, table.name, fp)
    if begun.already_loaded:
        return LoadReport(begun.transaction_id, 0, True)
    try:
        with Progress(f"{db.name}.{table.name}", enabled=show_progress) as progress:
            rows, chunk_rows = stream(spec, db, table, schema, czar, begun, progress)
            progress.note("committing")
            _commit_barrier(os.environ.get(COMMIT_BARRIER_ENV, ""))
            czar.commit(begun.transaction_id, chunk_rows, rows)
    except BaseException:
        try:
            czar.abort(begun.transaction_id)
        except QservError:
            pass  # the next run with the same input aborts it
        raise
    return LoadReport(begun.transaction_id, rows, False, len(chunk_rows))


def _commit_barrier(setting: str, timeout: float = 120.0) -> None:
    """The test hook of ``COMMIT_BARRIER_ENV``: wait for the other loaders (or ``timeout``)."""
    if not setting:
        return
    directory, _, count = setting.rpartition(":")
    marks = Path(directory)
    (marks / f"{os.getpid()}.ready").touch()
    deadline = time.monotonic() + timeout
    while len(list(marks.glob("*.ready"))) < int(count) and time.monotonic() < deadline:
        time.sleep(0.01)


def stream(
    spec: LoadSpec,
    db: Database,
    table: Table,
    schema: pa.Schema,
    czar: CzarClient,
    begun: Begun,
    progress: Progress,
) -> tuple[int, dict[int, int]]:
    """Read, validate, partition and send every row; (rows, rows per chunk).

    A regular table's rows go to the workers ``begin`` named (the table was created on each),
    a partitioned table's to the workers ``placement`` names for each chunk. Each row leaves
    the loader once: the worker it is sent to forwards it to the other replicas.
    """
    transaction_id = begun.transaction_id
    workers = {w.name: w.address for w in begun.workers}
    if not workers:
        raise WorkerUnavailable("no active worker to load into", hint="start the cluster's workers first")
    uploader = Uploader(transaction_id, db.name, table.name, workers)
    router = Router(db.partitioning.order)
    delay = float(os.environ.get(DELAY_ENV, "0") or 0)
    chunk_rows: Counter[int] = Counter()
    rows = 0
    regular_workers = sorted(workers)
    round_no = 0
    index_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="index")
    index_future: Future[None] | None = None
    files = [
        input_file(p, None if spec.header else tuple(schema.names), spec.enclosed_by) for p in spec.files
    ]

    def batches() -> Iterator[Batch]:
        for f in files:
            yield from read_batches(f, schema, spec.batch_bytes, spec.batch_rows)

    def route(part: Partitioned) -> None:
        new = sorted(set(router.unplaced(part.chunks)) | set(router.unplaced(part.overlap_chunks))
                     if part.overlap_chunks is not None else router.unplaced(part.chunks))  # fmt: skip
        if new:
            placed = czar.placement(transaction_id, new)
            router.add({c: tuple(w.name for w in ws) for c, ws in placed.items()})
            for ws in placed.values():
                for w in ws:
                    workers.setdefault(w.name, w.address)
        for r in router.routes(part.rows, part.chunks):
            uploader.send(r.worker, r.rows, forward=r.forward)
        if part.overlap is not None and part.overlap_chunks is not None:
            for r in router.routes(part.overlap, part.overlap_chunks):
                uploader.send(r.worker, r.rows, overlap=True, forward=r.forward)

    def partition(batch: Batch) -> Partitioned | None:
        validate(batch, spec)
        if table.kind is TableKind.DIRECTOR:
            return director_rows(batch, spec, db.partitioning)
        if table.kind is TableKind.CHILD:
            assert spec.key_column and spec.director
            chunks = czar.lookup(db.name, spec.director, batch.data.column(spec.key_column))
            return child_rows(batch, spec, chunks, db.partitioning)
        if table.kind is TableKind.MATCH:
            sides = []
            for director, column in ((table.left_director, table.left_column),
                                     (table.right_director, table.right_column)):  # fmt: skip
                assert director and column
                database, _, name = director.rpartition(".")
                sides.append(czar.lookup(database, name, batch.data.column(column)))
            for absent in absent_keys(batch, table, sides[0], sides[1]):  # rare: staged at once
                czar.stage_index(transaction_id, absent)
            return match_rows(batch, table, sides[0], sides[1])
        return None

    try:
        for batch, part in ordered_map(partition, prefetch(batches())):
            n = batch.data.num_rows
            if part is None:  # a regular table: every worker gets every row
                data = pa.Table.from_batches([batch.data])
                for first, *others in fan_out(regular_workers, round_no):
                    uploader.send(first, data, forward=others)
                round_no += 1
            else:
                if part.index is not None:
                    if index_future is not None:
                        index_future.result()  # at most one staging request in flight
                    index_future = index_pool.submit(czar.stage_index, transaction_id, part.index)
                route(part)
                chunk_rows.update(chunk_counts(part.chunks))
            rows += n
            progress.update(n)
            if delay:
                time.sleep(delay)  # test hook: lets a test kill the loader mid-transaction
        if index_future is not None:
            index_future.result()
        progress.note("waiting for workers")
        uploader.close()
    except BaseException:
        uploader.cancel()
        raise
    finally:
        index_pool.shutdown(wait=True)
    return rows, dict(chunk_rows)
