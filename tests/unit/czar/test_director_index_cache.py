"""The director index's in-memory key copy answers exactly as DuckDB does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from czar.director_index import DirectorIndex


def _rows(keys: list[int], chunks: list[int]) -> pa.Table:
    return pa.table({"k": pa.array(keys, pa.int64()), "c": chunks, "s": [c * 16 for c in chunks]})


def _load(ix: DirectorIndex, txn: int, keys: list[int], chunks: list[int]) -> None:
    ix.stage(txn, "sky", "Object", _rows(keys, chunks))
    ix.check(txn)
    ix.publish(txn)


def test_cached_lookups_match_duckdb(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    keys = rng.choice(1_000_000, size=5000, replace=False).tolist()  # unsorted
    chunks = rng.integers(0, 50, size=5000).tolist()
    cached = DirectorIndex(tmp_path / "a.duckdb")
    plain = DirectorIndex(tmp_path / "b.duckdb", cache_max_keys=0)
    try:
        for ix in (cached, plain):
            _load(ix, 1, keys[:3000], chunks[:3000])
            _load(ix, 2, keys[3000:], chunks[3000:])
        assert cached.warm("sky", "Object")
        assert not plain.warm("sky", "Object")  # over the limit: DuckDB answers
        probes = [[k] for k in keys[:200]] + [[-1], [2**63 - 1], [-(2**63)], keys[100:150] + [10**7]]
        for probe in probes:
            assert cached.chunks_for_keys("SKY", "object", probe) == plain.chunks_for_keys(
                "sky", "Object", probe
            )
        assert cached.chunks_for_keys("sky", "Object", [str(keys[0])]) == {chunks[0]}  # DuckDB casts
        assert cached.chunks_for_keys("sky", "Object", [2**70]) == frozenset()
    finally:
        cached.close()
        plain.close()


def test_publish_drops_the_copy(tmp_path: Path) -> None:
    ix = DirectorIndex(tmp_path / "ix.duckdb")
    try:
        _load(ix, 1, [1, 2], [10, 11])
        assert ix.warm("sky", "Object")
        assert ix.chunks_for_keys("sky", "Object", [3]) == frozenset()
        _load(ix, 2, [3], [12])
        assert ix.chunks_for_keys("sky", "Object", [3]) == {12}  # before or after the rebuild
        assert ix.warm("sky", "Object")
        assert ix.chunks_for_keys("sky", "Object", [1, 3]) == {10, 12}
    finally:
        ix.close()


def test_range_lookups_match_numpy_in_both_paths(tmp_path: Path) -> None:
    """chunks_for_range: the chunks of exactly the keys in [low, high] (truth from numpy over
    the loaded keys), from the key copy and from DuckDB alike, and None past the bound."""
    rng = np.random.default_rng(11)
    keys = rng.choice(100_000, size=4000, replace=False)
    chunks = rng.integers(0, 300, size=4000)
    cached = DirectorIndex(tmp_path / "a.duckdb")
    plain = DirectorIndex(tmp_path / "b.duckdb", cache_max_keys=0)
    try:
        for ix in (cached, plain):
            _load(ix, 1, keys[:2500].tolist(), chunks[:2500].tolist())
            _load(ix, 2, keys[2500:].tolist(), chunks[2500:].tolist())  # two sorted runs
        assert cached.warm("sky", "Object")
        for low, high in [
            (0, 10),
            (500, 900),
            (int(keys[0]), int(keys[0])),
            (99_990, 10**12),
            (-(10**12), 50),
        ]:
            inside = (keys >= low) & (keys <= high)
            truth = frozenset(int(c) for c in np.unique(chunks[inside]))
            for ix in (cached, plain):
                assert ix.chunks_for_range("sky", "object", low, high, 1000) == truth, (low, high)
        for ix in (cached, plain):
            assert ix.chunks_for_range("sky", "Object", 0, 100_000, 50) is None  # ~300 chunks > 50
            assert ix.chunks_for_range("sky", "Object", 10, 5, 50) == frozenset()
            assert ix.chunks_for_range("sky", "Nope", 0, 10, 50) == frozenset()
    finally:
        cached.close()
        plain.close()
