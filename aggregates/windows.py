"""Sums over the report windows, from scratch or from precomputed buckets.

Two ways to the same numbers:

* :func:`windows_from_polls` computes the timeline of ``[T - 168 h, T)`` straight from the
  polls (the batch command does this);
* :func:`windows_from_buckets` adds up precomputed hourly and daily buckets (what the
  stream keeps, in memory or in PostgreSQL), then corrects the two places where buckets
  cannot know T: the *tail* after the last poll, and, when T lies before the newest poll,
  the stretch just before T that a later poll had claimed.

A window ``[lo, hi)`` is planned as whole days, whole hours, and at most two *edge* hours
whose runs are clipped at ``lo`` or ``hi``, so every sum is exact to the microsecond.

    lo                                                                    hi
    |-edge-|--whole hours--|=====whole days=====|--whole hours--|-edge-|
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from typing import NamedTuple

from storemon.aggregates.report import WINDOWS, StoreWindows
from storemon.aggregates.schedule import Sessions
from storemon.aggregates.state import HourBucket, StoreState, StoreSummary
from storemon.aggregates.timebase import DAY_US, HOUR_US, ceil_to, floor_to
from storemon.aggregates.timeline import Run, timeline_runs, up_down_us


class WindowPlan(NamedTuple):
    lo_us: int
    hi_us: int
    edge_hours: tuple[int, ...]  # hours only partly inside: clip their runs to [lo, hi)
    hour_ranges: tuple[tuple[int, int], ...]  # [a, b) of whole hours, from hourly buckets
    day_range: tuple[int, int] | None  # [a, b) of whole days, from daily sums


class AsOfFix(NamedTuple):
    """When T lies before a later poll of its own session, ``[start_us, T)`` of the buckets
    carries that later poll's status; as of T it carries the earlier poll's, or nothing."""

    start_us: int
    bucket_active: bool
    as_of_active: bool | None


def plan_window(lo_us: int, hi_us: int) -> WindowPlan:
    first_whole = ceil_to(lo_us, HOUR_US)
    end_whole = floor_to(hi_us, HOUR_US)
    edges: list[int] = []
    if lo_us < first_whole:
        edges.append(floor_to(lo_us, HOUR_US))
    if end_whole < hi_us and end_whole >= first_whole:
        edges.append(end_whole)
    hour_ranges: list[tuple[int, int]] = []
    day_range: tuple[int, int] | None = None
    if first_whole < end_whole:
        first_day = ceil_to(first_whole, DAY_US)
        end_day = floor_to(end_whole, DAY_US)
        if first_day < end_day:
            day_range = (first_day, end_day)
            hour_ranges = [(first_whole, first_day), (end_day, end_whole)]
        else:
            hour_ranges = [(first_whole, end_whole)]
    return WindowPlan(
        lo_us, hi_us, tuple(edges), tuple((a, b) for a, b in hour_ranges if a < b), day_range
    )


def plan_report(as_of_us: int) -> list[WindowPlan]:
    return [plan_window(as_of_us - length, as_of_us) for length, _ in WINDOWS]


def edge_sums(plan: WindowPlan, bucket: HourBucket | None) -> tuple[int, int]:
    if bucket is None:
        return 0, 0
    return up_down_us(bucket.runs, plan.lo_us, plan.hi_us)


def as_of_fix(
    sessions: Sessions, poll_ts: Sequence[int], poll_active: Sequence[int], as_of_us: int
) -> AsOfFix | None:
    """The correction for a report taken before a store's newest poll (None if none is due).

    Only the session that holds T can differ: its first poll after T (``q``) claims
    ``[mid(p, q), T)`` in the buckets, where ``p`` is its last poll at or before T (or the
    session start if there is none); as of T that stretch is ``p``'s, or unobserved.
    """
    s = sessions.index_containing(as_of_us)
    if s < 0:
        return None
    s_start, s_end = sessions.starts[s], sessions.ends[s]
    q = bisect_right(poll_ts, as_of_us)
    if q >= len(poll_ts) or poll_ts[q] >= s_end:
        return None
    p = q - 1
    if p >= 0 and poll_ts[p] >= s_start:
        return AsOfFix((poll_ts[p] + poll_ts[q]) // 2, bool(poll_active[q]), bool(poll_active[p]))
    return AsOfFix(s_start, bool(poll_active[q]), None)


def _add(totals: list[int], run_lo: int, run_hi: int, active: bool, sign: int) -> None:
    if run_lo < run_hi:
        totals[0 if active else 1] += sign * (run_hi - run_lo)


def windows_from_buckets(
    store_id: str,
    as_of_us: int,
    materialised: Sequence[tuple[int, int]],
    summary: StoreSummary,
    fix: AsOfFix | None,
) -> StoreWindows:
    """Finish the sums of one store: ``materialised[i]`` is (up, down) of the buckets in
    window i (see :func:`plan_report`); the tail and the as-of fix are added here."""
    ups: list[int] = []
    downs: list[int] = []
    for (length, _), (bucket_up, bucket_down) in zip(WINDOWS, materialised, strict=True):
        lo = as_of_us - length
        totals = [bucket_up, bucket_down]
        last = summary.last_poll_us
        if last is not None and last <= as_of_us:
            tail_end = min(summary.tail_end_us, as_of_us)
            _add(totals, max(last, lo), tail_end, summary.last_active, +1)
        if fix is not None:
            start = max(fix.start_us, lo)
            _add(totals, start, as_of_us, fix.bucket_active, -1)
            if fix.as_of_active is not None:
                _add(totals, start, as_of_us, fix.as_of_active, +1)
        ups.append(totals[0])
        downs.append(totals[1])
    return StoreWindows(store_id, (ups[0], ups[1], ups[2]), (downs[0], downs[1], downs[2]))


_HOUR_LO, _DAY_LO, _WEEK_LO = (length for length, _ in WINDOWS)


def finish_store(
    store_id: str,
    as_of_us: int,
    sums: Sequence[int],
    last_poll_us: int | None,
    last_active: bool,
    tail_end_us: int,
    fix: AsOfFix | None,
) -> StoreWindows:
    """:func:`windows_from_buckets` for flat ``sums`` (up, down of the hour, day and week
    windows), written out for the common case of a report without an as-of fix: this runs
    once per store in every report, so no list or summary is built. The property tests hold
    it equal to :func:`windows_from_buckets`."""
    if fix is not None:
        summary = StoreSummary(None, last_poll_us, last_active, tail_end_us)
        pairs = [(sums[0], sums[1]), (sums[2], sums[3]), (sums[4], sums[5])]
        return windows_from_buckets(store_id, as_of_us, pairs, summary, fix)
    up_h, down_h, up_d, down_d, up_w, down_w = sums
    if last_poll_us is not None and last_poll_us <= as_of_us:
        # The open tail [max(last poll, window start), min(session end, T)) in each window.
        tail_end = tail_end_us if tail_end_us < as_of_us else as_of_us
        if last_poll_us < tail_end:
            hour = tail_end - max(last_poll_us, as_of_us - _HOUR_LO)
            day = tail_end - max(last_poll_us, as_of_us - _DAY_LO)
            week = tail_end - max(last_poll_us, as_of_us - _WEEK_LO)
            if last_active:
                up_h += hour if hour > 0 else 0
                up_d += day if day > 0 else 0
                up_w += week if week > 0 else 0
            else:
                down_h += hour if hour > 0 else 0
                down_d += day if day > 0 else 0
                down_w += week if week > 0 else 0
    return StoreWindows(store_id, (up_h, up_d, up_w), (down_h, down_d, down_w))


def sum_plan(
    plan: WindowPlan,
    hour_sum: Callable[[int, int], tuple[int, int]],
    day_sum: Callable[[int, int], tuple[int, int]],
    bucket_at: Callable[[int], HourBucket | None],
) -> tuple[int, int]:
    up = down = 0
    for hour in plan.edge_hours:
        u, d = edge_sums(plan, bucket_at(hour))
        up, down = up + u, down + d
    for a, b in plan.hour_ranges:
        u, d = hour_sum(a, b)
        up, down = up + u, down + d
    if plan.day_range is not None:
        u, d = day_sum(*plan.day_range)
        up, down = up + u, down + d
    return up, down


def state_windows(state: StoreState, as_of_us: int) -> StoreWindows:
    """The report row of an in-memory :class:`StoreState`, through its buckets."""

    def hour_sum(a: int, b: int) -> tuple[int, int]:
        up = down = 0
        for hour in range(a, b, HOUR_US):
            u, d = state.hour_totals(hour)
            up, down = up + u, down + d
        return up, down

    def day_sum(a: int, b: int) -> tuple[int, int]:
        up = down = 0
        for day in range(a, b, DAY_US):
            u, d = state.day_totals(day)
            up, down = up + u, down + d
        return up, down

    sums = [sum_plan(p, hour_sum, day_sum, state.bucket) for p in plan_report(as_of_us)]
    fix = None
    if state.poll_ts and state.poll_ts[-1] > as_of_us:
        sessions = state.sessions_covering(as_of_us, as_of_us + 1)
        fix = as_of_fix(sessions, state.poll_ts, state.poll_active, as_of_us)
    return windows_from_buckets(state.store_id, as_of_us, sums, state.summary(), fix)


def windows_from_polls(
    store_id: str,
    sessions: Sessions,
    poll_ts: Sequence[int],
    poll_active: Sequence[int],  # 1 = active, 0 = inactive (bools are fine too)
    as_of_us: int,
) -> StoreWindows:
    """The report row straight from the polls (sorted, deduplicated) and sessions."""
    used = bisect_right(poll_ts, as_of_us)
    longest = WINDOWS[-1][0]
    runs: list[Run] = timeline_runs(
        sessions, poll_ts, poll_active, as_of_us - longest, as_of_us, used
    )
    ups: list[int] = []
    downs: list[int] = []
    for length, _ in WINDOWS:
        u, d = up_down_us(runs, as_of_us - length, as_of_us)
        ups.append(u)
        downs.append(d)
    return StoreWindows(store_id, (ups[0], ups[1], ups[2]), (downs[0], downs[1], downs[2]))
