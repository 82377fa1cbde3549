"""The commit rule: which copies a transaction leaves complete (qserv.metadata.copies)."""

from __future__ import annotations

from qserv.metadata.copies import holders, settle
from qserv.metadata.store import Replica, Target

F = "family"


def _targets(chunks: dict[int | None, str]) -> list[Target]:
    return [Target(c, w) for c, ws in chunks.items() for w in ws]


def test_every_target_commits_nothing_dropped() -> None:
    s = settle(F, _targets({1: "ab", 2: "bc"}), {1: "ab"}, "abc")
    assert s.dropped == () and s.orphans == ()
    assert dict(s.complete) == {1: ("a", "b"), 2: ("b", "c")}  # chunk 2 is new: no holder yet


def test_a_target_that_missed_the_commit_is_dropped() -> None:
    s = settle(F, _targets({1: "ab", 2: "ab"}), {1: "ab"}, "a")
    assert s.dropped == (Replica(F, 1, "b"), Replica(F, 2, "b")) and s.orphans == ()


def test_a_holder_that_was_down_at_placement_is_dropped() -> None:
    # c held chunk 1 but was down when the load was placed: it got none of the rows
    s = settle(F, _targets({1: "a"}), {1: "ac"}, "abc")
    assert s.dropped == (Replica(F, 1, "c"),) and dict(s.complete) == {1: ("a",)}


def test_a_target_whose_holder_record_was_dropped_meanwhile_is_dropped() -> None:
    # b was a target of chunk 1, but a concurrent commit dropped b's copy (it missed that one)
    s = settle(F, _targets({1: "ab"}), {1: "a"}, "ab")
    assert s.dropped == (Replica(F, 1, "b"),)


def test_a_chunk_left_without_a_complete_copy_is_an_orphan() -> None:
    s = settle(F, _targets({1: "ab", 2: "c", None: "abc"}), {1: "ab", 2: "c"}, "c")
    assert s.orphans == (1,)
    s = settle(F, _targets({None: "ab"}), {}, "c")
    assert s.orphans == (None,) and s.dropped == ()  # a regular table: no replica records


def test_holders_of_a_regular_table_committed_every_load() -> None:
    loads = [(1, "a", True), (1, "b", True), (2, "a", True), (2, "b", False), (2, "c", True)]
    assert holders(loads) == frozenset({"a"})
    assert holders([(1, "a", True), (1, "b", True)]) == frozenset({"a", "b"})
    assert holders([(3, "a", False)]) == frozenset()
