"""The in-memory hour index answers every report exactly as the per-store core does."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from storemon.aggregates.hour_index import DayBuckets, HourIndex, HourRuns, StoreTail
from storemon.aggregates.report import StoreWindows
from storemon.aggregates.schedule import Schedule
from storemon.aggregates.state import StoreChanges, StoreState
from storemon.aggregates.timebase import DAY_US, HOUR_US, MINUTE_US
from storemon.aggregates.windows import state_windows

from .corekit import at, schedule
from .test_core_properties import stores

WEEK_OF_HOURS = 168


def _tail(state: StoreState) -> StoreTail:
    summary = state.summary()
    known = summary.last_poll_us is not None
    return StoreTail(
        state.store_id,
        summary.first_poll_us,
        state.poll_ts[-1] if state.poll_ts else None,
        summary.last_poll_us,
        summary.last_active if known else None,
        summary.tail_end_us if known else None,
    )


def _publish(
    index: HourIndex, state: StoreState, changes: StoreChanges, *, whole_days: bool = False
) -> None:
    """What the worker hands the index after an update: the store's row and the hours the
    update changed, or (``whole_days``, as a load from PostgreSQL does) the whole days
    they lie in."""
    index.apply_tails([_tail(state)])
    if not whole_days:
        index.apply_hours(
            [
                HourRuns(state.store_id, hour, b.up_us, b.down_us, b.runs)
                for hour, b in changes.hours.items()
            ]
        )
        return
    days = set(changes.days) | {h - h % DAY_US for h in changes.hours}
    records = []
    for day in sorted(days):
        r = state.day_record(day)
        records.append(
            DayBuckets(state.store_id, day, r.hour_up_us, r.hour_down_us, r.runs, r.run_bounds)
        )
    index.apply_days(records)


def _expected(states: list[StoreState], as_of_us: int) -> list[StoreWindows]:
    included = [s for s in states if s.first_poll_us is not None and s.first_poll_us <= as_of_us]
    return [state_windows(s, as_of_us) for s in sorted(included, key=lambda s: s.store_id)]


def _rows(index: HourIndex, as_of_us: int) -> list[StoreWindows] | None:
    found = index.window_sums(as_of_us)
    if found is None:
        return None
    assert found.as_of_us == as_of_us
    return [
        StoreWindows(store_id, (int(s[0]), int(s[1]), int(s[2])), (int(s[3]), int(s[4]), int(s[5])))
        for store_id, s in zip(found.store_ids, found.sums, strict=True)
    ]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(stores(), min_size=1, max_size=4), st.integers(0, 2**32), st.data())
def test_index_equals_the_store_states_at_every_report_time(fleet, seed, data) -> None:  # type: ignore[no-untyped-def]
    """Updates arrive as changed hours or as whole days (how a load reads PostgreSQL),
    mixed at random: either way the index equals the per-store states."""
    rng = random.Random(seed)
    index = HourIndex(hours_kept=WEEK_OF_HOURS * 3)
    states: list[StoreState] = []
    deliveries: list[tuple[StoreState, list[tuple[int, bool]]]] = []
    for n, (sched, zone, polls, _) in enumerate(fleet):
        state = StoreState(f"store-{rng.randint(0, 9)}{n}", sched, zone)
        states.append(state)
        delivered = polls + rng.sample(polls, k=len(polls) // 3)  # redelivery
        rng.shuffle(delivered)
        i = 0
        while i < len(delivered):
            step = rng.randint(1, 6)
            deliveries.append((state, delivered[i : i + step]))
            i += step
    rng.shuffle(deliveries)  # stores interleave, each store's polls in any order
    # Reports asked between the deliveries keep sums of blocks of hours that later writes
    # must drop: the final report checks none survives a write.
    asked_at = {rng.randrange(len(deliveries)) for _ in range(3)} if deliveries else set()
    for k, (state, polls) in enumerate(deliveries):
        _publish(index, state, state.apply_polls(polls), whole_days=rng.random() < 0.3)
        if k in asked_at and index.newest_us is not None:
            early = index.newest_us + rng.randint(0, 2 * HOUR_US)
            if index.covers(early):
                index.window_sums(early)
    all_polls = [ts for state in states for ts in state.poll_ts]
    assume(all_polls)
    # The fleet's hours, as the dashboard shows them: every store's stored buckets summed.
    top = max(all_polls) - max(all_polls) % HOUR_US
    oldest = index.oldest_hour_kept()
    assert oldest is not None
    lo = max(top - WEEK_OF_HOURS * HOUR_US, oldest)
    assert index.fleet_hours(lo + 1, top + HOUR_US) == [
        (h, sum(s.hour_totals(h)[0] for s in states), sum(s.hour_totals(h)[1] for s in states))
        for h in range(lo + HOUR_US, top + HOUR_US, HOUR_US)
    ]
    base = fleet[0][3]
    as_of = data.draw(
        st.one_of(
            st.just(max(all_polls)),
            st.integers(min(all_polls), max(all_polls) + 2 * HOUR_US),
            st.integers(base - DAY_US, base + DAY_US),
            st.sampled_from(
                [max(all_polls) - max(all_polls) % HOUR_US + k * HOUR_US for k in (0, 1)]
            ),
        )
    )
    assume(index.covers(as_of))  # the service refuses report times outside its range
    expected = _expected(states, as_of)
    found = _rows(index, as_of)
    if found is None:
        # the index declines only where a store has a poll in business hours after T
        assert any(
            (last := s.summary().last_poll_us) is not None
            and last > as_of
            and s.first_poll_us is not None
            and s.first_poll_us <= as_of
            for s in states
        )
    else:
        assert found == expected


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stores(), stores(), st.integers(0, 2**32))
def test_a_schedule_change_rewrites_the_index(first, second, seed) -> None:  # type: ignore[no-untyped-def]
    sched_a, zone_a, polls, _ = first
    sched_b, zone_b, _, _ = second
    assume(polls)
    index = HourIndex(hours_kept=WEEK_OF_HOURS * 3)
    state = StoreState("s", sched_a, zone_a)
    _publish(index, state, state.apply_polls(polls))
    _publish(index, state, state.replace_schedule(sched_b, zone_b))
    assert _rows(index, as_of := max(ts for ts, _ in polls) + 1) == _expected([state], as_of)
    _publish(index, state, state.replace_schedule(sched_a, zone_a), whole_days=True)
    as_of = max(ts for ts, _ in polls) + random.Random(seed).randint(0, 3 * HOUR_US)
    assert _rows(index, as_of) == _expected([state], as_of)


def test_the_worked_example_of_the_contract() -> None:
    # Open Monday 09:00-12:00 local; 10:14 active, 11:15 inactive: 1.74 h up, 1.26 h down.
    zone = "America/New_York"
    sched: Schedule = schedule((0, "09:00", "12:00"))
    state = StoreState("store-1", sched, zone)
    index = HourIndex(hours_kept=WEEK_OF_HOURS * 2)
    for hour, minute, active in ((10, 14, True), (11, 15, False)):
        _publish(index, state, state.apply_polls([(at(zone, 2024, 1, 22, hour, minute), active)]))
    as_of = at(zone, 2024, 1, 22, 18)
    (row,) = _rows(index, as_of) or []
    assert row.up_us[1] == HOUR_US + 44 * MINUTE_US + 30_000_000
    assert row.down_us[1] == HOUR_US + 15 * MINUTE_US + 30_000_000
    assert row == state_windows(state, as_of)


def test_rewriting_the_live_hour_many_times_keeps_one_copy_of_its_runs() -> None:
    index = HourIndex(hours_kept=WEEK_OF_HOURS * 2)
    state = StoreState("s")  # open 24x7
    start = at("UTC", 2024, 5, 6, 8)
    rng = random.Random(7)
    for k in range(600):  # a poll every 6 s, flipping now and then
        ts = start + k * 6_000_000
        _publish(index, state, state.apply_polls([(ts, rng.random() < 0.7)]))
    columns = list(index.columns.values())
    assert sum(c.runs_live for c in columns) == sum(int(c.run_count.sum()) for c in columns)
    # replaced runs were dropped on the way: no pool grew to hold every rewrite
    assert max(len(c.run_start) for c in columns) < 600 * 10
    as_of = start + 600 * 6_000_000 + 1
    assert _rows(index, as_of) == [state_windows(state, as_of)]


def test_hours_older_than_the_index_keeps_are_dropped_and_ignored() -> None:
    kept = WEEK_OF_HOURS + 10
    index = HourIndex(hours_kept=kept)
    state = StoreState("s")
    start = at("UTC", 2024, 5, 6, 0)
    _publish(index, state, state.apply_polls([(start, True), (start + HOUR_US, True)]))
    assert start in index.columns
    later = start + 30 * DAY_US
    _publish(index, state, state.apply_polls([(later, False)]))
    oldest = index.oldest_hour_kept()
    assert oldest == later - (kept - 1) * HOUR_US
    assert min(index.columns) >= oldest
    # a late rewrite of an hour that old is not kept
    index.apply_days(
        [DayBuckets("s", start - start % DAY_US, [HOUR_US] * 24, [0] * 24, [], [0] * 25)]
    )
    assert min(index.columns) >= oldest
    as_of = later + HOUR_US
    assert _rows(index, as_of) == [state_windows(state, as_of)]
    with pytest.raises(ValueError, match="before the hours"):
        index.window_sums(start + 2 * HOUR_US)


def test_stores_are_added_past_the_first_capacity() -> None:
    index = HourIndex(hours_kept=WEEK_OF_HOURS * 2)
    start = at("UTC", 2024, 5, 6, 9, 30)
    monday = schedule((0, "09:00", "17:00"))  # 2024-05-06 is a Monday
    states = [StoreState(f"{i:05d}", monday, "UTC") for i in range(1100)]
    for i, state in enumerate(states):
        _publish(index, state, state.apply_polls([(start + i * 1_000_000, i % 3 != 0)]))
    for i, state in enumerate(states[:50]):
        _publish(index, state, state.apply_polls([(start + HOUR_US + i, i % 2 == 0)]))
    as_of = start + 2 * HOUR_US + 17
    assert _rows(index, as_of) == _expected(states, as_of)


def test_a_report_before_a_stores_last_poll_is_declined() -> None:
    index = HourIndex(hours_kept=WEEK_OF_HOURS * 2)
    state = StoreState("s")
    start = at("UTC", 2024, 5, 6, 9)
    _publish(index, state, state.apply_polls([(start, True), (start + HOUR_US, False)]))
    assert index.window_sums(start + 30 * MINUTE_US) is None
    assert index.window_sums(start + HOUR_US) is not None


def test_too_short_an_index_is_refused() -> None:
    with pytest.raises(ValueError, match="week"):
        HourIndex(hours_kept=100)


def test_sums_are_int64_and_sorted_by_store() -> None:
    index = HourIndex(hours_kept=WEEK_OF_HOURS * 2)
    start = at("UTC", 2024, 5, 6, 9)
    for name in ("b", "a", "c"):
        state = StoreState(name)
        _publish(index, state, state.apply_polls([(start, True)]))
    found = index.window_sums(start + HOUR_US)
    assert found is not None
    assert found.store_ids == ["a", "b", "c"]
    assert found.sums.dtype == np.int64


def test_an_hour_with_more_runs_than_a_column_counts_makes_the_index_decline() -> None:
    index = HourIndex(hours_kept=WEEK_OF_HOURS * 2)
    hour = at("UTC", 2024, 5, 6, 9)
    day = hour - hour % DAY_US
    slot = (hour - day) // HOUR_US
    runs: list[int] = []
    for k in range(70_000):  # alternating 50 us runs: 70,000 of them in one hour
        runs.extend((hour + 50 * k, hour + 50 * (k + 1), k % 2))
    ups = [0] * 24
    downs = [0] * 24
    ups[slot] = downs[slot] = 35_000 * 50
    bounds = [0] * (slot + 1) + [len(runs)] * (24 - slot)
    index.apply_tails([StoreTail("s", hour, hour, hour + HOUR_US - 1, True, hour + HOUR_US)])
    index.apply_days([DayBuckets("s", day, ups, downs, runs, bounds)])
    assert index.overflowed
    assert index.window_sums(hour + HOUR_US) is None


def test_whole_hours_keep_no_runs_yet_cut_exactly() -> None:
    index = HourIndex(hours_kept=WEEK_OF_HOURS * 2)
    state = StoreState("s")  # open 24x7: every hour between the polls is whole
    start = at("UTC", 2024, 5, 6, 0)
    polls = [(start + k * HOUR_US, k % 5 != 0) for k in range(30)]
    _publish(index, state, state.apply_polls(polls))
    whole = [c for h, c in index.columns.items() if start + HOUR_US <= h < start + 28 * HOUR_US]
    assert whole
    assert all(c.runs_live <= 2 for c in whole)  # only the hours where the status turns
    for minutes_in in (0, 1, 29, 59):
        as_of = start + 29 * HOUR_US + minutes_in * MINUTE_US + 7
        assert _rows(index, as_of) == [state_windows(state, as_of)]
