"""Incremental per-store state: polls in, changed hourly and daily buckets out.

A :class:`StoreState` holds one store's schedule, zone and recent polls, and the store's
status timeline cut into hourly buckets (each bucket keeps its runs, so a window that starts
or ends inside an hour is still summed exactly) and daily sums of those buckets.

*Materialised* timeline: buckets cover ``[low_us, last_in_hours_poll_us)``. What lies after
the last poll inside business hours depends on the report time, so it is not stored: it is
the *tail* of :class:`StoreSummary`, added when a report is taken. ``low_us`` starts one
horizon before the store's first poll and moves up as old state is pruned.

Polls may arrive in any order and any number of times: the state is a pure function of the
set of polls (same timestamp twice counts once, ``inactive`` wins), so replays and
redeliveries change nothing. Applying polls returns exactly the buckets whose value changed.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from storemon.aggregates.records import DEFAULT_ZONE
from storemon.aggregates.schedule import ALWAYS_OPEN, Schedule, Sessions, WeeklyInterval, sessions_between
from storemon.aggregates.timebase import DAY_US, FOREVER_US, HOUR_US, NEVER_US, ceil_to, floor_to
from storemon.aggregates.timeline import Run, timeline_runs

DEFAULT_HORIZON_US = 192 * HOUR_US
# How far ahead of the newest poll the cached sessions reach, so a stream in time order
# recomputes them about once a week of data.
_SESSION_LOOKAHEAD_US = 7 * DAY_US


@dataclass(frozen=True, slots=True)
class HourBucket:
    """Up and down microseconds of one UTC hour, with the runs they come from."""

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


class StoreSummary(NamedTuple):
    """What a report needs besides the buckets: who is in it and the open tail."""

    first_poll_us: int | None  # earliest poll ever seen, in business hours or not
    last_poll_us: int | None  # last poll inside business hours (end of the buckets)
    last_active: bool
    tail_end_us: int  # end of the session of that last poll (FOREVER_US if endless)


@dataclass(slots=True)
class StoreChanges:
    """What one update changed: new values only, so writing them is idempotent."""

    hours: dict[int, HourBucket] = field(default_factory=dict)  # empty bucket = gone
    days: dict[int, tuple[int, int]] = field(default_factory=dict)  # (up_us, down_us)
    poll_hours: set[int] = field(default_factory=set)  # hours whose list of polls changed
    summary_changed: bool = False

    def __bool__(self) -> bool:
        return bool(self.hours or self.days or self.poll_hours or self.summary_changed)


def split_by_hour(runs: Iterable[Run]) -> dict[int, list[Run]]:
    """Cut runs at hour boundaries, grouped by the hour they fall in."""
    by_hour: dict[int, list[Run]] = {}
    for start, end, active in runs:
        while start < end:
            hour = floor_to(start, HOUR_US)
            piece_end = min(end, hour + HOUR_US)
            by_hour.setdefault(hour, []).append(Run(start, piece_end, active))
            start = piece_end
    return by_hour


class StoreState:
    """One store's incremental uptime state. Not thread-safe; one owner at a time."""

    __slots__ = (
        "_last_in_hours_us",
        "_sessions",
        "_sessions_hi",
        "_sessions_lo",
        "cutoff_us",
        "days",
        "first_poll_us",
        "horizon_us",
        "hours",
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
        self.poll_ts: list[int] = []
        self.poll_active: list[bool] = []
        self.first_poll_us: int | None = None
        self.hours: dict[int, HourBucket] = {}
        self.days: dict[int, tuple[int, int]] = {}
        self.cutoff_us = NEVER_US
        self._sessions: Sessions | None = None
        self._sessions_lo = 0
        self._sessions_hi = 0
        self._last_in_hours_us: int | None = None

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
        if self.first_poll_us is None:
            return FOREVER_US
        return max(self.cutoff_us, floor_to(self.first_poll_us, HOUR_US) - self.horizon_us)

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
        return StoreSummary(self.first_poll_us, last, self.poll_active[j], tail_end)

    # -- updates --------------------------------------------------------------------------

    def apply_polls(self, polls: Iterable[tuple[int, bool]]) -> StoreChanges:
        """Add polls ``(ts_us, active)``; returns the buckets and days whose value changed."""
        changes = StoreChanges()
        touched: list[int] = []
        old_low = self.low_us
        for ts, active in polls:
            if self.first_poll_us is None or ts < self.first_poll_us:
                self.first_poll_us = ts
                changes.summary_changed = True
            j = bisect_left(self.poll_ts, ts)
            if j < len(self.poll_ts) and self.poll_ts[j] == ts:
                if self.poll_active[j] and not active:  # conflicting duplicate: inactive wins
                    self.poll_active[j] = False
                    touched.append(ts)
                    changes.poll_hours.add(floor_to(ts, HOUR_US))
                continue
            if self.poll_ts and ts < self.poll_ts[0] and ts < self.cutoff_us:
                continue  # older than the kept anchor: it cannot reach past the cutoff
            self.poll_ts.insert(j, ts)
            self.poll_active.insert(j, active)
            touched.append(ts)
            changes.poll_hours.add(floor_to(ts, HOUR_US))
        if not touched:
            return changes
        self._drop_polls_before_cutoff()
        sessions = self._all_sessions()
        old_last = self._last_in_hours_us
        dirty: list[tuple[int, int]] = []
        for ts in touched:
            s = sessions.index_containing(ts)
            if s < 0:
                continue
            s_start, s_end = sessions.starts[s], sessions.ends[s]
            j = bisect_left(self.poll_ts, ts)
            before = self.poll_ts[j - 1] if j > 0 and self.poll_ts[j - 1] >= s_start else s_start
            after = (
                self.poll_ts[j + 1]
                if j + 1 < len(self.poll_ts) and self.poll_ts[j + 1] < s_end
                else s_end
            )
            dirty.append((before, after))
            if self._last_in_hours_us is None or ts > self._last_in_hours_us:
                self._last_in_hours_us = ts
        if old_last is not None and self._last_in_hours_us is not None:
            if self._last_in_hours_us > old_last:
                dirty.append((old_last, self._last_in_hours_us))
        if self._last_in_hours_us != old_last:
            changes.summary_changed = True
        if self.low_us < old_low and old_low != FOREVER_US:
            dirty.append((self.low_us, old_low))
        self._recompute(dirty, changes)
        return changes

    def replace_schedule(self, schedule: Schedule, zone_name: str) -> StoreChanges:
        """New business hours and/or zone: the whole materialised timeline is recomputed."""
        changes = StoreChanges()
        if schedule == self.schedule and zone_name == self.zone_name:
            return changes
        self.schedule, self.zone_name = schedule, zone_name
        self._sessions = None
        old_last = self._last_in_hours_us
        self._last_in_hours_us = self._find_last_in_hours()
        changes.summary_changed = True
        dirty = [(h, h + HOUR_US) for h in self.hours]
        if self._last_in_hours_us is not None:
            dirty.append((self.low_us, self._last_in_hours_us))
        if old_last is not None:
            dirty.append((self.low_us, old_last))
        self._recompute(dirty, changes)
        return changes

    def prune(self, cutoff_us: int) -> tuple[list[int], list[int]]:
        """Forget what lies before ``cutoff_us`` (hour-aligned down); the latest older poll
        stays as an anchor, since it is the nearest poll for instants just after the cutoff.
        Returns the hours and days dropped."""
        cutoff = floor_to(cutoff_us, HOUR_US)
        if cutoff <= self.cutoff_us:
            return [], []
        self.cutoff_us = cutoff
        self._drop_polls_before_cutoff()
        gone_hours = [h for h in self.hours if h < cutoff]
        for hour in gone_hours:
            del self.hours[hour]
        # A day that straddles the cutoff keeps its full sum: it stays exact for its hours.
        gone_days = [d for d in self.days if d + DAY_US <= cutoff]
        for day in gone_days:
            del self.days[day]
        return gone_hours, gone_days

    def _drop_polls_before_cutoff(self) -> None:
        keep_from = bisect_left(self.poll_ts, self.cutoff_us) - 1  # index of the anchor
        if keep_from > 0:
            del self.poll_ts[:keep_from]
            del self.poll_active[:keep_from]

    def _recompute(self, dirty: list[tuple[int, int]], changes: StoreChanges) -> None:
        """Recompute every bucket that meets a dirty range; record those that changed."""
        last = self._last_in_hours_us
        low = self.low_us
        for lo, hi in _merge_ranges(dirty):
            first_hour = floor_to(max(lo, low), HOUR_US)
            end_hour = ceil_to(hi, HOUR_US)
            if end_hour - first_hour <= 256 * HOUR_US:
                stale = {h for h in range(first_hour, end_hour, HOUR_US) if h in self.hours}
            else:
                stale = {h for h in self.hours if first_hour <= h < end_hour}
            # Whole hours are recomputed, within the materialised range [low, last).
            stop = min(end_hour, last if last is not None else NEVER_US)
            if first_hour < stop:
                sessions = self.sessions_covering(first_hour, stop)
                runs = timeline_runs(sessions, self.poll_ts, self.poll_active, first_hour, stop)
                for hour, hour_runs in split_by_hour(runs).items():
                    stale.discard(hour)
                    self._store_bucket(HourBucket.from_runs(hour, hour_runs), changes)
            for hour in stale:
                self._store_bucket(HourBucket(hour, 0, 0, ()), changes)

    def _store_bucket(self, bucket: HourBucket, changes: StoreChanges) -> None:
        hour = bucket.hour_start_us
        old = self.hours.get(hour)
        if old == bucket or (old is None and bucket.is_empty):
            return
        if bucket.is_empty:
            del self.hours[hour]
        else:
            self.hours[hour] = bucket
        changes.hours[hour] = bucket
        day = floor_to(hour, DAY_US)
        up, down = self.days.get(day, (0, 0))
        up += bucket.up_us - (old.up_us if old else 0)
        down += bucket.down_us - (old.down_us if old else 0)
        if up or down:
            self.days[day] = (up, down)
        else:
            self.days.pop(day, None)
        changes.days[day] = (up, down)

    # -- persistence ----------------------------------------------------------------------

    def polls_in_hour(self, hour_start_us: int) -> list[tuple[int, bool]]:
        j = bisect_left(self.poll_ts, hour_start_us)
        k = bisect_left(self.poll_ts, hour_start_us + HOUR_US)
        return list(zip(self.poll_ts[j:k], self.poll_active[j:k], strict=True))

    def to_record(self) -> dict[str, Any]:
        """Plain data (orjson-ready) from which :meth:`from_record` rebuilds the state."""
        return {
            "store_id": self.store_id,
            "schedule": [list(i) for i in self.schedule],
            "zone": self.zone_name,
            "horizon_us": self.horizon_us,
            "cutoff_us": self.cutoff_us,
            "first_poll_us": self.first_poll_us,
            "polls": [[ts, int(a)] for ts, a in zip(self.poll_ts, self.poll_active, strict=True)],
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> StoreState:
        """Rebuild from :meth:`to_record`; buckets are recomputed from the polls."""
        schedule = tuple(WeeklyInterval(*i) for i in record["schedule"])
        state = cls(record["store_id"], schedule, record["zone"], record["horizon_us"])
        state.apply_polls((ts, bool(a)) for ts, a in record["polls"])
        state.first_poll_us = record["first_poll_us"]
        if record["cutoff_us"] != NEVER_US:
            state.prune(record["cutoff_us"])
        return state


def _merge_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1]:
            if hi > merged[-1][1]:
                merged[-1] = (merged[-1][0], hi)
        else:
            merged.append((lo, hi))
    return merged
