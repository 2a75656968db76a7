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
    commit_only_delivered,
    guard_offset_commits,
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


class FakeProducer:
    def __init__(self) -> None:
        self.buffered: list[asyncio.Future[int]] = []

    def send_soon(self, message: asyncio.Future[int]) -> None:
        self.buffered.append(message)


class FakeConsumer:
    def __init__(self) -> None:
        self.committed: list[dict[str, int]] = []

    async def _commit(self, offsets: dict[str, int]) -> bool:
        self.committed.append(offsets)
        return True


def test_a_commit_waits_until_the_writes_before_it_are_on_the_broker() -> None:
    async def scenario() -> None:
        producer, consumer = FakeProducer(), FakeConsumer()
        undelivered = commit_only_delivered(consumer, producer)
        assert commit_only_delivered(consumer, producer) is undelivered  # installed once
        loop = asyncio.get_running_loop()
        table_write: asyncio.Future[int] = loop.create_future()
        producer.send_soon(table_write)
        assert producer.buffered == [table_write]  # still handed to Faust's producer
        commit = asyncio.ensure_future(consumer._commit({"batches-0": 7}))
        await asyncio.sleep(0.01)
        assert not commit.done()
        assert consumer.committed == []
        table_write.set_result(1)  # the broker acknowledged it
        assert await commit is True
        assert consumer.committed == [{"batches-0": 7}]
        assert len(undelivered) == 0
        # A write handed over after the commit started does not hold that commit back.
        later: asyncio.Future[int] = loop.create_future()
        producer.send_soon(later)
        assert len(undelivered) == 1
        later.set_result(2)
        await asyncio.sleep(0)
        assert len(undelivered) == 0

    asyncio.run(scenario())


def test_a_failed_write_holds_the_commit_back() -> None:
    async def scenario() -> None:
        producer, consumer = FakeProducer(), FakeConsumer()
        undelivered = commit_only_delivered(consumer, producer)
        lost: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        undelivered.track(lost)  # a message sent directly (a dead letter)
        lost.set_exception(ConnectionError("broker gone"))
        assert await consumer._commit({"batches-0": 9}) is False
        assert consumer.committed == []  # the batch will be processed again
        assert await consumer._commit({"batches-0": 9}) is True  # nothing pending any more

    asyncio.run(scenario())


@dataclass(frozen=True)
class _TP:
    topic: str
    partition: int


@dataclass
class _RebalancedConsumer:
    """A Faust consumer right after a rebalance: ``perform_seek`` moves only the partitions
    the group committed (as Faust's does); ``positions`` are where fetching goes on."""

    committed_by_group: dict[_TP, int]
    positions: dict[_TP, int]
    log_starts: dict[_TP, int]
    _committed_offset: dict[_TP, int | None] = field(default_factory=dict)
    _acked: dict[_TP, list[int]] = field(default_factory=dict)
    _gap: dict[_TP, IntervalTree] = field(default_factory=dict)

    def assignment(self) -> set[_TP]:
        return set(self.positions)

    async def perform_seek(self) -> None:
        for tp, offset in self.committed_by_group.items():
            if offset > 0:
                self.positions[tp] = offset
                self._committed_offset[tp] = offset

    async def earliest_offsets(self, *tps: _TP) -> dict[_TP, int]:
        return {tp: self.log_starts[tp] for tp in tps}

    @property
    def _thread(self) -> _RebalancedConsumer:
        return self

    async def seek_wait(self, positions: dict[_TP, int]) -> None:
        self.positions.update(positions)

    def _new_offset(self, tp: _TP) -> int | None:  # Faust's: one past the acknowledged run
        acked = self._acked.get(tp)
        return first_run_end(acked) if acked else None


def test_a_partition_the_group_never_committed_is_read_again_from_its_start() -> None:
    batches, other, changelog = _TP("batches", 0), _TP("batches", 1), _TP("changelog", 0)
    consumer = _RebalancedConsumer(
        committed_by_group={other: 7},
        # Fetched while the flow was stopped, then dropped: the positions moved on.
        positions={batches: 10, other: 12, changelog: 30},
        log_starts={batches: 0, other: 0, changelog: 0},
    )
    guard_offset_commits(consumer, frozenset({"batches"}))
    asyncio.run(consumer.perform_seek())
    assert consumer.positions == {batches: 0, other: 7, changelog: 30}  # the tables' own
    assert consumer._committed_offset == {batches: 0, other: 7}
    # Had its later messages been processed without the first ones, nothing is committed
    # past the hole (before, Faust committed 10 and the first batches were lost).
    consumer._acked[batches] = [3, 4, 5, 6, 7, 8, 9]
    consumer._gap[batches] = IntervalTree()
    assert consumer._new_offset(batches) is None
    consumer._acked[batches] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert consumer._new_offset(batches) == 10


def test_a_partition_whose_log_start_moved_is_read_from_there() -> None:
    batches = _TP("batches", 0)
    consumer = _RebalancedConsumer({}, {batches: 90}, {batches: 40})  # retention deleted 0-39
    guard_offset_commits(consumer, frozenset({"batches"}))
    asyncio.run(consumer.perform_seek())
    assert consumer.positions == {batches: 40}
    consumer._acked[batches] = [40, 41]
    consumer._gap[batches] = IntervalTree()
    assert consumer._new_offset(batches) == 42
