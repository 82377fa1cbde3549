"""Director-match-director joins through a real cluster: every pair exactly once.

The join catalog (tests/differential/joins_catalog.py) plus N-to-M PairMatch rows between
Object and Pair rows a chunk or more apart (some repeated): pairs whose two rows share a
chunk, pairs across chunk edges (the right row in the overlap of the left row's chunk), far
pairs, pairs one of whose rows does not exist. Object, Pair and PairMatch (hidden flag), FlagMatch
(the same pairs with a user ``--flag`` column) and SelfMatch (Object to Object) are loaded with the real ``qserv
load`` into a 3-worker, 2-replica cluster; every query's rows are compared with the
independent reference (tests/differential/reference.py: one plain DuckDB holding the same
tables, running the query as written).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import healpy as hp
import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.cluster import LiveCluster, running_cluster
from tests.differential.catalog import DATABASE, GeneratedCatalog
from tests.differential.reference import Reference
from tests.differential.test_match_far import QUERIES, SELF, far_catalog
from tests.integration.test_differential_cluster import check

FLAGGED = [q.replace("PairMatch", "FlagMatch") for q in QUERIES[:5]]


@pytest.fixture(scope="module")
def generated() -> GeneratedCatalog:
    return far_catalog()


@pytest.fixture(scope="module")
def single(generated: GeneratedCatalog) -> Reference:
    return Reference(generated)


@pytest.fixture(scope="module")
def far_cluster(
    tmp_path_factory: pytest.TempPathFactory, generated: GeneratedCatalog
) -> Iterator[LiveCluster]:
    tmp = tmp_path_factory.mktemp("matchfar")
    part = generated.database.partitioning
    with running_cluster(tmp, workers=3, replicas=2, objects=0) as tc:
        tc.create_database(DATABASE, part.order, part.sub_order, part.overlap)
        paths: dict[str, Path] = {}
        for name in ("Object", "Pair", "PairMatch", "FlagMatch", "SelfMatch"):
            paths[name] = tmp / f"{name}.parquet"
            pq.write_table(generated.rows(name), paths[name])
        db = ["--database", DATABASE, "--no-progress"]
        for name, key in (("Object", "objectId"), ("Pair", "pairId")):
            tc.load(*db, "--table", name, "--director", "--id", key, "--lon", "ra", "--lat", "decl",
                    str(paths[name]))  # fmt: skip
        match = ["--match", "--left", "Object=objectId", "--right", "Pair=pairId"]
        tc.load(*db, "--table", "PairMatch", *match, str(paths["PairMatch"]))
        tc.load(*db, "--table", "FlagMatch", *match, "--flag", "flags", str(paths["FlagMatch"]))
        self_match = ["--match", "--left", "Object=o1", "--right", "Object=o2"]
        tc.load(*db, "--table", "SelfMatch", *self_match, str(paths["SelfMatch"]))
        yield tc


@pytest.fixture(scope="module")
def conn(far_cluster: LiveCluster) -> Iterator[psycopg.Connection]:
    with far_cluster.connect() as c:
        yield c


def _chunks(rows: pa.Table, order: int) -> dict[int, int]:
    pix = hp.ang2pix(
        1 << order, rows.column("ra").to_numpy(), rows.column("decl").to_numpy(), nest=True, lonlat=True
    )
    return dict(zip(rows.column(0).to_pylist(), pix.tolist(), strict=True))


def test_the_catalog_has_every_kind_of_pair(generated: GeneratedCatalog) -> None:
    """Same-chunk, cross-chunk within the overlap, far (more than the overlap), N-to-M pairs."""
    part = generated.database.partitioning
    left, right = _chunks(generated.rows("Object"), part.order), _chunks(generated.rows("Pair"), part.order)
    pairs = list(
        zip(*(generated.rows("PairMatch").column(c).to_pylist() for c in ("objectId", "pairId")), strict=True)
    )
    both = [(a, b) for a, b in pairs if a in left and b in right]
    assert sum(left[a] == right[b] for a, b in both) > 20
    pair = generated.rows("Pair")
    ra = dict(zip(pair.column("pairId").to_pylist(), pair.column("ra").to_numpy(), strict=True))
    dec = dict(zip(pair.column("pairId").to_pylist(), pair.column("decl").to_numpy(), strict=True))

    def far(a: int, b: int) -> bool:
        disc = hp.query_disc(1 << part.order, hp.ang2vec(ra[b], dec[b], lonlat=True), np.radians(part.overlap),
                             inclusive=True, nest=True)  # fmt: skip
        return left[a] not in disc

    crossing = [(a, b) for a, b in both if left[a] != right[b]]
    assert sum(not far(a, b) for a, b in crossing) > 20  # across a chunk edge, within the overlap
    assert sum(far(a, b) for a, b in crossing) >= 60
    assert len(set(pairs)) < len(pairs)  # repeated pairs
    assert len({a for a, _ in pairs}) < len(pairs) and len({b for _, b in pairs}) < len(pairs)  # N-to-M


@pytest.mark.parametrize("sql", QUERIES + FLAGGED + SELF)
def test_each_pair_once(conn: psycopg.Connection, single: Reference, sql: str) -> None:
    check(conn, single.answer(sql), sql)


def test_key_lookups_of_one_shape(
    conn: psycopg.Connection, single: Reference, generated: GeneratedCatalog
) -> None:
    """Lookups of far pairs' left rows, one shape, other keys: planned once, then rebound from
    the shape's plan (czar/generic.py), each answer exact."""
    keys = generated.rows("PairMatch").column("objectId").to_pylist()[-40:-30]
    for key in keys:
        sql = f"SELECT o.objectId, p.pairId, m.score FROM Object o JOIN PairMatch m ON m.objectId = o.objectId JOIN Pair p ON p.pairId = m.pairId WHERE o.objectId = {key}"
        check(conn, single.answer(sql), sql)


def test_flags_of_the_copies_read(conn: psycopg.Connection, single: Reference) -> None:
    """The user's flag column holds the loader's flags (1: the copy of a pair across chunks in
    its left row's chunk, 3: both rows in one chunk), one copy per pair."""
    sql = "SELECT m.flags, COUNT(*) FROM Object o JOIN FlagMatch m ON m.objectId = o.objectId JOIN Pair p ON p.pairId = m.pairId GROUP BY m.flags"
    got = dict(conn.execute(sql).fetchall())
    assert set(got) == {1, 3}
    (want,) = single.answer(sql.replace("m.flags, ", "").replace(" GROUP BY m.flags", "")).full
    assert sum(got.values()) == want[0]


def test_left_join_with_far_pairs_is_refused(conn: psycopg.Connection) -> None:
    """A LEFT JOIN to both directors is not answered with far pairs: it fails, naming the overlap."""
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="farther than the overlap"):
        conn.execute(
            "SELECT o.objectId, p.pairId FROM Object o LEFT JOIN PairMatch m ON m.objectId = o.objectId "
            "LEFT JOIN Pair p ON p.pairId = m.pairId"
        ).fetchall()
