"""Weekly business hours in local time -> business sessions in UTC.

A store's schedule is a set of weekly intervals in its local wall-clock time. For every
local date, each interval of that weekday becomes a span of real time; the union of the
spans, with touching or overlapping spans merged, is the store's business time, and its
maximal pieces are its *sessions*. All spans and sessions are half-open ``[start, end)``.

Choices (from the contract):
- an end of 23:59:00 or later is the end of the day (24:00), which closes the one-second or
  one-minute hole the real files leave at every midnight;
- then an end before the start runs past midnight, and an end equal to the start means
  "until the same time tomorrow";
- each end is converted with the zone rules in force at its own local time. A local time in
  the spring-forward gap moves forward by the gap, a repeated local time means its first
  occurrence (``zoneinfo`` with ``fold=0`` does exactly this); a span left empty is dropped;
- no rows at all means open 24x7; a weekday without rows is closed.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

from storemon.aggregates.records import HoursRow, load_zone
from storemon.aggregates.timebase import (
    DAY_US,
    FOREVER_US,
    NEVER_US,
    SECONDS_PER_DAY,
    US_PER_SECOND,
    floor_to,
)

END_OF_DAY_FROM_S = 23 * 3600 + 59 * 60  # 23:59:00
SECONDS_PER_WEEK = 7 * SECONDS_PER_DAY

_EPOCH = date(1970, 1, 1)
_ONE_US = timedelta(microseconds=1)
# A session of a schedule that is not open around the clock is usually shorter than a week;
# when one touches the edge of what was computed, the margin grows until it does not.
_SESSION_MARGIN_US = 2 * DAY_US
_WIDEST_MARGIN_US = 64 * DAY_US


class WeeklyInterval(NamedTuple):
    """Normalised local interval: ``end_s`` may exceed a day (it runs into the next)."""

    weekday: int
    start_s: int
    end_s: int


# A store's schedule. The empty tuple means "no rows": open 24x7.
Schedule = tuple[WeeklyInterval, ...]
ALWAYS_OPEN: Schedule = ()


class Sessions(NamedTuple):
    """Merged business sessions, sorted: ``starts[i] < ends[i] <= starts[i + 1]``."""

    starts: list[int]
    ends: list[int]

    def index_containing(self, ts_us: int) -> int:
        """Index of the session holding ``ts_us``, or -1 when the store is closed then."""
        i = bisect_right(self.starts, ts_us) - 1
        if i >= 0 and ts_us < self.ends[i]:
            return i
        return -1


ENDLESS = Sessions([NEVER_US], [FOREVER_US])


def normalise_interval(weekday: int, start_s: int, end_s: int) -> WeeklyInterval:
    if end_s >= END_OF_DAY_FROM_S:
        end_s = SECONDS_PER_DAY
    if end_s < start_s:
        end_s += SECONDS_PER_DAY
    elif end_s == start_s:
        end_s = start_s + SECONDS_PER_DAY
    return WeeklyInterval(weekday, start_s, end_s)


def build_schedule(rows: Iterable[HoursRow]) -> Schedule:
    """A store's schedule from its rows (any order, duplicates harmless)."""
    return tuple(sorted({normalise_interval(r.weekday, r.start_s, r.end_s) for r in rows}))


def is_open_around_the_clock(schedule: Schedule) -> bool:
    """True when the weekly intervals cover every second of the week (or there are none)."""
    if not schedule:
        return True
    pieces: list[tuple[int, int]] = []
    for interval in schedule:
        start = interval.weekday * SECONDS_PER_DAY + interval.start_s
        end = interval.weekday * SECONDS_PER_DAY + interval.end_s
        if end > SECONDS_PER_WEEK:  # Sunday night running into Monday
            pieces.append((0, end - SECONDS_PER_WEEK))
            end = SECONDS_PER_WEEK
        pieces.append((start, end))
    pieces.sort()
    covered_to = 0
    for start, end in pieces:
        if start > covered_to:
            return False
        covered_to = max(covered_to, end)
    return covered_to >= SECONDS_PER_WEEK


_utc_cache: dict[tuple[ZoneInfo, int, int], int] = {}


def local_to_utc_us(zone: ZoneInfo, local_day: int, seconds: int) -> int:
    """UTC instant of ``seconds`` after local midnight of ``local_day`` (days since epoch)."""
    key = (zone, local_day, seconds)
    cached = _utc_cache.get(key)
    if cached is None:
        if len(_utc_cache) > 500_000:
            _utc_cache.clear()
        cached = _utc_cache[key] = _local_to_utc_us(zone, local_day, seconds)
    return cached


def _local_to_utc_us(zone: ZoneInfo, local_day: int, seconds: int) -> int:
    day = _EPOCH + timedelta(days=local_day + seconds // SECONDS_PER_DAY)
    s = seconds % SECONDS_PER_DAY
    wall = datetime(day.year, day.month, day.day, s // 3600, s // 60 % 60, s % 60, tzinfo=zone)
    offset = wall.utcoffset()
    assert offset is not None  # a ZoneInfo always answers
    wall_us = ((local_day * SECONDS_PER_DAY) + seconds) * US_PER_SECOND
    return wall_us - offset // _ONE_US


def _spans(
    schedule: Schedule, zone: ZoneInfo, first_day: int, last_day: int
) -> list[tuple[int, int]]:
    by_weekday: dict[int, list[WeeklyInterval]] = {}
    for interval in schedule:
        by_weekday.setdefault(interval.weekday, []).append(interval)
    spans: list[tuple[int, int]] = []
    for local_day in range(first_day, last_day + 1):
        weekday = (local_day + 3) % 7  # 1970-01-01 was a Thursday (3)
        for interval in by_weekday.get(weekday, ()):
            start = local_to_utc_us(zone, local_day, interval.start_s)
            end = local_to_utc_us(zone, local_day, interval.end_s)
            if start < end:
                spans.append((start, end))
    spans.sort()
    return spans


def _merge(spans: list[tuple[int, int]]) -> Sessions:
    starts: list[int] = []
    ends: list[int] = []
    for start, end in spans:
        if ends and start <= ends[-1]:
            if end > ends[-1]:
                ends[-1] = end
        else:
            starts.append(start)
            ends.append(end)
    return Sessions(starts, ends)


def sessions_between(schedule: Schedule, zone_name: str, lo_us: int, hi_us: int) -> Sessions:
    """Every session that overlaps ``[lo_us, hi_us)``, each one whole (not clipped).

    A store open around the clock has one endless session, ``[NEVER_US, FOREVER_US)``.
    """
    if is_open_around_the_clock(schedule):
        return ENDLESS
    zone = load_zone(zone_name)
    margin_us = _SESSION_MARGIN_US
    while True:
        first_day = floor_to(lo_us - margin_us, DAY_US) // DAY_US
        last_day = floor_to(hi_us + margin_us, DAY_US) // DAY_US
        spans = _spans(schedule, zone, first_day, last_day)
        merged = _merge(spans)
        if not merged.starts or margin_us >= _WIDEST_MARGIN_US:
            break
        # A session that begins with the first span or ends with the last one may go on
        # beyond what was computed: it is whole only if it lies clear of [lo, hi).
        first_whole = merged.ends[0] <= lo_us
        last_whole = merged.starts[-1] >= hi_us
        if first_whole and last_whole:
            break
        margin_us *= 2
    starts: list[int] = []
    ends: list[int] = []
    for start, end in zip(merged.starts, merged.ends, strict=True):
        if end > lo_us and start < hi_us:
            starts.append(start)
            ends.append(end)
    return Sessions(starts, ends)
