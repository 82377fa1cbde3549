"""Seeded random queries from a small grammar, each checked against one DuckDB.

A failure names its seed; rerun one with ``pytest -k 'generated and 17'``.
"""

from __future__ import annotations

import random

import pytest

from tests.differential.harness import FakeCluster

NUMERIC = ["ra", "decl", "gFlux", "rFlux", "iFlux", "rMag", "flags"]
PREDICATES = [
    "flags {op} {i}",
    "rFlux {op} {f}",
    "decl BETWEEN {lat} AND {lat2}",
    "gFlux IS NULL",
    "gFlux IS NOT NULL",
    "name = 'obj{i}'",
    "scisql_angSep(ra, decl, {lon}, {lat}) < {r}",
    "qserv_areaspec_box({lon}, {lat}, {lon2}, {lat2})",
    "qserv_areaspec_circle({lon}, {lat}, {r})",
    "objectId IN ({k1}, {k2}, {k3})",
]
AGGREGATES = ["COUNT(*)", "COUNT({c})", "SUM({c})", "MIN({c})", "MAX({c})", "AVG({c})"]


def _fill(rng: random.Random, template: str) -> str:
    lat = round(rng.uniform(-80, 70), 2)
    return template.format(
        op=rng.choice(["<", ">", "=", "<=", "<>"]),
        i=rng.randint(0, 7),
        f=round(rng.uniform(0, 60), 1),
        lon=round(rng.uniform(0, 360), 2),
        lon2=round(rng.uniform(0, 360), 2),
        lat=lat,
        lat2=round(lat + rng.uniform(0.5, 20), 2),
        r=round(rng.uniform(0.1, 5), 2),
        k1=1000 + 3 * rng.randint(0, 2500),
        k2=1000 + 3 * rng.randint(0, 2500),
        k3=rng.randint(0, 10),
        c=rng.choice(NUMERIC),
    )


def generate_query(seed: int) -> str:
    """One random query over Object (optionally joined to Source) from the grammar."""
    rng = random.Random(seed)
    preds = rng.sample(PREDICATES, rng.randint(0, 2))
    if sum("areaspec" in p for p in preds) > 1:
        preds = [p for p in preds if "areaspec" not in p][:1]
    where = " AND ".join(_fill(rng, p) for p in preds)
    where_sql = f" WHERE {where}" if where else ""
    shape = rng.choice(["plain", "plain", "agg", "group"])
    if shape == "plain":
        cols = rng.sample(NUMERIC, rng.randint(1, 3))
        expr = rng.choice(["", ", rFlux - gFlux AS diff", ", flags * 2 + 1", ", COALESCE(iFlux, 0)"])
        order = ""
        if rng.random() < 0.5:
            order = f" ORDER BY objectId{' DESC' if rng.random() < 0.5 else ''} LIMIT {rng.randint(1, 20)}"
        distinct = "DISTINCT " if rng.random() < 0.15 else ""
        if distinct:
            return f"SELECT DISTINCT flags FROM Object{where_sql}"
        return f"SELECT objectId, {', '.join(cols)}{expr} FROM Object{where_sql}{order}"
    aggs = [_fill(rng, a) for a in rng.sample(AGGREGATES, rng.randint(1, 3))]
    if shape == "agg":
        return f"SELECT {', '.join(aggs)} FROM Object{where_sql}"
    having = " HAVING COUNT(*) > 2" if rng.random() < 0.3 else ""
    return f"SELECT flags, {', '.join(aggs)} FROM Object{where_sql} GROUP BY flags{having} ORDER BY flags"


@pytest.mark.parametrize("seed", range(100))
def test_generated(cluster: FakeCluster, seed: int) -> None:
    sql = generate_query(seed)
    cluster.check(sql)
