"""Far match pairs: the pairs a chunk-local director-match-director join cannot see.

``d1 JOIN m ON m.left = d1.id JOIN d2 ON m.right = d2.id`` runs per chunk C on d1's rows of C,
m's copies in C with the left row (flag bit 1, or 4) and d2's rows of C plus its overlap rows
(czar/analyze/match.py). A pair whose right row lies farther than the overlap from C is a
*far* pair: its copy in C has bit 1 only (not 2: the right row is in another chunk; not 4:
the right row exists), and no row of d2 or d2's overlap in C has its right key. The chunk
join gives no row for it, so such pairs are answered as a *virtual chunk* (czar/far.py)::

    1. copies  SELECT m.* FROM m WHERE <chunks> AND (m.flag & 7) = 1 AND m.right IS NOT NULL
               AND NOT EXISTS (d2 ∪ d2__overlap with that key in m's chunk)   -- the far copies
    2. rows    d1's rows with the far copies' left keys (in the copies' chunks) and d2's rows
               with their right keys (chunks from the director index)
    3. chunk   at the czar, a DuckDB holding: m = the far copies, d1 = those left rows, d2 = no
               rows, d2__overlap = each right row once per chunk of a copy naming it (its
               ``_chunk`` made that chunk); the query's own worker SQL runs over it

The worker SQL over the virtual chunk yields exactly the far pairs' rows (the WHERE of both
sides, partial aggregates, DISTINCT, pushed-down LIMIT as on any chunk), which join the
workers' batches before the merge: each pair once, from its real chunk or from the virtual one.
A d1 group then spans a real chunk and the virtual one, so such plans never finish aggregates
on the workers (split.py). Only inner joins of exactly d1, m, d2 with unique keys take this
path; other shapes keep the check that fails the query on a far pair (czar/plan/neighbour.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from czar.analyze.match import flag_column
from czar.analyze.model import AnalyzedQuery, JoinKind
from czar.plan.model import CHUNK_FILTER_PLACEHOLDER, QueryPlan, WorkerBatch
from qserv.catalog import CHUNK_COLUMN, FLAG_ALONE, FLAG_LEFT, FLAG_RIGHT, OVERLAP_SUFFIX, Table, TableKind
from qserv.errors import StatementTooComplex
from qserv.sphere.scisql import install_macros
from qserv.sqlerrors import translate

MAX_FAR_PAIRS = 100_000
"""Most far match pairs one query may answer (their keys are sent to the workers as IN lists
and their rows held in the czar's memory): the default of CzarConfig.max_far_pairs."""


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _qualified(table: Table, suffix: str = "") -> str:
    return f"{_quoted(table.database)}.{_quoted(table.name + suffix)}"


@dataclass(frozen=True)
class FarPairs:
    """How a director-match-director join finds its far pairs (see the module docstring)."""

    match: Table
    flag: str  # the match table's flag column
    left: Table  # the left director (key column ``left.id_column``)
    right: Table  # the right director, read with its overlap rows
    # a restrictor on the right director limits the plan's chunks to those near it, not to
    # the chunks of the far pairs' left rows: then every chunk of the match table is searched
    everywhere: bool

    def copies_template(self) -> str:
        """Worker SQL of the far copies of the chunks (one chunk placeholder, ``__m``)."""
        m, r = '"__m"', '"__r"'
        key, rid = _quoted(self.match.right_column or ""), _quoted(self.right.id_column or "")
        rows = f"SELECT * FROM {_qualified(self.right)} UNION ALL SELECT * FROM {_qualified(self.right, OVERLAP_SUFFIX)}"
        return (
            f"SELECT {m}.* FROM {_qualified(self.match)} AS {m} WHERE {CHUNK_FILTER_PLACEHOLDER.format(0)} "
            f"AND ({m}.{_quoted(self.flag)} & {FLAG_LEFT | FLAG_RIGHT | FLAG_ALONE}) = {FLAG_LEFT} "
            f"AND {m}.{key} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM ({rows}) AS {r} "
            f"WHERE {r}.{rid} = {m}.{key} AND {r}.{_quoted(CHUNK_COLUMN)} = {m}.{_quoted(CHUNK_COLUMN)})"
        )

    def rows_template(self, table: Table, keys: Sequence[object]) -> str:
        """Worker SQL of ``table``'s rows (all columns) with one of ``keys``."""
        values = ", ".join(_constant(k) for k in keys)
        return (
            f'SELECT * FROM {_qualified(table)} AS "__d" WHERE {CHUNK_FILTER_PLACEHOLDER.format(0)} '
            f'AND "__d".{_quoted(table.id_column or "")} IN ({values})'
        )


def _constant(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise StatementTooComplex(f"match key {value!r} is neither an integer nor a string")
    if isinstance(value, int):
        return str(value)
    return "'" + value.replace("'", "''") + "'"


def far_pairs(q: AnalyzedQuery) -> FarPairs | None:
    """The far-pair plan of ``q``: an inner join of exactly a left director, a match table and
    its right director (read with overlap), both directors' keys unique; else None."""
    overlap = [j for j in q.chunk_joins if j.kind is JoinKind.OVERLAP]
    if len(overlap) != 1 or len(q.tables) != 3 or any(r.outer for r in q.tables):
        return None
    if any(j.kind is JoinKind.NEAR for j in q.chunk_joins):
        return None
    refs = {r.alias.lower(): r for r in q.tables}
    m, right = refs[overlap[0].left.lower()], refs[overlap[0].right.lower()]
    (left,) = (r for a, r in refs.items() if a not in (m.alias.lower(), right.alias.lower()))
    if m.kind is not TableKind.MATCH or left.kind is not TableKind.DIRECTOR:
        return None
    name = f"{left.table.database}.{left.table.name}".lower()
    if (
        (m.table.left_director or "").lower() != name
        or left.table.non_unique_key
        or right.table.non_unique_key
    ):
        return None
    everywhere = q.region is not None and any(
        r.alias.lower() == right.alias.lower() for r in q.region.restrictors
    )
    return FarPairs(m.table, flag_column(m), left.table, right.table, everywhere)


def fetch_plan(template: str, alias: str, assignment: dict[str, list[int]], worker: str) -> QueryPlan:
    """A plan running ``template`` (one placeholder: ``_chunk`` of ``alias``) on the chunks of
    ``assignment`` (worker -> chunks); none: one batch on ``worker`` (the result's schema)."""
    draft = QueryPlan(
        strategy="far-pairs",
        reasons=(),
        chunk_ids=tuple(sorted(c for ids in assignment.values() for c in ids)),
        batches=(),
        merge_sql="",
        columns=(),
        types=(),
        worker_template=template,
        chunk_columns=(f"{_quoted(alias)}.{_quoted(CHUNK_COLUMN)}",),
        passthrough=True,
    )
    batches = tuple(WorkerBatch(w, tuple(ids), draft.render(ids)) for w, ids in sorted(assignment.items()))
    return dataclasses.replace(draft, batches=batches or (WorkerBatch(worker, (), draft.render(())),))


def checked_count(copies: pa.Table, bound: int = MAX_FAR_PAIRS) -> None:
    """Refuse more far pairs than ``bound`` (never answer only some of them)."""
    if copies.num_rows > bound:
        raise StatementTooComplex(
            f"match join has {copies.num_rows} pairs whose rows are farther apart than the overlap, "
            f"above the bound of {bound} (qserv czar --max-far-pairs)",
            hint="restrict the left director (WHERE, a region), or load into a database with a larger "
            "overlap (qserv database create DB --overlap DEG)",
        )


def virtual_rows(
    plan: QueryPlan, far: FarPairs, copies: pa.Table, left: pa.Table, right: pa.Table
) -> pa.Table:
    """The plan's worker SQL over the virtual chunk of the far pairs (module docstring)."""
    conn = duckdb.connect(":memory:")
    try:
        install_macros(conn)
        conn.register("__copies", copies)
        conn.register("__left", left)
        conn.register("__right", right)
        for schema in {far.match.database, far.left.database, far.right.database}:
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {_quoted(schema)}")
        conn.execute(f"CREATE TABLE {_qualified(far.match)} AS SELECT * FROM __copies")
        conn.execute(f"CREATE TABLE {_qualified(far.left)} AS SELECT * FROM __left")
        if (far.right.database.lower(), far.right.name.lower()) != (
            far.left.database.lower(),
            far.left.name.lower(),
        ):
            conn.execute(f"CREATE TABLE {_qualified(far.right)} AS SELECT * FROM __right WHERE FALSE")
        chunk, key = _quoted(CHUNK_COLUMN), _quoted(far.match.right_column or "")
        conn.execute(
            f"CREATE TABLE {_qualified(far.right, OVERLAP_SUFFIX)} AS "
            f'SELECT "__r".* REPLACE ("__c"."__chunk" AS {chunk}) FROM __right AS "__r" '
            f'JOIN (SELECT DISTINCT {chunk} AS "__chunk", {key} AS "__key" FROM __copies) AS "__c" '
            f'ON "__r".{_quoted(far.right.id_column or "")} = "__c"."__key"'
        )
        chunks = sorted({int(c) for c in copies.column(CHUNK_COLUMN).to_pylist()})
        return conn.sql(plan.render(chunks)).to_arrow_table()
    except duckdb.Error as e:
        raise translate(str(e)) from None
    finally:
        conn.close()
