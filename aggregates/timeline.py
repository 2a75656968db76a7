"""Polls -> a status timeline inside business sessions (the interpolation rule).

Inside a session, the status at any instant is that of the nearest poll *of the same
session*; a tie goes to the later poll. So consecutive polls split the gap between them at
the midpoint, the first poll's status reaches back to the session start, and the last
poll's reaches forward to the session end. Polls outside every session are ignored, and a
session without a poll is unobserved (neither up nor down).

Midpoints are taken in whole microseconds, rounding down: when two polls are an odd number
of microseconds apart the later poll wins the half microsecond in the middle.

A timeline is a list of *runs* ``(start_us, end_us, active)``: sorted, disjoint, half-open,
with neighbouring runs of the same status merged only when they touch.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from storemon.aggregates.schedule import Sessions


class Run(NamedTuple):
    start_us: int
    end_us: int
    active: bool


# Runs are made without the Python-level constructor a NamedTuple has: one per run, on
# the stream's every update.
_new_run = tuple.__new__


def timeline_runs(
    sessions: Sessions,
    poll_ts: Sequence[int],
    poll_active: Sequence[int],  # 1 = active, 0 = inactive (bools are fine too)
    lo_us: int,
    hi_us: int,
    poll_count: int | None = None,
) -> list[Run]:
    """The observed timeline clipped to ``[lo_us, hi_us)``.

    ``poll_ts`` is sorted and free of duplicates, ``poll_active`` parallel to it. Only the
    first ``poll_count`` polls are used (all by default): that is how polls after a report's
    ``as_of`` are left out without copying the lists.
    """
    runs: list[Run] = []
    if lo_us >= hi_us:
        return runs
    n = len(poll_ts) if poll_count is None else poll_count
    starts, ends = sessions.starts, sessions.ends
    i = bisect_left(ends, lo_us + 1)  # first session ending after lo_us
    while i < len(starts) and starts[i] < hi_us:
        s_start, s_end = starts[i], ends[i]
        first = bisect_left(poll_ts, s_start, 0, n)
        stop = bisect_left(poll_ts, s_end, first, n)
        if first < stop:
            clip_lo = max(s_start, lo_us)
            clip_hi = min(s_end, hi_us)
            # The poll before the first one at or after clip_lo may still cover clip_lo.
            k = max(first, bisect_left(poll_ts, clip_lo, first, stop) - 1)
            while k < stop:
                cover_lo = s_start if k == first else (poll_ts[k - 1] + poll_ts[k]) // 2
                if cover_lo >= clip_hi:
                    break
                cover_hi = s_end if k == stop - 1 else (poll_ts[k] + poll_ts[k + 1]) // 2
                run_lo = cover_lo if cover_lo > clip_lo else clip_lo
                run_hi = cover_hi if cover_hi < clip_hi else clip_hi
                if run_lo < run_hi:
                    active = bool(poll_active[k])
                    if runs and runs[-1].end_us == run_lo and runs[-1].active == active:
                        runs[-1] = _new_run(Run, (runs[-1].start_us, run_hi, active))
                    else:
                        runs.append(_new_run(Run, (run_lo, run_hi, active)))
                k += 1
        i += 1
    return runs


def dedupe_polls(polls: Iterable[tuple[int, bool]]) -> tuple[list[int], list[bool]]:
    """Sorted timestamps and statuses; one timestamp twice counts once, inactive winning."""
    merged: dict[int, bool] = {}
    for ts, active in polls:
        merged[ts] = merged.get(ts, True) and active
    ordered = sorted(merged)
    return ordered, [merged[ts] for ts in ordered]


def up_down_us(runs: Iterable[Run], lo_us: int, hi_us: int) -> tuple[int, int]:
    """Microseconds up and down of ``runs`` inside ``[lo_us, hi_us)``."""
    up = down = 0
    for start, end, active in runs:
        start = start if start > lo_us else lo_us
        end = end if end < hi_us else hi_us
        if start < end:
            if active:
                up += end - start
            else:
                down += end - start
    return up, down


def business_us(sessions: Sessions, lo_us: int, hi_us: int) -> int:
    """Length of business time inside ``[lo_us, hi_us)``."""
    total = 0
    for start, end in zip(sessions.starts, sessions.ends, strict=True):
        start = start if start > lo_us else lo_us
        end = end if end < hi_us else hi_us
        if start < end:
            total += end - start
    return total
