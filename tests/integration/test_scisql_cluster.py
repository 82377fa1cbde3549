"""Ellipse and polygon areaspecs (and their sciSQL forms) on a real cluster, through psycopg.

Truth: the sample Object table's positions, tested with numpy in the test
(tests/differential/reference_scisql.py), not the cluster's macros or region code.
"""

from __future__ import annotations

import numpy as np
import psycopg
import pyarrow.parquet as pq
import pytest

from tests.cluster import LiveCluster
from tests.differential.reference_scisql import areaspec_inside

ELLIPSE = (10.0, 5.0, 36000.0, 18000.0, 35.0)
POLYGON = (2.0, -3.0, 16.0, -2.0, 18.0, 12.0, 4.0, 11.0)


def _truth(cluster: LiveCluster, shape: str, args: tuple[float, ...]) -> list[int]:
    rows = pq.read_table(cluster.sample["Object"], columns=["objectId", "ra", "decl"])
    inside = areaspec_inside(shape, rows.column("ra").to_numpy(), rows.column("decl").to_numpy(), list(args))
    assert not isinstance(inside, str)
    return sorted(np.asarray(rows.column("objectId").to_pylist())[inside].tolist())


@pytest.mark.parametrize(
    ("shape", "args", "sql"),
    [
        (
            "ellipse",
            ELLIPSE,
            "SELECT objectId FROM Object WHERE qserv_areaspec_ellipse({}) ORDER BY objectId",
        ),
        ("poly", POLYGON, "SELECT objectId FROM Object WHERE qserv_areaspec_poly({}) ORDER BY objectId"),
        (
            "ellipse",
            ELLIPSE,
            "SELECT objectId FROM Object WHERE scisql_s2PtInEllipse(ra, decl, {}) = 1 ORDER BY 1",
        ),
        (
            "poly",
            POLYGON,
            "SELECT objectId FROM Object WHERE 1 = scisql_s2PtInCPoly(ra, decl, {}) ORDER BY 1",
        ),
    ],
)
def test_areaspec_rows_and_pruning(
    cluster: LiveCluster, shape: str, args: tuple[float, ...], sql: str
) -> None:
    query = sql.format(", ".join(repr(a) for a in args))
    want = _truth(cluster, shape, args)
    assert len(want) > 5
    got = [r[0] for r in cluster.query(query)]
    assert got == want
    plan = cluster.explain(query)
    assert plan.startswith("strategy: region"), plan
    all_chunks = cluster.explain("SELECT COUNT(*) FROM Object WHERE ra >= 0")
    pruned = int(plan.split("chunks: ")[1].split()[0])
    assert pruned < int(all_chunks.split("chunks: ")[1].split()[0]) / 10


def test_ellipse_with_bound_parameters(cluster: LiveCluster) -> None:
    """psycopg binds float8 parameters; a second ellipse of the same text gets its own rows."""
    sql = "SELECT objectId FROM Object WHERE qserv_areaspec_ellipse(%s, %s, %s, %s, %s) ORDER BY objectId"
    with cluster.connect() as conn:
        for args in (ELLIPSE, (200.0, -30.0, 30000.0, 9000.0, 120.0)):
            got = [r[0] for r in conn.execute(sql, args).fetchall()]
            assert got == _truth(cluster, "ellipse", args)


def test_invalid_polygon_is_refused(cluster: LiveCluster) -> None:
    with cluster.connect() as conn, pytest.raises(psycopg.Error) as info:
        conn.execute("SELECT COUNT(*) FROM Object WHERE qserv_areaspec_poly(0, 0, 1, 1, 1, 0, 0, 1)")
    assert info.value.sqlstate == "22023"
    assert "convex polygon" in str(info.value)
