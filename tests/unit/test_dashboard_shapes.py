"""The dashboard's pure helpers: fleet hours from running sums, merged runs with the open
tail, business sessions clipped to the week, and what the pages print."""

from __future__ import annotations

import itertools
import random

from storemon.aggregates.fleet_summary import fleet_totals, worst_stores
from storemon.aggregates.report import StoreWindows
from storemon.aggregates.schedule import WeeklyInterval
from storemon.aggregates.timebase import DAY_US, HOUR_US, parse_as_of
from storemon.db.dashboard import (
    clipped_sessions,
    hours_from_running_sums,
    merge_runs,
    with_open_tail,
)
from storemon.web.dashboard import heat_colour, schedule_text

DAY0 = parse_as_of("2023-01-16 00:00:00")  # a Monday


def running(values: list[int]) -> list[int]:
    return [0, *itertools.accumulate(values)]


def test_hours_from_running_sums_of_several_stores() -> None:
    rng = random.Random(3)
    stores = [
        {day: ([rng.randrange(3600) for _ in range(24)], [rng.randrange(600) for _ in range(24)])
         for day in (DAY0, DAY0 + DAY_US)}
        for _ in range(5)
    ]  # fmt: skip
    # What the database returns: per day and 1-based index, the sums over stores.
    rows = []
    for day in (DAY0, DAY0 + DAY_US):
        for i in range(1, 26):
            rows.append(
                (
                    day,
                    i,
                    sum(running(s[day][0])[i - 1] for s in stores),
                    sum(running(s[day][1])[i - 1] for s in stores),
                )
            )
    lo, hi = DAY0 + 5 * HOUR_US, DAY0 + DAY_US + 3 * HOUR_US
    hours = hours_from_running_sums(rows, lo, hi)
    assert [h for h, _, _ in hours] == list(range(lo, hi, HOUR_US))
    for hour, up, down in hours:
        day = hour - (hour - DAY0) % DAY_US
        h = (hour - day) // HOUR_US
        assert up == sum(s[day][0][h] for s in stores)
        assert down == sum(s[day][1][h] for s in stores)


def test_hours_without_rows_are_zero() -> None:
    assert hours_from_running_sums([], DAY0, DAY0 + 2 * HOUR_US) == [
        (DAY0, 0, 0),
        (DAY0 + HOUR_US, 0, 0),
    ]


def test_runs_cut_at_hours_and_days_are_joined_and_clipped() -> None:
    h = HOUR_US
    day1 = [DAY0 + 22 * h, DAY0 + 23 * h, 1, DAY0 + 23 * h, DAY0 + 24 * h, 1]
    day2 = [DAY0 + 24 * h, DAY0 + 24 * h + 600, 1, DAY0 + 24 * h + 600, DAY0 + 25 * h, 0]
    assert merge_runs([day1, day2], DAY0 + 22 * h + 10, DAY0 + 30 * h) == [
        (DAY0 + 22 * h + 10, DAY0 + 24 * h + 600, True),
        (DAY0 + 24 * h + 600, DAY0 + 25 * h, False),
    ]
    assert merge_runs([day1], DAY0, DAY0 + h) == []


def test_open_tail_extends_the_last_poll_to_its_session_end_or_the_report_time() -> None:
    runs = [(DAY0, DAY0 + HOUR_US, True)]
    last = DAY0 + HOUR_US
    # same status: the last run grows; clipped at the report time
    assert with_open_tail(runs, last, True, last + 5 * HOUR_US, DAY0, last + HOUR_US) == [
        (DAY0, last + HOUR_US, True)
    ]
    # other status: a run of its own, ending with the session
    assert with_open_tail(runs, last, False, last + 600, DAY0, last + HOUR_US) == [
        *runs,
        (last, last + 600, False),
    ]
    assert with_open_tail(runs, None, None, None, DAY0, last) == runs
    assert with_open_tail(runs, last, True, last, DAY0, last + HOUR_US) == runs  # empty tail


def test_sessions_are_clipped_to_the_week() -> None:
    schedule = (WeeklyInterval(0, 9 * 3600, 17 * 3600),)  # Mondays 9-17 local
    sessions = clipped_sessions(schedule, "UTC", DAY0 + 12 * HOUR_US, DAY0 + 8 * DAY_US)
    assert sessions == [
        (DAY0 + 12 * HOUR_US, DAY0 + 17 * HOUR_US),
        (DAY0 + 7 * DAY_US + 9 * HOUR_US, DAY0 + 7 * DAY_US + 17 * HOUR_US),
    ]
    always = clipped_sessions((), "America/Chicago", DAY0, DAY0 + DAY_US)
    assert always == [(DAY0, DAY0 + DAY_US)]


def test_worst_stores_and_fleet_totals() -> None:
    rows = [
        StoreWindows("b", (1, 2, 3), (0, 5, 50)),
        StoreWindows("a", (1, 2, 3), (0, 5, 50)),
        StoreWindows("c", (1, 2, 3), (0, 9, 70)),
        StoreWindows("d", (1, 2, 3), (0, 0, 0)),  # never down: not listed
    ]
    assert [r.store_id for r in worst_stores(rows, 10)] == ["c", "a", "b"]
    assert [r.store_id for r in worst_stores(rows, 1)] == ["c"]
    assert fleet_totals(rows) == ([4, 8, 12], [0, 19, 170])


def test_page_text_helpers() -> None:
    # (escaping is the templates' job: tests/unit/test_dashboard_pages.py)
    assert heat_colour(0, 0) == "#e5e7eb"
    assert heat_colour(HOUR_US, 0) == "hsl(120, 70%, 45%)"
    assert heat_colour(1, 1) == heat_colour(1, 3) == "hsl(0, 70%, 45%)"
    assert schedule_text(()) == ["open around the clock (no business hours given)"]
    assert schedule_text(
        (
            WeeklyInterval(0, 11 * 3600 + 30 * 60, 14 * 3600),
            WeeklyInterval(4, 18 * 3600, 26 * 3600),
            WeeklyInterval(5, 0, 24 * 3600),
            WeeklyInterval(6, 10 * 3600, 24 * 3600),
        )
    ) == [
        "Mon 11:30\u201314:00",
        "Fri 18:00\u201302:00 (next day)",
        "Sat all day",
        "Sun 10:00\u201324:00",
    ]
