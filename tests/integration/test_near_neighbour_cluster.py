"""A near-neighbour self-join through a real cluster (psycopg): pairs across chunk boundaries.

Clumps of rows a few arcseconds to an arcminute wide are centred on chunk edges and corners
(and at the poles and across ra = 0/360), loaded with the real ``qserv load`` into a 3-worker,
2-replica cluster, which computes the overlap rows itself.  Pair truth comes from numpy in the
test (tests/differential/joins_catalog.py: ``near_pairs``), and the test checks that many of the
pairs have their two rows in different chunks (healpy), so a missing overlap would be seen.
"""

from __future__ import annotations

from collections.abc import Iterator

import healpy as hp
import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.cluster import LiveCluster, running_cluster
from tests.differential.joins_catalog import _jitter, near_pairs

ORDER, SUB_ORDER = 5, 8
OVERLAP = 1.0 / 60


def _rows(seed: int = 11) -> pa.Table:
    rng = np.random.default_rng(seed)
    nside = 1 << ORDER
    pix = rng.integers(0, hp.nside2npix(nside), 400)
    bounds = hp.boundaries(nside, pix, step=2, nest=True)
    k = rng.integers(0, bounds.shape[2], len(pix))
    lon, lat = hp.vec2ang(bounds[np.arange(len(pix)), :, k], lonlat=True)
    centres_lon = np.concatenate([lon % 360.0, [0.0, 0.0], np.zeros(30)])
    centres_lat = np.concatenate([lat, [90.0, -90.0], rng.uniform(-5, 5, 30)])
    ra, dec = _jitter(rng, np.repeat(centres_lon, 4), np.repeat(centres_lat, 4), 0.004)
    return pa.table(
        {
            "id": pa.array(np.arange(len(ra), dtype=np.int64) + 1),
            "ra": pa.array(ra),
            "decl": pa.array(dec),
        }
    )


@pytest.fixture(scope="module")
def rows() -> pa.Table:
    return _rows()


@pytest.fixture(scope="module")
def nn_cluster(tmp_path_factory: pytest.TempPathFactory, rows: pa.Table) -> Iterator[LiveCluster]:
    tmp = tmp_path_factory.mktemp("near")
    with running_cluster(tmp, workers=3, replicas=2, objects=0) as tc:
        tc.create_database("sky", ORDER, SUB_ORDER)
        path = tmp / "clumps.parquet"
        pq.write_table(rows, path)
        tc.load("--database", "sky", "--no-progress", "--table", "Clump", "--director", "--id", "id",
                "--lon", "ra", "--lat", "decl", str(path))  # fmt: skip
        yield tc


NEAR = "scisql_angSep(a.ra, a.decl, b.ra, b.decl) < {r}"


@pytest.mark.parametrize("radius", [0.002, 0.01, OVERLAP * 0.999])
def test_pairs_across_chunks(nn_cluster: LiveCluster, rows: pa.Table, radius: float) -> None:
    truth = sorted(near_pairs(rows, rows, radius, "id", "id"))
    chunk = hp.ang2pix(1 << ORDER, rows.column("ra").to_numpy(), rows.column("decl").to_numpy(),
                       nest=True, lonlat=True)  # fmt: skip
    crossing = sum(chunk[a - 1] != chunk[b - 1] for a, b in truth)
    assert crossing > 20, "the data must have pairs across chunk boundaries"
    with nn_cluster.connect() as conn:
        near = NEAR.format(r=radius)
        got = conn.execute(f"SELECT a.id, b.id FROM Clump a, Clump b WHERE {near}").fetchall()
        assert sorted(got) == truth
        (count,) = conn.execute(
            f"SELECT COUNT(*) FROM Clump a JOIN Clump b ON {near} AND a.id <> b.id"
        ).fetchone() or (None,)
        assert count == sum(a != b for a, b in truth)


def test_radius_above_the_overlap_is_refused(nn_cluster: LiveCluster) -> None:
    with nn_cluster.connect() as conn, pytest.raises(psycopg.Error) as err:
        conn.execute(f"SELECT COUNT(*) FROM Clump a, Clump b WHERE {NEAR.format(r=0.02)}")
    assert err.value.sqlstate == "0A000"
    message = err.value.diag.message_primary or ""
    assert message.startswith(
        'near-neighbour join radius 0.02° exceeds the overlap 0.0166667° of database "sky"'
    )
    assert "qserv database create DB --overlap DEG" in message
    assert err.value.diag.statement_position == "45"  # the condition
