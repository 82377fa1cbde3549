"""The independent reference answer: one plain DuckDB running the query as the user wrote it.

The query text is parsed in the session dialect (PostgreSQL, plus the MySQL/ADQL spellings
DESIGN §4 lists) and transpiled by sqlglot to
DuckDB. The only rewriting is done here, by the test: every ``qserv_areaspec_box/circle``
restrictor is replaced by a lookup of rows computed with numpy, and every ``scisql_*`` call by
a numpy-backed Python UDF (tests/differential/reference_scisql.py) (unit vectors and ``atan2``, not the project's haversine macros,
not its region code). Nothing of the czar's analyzer, planner, macros or region code is used,
and there is no fallback: what cannot be rewritten raises :class:`ReferenceUnavailable`.
Names in double quotes, which DuckDB matches in any case, are checked first by the test's own
rule (tests/differential/quoted_names.py) in PostgreSQL and ADQL sessions.

Result names are those DuckDB gives the original query (bound on empty tables with stub
spatial functions); rows come from the rewritten query on the data. For ORDER BY queries the
answer carries each row's tie group (a dense rank of the ORDER BY keys, bound as PostgreSQL
binds them: ordinals and bare output names to the select list, anything else to input
columns), computed without LIMIT, so any valid answer under ties can be accepted.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pyarrow as pa
import sqlglot
from sqlglot import exp
from sqlglot.dialects.postgres import Postgres
from sqlglot.errors import SqlglotError
from sqlglot.parsers.postgres import PostgresParser
from sqlglot.tokens import Token, TokenType

from qserv.catalog import Table, TableKind
from tests.differential import mysql_reference, reference_scisql
from tests.differential.catalog import GeneratedCatalog
from tests.differential.quoted_names import quoted_refusal

BOUNDARY_TOLERANCE = 1e-9  # degrees: a point this close to a region's edge has no sure answer


class ReferenceUnavailable(AssertionError):
    """The test cannot build an independent reference for this query (a test failure)."""


class SessionDialect(Postgres):
    """PostgreSQL as a czar session reads it (DESIGN §4).

    MySQL-only forms keep their MySQL meaning (backticks, ``DIV``, ``MOD``, ``<=>``, ``XOR``), ADQL
    ``TOP n`` is a LIMIT; NULLs sort as PostgreSQL sorts them (first under DESC).
    """

    class Tokenizer(Postgres.Tokenizer):
        IDENTIFIERS = ['"', "`"]
        KEYWORDS = {
            **Postgres.Tokenizer.KEYWORDS,
            "DIV": TokenType.DIV,
            "MOD": TokenType.MOD,
            "TOP": TokenType.TOP,
            "<=>": TokenType.NULLSAFE_EQ,
            "XOR": TokenType.XOR,
        }

    class Parser(PostgresParser):
        FUNC_TOKENS = {*PostgresParser.FUNC_TOKENS, TokenType.MOD}
        FACTOR = {**PostgresParser.FACTOR, TokenType.DIV: exp.IntDiv, TokenType.MOD: exp.Mod}

        def _parse_conjunction(self) -> exp.Expr | None:  # XOR: below AND, above OR, as MySQL
            left = super()._parse_conjunction()
            while self._match(TokenType.XOR):
                left = exp.Xor(this=left, expression=super()._parse_conjunction())
            return left

        def parse(self, raw_tokens: list[Token], sql: str) -> list[exp.Expr | None]:
            trees = super().parse(raw_tokens, sql)
            return [t if t is None else mysql_reference.extend(t, mysql=False) for t in trees]


READ = {"postgresql": SessionDialect, "mysql": mysql_reference.MySQLSession}  # the session dialects


@dataclass(frozen=True)
class Answer:
    """The reference's answer: rows, or a refusal (``error``; ``sqlstate`` where PostgreSQL's
    is known and the czar must give the same)."""

    sql: str
    table: pa.Table | None = None  # the answer as DuckDB gives it (LIMIT applied)
    full: list[tuple[object, ...]] = field(default_factory=list)  # without LIMIT/OFFSET
    ranks: list[int] | None = None  # tie group of each ``full`` row (None: unordered)
    offset: int = 0
    limit: int | None = None
    error: str | None = None
    sqlstate: str | None = None

    @property
    def refused(self) -> bool:
        return self.error is not None


@dataclass(frozen=True)
class _Ref:
    alias: str  # as the query names it (alias, else table name)
    table: Table
    data: pa.Table


_STUBS = (
    "CREATE MACRO qserv_areaspec_box(a, b, c, d) AS TRUE",
    "CREATE MACRO qserv_areaspec_circle(a, b, c) AS TRUE",
    "CREATE MACRO scisql_angSep(a, b, c, d) AS CAST(NULL AS DOUBLE)",
    "CREATE MACRO scisql_s2PtInCircle(a, b, c, d, e) AS CAST(NULL AS INTEGER)",
    "CREATE MACRO scisql_s2PtInBox(a, b, c, d, e, f) AS CAST(NULL AS INTEGER)",
)


class Reference:
    """One DuckDB holding the generated rows (no project macros) and one for names (stubs)."""

    def __init__(self, generated: GeneratedCatalog, dialect: str = "postgresql") -> None:
        self.generated = generated
        self.dialect = dialect  # the session dialect queries are read in (READ)
        self.default_db = generated.database.name
        self.conn = generated.plain_duckdb()
        self.names = generated.plain_duckdb(empty=True)
        for stub in (*_STUBS, *reference_scisql.STUBS):
            self.names.execute(stub)
        for conn in (self.conn, self.names):
            mysql_reference.install(conn)
        self._udfs: set[str] = set()  # reference_scisql's functions registered on self.conn
        self.conn.execute('CREATE SCHEMA "__ref"')
        self._lock = threading.Lock()
        self._serial = 0

    # -- the answer --------------------------------------------------------------------------

    def answer(self, sql: str) -> Answer:
        """DuckDB's answer to ``sql`` (or its refusal); raises ReferenceUnavailable."""
        with self._lock:
            return self._answer(sql)

    def _answer(self, sql: str) -> Answer:
        try:
            tree = self._parse(sql)
        except SqlglotError as e:
            return Answer(sql, error=f"syntax error: {e}", sqlstate="42601")
        if not isinstance(tree, exp.Query):
            return Answer(sql, error="not a query")
        if self.dialect != "mysql" and (
            quoted := quoted_refusal(tree, sql, self.generated.tables, self.default_db)
        ):
            return Answer(sql, error=quoted[1], sqlstate=quoted[0])  # DuckDB ignores the quotes
        try:
            names = self.names.sql(tree.sql(dialect="duckdb")).columns
        except duckdb.Error as e:
            return Answer(sql, error=str(e), sqlstate="42P10" if "term out of range" in str(e) else None)
        if (refusal := _postgres_refusal(tree)) is not None:
            return Answer(sql, error=refusal[1], sqlstate=refusal[0])
        created: list[str] = []
        try:
            if (region_refusal := self._rewrite_spatial(tree, created)) is not None:
                return Answer(sql, error=region_refusal)
            return self._run(sql, tree, names)
        finally:
            for name in created:
                self.conn.execute(f'DROP TABLE "__ref"."{name}"')

    def _parse(self, sql: str) -> exp.Expr:
        """The query in the session's dialect (tests/differential/adql_reference.py: ADQL's)."""
        return sqlglot.parse_one(sql, read=READ[self.dialect])

    def _run(self, sql: str, tree: exp.Query, names: list[str]) -> Answer:
        duck = tree.sql(dialect="duckdb")
        try:
            table = self.conn.sql(duck).to_arrow_table()
        except duckdb.Error as e:
            raise ReferenceUnavailable(f"{sql}\nthe rewritten reference fails: {e}\n{duck}") from None
        if table.num_columns != len(names):
            raise ReferenceUnavailable(f"{sql}\n{table.column_names} vs names {names}")
        table = table.rename_columns(names)
        if all(tree.args.get(k) is None for k in ("order", "limit", "offset")):
            return Answer(sql, table=table, full=rows_of(table))
        if not isinstance(tree, exp.Select):
            raise ReferenceUnavailable(f"{sql}\nno tie groups for an ordered/limited set operation")
        offset = _constant_int(tree.args.get("offset"), sql)
        limit = _constant_int(tree.args.get("limit"), sql, none=True)
        full, ranks = self._ranked(sql, tree, names)
        answer = Answer(sql, table=table, full=full, ranks=ranks, offset=offset or 0, limit=limit)
        # self-check: DuckDB's own answer must be valid under the test's tie groups, or the
        # test bound the ORDER BY keys differently from DuckDB
        from tests.differential.harness import assert_valid_answer

        try:
            assert_valid_answer(rows_of(table), answer)
        except AssertionError as e:
            raise ReferenceUnavailable(f"test-side ORDER BY binding disagrees with DuckDB: {e}") from None
        return answer

    def _ranked(
        self, sql: str, tree: exp.Select, names: list[str]
    ) -> tuple[list[tuple[object, ...]], list[int]]:
        """Every row without LIMIT/OFFSET, with its ORDER BY tie group."""
        inner = tree.copy()
        inner.set("limit", None)
        inner.set("offset", None)
        order = inner.args.get("order")
        inner.set("order", None)
        n = len(names)
        keys: list[exp.Ordered] = []
        extra = 0
        outputs = [name.lower() for name in names]  # after any * is expanded, as ordinals count
        for ordered in order.expressions if order is not None else []:
            key = ordered.this
            if isinstance(key, exp.Literal) and key.is_int:
                position = int(key.this)  # an ordinal: a select-list position
            elif isinstance(key, exp.Column) and not key.table and key.name.lower() in outputs:
                position = outputs.index(key.name.lower()) + 1  # a bare name: output names first
            else:  # an expression over the input columns: computed beside the select list
                inner.select(exp.alias_(key.copy(), f"__k{extra}"), copy=False)
                extra += 1
                position = n + extra
            keys.append(
                exp.Ordered(
                    this=exp.column(f"__c{position}", table="__q"),
                    desc=ordered.args.get("desc"),
                    nulls_first=ordered.args.get("nulls_first"),
                )
            )
        aliases = ", ".join(f"__c{i + 1}" for i in range(n + extra))
        rank = (
            exp.Window(this=exp.Anonymous(this="DENSE_RANK"), order=exp.Order(expressions=keys)).sql(
                dialect="duckdb"
            )
            if keys
            else "1"
        )
        outer = f"SELECT __q.*, {rank} AS __rank FROM ({inner.sql(dialect='duckdb')}) AS __q({aliases})"
        try:
            rows = self.conn.sql(outer).fetchall()
        except duckdb.Error as e:
            raise ReferenceUnavailable(f"{sql}\ncannot rank the reference rows: {e}\n{outer}") from None
        return [tuple(r[:n]) for r in rows], [int(r[-1]) for r in rows]

    # -- spatial functions, computed with numpy -------------------------------------------

    def _rewrite_spatial(self, tree: exp.Query, created: list[str]) -> str | None:
        """Replace spatial calls by lookups of numpy-computed values; a refusal or None."""
        calls = [
            n
            for n in tree.find_all(exp.Anonymous)
            if n.name.lower().startswith(("qserv_areaspec_", "scisql_"))
        ]
        for call in calls:
            name = call.name.lower()
            scope = call.find_ancestor(exp.Select)
            refs = self._refs(scope) if scope is not None else []
            if name.startswith("qserv_areaspec_"):
                # as Qserv: an areaspec restricts every partitioned table with positions in FROM
                restricted = [
                    r
                    for r in refs
                    if r.table.kind is TableKind.DIRECTOR
                    or (r.table.kind is TableKind.CHILD and r.table.lon_column and r.table.lat_column)
                ]
                if not restricted:
                    return f"{name} needs a director table in FROM"
                args = [self._constant(a, call) for a in call.expressions]
                terms = []
                for ref in restricted:
                    lon = _floats(ref.data, ref.table.lon_column or "")
                    lat = _floats(ref.data, ref.table.lat_column or "")
                    inside = _inside(name.removeprefix("qserv_areaspec_"), lon, lat, args, call)
                    if isinstance(inside, str):
                        return inside
                    table = self._values(created, np.flatnonzero(inside), None)
                    terms.append(f'{_q(ref.alias)}.rowid IN (SELECT r FROM "__ref"."{table}")')
                replacement = sqlglot.parse_one(f"({' AND '.join(terms)})", read="duckdb")
            elif reference_scisql.handles(name):
                reference_scisql.rewrite_call(self.conn, call, self._udfs)  # numpy, per row
                continue
            else:
                raise ReferenceUnavailable(f"no independent reference for {call.sql()}")
            call.replace(replacement)
        return None

    def _values(
        self, created: list[str], rows: np.ndarray, values: np.ndarray | None, integer: bool = False
    ) -> str:
        """A scratch table of row ids (and values, NaN as NULL) that lives for one query."""
        self._serial += 1
        name = f"t{self._serial}"
        columns = {"r": pa.array(rows.astype(np.int64))}
        if values is not None:
            v = pa.array(values.astype(np.float64), mask=np.isnan(values))
            columns["v"] = v.cast(pa.int32()) if integer else v
        self.conn.register("__load", pa.table(columns))
        self.conn.execute(f'CREATE TABLE "__ref"."{name}" AS SELECT * FROM __load')
        self.conn.unregister("__load")
        created.append(name)
        return name

    def _refs(self, select: exp.Select) -> list[_Ref]:
        """The catalog tables in ``select``'s FROM and JOINs, in order."""
        sources = [select.args.get("from_")] + list(select.args.get("joins") or [])
        refs = []
        for source in sources:
            node = source.this if source is not None else None
            if not isinstance(node, exp.Table):
                continue
            table = self._table(node.db or self.default_db, node.name)
            if table is not None:
                refs.append(_Ref(node.alias_or_name, table, self.generated.rows(table.name, table.database)))
        return refs

    def _table(self, db: str, name: str) -> Table | None:
        return next(
            (
                t
                for t in self.generated.tables
                if t.database.lower() == db.lower() and t.name.lower() == name.lower()
            ),
            None,
        )

    def _constant(self, node: exp.Expr, call: exp.Expr) -> float:
        """The value of a constant argument, as DuckDB evaluates it (casts of bound parameters)."""
        if node.find(exp.Column) is not None:
            raise ReferenceUnavailable(f"{call.sql()}: non-constant argument {node.sql()}")
        try:
            row = self.conn.execute(f"SELECT CAST({node.sql(dialect='duckdb')} AS DOUBLE)").fetchall()[0]
        except duckdb.Error as e:
            raise ReferenceUnavailable(f"{call.sql()}: argument {node.sql()}: {e}") from None
        if row is None or row[0] is None:
            raise ReferenceUnavailable(f"{call.sql()}: NULL argument")
        return float(row[0])


# -- numpy geometry ----------------------------------------------------------------------------


def _vectors(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    lo, la = np.radians(lon), np.radians(lat)
    return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=-1)


def angular_separation(lon: np.ndarray, lat: np.ndarray, lon0: float, lat0: float) -> np.ndarray:
    """Degrees between each (lon, lat) and (lon0, lat0): atan2(|a x b|, a . b), NaN for NULL."""
    a = _vectors(np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64))
    b = _vectors(np.array([lon0]), np.array([lat0]))[0]
    return np.degrees(np.arctan2(np.linalg.norm(np.cross(a, b), axis=-1), a @ b))


def _in_circle(lon: np.ndarray, lat: np.ndarray, args: list[float], call: exp.Expr) -> np.ndarray:
    lon0, lat0, radius = args
    distance = angular_separation(lon, lat, lon0, lat0)
    near = np.abs(distance - radius) < BOUNDARY_TOLERANCE
    if near.any():
        raise ReferenceUnavailable(f"{call.sql()}: a point lies on the circle (pick another region)")
    return distance <= radius


def _in_box(lon: np.ndarray, lat: np.ndarray, args: list[float], call: exp.Expr) -> np.ndarray:
    """sciSQL's box: latitudes inclusive; longitudes reduced to [0, 360), wrapping through 0
    when the minimum exceeds the maximum; a span of 360 or more is every longitude."""
    lon_min, lat_min, lon_max, lat_max = args
    lon = np.asarray(lon, dtype=np.float64) % 360.0
    in_lat = (lat >= lat_min) & (lat <= lat_max)
    edges = [np.abs(lat - lat_min), np.abs(lat - lat_max)]
    if lon_max - lon_min >= 360.0:
        in_lon = np.ones(len(lon), dtype=bool)
    else:
        lo, hi = lon_min % 360.0, lon_max % 360.0
        in_lon = (lon >= lo) & (lon <= hi) if lo <= hi else (lon >= lo) | (lon <= hi)
        for edge in (lo, hi):
            d = np.abs(lon - edge)
            edges.append(np.minimum(d, 360.0 - d) * np.where(in_lat, 1.0, np.inf))
    if (np.min(edges, axis=0) < BOUNDARY_TOLERANCE).any():
        raise ReferenceUnavailable(f"{call.sql()}: a point lies on the box's edge (pick another region)")
    return in_lat & in_lon


def _inside(
    shape: str, lon: np.ndarray, lat: np.ndarray, args: list[float], call: exp.Expr
) -> np.ndarray | str:
    """Rows inside an areaspec region, or why the region is refused."""
    if shape in ("ellipse", "poly"):
        return reference_scisql.areaspec_inside(shape, lon, lat, args)
    if shape == "circle":
        if len(args) != 3:
            return "qserv_areaspec_circle takes 3 arguments"
        if not -90.0 <= args[1] <= 90.0 or not 0.0 < args[2] < 180.0:
            return f"invalid circle {args}"
        return _in_circle(lon, lat, args, call) & ~np.isnan(lon) & ~np.isnan(lat)
    if len(args) != 4:
        return "qserv_areaspec_box takes 4 arguments"
    if not -90.0 <= args[1] <= args[3] <= 90.0:
        return f"invalid box {args}"
    return _in_box(lon, lat, args, call)


# -- small helpers -----------------------------------------------------------------------------


def rows_of(table: pa.Table) -> list[tuple[object, ...]]:
    """A table's rows as tuples (by position: result columns may share a name)."""
    return list(zip(*(c.to_pylist() for c in table.columns), strict=True)) if table.num_columns else []


def _floats(data: pa.Table, column: str) -> np.ndarray:
    """A column as float64, NULL as NaN."""
    return np.asarray(data.column(column).cast(pa.float64()).fill_null(np.nan).to_numpy(), dtype=np.float64)


def _q(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _output_name(node: exp.Expr) -> str:
    """The output name a select item has for ORDER BY (lower case; '' for expressions)."""
    if isinstance(node, exp.Alias):
        return node.alias.lower()
    if isinstance(node, exp.Column) and not node.is_star:
        return node.name.lower()
    return ""


def _constant_int(node: exp.Expr | None, sql: str, none: bool = False) -> int | None:
    if node is None:
        return None if none else 0
    value = node.args.get("expression") if isinstance(node, (exp.Limit, exp.Offset)) else node
    if isinstance(value, exp.Literal) and value.is_int:
        return int(value.this)
    raise ReferenceUnavailable(f"{sql}\nLIMIT/OFFSET {node.sql()} is not a constant")


def _postgres_refusal(tree: exp.Query) -> tuple[str, str] | None:
    """What PostgreSQL refuses where DuckDB answers, as (SQLSTATE, message): an ORDER BY name
    that two output columns carry (42702), and DISTINCT ordered by an expression that is not
    in the select list (42P10); ORDER BY items are checked left to right, as PostgreSQL does."""
    if not isinstance(tree, exp.Select) or tree.args.get("order") is None:
        return None
    outputs = [_output_name(e) for e in tree.expressions]
    selected = [e.this if isinstance(e, exp.Alias) else e for e in tree.expressions]
    distinct = bool(tree.args.get("distinct"))
    for ordered in tree.args["order"].expressions:
        key = ordered.this
        if isinstance(key, exp.Literal) and key.is_int:
            continue
        if isinstance(key, exp.Column) and not key.table and key.name.lower() in outputs:
            same_name = [s for s, o in zip(selected, outputs, strict=True) if o == key.name.lower()]
            if any(not _same(same_name[0], s) for s in same_name[1:]):
                return "42702", f'ORDER BY "{key.name}" is ambiguous'
            continue
        if distinct and not any(_same(key, s) for s in selected):
            return "42P10", "for SELECT DISTINCT, ORDER BY expressions must appear in select list"
    return None


def _same(a: exp.Expr, b: exp.Expr) -> bool:
    """The same expression up to identifier case (PostgreSQL folds unquoted names)."""
    return a.sql(dialect="duckdb").lower() == b.sql(dialect="duckdb").lower() or (
        isinstance(a, exp.Column)
        and isinstance(b, exp.Column)
        and a.name.lower() == b.name.lower()
        and (not a.table or not b.table or a.table.lower() == b.table.lower())
    )
