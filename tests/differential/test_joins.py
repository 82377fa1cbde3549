"""Joins against the independent reference: USING/NATURAL, joins in WHERE, LEFT JOINs, regular
tables of other databases, match tables, and near-neighbour joins with pair truth from numpy.

Near-neighbour queries are written once with ``{near}``: the cluster gets
``scisql_angSep(a.ra, a.decl, b.ra, b.decl) <op> r``, the reference (one plain DuckDB) gets
``a.id * 10^7 + b.id IN (<pairs closer than r, computed with numpy>)`` and runs the query as
written otherwise.  The catalog (tests/differential/joins_catalog.py) puts close pairs across
chunk and sub-chunk edges, at the poles, across ra = 0/360 and in a dense clump.
"""

from __future__ import annotations

import itertools

import duckdb
import pyarrow as pa
import pytest

from qserv.errors import QservError
from tests.differential.harness import FakeCluster, assert_matches
from tests.differential.joins_catalog import generate_joins, near_pairs
from worker.execute import translate

PAIR_KEY = 10_000_000


@pytest.fixture(scope="module")
def cluster() -> FakeCluster:
    return FakeCluster(generate_joins())


JOINS = [
    # JOIN ... USING, NATURAL JOIN (a USING column once, unqualified it is the left one)
    "SELECT o.objectId, s.sourceId, objectId FROM Object o JOIN Source s USING (objectId) WHERE o.flags = 2",
    "SELECT * FROM Object JOIN Source USING (objectId) WHERE flags = 1",
    "SELECT objectId, COUNT(*) FROM Object JOIN Source USING (objectId) GROUP BY objectId HAVING COUNT(*) > 3",
    "SELECT * FROM Object o LEFT JOIN Source s USING (objectId) WHERE qserv_areaspec_box(5, 0, 15, 10)",
    "SELECT s.sourceId, filterId, filterName FROM Source s JOIN Filter USING (filterId) WHERE psfFlux > 80",
    "SELECT sourceId, filterId, band FROM Source JOIN other.Band USING (filterId) WHERE psfFlux < 0",
    "SELECT p.pairId, kind, label FROM Pair p NATURAL JOIN sky2.Kind WHERE p.mag > 21",
    "SELECT kind, COUNT(*) FROM Pair JOIN sky2.Kind USING (kind) GROUP BY kind ORDER BY kind",
    "SELECT p.pairId, kind, k.label FROM Pair p LEFT JOIN sky2.Kind k USING (kind) WHERE p.mag > 22",
    "SELECT objectId, sourceId, filterName FROM Object JOIN Source USING (objectId) JOIN Filter USING (filterId) "
    "WHERE flags = 0",
    "SELECT objectId, s.sourceId, f.filterName FROM Object o JOIN Source s USING (objectId) "
    "LEFT JOIN Filter f ON f.filterId = s.filterId WHERE o.rFlux > 60",
    "SELECT objectId, a.ra, b.decl FROM Object a JOIN Object b USING (objectId) WHERE a.flags = 4",
    "SELECT COUNT(*) FROM Source NATURAL JOIN Filter",
    "SELECT objectId, ra, decl, a.name FROM Object a NATURAL JOIN Object b WHERE a.flags = 6",
    # joins written in WHERE
    "SELECT o.objectId, s.sourceId FROM Object o, Source s WHERE o.objectId = s.objectId AND s.psfFlux > 90",
    "SELECT COUNT(*) FROM Object o, Source s, Filter f WHERE s.objectId = o.objectId AND f.filterId = s.filterId "
    "AND f.filterName = 'r'",
    "SELECT s1.sourceId, s2.sourceId FROM Source s1, Source s2 WHERE s1.objectId = s2.objectId "
    "AND s1.sourceId < s2.sourceId AND s1.psfFlux > 95",
    "SELECT p.pairId, k.label FROM Pair p, sky2.Kind k WHERE k.kind = p.kind AND p.mag < 17",
    # LEFT JOIN director-child, regular tables of the family and of another database
    "SELECT o.objectId, COUNT(s.sourceId) FROM Object o LEFT JOIN Source s ON s.objectId = o.objectId "
    "GROUP BY o.objectId ORDER BY 2, 1 LIMIT 15",
    "SELECT o.objectId, s.sourceId FROM Object o LEFT JOIN Source s ON s.objectId = o.objectId AND s.psfFlux > 70 "
    "WHERE o.flags = 5",
    "SELECT o.objectId FROM Object o LEFT JOIN Source s ON s.objectId = o.objectId WHERE s.sourceId IS NULL",
    "SELECT n.nbId, k.label FROM sky2.Nb n LEFT JOIN sky2.Kind k ON k.kind = n.kind",
    "SELECT s.sourceId, b.band FROM Source s JOIN other.Band b ON b.filterId = s.filterId WHERE s.psfFlux > 95",
    "SELECT k.label, b.band FROM sky2.Kind k, other.Band b WHERE k.kind = b.filterId",
    # match tables: every pair once, N-to-M, across chunks
    "SELECT o.objectId, p.pairId, m.score FROM Object o JOIN PairMatch m ON m.objectId = o.objectId "
    "JOIN Pair p ON m.pairId = p.pairId",
    "SELECT COUNT(*), SUM(m.score) FROM Object o JOIN PairMatch m ON m.objectId = o.objectId "
    "JOIN Pair p ON p.pairId = m.pairId",
    "SELECT o.objectId, COUNT(*) FROM Object o JOIN PairMatch m ON m.objectId = o.objectId "
    "JOIN Pair p ON m.pairId = p.pairId WHERE p.mag > 19 GROUP BY o.objectId HAVING COUNT(*) > 1",
    "SELECT objectId, pairId, score, Pair.mag FROM Object JOIN PairMatch USING (objectId) JOIN Pair USING (pairId) "
    "WHERE Object.flags IN (1, 2)",
    "SELECT m.objectId, m.pairId, m.score FROM PairMatch m",
    # pairs whose director row is missing: once, with NULLs, under LEFT JOIN
    "SELECT m.objectId, m.pairId, o.flags FROM PairMatch m LEFT JOIN Object o ON o.objectId = m.objectId",
    "SELECT m.objectId, m.pairId, p.kind FROM PairMatch m LEFT JOIN Pair p ON p.pairId = m.pairId",
    "SELECT m.objectId, m.pairId, o.flags, p.kind FROM PairMatch m LEFT JOIN Object o ON o.objectId = m.objectId "
    "LEFT JOIN Pair p ON p.pairId = m.pairId",
    "SELECT COUNT(*), COUNT(p.pairId) FROM Object o JOIN PairMatch m ON m.objectId = o.objectId "
    "LEFT JOIN Pair p ON p.pairId = m.pairId",
    "SELECT COUNT(*), SUM(score) FROM PairMatch",
    "SELECT o.objectId, m.pairId FROM Object o JOIN PairMatch m ON m.objectId = o.objectId WHERE o.flags < 3",
    "SELECT p.pairId, m.objectId FROM Pair p JOIN PairMatch m ON m.pairId = p.pairId",
    "SELECT o.objectId, p.pairId FROM PairMatch m JOIN Pair p ON p.pairId = m.pairId "
    "JOIN Object o ON o.objectId = m.objectId WHERE o.flags > 3",
    "SELECT o.objectId, p.pairId, p.mag FROM Object o, PairMatch m, Pair p WHERE m.objectId = o.objectId "
    "AND m.pairId = p.pairId AND qserv_areaspec_box(0, -10, 60, 40)",
    "SELECT o.objectId, m.pairId FROM Object o LEFT JOIN PairMatch m ON m.objectId = o.objectId "
    "WHERE qserv_areaspec_box(40, 25, 50, 35)",
    "SELECT o.objectId, m.pairId, p.kind FROM Object o LEFT JOIN PairMatch m ON m.objectId = o.objectId "
    "LEFT JOIN Pair p ON p.pairId = m.pairId WHERE o.flags = 2",
    # a key of the right director (read with its overlap) selects no chunk: pairs across chunks
    "SELECT o.objectId, p.pairId FROM Object o JOIN PairMatch m ON m.objectId = o.objectId "
    "JOIN Pair p ON m.pairId = p.pairId WHERE p.pairId IN (1424, 2282, 6385, 3987, 7793)",
    "SELECT o.objectId, p.pairId FROM Object o JOIN PairMatch m ON m.objectId = o.objectId "
    "JOIN Pair p ON m.pairId = p.pairId WHERE o.objectId IN (5011, 1702, 1138)",
    "SELECT p.pairId, m.objectId FROM Pair p JOIN PairMatch m ON m.pairId = p.pairId WHERE p.pairId = 2282",
    "SELECT o.objectId, p.pairId, k.label FROM Object o JOIN PairMatch m ON m.objectId = o.objectId "
    "JOIN Pair p ON m.pairId = p.pairId JOIN sky2.Kind k ON k.kind = p.kind ORDER BY 1, 2 LIMIT 25",
]


@pytest.mark.parametrize("sql", JOINS)
def test_join(cluster: FakeCluster, sql: str) -> None:
    cluster.check(sql)


# (query, first side "alias table db", second side, comparison, radius in degrees)
ARCSEC = 1.0 / 3600
NEAR = [
    ("SELECT COUNT(*) FROM Pair o1, Pair o2 WHERE {near}", "o1 Pair", "o2 Pair", "<", 0.001),
    ("SELECT COUNT(*) FROM Pair o1, Pair o2 WHERE {near}", "o1 Pair", "o2 Pair", "<", 0.005),
    ("SELECT COUNT(*) FROM Pair o1, Pair o2 WHERE {near}", "o1 Pair", "o2 Pair", "<", 0.0166),
    ("SELECT COUNT(*) FROM Pair o1 JOIN Pair o2 ON {near}", "o1 Pair", "o2 Pair", "<", ARCSEC),
    ("SELECT o1.pairId, o2.pairId FROM Pair o1, Pair o2 WHERE {near} AND o1.pairId <> o2.pairId",
     "o1 Pair", "o2 Pair", "<", 0.004),
    ("SELECT o1.pairId, o2.pairId FROM Pair o1, Pair o2 WHERE {near}", "o1 Pair", "o2 Pair", "<=", 0.003),
    ("SELECT o1.pairId, o2.pairId FROM Pair o1, Pair o2 WHERE {near}", "o1 Pair", "o2 Pair", ">", 0.002),
    ("SELECT COUNT(*) FROM Pair o1, Pair o2 WHERE {near}", "o1 Pair", "o2 Pair", "between", 0.008),
    ("SELECT o1.pairId, o2.pairId FROM Pair o1, Pair o2 WHERE qserv_areaspec_box(40, 25, 50, 35) AND {near}",
     "o1 Pair", "o2 Pair", "<", 0.01),
    ("SELECT o1.pairId, o2.pairId FROM Pair o1, Pair o2 WHERE qserv_areaspec_circle(0, 90, 1) AND {near}",
     "o1 Pair", "o2 Pair", "<", 0.01),
    ("SELECT o1.pairId, o2.pairId FROM Pair o1, Pair o2 WHERE qserv_areaspec_circle(0, -90, 0.5) AND {near}",
     "o1 Pair", "o2 Pair", "<", 0.015),
    ("SELECT o1.pairId, o2.pairId FROM Pair o1, Pair o2 WHERE qserv_areaspec_box(359, -3, 1, 3) AND {near}",
     "o1 Pair", "o2 Pair", "<", 0.01),
    ("SELECT o1.pairId, o2.pairId FROM Pair o1, Pair o2 WHERE o1.pairId IN (5, 16, 27, 60, 71) AND {near}",
     "o1 Pair", "o2 Pair", "<", 0.012),
    ("SELECT o1.pairId, o2.pairId FROM Pair o1, Pair o2 WHERE o2.pairId IN (5, 16, 27, 60, 71) AND {near}",
     "o1 Pair", "o2 Pair", "<", 0.012),
    ("SELECT o1.pairId, COUNT(*) AS n FROM Pair o1, Pair o2 WHERE {near} GROUP BY o1.pairId "
     "HAVING COUNT(*) > 2 ORDER BY n DESC, 1 LIMIT 10", "o1 Pair", "o2 Pair", "<", 0.01),
    ("SELECT o1.pairId, o2.pairId FROM Pair o1, Pair o2 WHERE {near} ORDER BY 1, 2 LIMIT 20",
     "o1 Pair", "o2 Pair", "<", 0.006),
    ("SELECT o1.kind, COUNT(*), AVG(o2.mag), MIN(o2.mag) FROM Pair o1, Pair o2 WHERE {near} GROUP BY o1.kind",
     "o1 Pair", "o2 Pair", "<", 0.007),
    ("SELECT DISTINCT o1.pairId FROM Pair o1, Pair o2 WHERE {near} AND o1.pairId <> o2.pairId AND o1.mag > o2.mag",
     "o1 Pair", "o2 Pair", "<", 0.005),
    ("SELECT COUNT(*) FROM Pair p, sky2.Nb n WHERE {near}", "p Pair", "n Nb sky2", "<", 0.005),
    ("SELECT p.pairId, n.nbId, k.label FROM Pair p JOIN sky2.Nb n ON {near} JOIN sky2.Kind k ON k.kind = n.kind",
     "p Pair", "n Nb sky2", "<", 0.004),
    ("SELECT n.nbId, p.pairId FROM sky2.Nb n, Pair p WHERE {near} AND p.mag > 18", "n Nb sky2", "p Pair", "<", 0.01),
    ("SELECT p.pairId, n.nbId FROM Pair p LEFT JOIN sky2.Nb n ON {near} WHERE p.kind = 1",
     "p Pair", "n Nb sky2", "<", 0.003),
    ("SELECT o.objectId, p.pairId FROM Object o, Pair p WHERE {near}", "o Object", "p Pair", "<", 0.003),
    ("SELECT o.objectId, s.sourceId, p.pairId FROM Object o JOIN Source s ON s.objectId = o.objectId, Pair p "
     "WHERE {near} AND s.psfFlux > 40", "o Object", "p Pair", "<", 0.01),
    ("SELECT p.pairId, o.objectId, s.sourceId FROM Pair p, Object o JOIN Source s ON s.objectId = o.objectId "
     "WHERE {near}", "p Pair", "o Object", "<", 0.01),
    ("SELECT COUNT(*) FROM sky2.Nb a, sky2.Nb b WHERE {near} AND a.nbId < b.nbId", "a Nb sky2", "b Nb sky2",
     "<", 0.0166),
]  # fmt: skip


def _near_sql(first: str, second: str, op: str, radius: float) -> str:
    a, b = first.split()[0], second.split()[0]
    sep = f"scisql_angSep({a}.ra, {a}.decl, {b}.ra, {b}.decl)"
    if op == ">":
        return f"{radius!r} > {sep}"
    if op == "between":
        return f"{sep} BETWEEN 0 AND {radius!r}"
    return f"{sep} {op} {radius!r}"


_IDS = {"Pair": "pairId", "Object": "objectId", "Nb": "nbId"}
_serial = itertools.count()


def _pair_condition(cluster: FakeCluster, first: str, second: str, radius: float) -> str:
    """The reference's condition: the numpy pairs, loaded into the reference DuckDB."""
    (a, ta, *da), (b, tb, *db) = first.split(), second.split()
    rows_a = cluster.generated.rows(ta, *(da or ["sky"]))
    rows_b = cluster.generated.rows(tb, *(db or ["sky"]))
    pairs = near_pairs(rows_a, rows_b, radius, _IDS[ta], _IDS[tb])
    name = f"__pairs{next(_serial)}"
    keys = pa.table({"k": pa.array([x * PAIR_KEY + y for x, y in pairs], pa.int64())})
    for conn in (cluster.ref.conn, cluster.ref.names):
        conn.register("__load", keys)
        conn.execute(f'CREATE TABLE "sky"."{name}" AS SELECT * FROM __load')
        conn.unregister("__load")
    return f'({a}.{_IDS[ta]} * {PAIR_KEY} + {b}.{_IDS[tb]}) IN (SELECT k FROM "sky"."{name}")'


@pytest.mark.parametrize(("template", "first", "second", "op", "radius"), NEAR)
def test_near_neighbour(
    cluster: FakeCluster, template: str, first: str, second: str, op: str, radius: float
) -> None:
    sql = template.format(near=_near_sql(first, second, op, radius))
    expected = cluster.reference(template.format(near=_pair_condition(cluster, first, second, radius)))
    assert not expected.refused, expected.error
    outcome = cluster.run(sql)
    assert_matches(outcome.table, expected, sql=sql)


def test_near_neighbour_finds_pairs_across_chunks(cluster: FakeCluster) -> None:
    """The catalog has pairs whose rows lie in different chunks and sub-chunks (else the
    near-neighbour tests could not fail on a missing overlap)."""
    import healpy as hp

    rows = cluster.generated.rows("Pair")
    part = cluster.generated.database.partitioning
    pairs = near_pairs(rows, rows, 0.01, "pairId", "pairId")
    ids = rows.column("pairId").to_pylist()
    ra, dec = rows.column("ra").to_numpy(), rows.column("decl").to_numpy()
    where = {k: i for i, k in enumerate(ids)}

    def crossing(order: int) -> int:
        pix = hp.ang2pix(1 << order, ra, dec, nest=True, lonlat=True)
        return sum(pix[where[x]] != pix[where[y]] for x, y in pairs)

    assert crossing(part.order) > 50 and crossing(part.sub_order) > 100


REFUSALS = [
    ("SELECT COUNT(*) FROM Pair o1, Pair o2 WHERE scisql_angSep(o1.ra, o1.decl, o2.ra, o2.decl) < 0.05",
     "0A000", 'near-neighbour join radius 0.05° exceeds the overlap 0.0166667° of database "sky": pairs farther '
     "apart than the overlap are not stored together; use a radius up to the overlap, or load the tables into a "
     "database created with a larger one (qserv database create DB --overlap DEG)"),
    ("SELECT COUNT(*) FROM Pair o1, sky2.Nb n WHERE scisql_angSep(o1.ra, o1.decl, n.ra, n.decl) <= 1.0 / 30",
     "0A000", 'near-neighbour join radius 0.0333333° exceeds the overlap 0.0166667° of database "sky2": pairs '
     "farther apart than the overlap are not stored together; use a radius up to the overlap, or load the tables "
     "into a database created with a larger one (qserv database create DB --overlap DEG)"),
    ("SELECT COUNT(*) FROM Pair o1, Pair o2 WHERE scisql_angSep(o1.ra, o1.decl, o2.ra, o2.decl) < o1.mag / 1000",
     "0A000", "near-neighbour join radius must be a constant (degrees), not an expression of columns"),
    ("SELECT COUNT(*) FROM Object o1 JOIN Source s1 ON s1.objectId = o1.objectId, Object o2 "
     "JOIN Source s2 ON s2.objectId = o2.objectId WHERE scisql_angSep(o1.ra, o1.decl, o2.ra, o2.decl) < 0.01",
     "0A000", 'near-neighbour join of "o1" and "o2": one side is read with its overlap rows and must be a director '
     "joined to no other chunked table (children and match tables have no overlap rows)"),
    ("SELECT COUNT(*) FROM Pair o1, Pair o2 WHERE scisql_angSep(o1.ra, o1.mag, o2.ra, o2.decl) < 0.01",
     "0A000", "self-join of director Pair needs equal keys or a near-neighbour condition scisql_angSep(a.lon, "
     "a.lat, b.lon, b.lat) < radius: o1 (director Pair), o2 (director Pair)"),
    ("SELECT 1 FROM Pair p, other.Star s WHERE scisql_angSep(p.ra, p.decl, s.ra, s.decl) < 0.01",
     "0A000", 'cannot join partitioned tables of different families: "sky.Pair" is in family '
     'healpix-o4-s7-ov0.016667, "other.Star" in family healpix-o3-s6-ov0.016667; their chunks are not co-located'),
    ("SELECT 1 FROM Object NATURAL JOIN Pair", "0A000",
     "join of tables of different directors is not supported: Object (director Object), Pair (director Pair); "
     "join a director and its children on the key, two directors through a match table or with a near-neighbour "
     "condition scisql_angSep(a.lon, a.lat, b.lon, b.lat) < radius"),
    ("SELECT 1 FROM Object o JOIN Filter USING (flags)", "42703",
     'column "flags" specified in USING clause does not exist in right table'),
    ("SELECT 1 FROM Filter f JOIN Object o USING (flags)", "42703",
     'column "flags" specified in USING clause does not exist in left table'),
    ("SELECT 1 FROM Object o JOIN Source s ON s.objectId = o.objectId JOIN Pair p USING (ra)", "42702",
     'common column name "ra" appears more than once in left table'),
    ("SELECT ra FROM Object JOIN Source USING (objectId)", "42702",
     'column reference "ra" is ambiguous (in Object, Source): qualify it with a table alias'),
    ("SELECT 1 FROM Object o RIGHT JOIN Source s USING (objectId)", "0A000",
     "RIGHT JOIN is not supported yet: write it as a LEFT JOIN"),
    ("SELECT 1 FROM Object o JOIN PairMatch m ON m.objectId = o.objectId JOIN Pair p ON p.pairId = m.pairId "
     "JOIN Source s ON s.objectId = o.objectId, Pair q WHERE q.pairId = p.pairId", "0A000",
     'the right director "p" of match table "m" is read with its overlap rows and cannot also be key-joined to '
     "other chunked tables"),
]  # fmt: skip

# An areaspec restricts every director in FROM (as Qserv applies it to each partitioned table),
# also one a join reads with its overlap rows: that table's cover grows by the overlap.
RESTRICTED_OVERLAP_SIDE = [
    "SELECT p.pairId, o.objectId FROM Pair p JOIN PairMatch m ON m.pairId = p.pairId "
    "JOIN Object o ON o.objectId = m.objectId WHERE qserv_areaspec_box(255, 5, 265, 15)",
    "SELECT p.pairId, o.objectId FROM Pair p JOIN PairMatch m ON m.pairId = p.pairId "
    "JOIN Object o ON o.objectId = m.objectId WHERE qserv_areaspec_circle(0, 90, 0.01)",
    "SELECT COUNT(*) FROM Pair p, Object o JOIN Source s ON s.objectId = o.objectId "
    "WHERE qserv_areaspec_box(65, 10, 75, 20) AND scisql_angSep(p.ra, p.decl, o.ra, o.decl) < 0.01",
    "SELECT o1.objectId, o2.objectId FROM Object o1, Object o2 WHERE qserv_areaspec_circle(200, -30, 0.5) "
    "AND scisql_angSep(o1.ra, o1.decl, o2.ra, o2.decl) < 0.01 AND o1.objectId <> o2.objectId",
    "SELECT o1.objectId, o2.objectId FROM Object o1, Object o2 WHERE qserv_areaspec_box(0.39, 0, 0.41, 1) "
    "AND scisql_angSep(o1.ra, o1.decl, o2.ra, o2.decl) < 0.016 AND o1.objectId <> o2.objectId",
]


@pytest.mark.parametrize("sql", RESTRICTED_OVERLAP_SIDE)
def test_areaspec_on_every_director(cluster: FakeCluster, sql: str) -> None:
    assert cluster.check(sql) is not None, f"{sql}\nrefused"


@pytest.mark.parametrize(("sql", "sqlstate", "message"), REFUSALS)
def test_refusal(cluster: FakeCluster, sql: str, sqlstate: str, message: str) -> None:
    with pytest.raises(QservError) as err:
        cluster.run(sql)
    assert (err.value.sqlstate, str(err.value)) == (sqlstate, message)


def test_match_pair_beyond_the_overlap_is_answered() -> None:
    """A match pair whose right row is outside the overlap of its left row's chunk is answered
    once (czar/plan/match.py), in an inner join; a LEFT JOIN to both directors still fails
    rather than drop it or give its left row alone."""
    far = FakeCluster(generate_joins(far_match=True))
    far.check(
        "SELECT COUNT(*) FROM Object o JOIN PairMatch m ON m.objectId = o.objectId "
        "JOIN Pair p ON p.pairId = m.pairId"
    )
    sql = (
        "SELECT COUNT(*) FROM Object o LEFT JOIN PairMatch m ON m.objectId = o.objectId "
        "LEFT JOIN Pair p ON p.pairId = m.pairId"
    )
    with pytest.raises(duckdb.Error) as raw:
        far.run(sql)  # the fake workers run DuckDB directly; a worker translates its errors
    err = translate(raw.value)
    assert err.sqlstate == "22023"
    assert str(err) == (
        "match table PairMatch has a pair whose right row (Pair) is farther than the overlap (0.0166667°) "
        "from its left row's chunk: such pairs cannot be joined to both directors; join the match table "
        "to one director, or load into a database with a larger overlap (qserv database create DB --overlap DEG)"
    )
    far.check("SELECT o.objectId, m.pairId FROM Object o JOIN PairMatch m ON m.objectId = o.objectId")


def test_match_pairs_cross_chunks(cluster: FakeCluster) -> None:
    """Some match pairs have their two rows in different chunks (stored twice), some repeat."""
    import healpy as hp

    nside = 1 << cluster.generated.database.partitioning.order

    def chunks(table: str, key: str) -> dict[int, int]:
        rows = cluster.generated.rows(table)
        pix = hp.ang2pix(
            nside, rows.column("ra").to_numpy(), rows.column("decl").to_numpy(), nest=True, lonlat=True
        )
        return dict(zip(rows.column(key).to_pylist(), pix.tolist(), strict=True))

    left, right = chunks("Object", "objectId"), chunks("Pair", "pairId")
    match = cluster.generated.rows("PairMatch")
    pairs = [
        (a, b)
        for a, b in zip(match.column("objectId").to_pylist(), match.column("pairId").to_pylist(), strict=True)
        if a in left and b in right
    ]
    assert len(pairs) < match.num_rows  # some pairs miss a director row
    assert sum(left[a] != right[b] for a, b in pairs) > 5
    assert len(set(pairs)) < len(pairs)  # repeated pairs
    assert len({a for a, _ in pairs}) < len(pairs) and len({b for _, b in pairs}) < len(pairs)  # N-to-M


LOCAL_GROUPS = [
    ("SELECT o.objectId, COUNT(*), AVG(s.psfFlux) FROM Object o JOIN Source s ON s.objectId = o.objectId "
     "GROUP BY o.objectId HAVING COUNT(*) > 2 ORDER BY 2 DESC, 1 LIMIT 10", True),
    ("SELECT s.objectId, COUNT(*), MAX(s.psfFlux) FROM Object o JOIN Source s USING (objectId) GROUP BY s.objectId",
     True),
    ("SELECT objectId, flags, SUM(rFlux) FROM Object GROUP BY objectId, flags ORDER BY 3 DESC NULLS LAST, 1 LIMIT 5",
     True),
    ("SELECT DISTINCT COUNT(*) AS n FROM Object GROUP BY objectId", True),
    ("SELECT objectId, COUNT(*) FROM Object WHERE qserv_areaspec_box(5, 0, 15, 10) GROUP BY objectId "
     "ORDER BY COUNT(*), objectId LIMIT 3", True),
    # not chunk-local: a child alone (a child row may lack its director), the nullable side of a
    # LEFT JOIN (its NULL group spans chunks), a match table's key, the right director of a match,
    # the left director of a match joined to both directors (its far pairs are in a chunk of their
    # own at the czar: czar/plan/match.py)
    ("SELECT o.objectId, COUNT(m.pairId) FROM Object o JOIN PairMatch m ON m.objectId = o.objectId "
     "JOIN Pair p ON p.pairId = m.pairId GROUP BY o.objectId", False),
    ("SELECT s.objectId, COUNT(*) FROM Source s GROUP BY s.objectId", False),
    ("SELECT s.objectId, COUNT(*) FROM Object o LEFT JOIN Source s ON s.objectId = o.objectId GROUP BY s.objectId",
     False),
    ("SELECT m.objectId, COUNT(*) FROM PairMatch m GROUP BY m.objectId", False),
    ("SELECT p.pairId, COUNT(*) FROM Object o JOIN PairMatch m ON m.objectId = o.objectId "
     "JOIN Pair p ON p.pairId = m.pairId GROUP BY p.pairId", False),
    ("SELECT flags, COUNT(*) FROM Object GROUP BY flags", False),
]  # fmt: skip


@pytest.mark.parametrize(("sql", "local"), LOCAL_GROUPS)
def test_group_by_key_runs_on_workers(cluster: FakeCluster, sql: str, local: bool) -> None:
    """GROUP BY on a director key (or a key-joined child's key): the workers compute the final
    groups, the merge only concatenates and orders (EXPLAIN says so); the answer is exact."""
    outcome = cluster.check(sql)
    assert outcome is not None
    explain = outcome.plan.explain()
    assert ("aggregation: on workers (groups are chunk-local" in explain) is local, explain
    assert ("GROUP BY" in outcome.plan.merge_sql) is not local, outcome.plan.merge_sql


def test_near_neighbour_group_by_first_key_runs_on_workers(cluster: FakeCluster) -> None:
    near = _near_sql("o1 Pair", "o2 Pair", "<", 0.01)
    first = cluster.run(f"SELECT o1.pairId, COUNT(*) FROM Pair o1, Pair o2 WHERE {near} GROUP BY o1.pairId")
    second = cluster.run(f"SELECT o2.pairId, COUNT(*) FROM Pair o1, Pair o2 WHERE {near} GROUP BY o2.pairId")
    assert "GROUP BY" not in first.plan.merge_sql and "GROUP BY" in second.plan.merge_sql
    # each pair is counted from both ends: the two groupings agree
    assert sorted(first.table.to_pylist(), key=str) == sorted(
        ({"pairId": r["pairId"], "count_star()": r["count_star()"]} for r in second.table.to_pylist()),
        key=str,
    )
