"""The loader's in-process pipeline helpers: order kept, errors raised at their item."""

from __future__ import annotations

import threading
import time

import pytest

from loader.upload import ordered_map, prefetch


def test_ordered_map_keeps_order_and_runs_ahead() -> None:
    running: set[int] = set()
    overlapped = threading.Event()
    lock = threading.Lock()

    def slow_square(x: int) -> int:
        with lock:
            running.add(x)
            if len(running) > 1:
                overlapped.set()
        time.sleep(0.02 * (5 - x % 5))  # later items often finish first
        with lock:
            running.discard(x)
        return x * x

    assert list(ordered_map(slow_square, prefetch(range(12)))) == [(x, x * x) for x in range(12)]
    assert overlapped.is_set()  # items were partitioned in parallel


def test_ordered_map_raises_at_the_failing_item() -> None:
    def check(x: int) -> int:
        if x == 3:
            raise ValueError("bad row in batch 3")
        return x

    seen = []
    with pytest.raises(ValueError, match="batch 3"):
        for x, _ in ordered_map(check, iter(range(10))):
            seen.append(x)
    assert seen == [0, 1, 2]
