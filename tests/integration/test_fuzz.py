"""Differential fuzzing: token-level mutants of our own queries, on a real cluster and on DuckDB.

Every query of the differential corpus (``tests/differential``: the hand-written shapes and the
seeded generated ones; the cluster differential's parameterized queries with their values) is
cut into tokens and mutated, with a fixed seed: a token deleted,
duplicated, swapped with its neighbour, replaced by or preceded with one from a small
vocabulary (keywords, operators, literals, identifiers, parentheses). Each mutant goes to a
3-worker cluster holding the generated catalog, through psycopg, and to an independent
reference: one plain DuckDB holding the same tables, running the mutant as sqlglot transpiles
it to DuckDB (no project macros, no analyzer). For every mutant:

* no hang (a client-side timeout per query) and no crash (the czar answers ``SELECT 1`` after);
* no internal error (XX000) and no leaked internal wording (:data:`LEAKS`: parser classes,
  another engine's words, internal names) in message, detail or hint;
* an error carries a SQLSTATE of a client-error class (:data:`ERROR_CLASSES`);
* where both answer a deterministic query (no LIMIT/TOP, no spatial function, no ANY_VALUE),
  the same rows (floats to 1e-9 relative); where the czar refuses what DuckDB answers, only with
  a refusal SQLSTATE (:data:`REFUSALS`: PostgreSQL is stricter than DuckDB, or qserv does not
  distribute the construct); where the czar answers what DuckDB refuses, a failure.

``QSERV_FUZZ_SEED`` and ``QSERV_FUZZ_COUNT`` widen a run by hand; the summary (answered,
refused by SQLSTATE, compared) is printed (``pytest -s``). Mutants that once failed are fixed
regression cases in ``tests/unit/czar/test_error_wording.py``.
"""

from __future__ import annotations

import asyncio
import decimal
import math
import os
import random
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import psycopg
import pytest
import sqlglot

from tests.cluster import LiveCluster, running_cluster
from tests.differential.catalog import GeneratedCatalog, generate
from tests.differential.reference import SessionDialect
from tests.differential.test_differential import QUERIES
from tests.differential.test_generated import generate_query
from tests.integration.test_differential_cluster import PARAMETERIZED, _load, _write

SEED = int(os.environ.get("QSERV_FUZZ_SEED", "20261202"))
COUNT = int(os.environ.get("QSERV_FUZZ_COUNT", "600"))
QUERY_TIMEOUT = 30.0  # seconds: generous; a mutant that takes longer is a hang


def _literal(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return str(value)


def _bound(sql: str, params: tuple[object, ...]) -> str:
    """A parameterized query with its parameters written in as literals."""
    parts = sql.split("%s")
    return parts[0] + "".join(_literal(p) + rest for p, rest in zip(params, parts[1:], strict=True))


# the differential corpus over the generated catalog (the end-to-end queries use the sample's
# schema, another catalog)
CORPUS: tuple[str, ...] = (
    *QUERIES,
    *(generate_query(seed) for seed in range(40)),
    *(_bound(sql, params) for sql, params in PARAMETERIZED),
)

# The replacement vocabulary by kind: a token is replaced by one of its own kind half the time
# (mutants that still parse reach the analyzer, the workers and the merge), else by any.
KINDS: dict[str, tuple[str, ...]] = {
    "keyword": tuple(
        "SELECT FROM WHERE GROUP BY ORDER HAVING LIMIT JOIN ON AND OR NOT NULL IS IN AS DISTINCT "
        "CASE WHEN THEN ELSE END BETWEEN LIKE CAST DESC TOP DIV MOD".split()
    ),
    "operator": tuple("( ) , * + - / % = < > <= >= <> != || << :: . ;".split()),
    "literal": tuple("0 1 -1 2.5 1e308 9223372036854775807 'abc' '' 'obj1' TRUE".split()),
    "identifier": (
        *"ra decl flags objectId name rFlux gFlux sourceId psfFlux filterId x o s f".split(),
        *"Object Source Filter count sum avg min abs round foo scisql_angSep".split(),
        '"ra"',
    ),
}
VOCABULARY = tuple(t for kind in KINDS.values() for t in kind)

# Wording a client must never see (matched case-insensitively in message, detail and hint).
LEAKS = re.compile(
    r"Binder Error|Catalog Error|Conversion Error|Parser Error|Candidate functions|Candidate macros"
    r"|LINE \d+:|<class|sqlglot|duckdb|_q_|__result|__QSERV|Required keyword|_LITERAL|Traceback",
    re.I,
)
# SQLSTATE classes of client errors: syntax/semantics, feature, data, resources.
ERROR_CLASSES = ("42", "0A", "22", "53", "54")
# Refusals of queries DuckDB answers, and why each is allowed:
REFUSALS = {
    "0A000": "a construct qserv does not distribute (sub-queries, OFFSET, windows, joins ...)",
    "42501": "read-only SELECT only",
    "42601": "PostgreSQL's grammar is stricter than sqlglot + DuckDB (a,, b; (*); * AS x; %)",
    "42803": "PostgreSQL's grouping rules are stricter than DuckDB's",
    "42883": "functions outside the allow-list; PostgreSQL does not cast implicitly as DuckDB does",
    "42P10": "PostgreSQL's ORDER BY/DISTINCT rules",
    "42702": "an ORDER BY name two different output columns carry is ambiguous in PostgreSQL",
    "42P01": "a table's name hidden by its alias (FROM Object o ... Object.ra) is refused by PostgreSQL",
    "42703": "columns qserv keeps internal (_chunk, _subchunk); whole-row references (SELECT Object ...)",
    "42804": "PostgreSQL's type rules are stricter than DuckDB's",
    "22023": "areaspec arguments must be numeric constants",
    "22P02": "PostgreSQL casts a string literal to the other side's type (COALESCE(x, '')) and refuses "
    "one that does not parse; DuckDB may not evaluate it",
    "54001": "statement too complex",
}
# Queries the czar answers and DuckDB refuses, each a documented dialect difference:
# (pattern on the query, pattern on DuckDB's refusal, why the czar's answer is PostgreSQL's).
ANSWER_DIFFERENCES = (
    (
        r"GROUP BY ALL\b.*ORDER BY",
        r"must appear in the GROUP BY clause",
        "an ORDER BY expression over grouped columns is valid in PostgreSQL; DuckDB's GROUP BY ALL "
        "refuses it",
    ),
)
SPATIAL = re.compile(r"scisql_|qserv_areaspec|\b(point|circle|box|polygon|contains|distance)\s*\(", re.I)
# the text of a float sum or average: its last digits depend on the order of the additions
FLOAT_TEXT = re.compile(r"\|\|.*\b(SUM|AVG)\s*\(|\b(SUM|AVG)\s*\(.*\|\|", re.I)
UNDETERMINED = re.compile(r"\b(LIMIT|TOP|FETCH|ANY_VALUE|FIRST|LAST)\b", re.I)

_TOKEN = re.compile(
    r"""\s*('(?:[^']|'')*'|"(?:[^"]|"")*"|`[^`]*`|\d+\.\d*(?:[eE][-+]?\d+)?|\d+(?:[eE][-+]?\d+)?"""
    r"""|\w+|<=>|<=|>=|<>|!=|\|\||::|<<|>>|\S)"""
)


def tokens(sql: str) -> list[str]:
    """``sql`` cut into SQL tokens (strings, identifiers, numbers, words, operators)."""
    return [m.group(1) for m in _TOKEN.finditer(sql)]


def _kind(token: str) -> str:
    if token.upper() in KINDS["keyword"]:
        return "keyword"
    if token[0] in "'0123456789" or token.upper() in ("TRUE", "FALSE"):
        return "literal"
    return "identifier" if token[0].isalpha() or token[0] in '"`_' else "operator"


def mutate(sql: str, rng: random.Random) -> str:
    """One mutant of ``sql``: one token-level edit (two, one time in five)."""
    toks = tokens(sql)
    for _ in range(2 if rng.random() < 0.2 else 1):
        if not toks:
            break
        i = rng.randrange(len(toks))
        op = rng.choice(("delete", "duplicate", "swap", "replace", "replace", "insert"))
        if op == "delete":
            del toks[i]
        elif op == "duplicate":
            toks.insert(i, toks[i])
        elif op == "swap" and i + 1 < len(toks):
            toks[i], toks[i + 1] = toks[i + 1], toks[i]
        elif op == "replace":
            toks[i] = rng.choice(KINDS[_kind(toks[i])] if rng.random() < 0.5 else VOCABULARY)
        else:
            toks.insert(i, rng.choice(VOCABULARY))
    # spacing varies too: a token may touch its neighbour where SQL allows it, "(*)FROM"
    out = ""
    for tok in toks:
        touching = out and not (out[-1].isalnum() or out[-1] in "_'\"") or not tok[0].isalnum()
        out += ("" if touching and rng.random() < 0.3 else " ") + tok
    return out.strip()


def mutants(seed: int = SEED, count: int = COUNT) -> list[str]:
    """``count`` distinct mutants of the corpus, the same for the same seed."""
    rng = random.Random(seed)
    seen: set[str] = set(CORPUS)
    out: list[str] = []
    while len(out) < count:
        mutant = mutate(rng.choice(CORPUS), rng)
        if mutant not in seen:
            seen.add(mutant)
            out.append(mutant)
    return out


@dataclass
class Outcome:
    rows: list[tuple[Any, ...]] | None = None
    ncols: int = 0
    sqlstate: str | None = None
    text: str = ""  # message | detail | hint
    hang: bool = False


@dataclass
class Report:
    failures: list[str] = field(default_factory=list)
    answered: int = 0
    compared: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    refused_but_reference_answers: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)  # refused where DuckDB answers

    kinds: Counter[str] = field(default_factory=Counter)

    def fail(self, mutant: str, why: str) -> None:
        self.kinds[why.split(":")[0]] += 1
        self.failures.append(f"{why}\n    {mutant}")


def _number(v: Any) -> Any:
    if isinstance(v, decimal.Decimal):
        return int(v) if v == v.to_integral_value() else float(v)
    return v


def _sort_key(row: tuple[Any, ...]) -> tuple[Any, ...]:
    # exact values: rounding would let two close, distinct values swap places on one side
    out = []
    for v in row:
        if isinstance(v, float) and math.isnan(v):
            v = None
        out.append((v is None, "" if v is None else (isinstance(v, str), v)))
    return tuple(out)


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        if not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
            return False
        if math.isnan(a) and math.isnan(b):
            return True
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return bool(a == b)


def same_rows(got: Sequence[tuple[Any, ...]], expected: Sequence[tuple[Any, ...]]) -> bool:
    """Equal multisets of rows (numbers compared by value, floats to 1e-9 relative)."""
    g = sorted((tuple(_number(v) for v in r) for r in got), key=_sort_key)
    e = sorted((tuple(_number(v) for v in r) for r in expected), key=_sort_key)
    return len(g) == len(e) and all(
        len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
        for a, b in zip(g, e, strict=True)
    )


def reference_outcome(ref: duckdb.DuckDBPyConnection, mutant: str) -> Outcome:
    """The plain DuckDB's answer to the mutant as sqlglot transpiles it (or its refusal)."""
    try:
        statements = [s for s in sqlglot.transpile(mutant, read=SessionDialect, write="duckdb") if s.strip()]
        if len(statements) != 1:
            return Outcome(sqlstate="error", text="not one statement")
        rel = ref.sql(statements[0])
        if rel is None:
            return Outcome(sqlstate="error", text="not a query")
        return Outcome(rows=rel.fetchall(), ncols=len(rel.columns))
    except (sqlglot.errors.SqlglotError, duckdb.Error, ValueError) as e:
        # ValueError: sqlglot cannot write some literals it parses (b'' as a bit string)
        return Outcome(sqlstate="error", text=str(e).splitlines()[0] if str(e) else type(e).__name__)


async def czar_outcome(conn: psycopg.AsyncConnection[Any], mutant: str) -> Outcome:
    """The cluster's answer to the mutant through psycopg (or its error, or a hang)."""

    async def run() -> Outcome:
        cur = await conn.execute(mutant)
        if cur.description is None:
            return Outcome(rows=[], ncols=0)
        return Outcome(rows=await cur.fetchall(), ncols=len(cur.description))

    try:
        return await asyncio.wait_for(run(), QUERY_TIMEOUT)
    except TimeoutError:
        return Outcome(hang=True)
    except psycopg.Error as e:
        d = e.diag
        text = " | ".join(t for t in (d.message_primary, d.message_detail, d.message_hint) if t)
        return Outcome(sqlstate=d.sqlstate or "?", text=text or str(e))


def check(mutant: str, got: Outcome, want: Outcome, report: Report) -> None:
    """Record what is wrong with the czar's outcome for one mutant (see the module doc)."""
    if got.hang:
        report.fail(mutant, f"no answer within {QUERY_TIMEOUT:.0f} s")
        return
    if got.sqlstate is not None:
        report.refused[got.sqlstate] += 1
        if LEAKS.search(got.text):
            report.fail(mutant, f"internal wording leaked: {got.sqlstate} {got.text}")
        if got.sqlstate.startswith("XX"):
            report.fail(mutant, f"internal error: {got.sqlstate} {got.text}")
        elif not got.sqlstate.startswith(ERROR_CLASSES):
            report.fail(mutant, f"SQLSTATE {got.sqlstate} is not a client-error class: {got.text}")
        if want.rows is not None and not SPATIAL.search(mutant):
            report.refused_but_reference_answers[got.sqlstate] += 1
            report.examples.append(f"{got.sqlstate} {got.text}\n    {mutant}")
            if got.sqlstate not in REFUSALS:
                report.fail(mutant, f"refused ({got.sqlstate} {got.text}) but DuckDB answers it")
        return
    report.answered += 1
    assert got.rows is not None
    if SPATIAL.search(mutant):
        return  # no independent reference for spatial functions: no crash, no leak only
    if want.rows is None:
        if not any(re.search(q, mutant, re.I) and re.search(e, want.text) for q, e, _ in ANSWER_DIFFERENCES):
            report.fail(mutant, f"answered, but the reference refuses it: {want.text}")
        return
    if UNDETERMINED.search(mutant) or FLOAT_TEXT.search(mutant):
        return  # rows not determined
    if any(isinstance(v, (dict, list, tuple)) for row in want.rows for v in row):
        return  # a row or list value: PostgreSQL and DuckDB spell them differently
    report.compared += 1
    if got.ncols != want.ncols or not same_rows(got.rows, want.rows):
        report.fail(
            mutant, f"rows differ: {len(got.rows)} rows x {got.ncols} != {len(want.rows)} x {want.ncols}"
        )


# Mutants that once failed, through the real interface: (query, SQLSTATE expected, or None
# for rows equal to DuckDB's answer to the second query).
FOUND: list[tuple[str, str | None, str]] = [
    # internal error: (*) reached the merge as one column too many
    ("SELECT (*)FROM Object WHERE rFlux > 25.5", "42601", ""),
    ("SELECT( * ) FROM Object WHERE qserv_areaspec_box(359, -5, 1, 5)", "42601", ""),
    # internal error: the alias of o.* made one column too many; PostgreSQL ignores it
    ("SELECT o.* AS x FROM Object o WHERE o.flags = 1", None, "SELECT o.* FROM Object o WHERE o.flags = 1"),
    # sqlglot's descriptions (Required keyword ... <class 'sqlglot...'>)
    ("SELECT ra * FROM Object", "42601", ""),
    ("SELECT COUNT(iFlux), AVG() FROM Object", "42601", ""),
    ("SELECT TOP 'obj1' objectId, ra FROM Object ORDER BY ra", "42601", ""),
    ("SELECT COUNT(*) BETWEEN Object WHERE qserv_areaspec_box(359, -5, 1, 5)", "42601", ""),
    # DuckDB's words, from describe, the workers (plain projections) and the merge
    ("SELECT DISTINCT flags FROM Object WHERE scisql_angSep(ra, decl, 166.8, 33.18) << 2.99", "42883", ""),
    ("SELECT objectId FROM Object WHERE scisql_angSep(ra, decl, 166.8) < 2.99", "42883", ""),
    ("SELECT round(1, 2, 3) FROM Object", "42883", ""),
    ("SELECT FROM Object WHERE qserv_areaspec_box(5, 0, 15, 10)", "0A000", ""),
    ("SELECT objectId FROM Object WHERE qserv_areaspec_box(0, 20, 10.0001, 20.0001) AND CAST(ra AS DATE) > 1",
     "42883", ""),
    ("SELECT objectId FROM Object WHERE CAST(name AS INTEGER) > 1", "22P02", ""),
    ("SELECT CAST(SUM(objectId) AS SMALLINT) FROM Object", "22003", ""),
    # answers where PostgreSQL refuses
    ("SELECT objectId FROM Object WHERE objectId = 'abc'", "22P02", ""),
    ("SELECT * FROM Object WHERE objectId IN (1000, 'abc', 1006) AND flags >= 0", "22P02", ""),
    ("SELECT flags % 2 AS parity, name, COUNT(*), AVG(rFlux) FROM Object GROUP BY ALL gFlux ORDER BY parity",
     "42803", ""),
    ("END objectId, flags, iFlux FROM Object WHERE flags = 7", "42601", ""),
    ("SELECT ra,, decl FROM Object", "42601", ""),
    ("SELECT flags % 2 AS parity, COUNT(*) FROM Object '' GROUP BY flags % 2", "42601", ""),
    ("SELECT objectId, rMag FROM Object ORDER BY rMag DESC, 1e308 LIMIT 7", "42601", ""),
    # internal error: MIN(NULL) is of DuckDB's type "NULL", which the merge cast to
    ("SELECT flags, MIN(NULL), SUM(rMag) FROM Object GROUP BY flags ORDER BY flags", None,
     "SELECT flags, MIN(NULL), SUM(rMag) FROM Object GROUP BY flags ORDER BY flags"),
    # internal error: sqlglot reads ".199.3" as one number
    ("SELECT SUM(iFlux), (ra) FROM Object WHERE rFlux < 8.7 AND qserv_areaspec_box(.199.3, -50.28, 289.84, -44.6)",
     "42601", ""),
    # answered by dropping name parts: s.sourceId.s.psfFlux is not s.psfFlux
    ("SELECT o.objectId, s.sourceId.s.psfFlux FROM Object o JOIN Source s ON s.objectId = o.objectId", "0A000", ""),
    # answered: FROM column aliases ignored; ORDER BY NULL
    ("SELECT objectId FROM Object Source (5, 0, 15, 10)", "42601", ""),
    ("SELECT objectId FROM Object o (a, b)", "0A000", ""),
    ("SELECT objectId, rMag FROM Object ORDER BY rMag DESC, NULL LIMIT 7", "42601", ""),
    # wrong answers: AVG's SUM/COUNT spliced into an expression without parentheses
    ("SELECT COUNT(iFlux) % AVG(gFlux) FROM Object", None, "SELECT COUNT(iFlux) % AVG(gFlux) FROM Object"),
    ("SELECT MAX(decl) / AVG(iFlux), 2 * AVG(rFlux) FROM Object", None,
     "SELECT MAX(decl) / AVG(iFlux), 2 * AVG(rFlux) FROM Object"),
]  # fmt: skip


@pytest.fixture(scope="module")
def generated() -> GeneratedCatalog:
    return generate(seed=5, n_objects=1500, order=5)


@pytest.fixture(scope="module")
def fuzz_cluster(
    tmp_path_factory: pytest.TempPathFactory, generated: GeneratedCatalog
) -> Iterator[LiveCluster]:
    tmp = tmp_path_factory.mktemp("fuzz")
    with running_cluster(tmp, workers=3, replicas=2, objects=0) as tc:
        _load(tc, generated, _write(generated, tmp / "input"))
        yield tc


@pytest.fixture(scope="module")
def plain(generated: GeneratedCatalog) -> Iterator[duckdb.DuckDBPyConnection]:
    """One plain DuckDB (no project macros) holding the generated tables, one schema per database."""
    ref = generated.plain_duckdb()
    yield ref
    ref.close()


def test_mutation_is_seeded_and_varied() -> None:
    first, again = mutants(count=50), mutants(count=50)
    assert first == again
    assert len(set(first)) == 50 and not set(first) & set(CORPUS)
    assert any(len(tokens(m)) < len(tokens(q)) for m in first for q in CORPUS if m.startswith(q[:10]))


def test_mutants_get_clear_errors_or_the_reference_rows(
    fuzz_cluster: LiveCluster, plain: duckdb.DuckDBPyConnection
) -> None:
    report = Report()
    queries = mutants()

    async def run_all() -> None:
        conn = await psycopg.AsyncConnection.connect(fuzz_cluster.dsn, autocommit=True)
        try:
            for i, mutant in enumerate(queries):
                got = await czar_outcome(conn, mutant)
                check(mutant, got, reference_outcome(plain, mutant), report)
                if got.hang or conn.closed or conn.broken or i % 50 == 49:
                    await conn.close()
                    conn = await psycopg.AsyncConnection.connect(fuzz_cluster.dsn, autocommit=True)
                    alive = await (await conn.execute("SELECT 1")).fetchall()
                    if alive != [(1,)]:
                        report.fail(mutant, f"the czar answers SELECT 1 with {alive} after it")
        finally:
            await conn.close()

    asyncio.run(run_all())
    assert fuzz_cluster.query("SELECT 1") == [(1,)], "the czar does not answer after the fuzzing"
    print(
        f"\nfuzz seed {SEED}: {len(queries)} mutants, {report.answered} answered "
        f"({report.compared} compared with DuckDB), refused by SQLSTATE {dict(report.refused.most_common())}, "
        f"refused where DuckDB answers {dict(report.refused_but_reference_answers.most_common())}, "
        f"{len(report.failures)} failures {dict(report.kinds.most_common())}"
    )
    print("refused where DuckDB answers:\n" + "\n".join(report.examples))
    assert not report.failures, f"{len(report.failures)} of {len(queries)} mutants:\n" + "\n".join(
        report.failures[: int(os.environ.get("QSERV_FUZZ_SHOW", "40"))]
    )


@pytest.mark.parametrize(("mutant", "sqlstate", "same_as"), FOUND)
def test_found_mutants(
    fuzz_cluster: LiveCluster,
    plain: duckdb.DuckDBPyConnection,
    mutant: str,
    sqlstate: str | None,
    same_as: str,
) -> None:
    """Each mutant that once failed: PostgreSQL's SQLSTATE in our words, or DuckDB's rows."""

    async def run() -> Outcome:
        async with await psycopg.AsyncConnection.connect(fuzz_cluster.dsn, autocommit=True) as conn:
            return await czar_outcome(conn, mutant)

    got = asyncio.run(run())
    assert not got.hang, mutant
    assert not LEAKS.search(got.text), got.text
    if sqlstate is not None:
        assert got.sqlstate == sqlstate, f"{mutant}: {got.sqlstate} {got.text} (rows {got.rows})"
        return
    want = reference_outcome(plain, same_as)
    assert got.sqlstate is None and got.rows is not None and want.rows is not None, (got.text, want.text)
    assert got.ncols == want.ncols and same_rows(got.rows, want.rows), f"{mutant}\n{got.rows}\n{want.rows}"
