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
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

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


Int64s = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]


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


class ScheduleTable(NamedTuple):
    """Schedules as arrays: schedule ``k`` is rows ``bounds[k]:bounds[k + 1]`` of
    ``intervals``, each row a normalised (weekday, start_s, end_s); no rows: open 24x7."""

    intervals: Int64s  # shape (n, 3)
    bounds: Int64s  # shape (number of schedules + 1,)

    def schedule(self, k: int) -> Schedule:
        rows = self.intervals[self.bounds[k] : self.bounds[k + 1]].tolist()
        return tuple(WeeklyInterval(*row) for row in rows)


def schedule_table(schedules: Sequence[Schedule]) -> ScheduleTable:
    counts = [len(schedule) for schedule in schedules]
    flat = [tuple(interval) for schedule in schedules for interval in schedule]
    return ScheduleTable(
        np.array(flat, dtype=np.int64).reshape(-1, 3),
        np.r_[0, np.cumsum(counts, dtype=np.int64)].astype(np.int64),
    )


def open_around_the_clock(table: ScheduleTable) -> Bools:
    """:func:`is_open_around_the_clock` of each schedule of ``table``, on arrays."""
    n = len(table.bounds) - 1
    counts = np.diff(table.bounds)
    schedule = np.repeat(np.arange(n, dtype=np.int64), counts)
    week_start = table.intervals[:, 0] * SECONDS_PER_DAY
    start = week_start + table.intervals[:, 1]
    end = week_start + table.intervals[:, 2]
    wraps = end > SECONDS_PER_WEEK  # Sunday night running into Monday: two pieces
    schedule = np.concatenate([schedule, schedule[wraps]])
    start = np.concatenate([start, np.zeros(int(wraps.sum()), dtype=np.int64)])
    end = np.concatenate([np.minimum(end, SECONDS_PER_WEEK), end[wraps] - SECONDS_PER_WEEK])
    around: Bools = np.equal(counts, 0)
    if len(schedule) == 0:
        return around
    order = np.lexsort((start, schedule))
    schedule, start, end = schedule[order], start[order], end[order]
    # covered from the start of the week without a gap: a running maximum of the ends,
    # each schedule lifted above the one before so that none carries into the next
    lift = schedule * (2 * SECONDS_PER_WEEK)
    reach = np.maximum.accumulate(end + lift)
    first = np.r_[True, schedule[1:] != schedule[:-1]]
    last = np.r_[schedule[1:] != schedule[:-1], True]
    gap = np.where(first, start > 0, start + lift > np.r_[0, reach[:-1]])
    gapped = np.zeros(n, dtype=np.bool_)
    gapped[schedule[gap]] = True
    whole = np.zeros(n, dtype=np.bool_)
    whole[schedule[last]] = reach[last] - lift[last] >= SECONDS_PER_WEEK
    around |= whole & ~gapped
    return around


def sessions_between_many(
    pairs: Sequence[tuple[Schedule, str]], lo_us: int, hi_us: int
) -> list[Sessions]:
    """:func:`sessions_between` of each (schedule, zone name) pair, the same lists: see
    :func:`sessions_of_pairs`."""
    schedule_number: dict[Schedule, int] = {}
    zone_number: dict[str, int] = {}
    pair_schedule = [schedule_number.setdefault(s, len(schedule_number)) for s, _ in pairs]
    pair_zone = [zone_number.setdefault(z, len(zone_number)) for _, z in pairs]
    return sessions_of_pairs(
        schedule_table(list(schedule_number)),
        np.array(pair_schedule, dtype=np.int64),
        np.array(pair_zone, dtype=np.int64),
        list(zone_number),
        lo_us,
        hi_us,
    )


def sessions_of_pairs(
    table: ScheduleTable,
    pair_schedule: Int64s,
    pair_zone: Int64s,
    zone_names: Sequence[str],
    lo_us: int,
    hi_us: int,
) -> list[Sessions]:
    """:func:`sessions_between` of each pair (a schedule of ``table``, a zone of
    ``zone_names``), computed for all pairs at once on arrays: every span of every pair
    for the days around ``[lo_us, hi_us)``, each distinct local time of each zone
    converted once, the spans merged by a running maximum. A pair whose sessions reach
    the edge of those days is computed again with the margin doubled, as
    :func:`sessions_between` does, up to the same widest margin."""
    results: list[Sessions] = [ENDLESS] * len(pair_schedule)
    todo = np.flatnonzero(~open_around_the_clock(table)[pair_schedule])
    zones = [load_zone(name) for name in zone_names]
    margin_us = _SESSION_MARGIN_US
    while len(todo):
        last_try = margin_us >= _WIDEST_MARGIN_US
        found = _sessions_on_arrays(
            table, zones, pair_schedule[todo], pair_zone[todo], lo_us, hi_us, margin_us, last_try
        )
        unsure: list[int] = []
        for i, sessions in zip(todo.tolist(), found, strict=True):
            if sessions is not None:
                results[i] = sessions
            elif last_try:  # too wide a span for the arrays' integer keys
                schedule = table.schedule(int(pair_schedule[i]))
                results[i] = sessions_between(schedule, zone_names[pair_zone[i]], lo_us, hi_us)
            else:
                unsure.append(i)
        todo = np.array(unsure, dtype=np.int64)
        margin_us *= 2
    return results


def _sessions_on_arrays(
    table: ScheduleTable,
    zones: list[ZoneInfo],
    pair_schedule: Int64s,
    pair_zone: Int64s,
    lo_us: int,
    hi_us: int,
    margin_us: int,
    last_try: bool,
) -> list[Sessions | None]:
    """The sessions of each pair overlapping ``[lo_us, hi_us)``, from the spans of the days
    from ``lo_us - margin_us`` to ``hi_us + margin_us`` (:func:`sessions_between`'s steps
    for one margin). None: not sure, they reach the edge of those days (unless
    ``last_try``), or the times are too far apart for one integer key."""
    n_pairs = len(pair_schedule)
    first_day = floor_to(lo_us - margin_us, DAY_US) // DAY_US
    last_day = floor_to(hi_us + margin_us, DAY_US) // DAY_US
    # Each pair's intervals, by the bounds of its schedule.
    bounds = table.bounds
    pair_counts = bounds[pair_schedule + 1] - bounds[pair_schedule]
    rows = np.repeat(bounds[pair_schedule], pair_counts)
    rows += np.arange(len(rows), dtype=np.int64) - np.repeat(
        np.cumsum(pair_counts) - pair_counts, pair_counts
    )
    pair = np.repeat(np.arange(n_pairs, dtype=np.int64), pair_counts)
    flat = table.intervals
    weekday, start_s, end_s = flat[rows, 0], flat[rows, 1], flat[rows, 2]
    # Each (pair, interval) on every local day of its weekday.
    days = np.arange(first_day, last_day + 1, dtype=np.int64)
    day_weekday = (days + 3) % 7  # 1970-01-01 was a Thursday (3)
    by_weekday = [days[day_weekday == w] for w in range(7)]
    day_counts = np.array([len(d) for d in by_weekday], dtype=np.int64)
    day_flat = np.concatenate(by_weekday)
    repeats = day_counts[weekday]
    pick = np.repeat(np.cumsum(day_counts)[weekday] - repeats, repeats)
    pick += np.arange(len(pick), dtype=np.int64) - np.repeat(np.cumsum(repeats) - repeats, repeats)
    local_day = day_flat[pick]
    pair, start_s, end_s = (np.repeat(a, repeats) for a in (pair, start_s, end_s))
    zone = pair_zone[pair]
    # Local times in seconds since the epoch's local midnight, each distinct one of a zone
    # converted once with the same rule as the per-pair code.
    walls = np.concatenate(
        [local_day * SECONDS_PER_DAY + start_s, local_day * SECONDS_PER_DAY + end_s]
    )
    if len(walls) == 0:
        return [Sessions([], []) for _ in range(n_pairs)]
    lowest_wall = int(walls.min())
    wall_span = int(walls.max()) - lowest_wall + 1
    keys = np.concatenate([zone, zone]) * wall_span + (walls - lowest_wall)
    distinct, where = np.unique(keys, return_inverse=True)
    converted = np.array(
        [
            local_to_utc_us(zones[key // wall_span], 0, key % wall_span + lowest_wall)
            for key in distinct.tolist()
        ],
        dtype=np.int64,
    )
    utc = converted[where.reshape(-1)]
    starts, ends = utc[: len(pair)], utc[len(pair) :]
    kept = starts < ends
    pair, starts, ends = pair[kept], starts[kept], ends[kept]
    results: list[Sessions | None] = [Sessions([], []) for _ in range(n_pairs)]
    if len(pair) == 0:
        return results
    order = np.lexsort((starts, pair))
    pair, starts, ends = pair[order], starts[order], ends[order]
    # Merge per pair with one running maximum: each pair's times are lifted above the
    # previous pair's, so the maximum never carries from one pair into the next.
    base = int(starts.min())
    span = int(ends.max()) - base + 1
    if n_pairs * span >= 2**62:
        return [None] * n_pairs
    lift = pair * span - base
    reach = np.maximum.accumulate(ends + lift)
    opens = np.ones(len(pair), dtype=np.bool_)
    opens[1:] = starts[1:] + lift[1:] > reach[:-1]
    firsts = np.flatnonzero(opens)
    s_pair = pair[firsts]
    s_start = starts[firsts]
    s_end = reach[np.r_[firsts[1:] - 1, len(pair) - 1]] - lift[firsts]
    # A session that begins with the first span or ends with the last one may go on beyond
    # the days looked at: the pair's list is sure only if both lie clear of [lo, hi).
    pair_first = np.r_[True, s_pair[1:] != s_pair[:-1]]
    pair_last = np.r_[s_pair[1:] != s_pair[:-1], True]
    unsure = np.zeros(n_pairs, dtype=np.bool_)
    if not last_try:
        unsure[s_pair[pair_first & (s_end > lo_us)]] = True
        unsure[s_pair[pair_last & (s_start < hi_us)]] = True
    overlapping = (s_end > lo_us) & (s_start < hi_us)
    s_pair, s_start, s_end = s_pair[overlapping], s_start[overlapping], s_end[overlapping]
    bounds = np.searchsorted(s_pair, np.arange(n_pairs + 1, dtype=np.int64)).tolist()
    start_list, end_list = s_start.tolist(), s_end.tolist()
    for p in range(n_pairs):
        if unsure[p]:
            results[p] = None
        else:
            a, b = bounds[p], bounds[p + 1]
            results[p] = Sessions(start_list[a:b], end_list[a:b])
    return results
