"""The recovery watchdog: which changelog partitions count as stalled, and what it does
about them (streams/recovery_watch.py)."""

from __future__ import annotations

import asyncio
from collections import Counter
from types import SimpleNamespace
from typing import Any

from storemon.streams.recovery_watch import (
    RecoveryProgress,
    RecoveryWatchdog,
    stalled_partitions,
)

P0 = ("stores-changelog", 0)
P1 = ("stores-changelog", 1)
P2 = ("store_polls-changelog", 0)


def test_a_partition_with_records_left_and_none_arriving_is_stalled() -> None:
    progress = RecoveryProgress(
        remaining={P0: 5, P1: 3}, last_record_at={P1: 125.0}, started_at=100.0
    )
    assert stalled_partitions(progress, now=129.0, stall_s=30.0) == []
    # P0 never got a record: stalled 30 s after the start; P1 got one at 125.
    assert stalled_partitions(progress, now=130.0, stall_s=30.0) == [P0]
    assert stalled_partitions(progress, now=155.0, stall_s=30.0) == [P0, P1]


def test_a_partition_read_to_its_end_is_never_stalled() -> None:
    progress = RecoveryProgress(remaining={P0: 0, P1: -2}, last_record_at={}, started_at=0.0)
    assert stalled_partitions(progress, now=1e6, stall_s=30.0) == []


def test_a_record_from_before_the_recovery_started_does_not_count_against_it() -> None:
    # Times of an earlier recovery may linger: the clock starts with this one.
    progress = RecoveryProgress(remaining={P0: 5}, last_record_at={P0: 10.0}, started_at=100.0)
    assert stalled_partitions(progress, now=120.0, stall_s=30.0) == []
    assert stalled_partitions(progress, now=130.0, stall_s=30.0) == [P0]


def test_a_partition_read_again_gets_another_full_wait() -> None:
    progress = RecoveryProgress(remaining={P0: 5}, last_record_at={}, started_at=100.0)
    assert stalled_partitions(progress, 140.0, 30.0, reread_at={P0: 130.0}) == []
    assert stalled_partitions(progress, 160.0, 30.0, reread_at={P0: 130.0}) == [P0]


class _Thread:
    def __init__(self) -> None:
        self.seeks: list[dict[Any, int]] = []

    async def seek_wait(self, partitions: dict[Any, int]) -> None:
        self.seeks.append(dict(partitions))

    def _ensure_consumer(self) -> Any:
        state = SimpleNamespace(has_valid_position=True, position=80, highwater=80, paused=False)
        assignment = SimpleNamespace(state_value=lambda tp: state)
        subscriptions = SimpleNamespace(subscription=SimpleNamespace(assignment=assignment))
        return SimpleNamespace(_fetcher=SimpleNamespace(_subscriptions=subscriptions, _records={}))


class _Consumer:
    def __init__(self) -> None:
        self._thread = _Thread()
        self._active_partitions: set[Any] = {P2}
        self._paused_partitions: set[Any] = {P0}
        self.flow_active = True

    def resume_partitions(self, tps: set[Any]) -> None:
        self._active_partitions |= tps
        self._paused_partitions -= tps


class _Recovery:
    def __init__(self) -> None:
        self.in_recovery = True
        self._recovery_started_at: float | None = 100.0
        self._active_events_received_at: dict[Any, float] = {P2: 125.0}
        self.active_offsets: Counter[Any] = Counter({P0: 41, P1: -1, P2: 7})
        self.active_highwaters: Counter[Any] = Counter({P0: 60, P1: 20, P2: 9})

    def active_remaining(self) -> Counter[Any]:
        return Counter(
            {tp: end - self.active_offsets[tp] for tp, end in self.active_highwaters.items()}
        )


def _app() -> Any:
    queue = SimpleNamespace(qsize=lambda: 0)
    tables = SimpleNamespace(recovery=_Recovery(), changelog_queue=queue)
    flow = SimpleNamespace(is_active=lambda: True)
    return SimpleNamespace(tables=tables, consumer=_Consumer(), flow_control=flow)


def test_a_stalled_partition_is_read_again_from_the_last_applied_offset() -> None:
    app = _app()
    watch = RecoveryWatchdog(app, stall_s=30.0)
    assert asyncio.run(watch.check(now=125.0)) == []
    actions = asyncio.run(watch.check(now=131.0))
    # P0 from its last applied offset, P1 (nothing applied yet) from 0; P2 had a record.
    assert [(tp, offset) for tp, offset, _ in actions] == [(P0, 41), (P1, 0)]
    assert app.consumer._thread.seeks == [{P0: 41}, {P1: 0}]
    assert {P0, P1} <= app.consumer._active_partitions
    assert P0 not in app.consumer._paused_partitions
    facts = dict(actions[0][2])
    assert facts["applied"] == 41
    assert facts["end"] == 60
    assert facts["position"] == 80
    assert facts["paused_by_faust"] is True
    assert watch.rereads == 2


def test_it_waits_a_full_stall_before_reading_the_same_partition_again() -> None:
    app = _app()
    watch = RecoveryWatchdog(app, stall_s=30.0)
    asyncio.run(watch.check(now=131.0))
    assert asyncio.run(watch.check(now=150.0)) == []
    # 30 s after their re-read, P0 and P1 again; P2's last record is now 36 s old too.
    again = asyncio.run(watch.check(now=161.0))
    assert [(tp, offset) for tp, offset, _ in again] == [(P2, 7), (P0, 41), (P1, 0)]
    assert watch.rereads == 5


def test_a_new_recovery_starts_its_own_count() -> None:
    app = _app()
    watch = RecoveryWatchdog(app, stall_s=30.0)
    asyncio.run(watch.check(now=131.0))
    app.tables.recovery._recovery_started_at = 140.0
    app.tables.recovery._active_events_received_at = {}
    assert asyncio.run(watch.check(now=169.0)) == []
    assert len(asyncio.run(watch.check(now=170.0))) == 3


def test_nothing_is_done_outside_a_recovery() -> None:
    app = _app()
    app.tables.recovery.in_recovery = False
    watch = RecoveryWatchdog(app, stall_s=30.0)
    assert asyncio.run(watch.check(now=1e6)) == []
    assert app.consumer._thread.seeks == []


def test_a_consumer_without_an_assignment_is_described_not_fatal() -> None:
    app = _app()

    def no_consumer() -> Any:
        raise AttributeError("_fetcher")

    app.consumer._thread._ensure_consumer = no_consumer
    facts = RecoveryWatchdog(app, stall_s=30.0).describe(P0)
    assert facts["client"] == "unavailable (AttributeError)"
    assert facts["applied"] == 41


def test_an_app_whose_consumer_has_not_started_is_described_not_fatal() -> None:
    # A real (never started) Faust app: the client part of the description is unavailable.
    import faust
    from faust.types import TP

    app = faust.App("recovery-watch-test", broker="kafka://127.0.0.1:1", autodiscover=False)
    watch = RecoveryWatchdog(app, stall_s=30.0)
    assert watch.progress() is None  # no recovery under way
    facts = watch.describe(TP("topic", 0))
    assert facts["client"] == "unavailable (ConsumerNotStarted)"
    assert facts["applied"] is None
    assert facts["fetched_by_faust"] is False
