"""Placement, replica choice and chunk filters cooperate so full scans filter by ranges."""

from __future__ import annotations

import duckdb

from czar.plan.assign import assign
from czar.plan.model import chunk_filter
from qserv.replica.placement import place_chunks


def test_placement_gives_each_worker_contiguous_segments_and_balanced_counts() -> None:
    placed = place_chunks(list(range(300)), ["w1", "w2", "w3"], 2)
    assert set(placed) == set(range(300))
    assert all(len(ws) == 2 and len(set(ws)) == 2 for ws in placed.values())
    counts = {w: sum(w in ws for ws in placed.values()) for w in ("w1", "w2", "w3")}
    assert counts == {"w1": 200, "w2": 200, "w3": 200}


def test_placement_caps_level_and_prefers_least_loaded() -> None:
    placed = place_chunks([5], ["a", "b"], 5, {"a": 10})
    assert placed == {5: ("a", "b")}
    placed = place_chunks([5], ["a", "b", "c"], 1, {"a": 10, "b": 3})
    assert placed == {5: ("c",)}


def test_full_scan_assignment_is_a_few_runs_per_worker() -> None:
    placed = place_chunks(list(range(0, 3000, 2)), ["w1", "w2", "w3"], 2)
    by_worker = assign(sorted(placed), placed, ["w1", "w2", "w3"])
    assert sorted(c for ids in by_worker.values() for c in ids) == sorted(placed)
    sizes = sorted(len(ids) for ids in by_worker.values())
    assert sizes[-1] - sizes[0] <= 1
    held = {w: {c for c, ws in placed.items() if w in ws} for w in by_worker}
    for w, ids in by_worker.items():
        sql = chunk_filter("_chunk", ids, held[w])
        assert "IN" not in sql and sql.count("BETWEEN") <= 2, sql


def test_chunk_filter_keeps_exactly_the_wanted_chunks() -> None:
    conn = duckdb.connect()
    conn.execute("CREATE TABLE t AS SELECT (i % 60)::INT AS _chunk FROM range(6000) r(i)")
    held = set(range(0, 60, 2)) | {31}
    for wanted in (
        [],
        [4],
        [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22],
        list(range(0, 60, 2)),
        [0, 2, 4, 6, 8, 10, 12, 14, 16, 31],
    ):
        sql = chunk_filter("_chunk", wanted, held)
        got = {
            r[0]
            for r in conn.execute(
                f"SELECT DISTINCT _chunk FROM t WHERE {sql} AND _chunk IN ({', '.join(map(str, held))})"
            ).fetchall()
        }
        assert got == set(wanted), (wanted, sql)


def test_a_worker_that_lost_replicas_gets_in_lists() -> None:
    wanted = list(range(0, 40, 2))
    held = set(range(40))  # odd chunks are held too but answered elsewhere
    assert chunk_filter("_chunk", wanted, held).startswith("_chunk IN (")
    assert chunk_filter("_chunk", wanted, None).startswith("_chunk IN (")
