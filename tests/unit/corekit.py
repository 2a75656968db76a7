"""Helpers for the core's tests: build a store from readable local times, and compute its
report row both from scratch and through the incremental state, insisting they agree."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from zoneinfo import ZoneInfo

from storemon.aggregates.records import HoursRow, parse_time_of_day
from storemon.aggregates.report import LONGEST_WINDOW_US, StoreWindows
from storemon.aggregates.schedule import Schedule, build_schedule, sessions_between
from storemon.aggregates.state import StoreState
from storemon.aggregates.timebase import HOUR_US, MINUTE_US, US_PER_SECOND, datetime_to_us
from storemon.aggregates.timeline import dedupe_polls
from storemon.aggregates.windows import state_windows, windows_from_polls

STORE = "store-1"


def at(
    zone: str, year: int, month: int, day: int, hour: int, minute: int = 0, second: int = 0
) -> int:
    """Epoch microseconds of a local wall time (first occurrence, docs/semantics.md)."""
    return datetime_to_us(datetime(year, month, day, hour, minute, second, tzinfo=ZoneInfo(zone)))


def utc(year: int, month: int, day: int, hour: int, minute: int = 0, second: int = 0) -> int:
    return at("UTC", year, month, day, hour, minute, second)


def schedule(*rows: tuple[int, str, str]) -> Schedule:
    return build_schedule(
        HoursRow(
            STORE, day, parse_time_of_day(start, is_end=False), parse_time_of_day(end, is_end=True)
        )
        for day, start, end in rows
    )


def scratch(
    sched: Schedule, zone: str, polls: Iterable[tuple[int, bool]], as_of_us: int
) -> StoreWindows:
    poll_ts, poll_active = dedupe_polls(polls)
    sessions = sessions_between(sched, zone, as_of_us - LONGEST_WINDOW_US, as_of_us)
    return windows_from_polls(STORE, sessions, poll_ts, poll_active, as_of_us)


def incremental(
    sched: Schedule, zone: str, polls: Iterable[tuple[int, bool]], as_of_us: int
) -> StoreWindows:
    state = StoreState(STORE, sched, zone)
    for poll in polls:
        state.apply_polls([poll])
    return state_windows(state, as_of_us)


def report(
    sched: Schedule, zone: str, polls: list[tuple[int, bool]], as_of_us: int
) -> StoreWindows:
    """The row, after checking that both paths give exactly the same microseconds."""
    from_scratch = scratch(sched, zone, polls, as_of_us)
    through_state = incremental(sched, zone, polls, as_of_us)
    assert through_state == from_scratch
    return from_scratch


def minutes(value_us: int) -> float:
    return value_us / MINUTE_US


def hours(value_us: int) -> float:
    return value_us / HOUR_US


def seconds(value_us: int) -> float:
    return value_us / US_PER_SECOND
