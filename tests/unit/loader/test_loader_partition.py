"""Rows -> chunks, validation, routing, placement policy (no network)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from loader.partition import Router, child_rows, chunk_counts, director_rows, validate
from loader.read import Batch, InputFile
from loader.spec import LoadSpec
from qserv.catalog import Partitioning, TableKind
from qserv.errors import DataError, WorkerUnavailable
from qserv.replica.placement import place_chunks
from qserv.sphere.healpix import chunk_ids

CSV = InputFile(Path("obj.csv"), "csv")
SPEC = LoadSpec("http://h:1", "sky", "Object", TableKind.DIRECTOR, (Path("obj.csv"),),
                id_column="id", lon_column="ra", lat_column="dec")  # fmt: skip
NO_OVERLAP = Partitioning(order=3, sub_order=6, overlap=0.0)


def batch(
    ids: list[int | None], ra: list[float | None], dec: list[float | None], first_row: int = 0
) -> Batch:
    data = pa.record_batch({"id": pa.array(ids, pa.int64()), "ra": pa.array(ra, pa.float64()),
                            "dec": pa.array(dec, pa.float64())})  # fmt: skip
    return Batch(CSV, first_row, data)


def test_null_key_names_line_and_column() -> None:
    with pytest.raises(DataError, match=r"obj.csv line 13, column id: NULL value"):
        validate(batch([1, None], [1.0, 2.0], [0.0, 0.0], first_row=10), SPEC)


def test_latitude_out_of_range() -> None:
    with pytest.raises(DataError, match=r"obj.csv line 3, column dec: 91.0 is not a valid latitude"):
        validate(batch([1, 2], [1.0, 2.0], [0.0, 91.0]), SPEC)
    with pytest.raises(DataError, match="column ra"):
        validate(batch([1], [float("nan")], [0.0]), SPEC)


def test_director_rows_chunk_and_subchunk() -> None:
    rng = np.random.default_rng(3)
    ra, dec = rng.uniform(0, 360, 1000), rng.uniform(-90, 90, 1000)
    part = director_rows(batch(list(range(1000)), list(ra), list(dec)), SPEC, NO_OVERLAP)
    expected_chunk = chunk_ids(ra, dec, 3)
    # every row carries its chunk and sub-chunk
    assert list(part.chunks) == list(expected_chunk)
    ids = part.rows.column("id").to_numpy()
    assert np.array_equal(part.rows.column("_chunk").to_numpy(), expected_chunk[ids])
    assert np.array_equal(part.rows.column("_subchunk").to_numpy(), chunk_ids(ra, dec, 6)[ids])
    assert part.rows.column("_subchunk").type == pa.int64()
    assert part.index is not None and part.index.column_names == ["key", "chunk", "subchunk"]
    assert part.overlap is None
    assert sum(chunk_counts(part.chunks).values()) == 1000


def test_child_rows_refuse_unknown_director() -> None:
    spec = LoadSpec("http://h:1", "sky", "Source", TableKind.CHILD, (Path("src.csv"),),
                    director="Object", key_column="id")  # fmt: skip
    b = batch([5, 6, 7], [0.0] * 3, [0.0] * 3, first_row=100)
    part = child_rows(b, spec, pa.array([9, 4, 9], pa.int32()), Partitioning())
    assert list(part.chunks) == [9, 4, 9]
    assert part.rows.column("_chunk").to_pylist() == [9, 4, 9]
    with pytest.raises(DataError, match=r"line 104, column id: no Object row has key 7"):
        child_rows(b, spec, pa.array([9, 4, None], pa.int32()), Partitioning())


def test_router_sends_each_row_once_with_its_other_replicas() -> None:
    router = Router(order=1)
    rows = pa.table({"x": [1, 2, 3, 4, 5]})
    chunks = np.array([0, 0, 5, 7, 8], dtype=np.int32)
    assert router.unplaced(chunks) == [0, 5, 7, 8]
    router.add({0: ("a", "b"), 5: ("b", "c"), 7: ("a", "c"), 8: ("a", "b")})
    assert router.unplaced(chunks) == []
    out = {(r.worker, r.forward): r.rows.column("x").to_pylist() for r in router.routes(rows, chunks)}
    # the first replica rotates with the chunk id (0 and 8 even: "a" first; 5 and 7 odd)
    assert out == {("a", ("b",)): [1, 2, 5], ("c", ("b",)): [3], ("c", ("a",)): [4]}
    # every row reaches every replica exactly once
    reached = sorted((x, w) for (first, fw), xs in out.items() for x in xs for w in (first, *fw))
    assert reached == sorted((x, w) for x, c in zip([1, 2, 3, 4, 5], chunks.tolist(), strict=True)
                             for w in router.placement[c])  # fmt: skip
    one = router.routes(rows.slice(0, 2), chunks[:2])
    assert [(r.worker, r.forward, r.rows.num_rows) for r in one] == [("a", ("b",), 2)]
    assert router.routes(rows.slice(0, 0), chunks[:0]) == []


def test_placement_balances_and_is_deterministic() -> None:
    placed = place_chunks(list(range(30)), ["w1", "w2", "w3"], 2)
    counts = {w: sum(w in ws for ws in placed.values()) for w in ("w1", "w2", "w3")}
    assert counts == {"w1": 20, "w2": 20, "w3": 20}
    assert all(len(set(ws)) == 2 for ws in placed.values())
    assert placed == place_chunks(list(reversed(range(30))), ["w3", "w1", "w2"], 2)


def test_placement_respects_existing_load_and_caps_level() -> None:
    assert place_chunks([1], ["w1", "w2", "w3"], 2, {"w1": 10, "w2": 3}) == {1: ("w2", "w3")}
    assert place_chunks([1, 2], ["only"], 3) == {1: ("only",), 2: ("only",)}
    with pytest.raises(WorkerUnavailable):
        place_chunks([1], [], 2)


@pytest.mark.parametrize("order", [5, 7])  # 16-bit radix passes, and the 64-bit key beyond
def test_router_sends_runs_sorted_by_chunk(order: int) -> None:
    rng = np.random.default_rng(order)
    n = 12 * 4**order
    router = Router(order=order)
    workers = ("a", "b", "c", "d")
    router.add({c: (workers[c % 4], workers[(c + 1 + c % 3) % 4]) for c in range(n)})
    chunks = rng.integers(0, n, 50_000).astype(np.int32)
    rows = pa.table({"i": np.arange(chunks.size), "_chunk": chunks})
    routes = router.routes(rows, chunks)
    seen = []
    for r in routes:
        got = r.rows.column("_chunk").to_numpy()
        assert (np.diff(got) >= 0).all()  # a run sorted by chunk
        assert all(router.placement[c][0] in (r.worker, *r.forward) for c in got[:100].tolist())
        seen.extend(r.rows.column("i").to_pylist())
    assert sorted(seen) == list(range(chunks.size))  # every row once
