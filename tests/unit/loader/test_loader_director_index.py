"""The czar's director index: staging, duplicate checks, publish/abort, lookups."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from czar.director_index import DirectorIndex
from qserv.errors import DataError


def rows(keys: list[int], chunks: list[int]) -> pa.Table:
    return pa.table({"k": pa.array(keys, pa.int64()), "c": chunks, "s": [c * 16 for c in chunks]})


@pytest.fixture
def index(tmp_path: Path) -> Iterator[DirectorIndex]:
    ix = DirectorIndex(tmp_path / "czar" / "director_index.duckdb")
    yield ix
    ix.close()


def test_staged_keys_are_invisible_until_published(index: DirectorIndex) -> None:
    index.stage(1, "sky", "Object", rows([1, 2, 3], [10, 10, 11]))
    assert index.chunks_for_keys("sky", "Object", [1]) == frozenset()
    index.check(1)
    index.publish(1)
    index.publish(1)  # idempotent
    assert index.chunks_for_keys("SKY", "object", [1]) == {10}
    assert index.chunks_for_keys("sky", "Object", [1, 2, 3, 99]) == {10, 11}
    assert index.chunks_for_keys("sky", "Object", []) == frozenset()
    assert index.count("sky", "Object") == 3


def test_lookup_returns_null_for_absent_keys(index: DirectorIndex) -> None:
    assert index.lookup("sky", "Object", pa.array([1, 2])).to_pylist() == [None, None]
    index.stage(1, "sky", "Object", rows([5, 6], [1, 2]))
    index.publish(1)
    got = index.lookup("sky", "Object", pa.array([6, 7, 5, 6], pa.int64()))
    assert got.type == pa.int32()
    assert got.to_pylist() == [2, None, 1, 2]


def test_abort_drops_staged_keys(index: DirectorIndex) -> None:
    index.stage(4, "sky", "Object", rows([1], [3]))
    index.abort(4)
    index.publish(4)
    assert index.count("sky", "Object") == 0


def test_duplicate_key_inside_a_load(index: DirectorIndex) -> None:
    index.stage(1, "sky", "Object", rows([1, 2], [3, 3]))
    index.stage(1, "sky", "Object", rows([2], [4]))
    with pytest.raises(DataError, match="duplicate director key 2"):
        index.check(1)


def test_duplicate_key_against_loaded_keys(index: DirectorIndex) -> None:
    index.stage(1, "sky", "Object", rows([1, 2], [3, 3]))
    index.publish(1)
    index.stage(2, "sky", "Object", rows([7, 2], [3, 3]))
    with pytest.raises(DataError, match="director key 2 of sky.object is already loaded"):
        index.check(2)


def test_reopen_keeps_published_keys(tmp_path: Path) -> None:
    path = tmp_path / "ix.duckdb"
    ix = DirectorIndex(path)
    ix.stage(1, "sky", "Object", rows([1], [3]))
    ix.publish(1)
    ix.close()
    ix = DirectorIndex(path)
    assert ix.chunks_for_keys("sky", "Object", [1]) == {3}
    ix.close()
