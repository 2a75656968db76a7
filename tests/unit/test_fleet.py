"""The batch command's array computation (``aggregates/fleet.py``) against the per-store
computation from scratch (``windows_from_polls``): equal to the microsecond, for generated
stores with polls in any order, duplicates with clashing statuses, and polls after T."""

from __future__ import annotations

import random

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storemon.aggregates.fleet import fleet_windows, sorted_unique_polls
from storemon.aggregates.records import HoursRow
from storemon.aggregates.report import LONGEST_WINDOW_US
from storemon.aggregates.schedule import (
    Schedule,
    Sessions,
    build_schedule,
    is_open_around_the_clock,
    open_around_the_clock,
    schedule_table,
    sessions_between,
    sessions_between_many,
)
from storemon.aggregates.timebase import DAY_US
from storemon.aggregates.timeline import dedupe_polls
from storemon.aggregates.windows import windows_from_polls
from storemon.batch import hours_schedules
from storemon.sources import HoursTable

from .test_core_properties import ZONES, stores


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(stores(), min_size=1, max_size=6), st.integers(0, 2**32))
def test_fleet_equals_each_store_from_scratch(drawn, seed) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(seed)
    as_of = drawn[0][3]  # one report time for every store
    ids = [f"store-{i:02d}" for i in range(len(drawn))]
    rows: list[tuple[int, int, bool]] = []
    for number, (_, _, polls, _) in enumerate(drawn):
        rows += [(number, ts, active) for ts, active in polls]
        # the same timestamp again, sometimes with the other status (inactive must win)
        rows += [(number, ts, rng.random() < 0.5) for ts, _ in rng.sample(polls, len(polls) // 3)]
    rng.shuffle(rows)
    sessions = {
        number: sessions_between(sched, zone, as_of - LONGEST_WINDOW_US, as_of)
        for number, (sched, zone, _, _) in enumerate(drawn)
    }

    def sessions_of(numbers: np.ndarray) -> tuple[np.ndarray, list[Sessions]]:
        return numbers, [sessions[n] for n in range(len(drawn))]

    got = fleet_windows(
        ids,
        np.array([r[0] for r in rows], dtype=np.int64),
        np.array([r[1] for r in rows], dtype=np.int64),
        np.array([r[2] for r in rows], dtype=np.bool_),
        sessions_of,
        as_of,
    )
    want = []
    for number in range(len(drawn)):
        mine = [(ts, active) for s, ts, active in rows if s == number]
        poll_ts, poll_active = dedupe_polls(mine)
        if poll_ts and poll_ts[0] <= as_of:
            want.append(
                windows_from_polls(ids[number], sessions[number], poll_ts, poll_active, as_of)
            )
    assert sorted(got, key=lambda w: w.store_id) == want


@given(
    st.lists(st.tuples(st.integers(0, 3), st.integers(-(2**40), 2**40), st.booleans()), max_size=60)
)
def test_sorted_unique_polls_is_dedupe_polls_per_store(rows: list[tuple[int, int, bool]]) -> None:
    store, ts, active = sorted_unique_polls(
        np.array([r[0] for r in rows], dtype=np.int64),
        np.array([r[1] for r in rows], dtype=np.int64),
        np.array([r[2] for r in rows], dtype=np.bool_),
    )
    for number in range(4):
        mine = store == number
        assert (ts[mine].tolist(), active[mine].tolist()) == dedupe_polls(
            (t, a) for s, t, a in rows if s == number
        )
    assert store.tolist() == sorted(store.tolist())


def test_wide_ranges_take_the_general_path() -> None:
    # Timestamps 2**61 apart do not fit one integer key with the store: the general sort.
    store = np.array([1, 0, 1, 0], dtype=np.int64)
    ts = np.array([2**61, -(2**61), 5, 5], dtype=np.int64)
    active = np.array([True, False, True, True])
    got = sorted_unique_polls(store, ts, active)
    assert [a.tolist() for a in got] == [
        [0, 0, 1, 1],
        [-(2**61), 5, 5, 2**61],
        [False, True, True, True],
    ]


def test_polls_centuries_apart_give_the_same_rows() -> None:
    # A span too wide for one integer key per (store, time): the sessions are merged in by
    # a sort instead; the rows must not change.
    ids = [f"s{i:02d}" for i in range(40)]
    as_of = 250_000_000_000_000_000  # year ~9892
    ancient = -60_000_000_000_000_000  # year ~68
    rng = random.Random(5)
    rows = [
        (n, rng.choice([ancient, as_of - 3_600_000_000 * k]), rng.random() < 0.7)
        for n in range(40)
        for k in range(5)
    ]
    sessions = {n: sessions_between((), "UTC", as_of - LONGEST_WINDOW_US, as_of) for n in range(40)}
    got = fleet_windows(
        ids,
        np.array([r[0] for r in rows], dtype=np.int64),
        np.array([r[1] for r in rows], dtype=np.int64),
        np.array([r[2] for r in rows], dtype=np.bool_),
        lambda numbers: (numbers, [sessions[n] for n in range(40)]),
        as_of,
    )
    want = []
    for n in range(40):
        poll_ts, poll_active = dedupe_polls((t, a) for s, t, a in rows if s == n)
        want.append(windows_from_polls(ids[n], sessions[n], poll_ts, poll_active, as_of))
    assert sorted(got, key=lambda w: w.store_id) == want


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(stores(), min_size=1, max_size=8), st.integers(-3 * DAY_US, 3 * DAY_US))
def test_sessions_of_many_pairs_equal_each_pair_alone(drawn, shift) -> None:  # type: ignore[no-untyped-def]
    # Pairs around daylight-saving changes, repeated, open around the clock or nearly (whose
    # sessions reach past the days the array code looks at), with one report time.
    as_of = drawn[0][3] + shift
    lo, hi = as_of - LONGEST_WINDOW_US, as_of
    nearly_always = build_schedule(
        [HoursRow("s", d, 0, 86399) for d in range(7) if d != 3]
        + [HoursRow("s", 3, 0, 3600), HoursRow("s", 3, 7200, 86399)]
    )
    pairs = [(sched, zone) for sched, zone, _, _ in drawn]
    pairs += [pairs[0], ((), ZONES[1]), (nearly_always, ZONES[1]), (nearly_always, ZONES[2])]
    assert sessions_between_many(pairs, lo, hi) == [
        sessions_between(sched, zone, lo, hi) for sched, zone in pairs
    ]


def test_sessions_of_no_pairs() -> None:
    assert sessions_between_many([], 0, DAY_US) == []


# Coarse times so that drawn schedules often cover the whole week, or all of it but a gap.
coarse_times = st.sampled_from([0, 1, 3600, 43200, 82800, 86339, 86340, 86399])
week_rows = st.lists(st.tuples(st.integers(0, 6), coarse_times, coarse_times), max_size=16)


def _schedule(rows: list[tuple[int, int, int]]) -> Schedule:
    return build_schedule(HoursRow("s", day, start, end) for day, start, end in rows)


WHOLE_DAYS = [(d, 0, 86399) for d in range(7)]
HAND_SCHEDULES = [
    (),
    _schedule(WHOLE_DAYS),  # every day to 23:59:59, which ends the day
    _schedule(WHOLE_DAYS[:6]),  # Sunday closed
    _schedule([*WHOLE_DAYS[1:], (0, 3600, 86399)]),  # Monday from 01:00
    # Monday's first hour covered by Sunday night running into Monday
    _schedule([*WHOLE_DAYS[1:6], (0, 3600, 86399), (6, 0, 43200), (6, 43200, 3600)]),
    _schedule([(d, 43200, 43200) for d in range(7)]),  # noon to noon: each runs 24 h
    _schedule([(d, 43200, 43200) for d in range(6)]),
]


@settings(max_examples=300, deadline=None)
@given(st.lists(week_rows, max_size=8))
def test_open_around_the_clock_on_arrays_is_pythons_answer(
    drawn: list[list[tuple[int, int, int]]],
) -> None:
    schedules = HAND_SCHEDULES + [_schedule(rows) for rows in drawn]
    got = open_around_the_clock(schedule_table(schedules)).tolist()
    assert got == [is_open_around_the_clock(schedule) for schedule in schedules]
    assert got[:7] == [True, True, False, False, True, True, False]


@settings(max_examples=200, deadline=None)
@given(st.lists(week_rows, max_size=12), st.randoms(use_true_random=False))
def test_hours_table_schedules_are_build_schedule_of_each_store(
    drawn: list[list[tuple[int, int, int]]], rng: random.Random
) -> None:
    # stores sharing hours, rows repeated and shuffled, stores with rows but none valid
    per_store = [*drawn, *drawn[:3]]
    rows = [(n, day, a, b) for n, store_rows in enumerate(per_store) for day, a, b in store_rows]
    rows += rng.sample(rows, len(rows) // 4)
    rng.shuffle(rows)
    table = HoursTable(
        [f"s{n}" for n in range(len(per_store) + 1)],  # the last store has no rows
        np.array([r[0] for r in rows], dtype=np.int64),
        np.array([r[1] for r in rows], dtype=np.int64),
        np.array([r[2] for r in rows], dtype=np.int64),
        np.array([r[3] for r in rows], dtype=np.int64),
        np.arange(len(rows), dtype=np.int64),
        [],
    )
    schedule_of, schedules = hours_schedules(table)
    got = [schedules.schedule(k) for k in schedule_of.tolist()]
    assert got == [_schedule(store_rows) for store_rows in per_store] + [()]
    assert len(schedules.bounds) - 1 == len({*got, ()})  # each distinct schedule once
