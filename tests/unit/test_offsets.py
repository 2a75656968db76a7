"""The commit guard's pure parts: Faust's acknowledged-offset list with duplicates and gaps,
and the detection of a hole no message will ever fill."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from faust.utils.functional import consecutive_numbers
from hypothesis import given
from hypothesis import strategies as st
from intervaltree import IntervalTree

from storemon.streams.offsets import (
    CommitWatchdog,
    DeliverEveryMessage,
    commit_hole,
    merge_acknowledged,
)


def first_run_end(acked: list[int]) -> int:
    """What Faust commits: one past the first run of consecutive offsets."""
    return next(consecutive_numbers(sorted(acked)))[-1] + 1


def test_duplicates_no_longer_split_the_run() -> None:
    acked = [2897, 2898, 2898, 2899, 2899, 2900]
    assert first_run_end(acked) == 2899  # one message per commit: the restarted worker crawled
    merge_acknowledged(acked, IntervalTree())
    assert acked == [2897, 2898, 2899, 2900]
    assert first_run_end(acked) == 2901


def test_gaps_are_not_taken_as_acknowledged() -> None:
    acked = [10, 11, 15, 12]
    gap = IntervalTree()
    gap.addi(13, 15)  # 13 and 14 were dropped, not processed
    merge_acknowledged(acked, gap)
    assert acked == [10, 11, 12, 15]
    assert not gap
    assert first_run_end(acked) == 13  # 13 and 14 must still come


@given(st.lists(st.integers(0, 60), min_size=1, max_size=80))
def test_merging_keeps_exactly_the_set_sorted(offsets: list[int]) -> None:
    acked = list(offsets)
    merge_acknowledged(acked, IntervalTree())
    assert acked == sorted(set(offsets))


def test_hole_detection() -> None:
    assert commit_hole([], 5, set()) is None
    assert commit_hole([5, 6], 5, set()) is None
    assert commit_hole([6, 7], 5, set()) == 5  # 5 never acknowledged
    assert commit_hole([9, 10], 5, set()) == 5
    assert commit_hole([9, 10], 5, {7}) is None  # 7 still on its way: wait for it
    assert commit_hole([9, 10], None, set()) is None  # nothing committed yet


@dataclass(frozen=True)
class _Message:
    tp: str
    offset: int


@dataclass
class _Consumer:
    """The attributes of a Faust consumer the watchdog reads, and its seek."""

    _acked: dict[str, list[int]]
    _committed_offset: dict[str, int]
    _unacked_messages: set[_Message] = field(default_factory=set)
    _commit_fut: object | None = None
    seeks: list[tuple[str, int]] = field(default_factory=list)

    @property
    def _thread(self) -> _Consumer:
        return self

    async def seek_wait(self, positions: dict[str, int]) -> None:
        self.seeks.extend(positions.items())


def test_watchdog_reads_again_only_after_the_hole_persisted() -> None:
    consumer = _Consumer({"p0": [9, 10], "p1": [3, 4]}, {"p0": 5, "p1": 3})
    watchdog = CommitWatchdog(consumer, patience=3)
    assert asyncio.run(watchdog.check()) == []
    assert asyncio.run(watchdog.check()) == []
    assert asyncio.run(watchdog.check()) == [("p0", 5, "re-read")]
    assert consumer.seeks == [("p0", 5)]


def test_watchdog_skips_offsets_that_never_arrive() -> None:
    consumer = _Consumer({"p0": [9, 10]}, {"p0": 5})
    watchdog = CommitWatchdog(consumer, patience=1, max_rereads=2)
    assert asyncio.run(watchdog.check()) == [("p0", 5, "re-read")]
    assert asyncio.run(watchdog.check()) == [("p0", 5, "re-read")]
    assert asyncio.run(watchdog.check()) == [("p0", 5, "skipped")]
    assert consumer._acked["p0"] == [5, 6, 7, 8, 9, 10]
    assert consumer.seeks == [("p0", 5), ("p0", 5)]


def test_watchdog_waits_while_a_commit_is_under_way() -> None:
    consumer = _Consumer({"p0": [9, 10]}, {"p0": 5})
    watchdog = CommitWatchdog(consumer, patience=2)
    assert asyncio.run(watchdog.check()) == []
    consumer._commit_fut = object()  # offsets 5..8 taken off the list, not yet recorded
    assert asyncio.run(watchdog.check()) == []
    consumer._commit_fut = None
    assert asyncio.run(watchdog.check()) == []  # counting starts again
    assert asyncio.run(watchdog.check()) == [("p0", 5, "re-read")]


def test_read_positions_never_drop_a_message() -> None:
    positions = DeliverEveryMessage()
    positions["p0"] = 120
    assert positions["p0"] is None  # Faust's fetch loop then delivers offsets below 120 too
    assert positions.get("p0") == 120


def test_watchdog_forgets_a_hole_that_fills() -> None:
    consumer = _Consumer({"p0": [9, 10]}, {"p0": 5})
    watchdog = CommitWatchdog(consumer, patience=2)
    assert asyncio.run(watchdog.check()) == []
    consumer._acked["p0"] = [5, 6, 7, 8, 9, 10]  # the late messages arrived
    assert asyncio.run(watchdog.check()) == []
    consumer._acked["p0"] = [12]
    consumer._committed_offset["p0"] = 9
    assert asyncio.run(watchdog.check()) == []  # a new hole starts its count afresh
    assert consumer.seeks == []
