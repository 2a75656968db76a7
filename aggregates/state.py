"""Incremental per-store state: polls in, changed hourly and daily buckets out.

A :class:`StoreState` holds one store's schedule, zone and recent polls, and the up and down
microseconds of every hour of its status timeline, packed per UTC day in one array so that
fourteen thousand stores fit in well under a gigabyte. The runs of an hour (needed to clip a
window that starts or ends inside it) are not kept: they are emitted with every change, for
the tables that persist them, and can be recomputed from the polls.

*Materialised* timeline: buckets cover ``[low_us, last_in_hours_poll_us)``. What lies after
the last poll inside business hours depends on the report time, so it is not stored: it is
the *tail* of :class:`StoreSummary`, added when a report is taken. ``low_us`` starts one
week before the store's first poll (no report window of a store reaches further back, as a
store enters a report only from its first poll on) and moves up as old state is pruned.

Polls may arrive in any order and any number of times: the state is a pure function of the
set of polls (same timestamp twice counts once, ``inactive`` wins), so replays and
redeliveries change nothing. Applying polls returns exactly the buckets whose value changed.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterable
from itertools import accumulate, chain
from typing import NamedTuple

from storemon.aggregates.reach import DEFAULT_REACH_HOURS, retention_us
from storemon.aggregates.records import DEFAULT_ZONE
from storemon.aggregates.report import LONGEST_WINDOW_US
from storemon.aggregates.schedule import (
    ALWAYS_OPEN,
    Schedule,
    Sessions,
    sessions_between,
)
from storemon.aggregates.timebase import DAY_US, FOREVER_US, HOUR_US, NEVER_US, floor_to
from storemon.aggregates.timeline import Run, timeline_runs

# History kept before a store's newest poll at the default reach (see aggregates.reach).
DEFAULT_HORIZON_US = retention_us(DEFAULT_REACH_HOURS * HOUR_US)
# How far ahead of the newest poll the cached sessions reach, so a stream in time order
# recomputes them about once a week of data.
_SESSION_LOOKAHEAD_US = 7 * DAY_US
# A Run made without the Python-level constructor a NamedTuple has (made per piece of run).
_new_run = tuple.__new__
# Days whose runs a state keeps (the newest recorded): live polls touch today, and yesterday
# for a while after midnight.
_DAYS_OF_RUNS_KEPT = 2


class HourBucket(NamedTuple):
    """Up and down microseconds of one UTC hour, with the runs they come from (a tuple: an
    update makes one per hour it changed)."""

    hour_start_us: int
    up_us: int
    down_us: int
    runs: tuple[Run, ...]

    @classmethod
    def from_runs(cls, hour_start_us: int, runs: Iterable[Run]) -> HourBucket:
        kept = tuple(runs)
        up = sum(r.end_us - r.start_us for r in kept if r.active)
        down = sum(r.end_us - r.start_us for r in kept if not r.active)
        return cls(hour_start_us, up, down, kept)

    @property
    def is_empty(self) -> bool:
        return not self.runs


class DayRecord(NamedTuple):
    """One store's UTC day as the database keeps it: totals, hours, runs and polls."""

    up_us: int
    down_us: int
    hour_up_us: list[int]  # 24 entries
    hour_down_us: list[int]
    runs: list[int]  # flat [start_us, end_us, active(1/0), ...], cut at hour boundaries
    run_bounds: list[int]  # 25 entries: hour h's runs are runs[run_bounds[h]:run_bounds[h+1]]
    poll_ts_us: list[int]
    poll_active: list[bool]


class StoreSummary(NamedTuple):
    """What a report needs besides the buckets: who is in it and the open tail."""

    first_poll_us: int | None  # earliest poll ever seen, in business hours or not
    last_poll_us: int | None  # last poll inside business hours (end of the buckets)
    last_active: bool
    tail_end_us: int  # end of the session of that last poll (FOREVER_US if endless)


class StoreChanges:
    """What one update changed: new values only, so writing them is idempotent. (A plain
    class: one is made per update, and a dataclass's default factories cost more.)"""

    __slots__ = ("days", "hours", "poll_hours", "summary_changed")

    def __init__(
        self,
        hours: dict[int, HourBucket] | None = None,
        days: dict[int, tuple[int, int]] | None = None,
        poll_hours: set[int] | None = None,
        summary_changed: bool = False,
    ) -> None:
        self.hours: dict[int, HourBucket] = {} if hours is None else hours  # empty = gone
        self.days: dict[int, tuple[int, int]] = {} if days is None else days  # (up, down)
        self.poll_hours: set[int] = set() if poll_hours is None else poll_hours
        self.summary_changed = summary_changed

    def __repr__(self) -> str:
        return (
            f"StoreChanges(hours={self.hours!r}, days={self.days!r},"
            f" poll_hours={self.poll_hours!r}, summary_changed={self.summary_changed!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StoreChanges):
            return NotImplemented
        return (self.hours, self.days, self.poll_hours, self.summary_changed) == (
            other.hours,
            other.days,
            other.poll_hours,
            other.summary_changed,
        )

    __hash__ = None  # type: ignore[assignment]  # mutable, as the dataclass was

    def __bool__(self) -> bool:
        return bool(self.hours or self.days or self.poll_hours or self.summary_changed)


def split_by_hour(runs: Iterable[Run]) -> dict[int, list[Run]]:
    """Cut runs at hour boundaries, grouped by the hour they fall in."""
    by_hour: dict[int, list[Run]] = {}
    for run in runs:
        start, end, active = run
        hour = start - start % HOUR_US
        if end <= hour + HOUR_US:  # inside one hour: the run itself
            by_hour.setdefault(hour, []).append(run)
            continue
        while start < end:
            hour = start - start % HOUR_US
            piece_end = min(end, hour + HOUR_US)
            by_hour.setdefault(hour, []).append(_new_run(Run, (start, piece_end, active)))
            start = piece_end
    return by_hour


class StoreState:
    """One store's incremental uptime state. Not thread-safe; one owner at a time."""

    __slots__ = (
        "_day_runs",
        "_last_in_hours_us",
        "_sessions",
        "_sessions_hi",
        "_sessions_lo",
        "cutoff_us",
        "day_hours",
        "first_poll_us",
        "horizon_us",
        "poll_active",
        "poll_ts",
        "schedule",
        "store_id",
        "zone_name",
    )

    def __init__(
        self,
        store_id: str,
        schedule: Schedule = ALWAYS_OPEN,
        zone_name: str = DEFAULT_ZONE,
        horizon_us: int = DEFAULT_HORIZON_US,
    ) -> None:
        self.store_id = store_id
        self.schedule = schedule
        self.zone_name = zone_name
        self.horizon_us = horizon_us
        self.poll_ts = array("q")
        self.poll_active = bytearray()
        self.first_poll_us: int | None = None
        # day start -> [up_0, down_0, up_1, down_1, ..., up_23, down_23] of its hours
        self.day_hours: dict[int, array[int]] = {}
        self.cutoff_us = NEVER_US
        self._sessions: Sessions | None = None
        self._sessions_lo = 0
        self._sessions_hi = 0
        self._last_in_hours_us: int | None = None
        # The runs of the days recorded last, flat as the record holds them, kept up to date
        # by every recomputation: a day's record after a live poll needs only the hours that
        # poll changed spliced in, not a pass over the whole day.
        self._day_runs: dict[int, _DayRuns] = {}

    # -- sessions -------------------------------------------------------------------------

    def sessions_covering(self, lo_us: int, hi_us: int) -> Sessions:
        """Cached sessions, valid for any question about instants in ``[lo_us, hi_us)``."""
        if self._sessions is None or lo_us < self._sessions_lo or hi_us > self._sessions_hi:
            lo = lo_us if self._sessions is None else min(lo_us, self._sessions_lo)
            hi = max(hi_us, self._sessions_hi) + _SESSION_LOOKAHEAD_US
            self._sessions = sessions_between(self.schedule, self.zone_name, lo, hi)
            self._sessions_lo, self._sessions_hi = lo, hi
        return self._sessions

    def _all_sessions(self) -> Sessions:
        if not self.poll_ts:
            return Sessions([], [])
        return self.sessions_covering(self.poll_ts[0], self.poll_ts[-1] + 1)

    @property
    def low_us(self) -> int:
        """Start of the materialised buckets."""
        first = self.first_poll_us
        if first is None:
            return FOREVER_US
        # No report counts a store before its first poll (section 5 of the contract), so no
        # window reaches more than one week before it: materialising further back, as far as
        # the whole horizon, would only cost a store's first contact twice the work.
        # (Written out: it is read twice on every update.)
        horizon = self.horizon_us
        low = (
            first
            - first % HOUR_US
            - (horizon if horizon < LONGEST_WINDOW_US else LONGEST_WINDOW_US)
        )
        cutoff = self.cutoff_us
        return low if low > cutoff else cutoff

    def _find_last_in_hours(self) -> int | None:
        if not self.poll_ts:
            return None
        sessions = self._all_sessions()
        for ts in reversed(self.poll_ts):
            if sessions.index_containing(ts) >= 0:
                return ts
        return None

    def summary(self) -> StoreSummary:
        last = self._last_in_hours_us
        if last is None:
            return StoreSummary(self.first_poll_us, None, False, last or 0)
        j = bisect_left(self.poll_ts, last)
        sessions = self.sessions_covering(last, last + 1)
        tail_end = sessions.ends[sessions.index_containing(last)]
        return StoreSummary(self.first_poll_us, last, bool(self.poll_active[j]), tail_end)

    # -- updates --------------------------------------------------------------------------

    def apply_polls(self, polls: Iterable[tuple[int, bool]]) -> StoreChanges:
        """Add polls ``(ts_us, active)``; returns the buckets and days whose value changed."""
        changes = StoreChanges()
        old_low = self.low_us
        touched = self._insert_polls(polls, changes)
        if not touched:
            return changes
        self._drop_polls_before_cutoff()
        old_last = self._last_in_hours_us
        dirty = self._dirty_ranges(touched)
        new_last = self._last_in_hours_us
        if old_last is not None and new_last is not None and new_last > old_last:
            # the old last poll's tail, not stored until now, becomes part of the buckets
            dirty.append((old_last, new_last))
        if new_last != old_last:
            changes.summary_changed = True
        low = self.low_us
        if low < old_low and old_low != FOREVER_US:
            dirty.append((low, old_low))
        self._recompute(dirty, changes, old_last, low)
        return changes

    def _insert_polls(self, polls: Iterable[tuple[int, bool]], changes: StoreChanges) -> list[int]:
        """Merge polls into the sorted lists; returns the timestamps that changed anything."""
        touched: list[int] = []
        poll_ts, poll_active = self.poll_ts, self.poll_active
        for ts, active in polls:
            if self.first_poll_us is None or ts < self.first_poll_us:
                self.first_poll_us = ts
                changes.summary_changed = True
            j = bisect_left(poll_ts, ts)
            if j < len(poll_ts) and poll_ts[j] == ts:
                if poll_active[j] and not active:  # conflicting duplicate: inactive wins
                    poll_active[j] = 0
                    touched.append(ts)
                    changes.poll_hours.add(ts - ts % HOUR_US)
                continue
            if poll_ts and ts < poll_ts[0] < self.cutoff_us:
                continue  # older than the kept anchor: it cannot reach past the cutoff
            # (without an anchor yet, a late poll before the cutoff becomes the anchor: it
            # is the status of the instants after the cutoff until the next poll)
            poll_ts.insert(j, ts)
            poll_active.insert(j, active)
            touched.append(ts)
            changes.poll_hours.add(ts - ts % HOUR_US)
        return touched

    def _dirty_ranges(self, touched: list[int]) -> list[tuple[int, int]]:
        """Where the timeline may have changed: a new poll only moves the boundaries
        between its neighbours in the same session. Also advances the last poll in hours."""
        sessions = self._all_sessions()
        poll_ts = self.poll_ts
        dirty: list[tuple[int, int]] = []
        for ts in touched:
            s = sessions.index_containing(ts)
            if s < 0:
                continue
            s_start, s_end = sessions.starts[s], sessions.ends[s]
            j = bisect_left(poll_ts, ts)
            before = poll_ts[j - 1] if j > 0 and poll_ts[j - 1] >= s_start else s_start
            after = poll_ts[j + 1] if j + 1 < len(poll_ts) and poll_ts[j + 1] < s_end else s_end
            dirty.append((before, after))
            if self._last_in_hours_us is None or ts > self._last_in_hours_us:
                self._last_in_hours_us = ts
        return dirty

    def replace_schedule(self, schedule: Schedule, zone_name: str) -> StoreChanges:
        """New business hours and/or zone: the whole materialised timeline is recomputed."""
        changes = StoreChanges()
        if schedule == self.schedule and zone_name == self.zone_name:
            return changes
        self.schedule, self.zone_name = schedule, zone_name
        self._sessions = None
        self._day_runs.clear()
        old_last = self._last_in_hours_us
        self._last_in_hours_us = self._find_last_in_hours()
        changes.summary_changed = True
        dirty = [(h, h + HOUR_US) for h in self.hours_with_time()]
        if self._last_in_hours_us is not None:
            dirty.append((self.low_us, self._last_in_hours_us))
        if old_last is not None:
            dirty.append((self.low_us, old_last))
        old_end = max((h + HOUR_US for h in self.hours_with_time()), default=NEVER_US)
        self._recompute(
            dirty, changes, max(old_end, old_last if old_last is not None else NEVER_US)
        )
        return changes

    def prune(self, cutoff_us: int) -> tuple[list[int], list[int]]:
        """Forget what lies before ``cutoff_us`` (hour-aligned down); the latest older poll
        stays as an anchor, since it is the nearest poll for instants just after the cutoff.
        Returns the hours and days dropped."""
        cutoff = floor_to(cutoff_us, HOUR_US)
        if cutoff <= self.cutoff_us:
            return [], []
        old_cutoff, self.cutoff_us = self.cutoff_us, cutoff
        self._day_runs.clear()
        self._drop_polls_before_cutoff()
        gone_hours = [
            day + i * HOUR_US
            for day in sorted(d for d in self.day_hours if d < cutoff)
            for i in range(24)
            if (self.day_hours[day][2 * i] or self.day_hours[day][2 * i + 1])
            and old_cutoff <= day + i * HOUR_US < cutoff
        ]
        # The day that straddles the cutoff keeps its hours and total, so its daily row stays
        # exact; no window that starts after the cutoff ever takes that day whole.
        gone_days = [d for d in self.day_hours if d + DAY_US <= cutoff]
        for day in gone_days:
            del self.day_hours[day]
        return gone_hours, gone_days

    def _drop_polls_before_cutoff(self) -> None:
        keep_from = bisect_left(self.poll_ts, self.cutoff_us) - 1  # index of the anchor
        if keep_from > 0:
            del self.poll_ts[:keep_from]
            del self.poll_active[:keep_from]

    def _recompute(
        self,
        dirty: list[tuple[int, int]],
        changes: StoreChanges,
        old_last: int | None,
        low: int | None = None,
    ) -> None:
        """Recompute every hour that meets a dirty range and record its new value.

        No bucket lies at or after the end of the materialised timeline, old or new, so the
        dirty ranges (which may run to the end of an endless session) are cut there."""
        last = self._last_in_hours_us
        low = self.low_us if low is None else low
        upto = max(
            last if last is not None else NEVER_US, old_last if old_last is not None else NEVER_US
        )
        touched_days: set[int] = set()
        for lo, hi in _merge_ranges(dirty):
            lo = lo if lo > low else low
            hi = hi if hi < upto else upto
            if lo >= hi:
                continue
            first_hour = lo - lo % HOUR_US
            end_hour = -((-hi) // HOUR_US) * HOUR_US
            # Whole hours are recomputed, within the materialised range [low, last).
            stop = end_hour if last is None or end_hour < last else last
            fresh: dict[int, list[Run]] = {}
            if first_hour < stop:
                sessions = self.sessions_covering(first_hour, stop)
                runs = timeline_runs(sessions, self.poll_ts, self.poll_active, first_hour, stop)
                fresh = split_by_hour(runs)
            self._set_hours(first_hour, end_hour, fresh, changes.hours, touched_days)
        day_hours = self.day_hours
        for day in touched_days:
            totals = self.day_totals(day)
            changes.days[day] = totals
            if totals == (0, 0):
                del day_hours[day]

    def _set_hours(
        self,
        first_hour: int,
        end_hour: int,
        fresh: dict[int, list[Run]],
        changed: dict[int, HourBucket],
        touched_days: set[int],
    ) -> None:
        """Store the hours ``[first_hour, end_hour)`` from their fresh runs (an hour not in
        ``fresh`` has none); the changed ones go to ``changed``, their days to
        ``touched_days``."""
        day_hours = self.day_hours
        day_runs = self._day_runs
        hour = first_hour
        while hour < end_hour:
            day = hour - hour % DAY_US
            hour_of_day = (hour - day) // HOUR_US
            slot = 2 * hour_of_day
            hour_runs = fresh.get(hour)
            hours_array = day_hours.get(day)
            cached = day_runs.get(day) if day_runs else None
            if hour_runs is None:
                if cached is not None:
                    cached.replace(hour_of_day, ())
                if hours_array is not None and (hours_array[slot] or hours_array[slot + 1]):
                    hours_array[slot] = hours_array[slot + 1] = 0
                    changed[hour] = HourBucket(hour, 0, 0, ())
                    touched_days.add(day)
            else:
                up = down = 0
                for run_start, run_end, active in hour_runs:
                    if active:
                        up += run_end - run_start
                    else:
                        down += run_end - run_start
                if cached is not None:
                    cached.replace(hour_of_day, _flat_runs(hour_runs))
                if hours_array is None:
                    hours_array = day_hours[day] = array("q", bytes(8 * 48))
                hours_array[slot] = up
                hours_array[slot + 1] = down
                changed[hour] = HourBucket(hour, up, down, tuple(hour_runs))
                touched_days.add(day)
            hour += HOUR_US

    def hour_totals(self, hour_start_us: int) -> tuple[int, int]:
        day = floor_to(hour_start_us, DAY_US)
        hours_array = self.day_hours.get(day)
        if hours_array is None:
            return 0, 0
        i = 2 * ((hour_start_us - day) // HOUR_US)
        return hours_array[i], hours_array[i + 1]

    def day_totals(self, day_start_us: int) -> tuple[int, int]:
        hours_array = self.day_hours.get(day_start_us)
        if hours_array is None:
            return 0, 0
        return sum(hours_array[0::2]), sum(hours_array[1::2])

    def hours_with_time(self) -> list[int]:
        """Every hour whose business time is at least partly observed, in order."""
        found: list[int] = []
        for day in sorted(self.day_hours):
            hours_array = self.day_hours[day]
            found.extend(
                day + i * HOUR_US for i in range(24) if hours_array[2 * i] or hours_array[2 * i + 1]
            )
        return found

    def bucket(self, hour_start_us: int) -> HourBucket:
        """The hour's bucket, recomputed from the polls (what the tables hold for it)."""
        last = self._last_in_hours_us
        lo = max(hour_start_us, self.low_us)
        hi = min(hour_start_us + HOUR_US, last if last is not None else NEVER_US)
        if lo >= hi:
            return HourBucket(hour_start_us, 0, 0, ())
        sessions = self.sessions_covering(lo, hi)
        runs = timeline_runs(sessions, self.poll_ts, self.poll_active, lo, hi)
        return HourBucket.from_runs(hour_start_us, runs)

    def day_record(
        self, day_start_us: int, known: dict[int, HourBucket] | None = None
    ) -> DayRecord:
        """The day's record. ``known`` holds buckets just computed (an update's changes):
        when they cover every hour of the day with time, no run is recomputed; otherwise
        the day's runs are recomputed from the polls in one pass."""
        hours_array = self.day_hours.get(day_start_us)
        if hours_array is None:
            hour_up, hour_down = [0] * 24, [0] * 24
            flat: list[int] = []
            bounds = [0] * 25
        else:
            hour_up, hour_down = hours_array[0::2].tolist(), hours_array[1::2].tolist()
            cached = self._day_runs.get(day_start_us)
            if cached is None:
                hours = [day_start_us + h * HOUR_US for h in range(24)]
                by_hour: list[tuple[int, ...]]
                if known is not None and all(
                    hours[h] in known for h in range(24) if hour_up[h] or hour_down[h]
                ):
                    by_hour = [_flat_runs(known[h].runs) if h in known else () for h in hours]
                else:
                    last = self._last_in_hours_us
                    lo = max(day_start_us, self.low_us)
                    hi = min(day_start_us + DAY_US, last if last is not None else NEVER_US)
                    split: dict[int, list[Run]] = {}
                    if lo < hi:
                        sessions = self.sessions_covering(lo, hi)
                        runs = timeline_runs(sessions, self.poll_ts, self.poll_active, lo, hi)
                        split = split_by_hour(runs)
                    by_hour = [_flat_runs(split[h]) if h in split else () for h in hours]
                if len(self._day_runs) >= _DAYS_OF_RUNS_KEPT:
                    del self._day_runs[min(self._day_runs)]
                cached = self._day_runs[day_start_us] = _DayRuns(by_hour)
            # Copies: the record leaves with the batch while the cache moves on.
            flat, bounds = cached.flat[:], cached.bounds[:]
        poll_ts = self.poll_ts
        j = bisect_left(poll_ts, day_start_us)
        k = bisect_left(poll_ts, day_start_us + DAY_US, j)
        return DayRecord(
            sum(hour_up),
            sum(hour_down),
            hour_up,
            hour_down,
            flat,
            bounds,
            poll_ts[j:k].tolist(),
            list(map(bool, self.poll_active[j:k])),
        )

    # -- persistence ----------------------------------------------------------------------

    def polls_in_range(self, lo_us: int, hi_us: int) -> list[tuple[int, bool]]:
        j = bisect_left(self.poll_ts, lo_us)
        k = bisect_left(self.poll_ts, hi_us)
        return [(self.poll_ts[i], bool(self.poll_active[i])) for i in range(j, k)]

    @classmethod
    def restore(
        cls,
        store_id: str,
        schedule: Schedule,
        zone_name: str,
        *,
        horizon_us: int,
        first_poll_us: int | None,
        cutoff_us: int,
        polls: Iterable[tuple[int, bool]],
    ) -> StoreState:
        """Rebuild a state from what persists of it: the settings, the earliest poll ever seen,
        the cutoff of the last prune, and the polls kept (the anchor among them)."""
        state = cls(store_id, schedule, zone_name, horizon_us)
        state.first_poll_us = first_poll_us
        state.cutoff_us = cutoff_us
        state.apply_polls(polls)
        return state


class _DayRuns:
    """A day's runs as its record holds them: flat (start, end, 1/0, ...) and the bounds of
    each hour in it, updated in place an hour at a time."""

    __slots__ = ("bounds", "flat")

    def __init__(self, by_hour: list[tuple[int, ...]]) -> None:
        self.flat: list[int] = list(chain.from_iterable(by_hour))
        self.bounds: list[int] = [0, *accumulate(map(len, by_hour))]

    def replace(self, hour_of_day: int, runs: tuple[int, ...]) -> None:
        bounds = self.bounds
        lo, hi = bounds[hour_of_day], bounds[hour_of_day + 1]
        self.flat[lo:hi] = runs
        shift = len(runs) - (hi - lo)
        if shift:
            for h in range(hour_of_day + 1, 25):
                bounds[h] += shift


def _flat_runs(runs: Iterable[Run]) -> tuple[int, ...]:
    """Runs as a day record holds them: start, end, 1 (up) or 0 (down), one after another."""
    flat: list[int] = []
    for start, end, active in runs:
        flat.extend((start, end, 1 if active else 0))
    return tuple(flat)


def _merge_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1]:
            if hi > merged[-1][1]:
                merged[-1] = (merged[-1][0], hi)
        else:
            merged.append((lo, hi))
    return merged
