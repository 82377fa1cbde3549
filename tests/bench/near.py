"""Near-neighbour self-join COUNT at r = 1" and 30": the cluster against one DuckDB's best form.

The single DuckDB runs a band join on declination zones of height r (each row repeated into
the zones above and below, an equi-join on the zone, a right-ascension window, then the exact
angular separation), the formulation that avoids a cross product; the cluster runs the query
as a user writes it.
"""

from __future__ import annotations

import statistics
import time

import duckdb
import psycopg

RADII = (("1 arcsec", 1.0 / 3600), ("30 arcsec", 30.0 / 3600))

# the measure is over 1M objects: a larger catalog is sampled by key, on both sides
NEAR_OBJECTS = 1_000_000

_ZONES = """
WITH z AS (SELECT objectId, ra, decl, CAST(FLOOR((decl + 90) / {h!r}) AS BIGINT) AS zone FROM Object
           WHERE {sample})
SELECT COUNT(*) FROM z AS a JOIN (SELECT z.*, zone + d.dz AS zz FROM z, (VALUES (-1), (0), (1)) AS d(dz)) AS b
  ON a.zone = b.zz
 AND (abs(a.decl) + {r2!r} >= 89.9
      OR least(abs(a.ra - b.ra), 360 - abs(a.ra - b.ra)) <= {w!r} / cos(radians(abs(a.decl) + {r2!r})))
 AND scisql_angSep(a.ra, a.decl, b.ra, b.decl) < {r!r}
"""


def _ms(fn: object, repeat: int = 3) -> tuple[float, object]:
    times, value = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        value = fn()  # type: ignore[operator]
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), value


def near_neighbour(
    conn: psycopg.Connection, ref: duckdb.DuckDBPyConnection, n_objects: int = NEAR_OBJECTS
) -> list[tuple[str, float, float]]:
    """(label, cluster ms, DuckDB ms) per radius over ~1M of the ``n_objects`` objects (every
    k-th key); the two counts must agree."""
    k = max(1, n_objects // NEAR_OBJECTS)
    sample = f"objectId % {k} = 0"
    out = []
    for label, r in RADII:
        cluster_sql = (
            "SELECT COUNT(*) FROM Object o1, Object o2 "
            f"WHERE scisql_angSep(o1.ra, o1.decl, o2.ra, o2.decl) < {r!r}"
            + (f" AND o1.{sample} AND o2.{sample}" if k > 1 else "")
        )
        ref_sql = _ZONES.format(h=r * (1 + 1e-6), w=r * 1.01, r2=2 * r, r=r, sample=sample)
        c_ms, c_rows = _ms(lambda sql=cluster_sql: conn.execute(sql).fetchall())
        r_ms, r_rows = _ms(lambda sql=ref_sql: ref.execute(sql).fetchall())
        assert c_rows == r_rows, f"near-neighbour r={label}: cluster {c_rows} != DuckDB {r_rows}"
        out.append((f"near-neighbour COUNT r={label}", c_ms, r_ms))
    return out
