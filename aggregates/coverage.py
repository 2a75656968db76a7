"""Business time per report window, and the part of it no poll observed.

The report's CSV gives uptime and downtime only; a store with 0.00 of both may have been
closed or merely never polled. Business time comes from the sessions alone (schedule and
zone), and what is neither up nor down of it is unobserved:
``unobserved = business - up - down`` exactly, per window (see docs/semantics.md).
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Generic, NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt

from storemon.aggregates.report import (
    LONGEST_WINDOW_US,
    WINDOWS,
    StoreWindows,
    format_hundredths,
)
from storemon.aggregates.schedule import (
    Schedule,
    Sessions,
    sessions_between,
    sessions_between_many,
)
from storemon.aggregates.timebase import DAY_US
from storemon.aggregates.timeline import business_us

# Sessions are kept for report times up to a day past the span they were computed for.
SESSIONS_MARGIN_US = DAY_US
PairKey = TypeVar("PairKey", bound=Hashable)

SUMS_PER_ROW = 2 * len(WINDOWS)
# Extra columns of the JSON and Parquet formats, in the units of the CSV's columns (the
# hour in minutes, day and week in hours, rounded half up to hundredths).
COVERAGE_HEADER = (
    "business_last_hour",
    "business_last_day",
    "business_last_week",
    "unobserved_last_hour",
    "unobserved_last_day",
    "unobserved_last_week",
)


class Coverage(NamedTuple):
    """Business and unobserved microseconds of the hour, day and week windows."""

    business_us: tuple[int, int, int]
    unobserved_us: tuple[int, int, int]


def business_windows(schedule: Schedule, zone: str, as_of_us: int) -> tuple[int, int, int]:
    sessions = sessions_between(schedule, zone, as_of_us - LONGEST_WINDOW_US, as_of_us)
    hour, day, week = (business_us(sessions, as_of_us - length, as_of_us) for length, _ in WINDOWS)
    return hour, day, week


def coverage(row: StoreWindows, schedule: Schedule, zone: str, as_of_us: int) -> Coverage:
    business = business_windows(schedule, zone, as_of_us)
    hour, day, week = (
        b - up - down for b, up, down in zip(business, row.up_us, row.down_us, strict=True)
    )
    if min(hour, day, week) < 0:
        raise ValueError(f"store {row.store_id}: up and down exceed business time")
    return Coverage(business, (hour, day, week))


def business_of_sessions(sessions: Sequence[Sessions], as_of_us: int) -> npt.NDArray[np.int64]:
    """:func:`business_windows` of many stores (or schedule and zone pairs) at once, from
    their sessions (each valid over at least the week before ``as_of_us``): row i holds
    the hour's, day's and week's business microseconds of ``sessions[i]``, exact."""
    starts, ends, bounds = _flat(sessions)
    return business_of_flat(starts, ends, bounds, as_of_us)


Int64s = npt.NDArray[np.int64]


def _flat(sessions: Sequence[Sessions]) -> tuple[Int64s, Int64s, Int64s]:
    """Sessions of many pairs as flat starts and ends, and each pair's bounds in them."""
    counts = np.fromiter((len(s.starts) for s in sessions), np.int64, len(sessions))
    starts = np.fromiter(chain.from_iterable(s.starts for s in sessions), np.int64)
    ends = np.fromiter(chain.from_iterable(s.ends for s in sessions), np.int64)
    bounds = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    return starts, ends, bounds


def business_of_flat(starts: Int64s, ends: Int64s, bounds: Int64s, as_of_us: int) -> Int64s:
    """:func:`business_of_sessions` of sessions already flat: pair i's sessions are
    ``starts[bounds[i]:bounds[i + 1]]`` (and the same of ``ends``)."""
    found = np.zeros((len(bounds) - 1, len(WINDOWS)), np.int64)
    clipped_ends = np.minimum(ends, as_of_us)
    for w, (length, _) in enumerate(WINDOWS):
        inside = np.maximum(clipped_ends - np.maximum(starts, as_of_us - length), 0)
        running = np.concatenate(([0], np.cumsum(inside)))
        found[:, w] = running[bounds[1:]] - running[bounds[:-1]]
    return found


@dataclass(frozen=True)
class PairSessions:
    """The sessions of numbered (schedule, zone) pairs 0 .. count - 1 over one span, flat
    (see :func:`business_of_flat`): what the worker keeps for the fleet's business time,
    so a report time inside the span sums every pair's business time in a few array
    operations and new pairs only append."""

    lo_us: int
    hi_us: int
    starts: Int64s
    ends: Int64s
    bounds: Int64s

    @classmethod
    def around(cls, as_of_us: int) -> PairSessions:
        """No pair yet, over the span kept for report times near ``as_of_us``."""
        empty = np.zeros(0, np.int64)
        return cls(
            as_of_us - LONGEST_WINDOW_US - SESSIONS_MARGIN_US,
            as_of_us + SESSIONS_MARGIN_US,
            empty,
            empty,
            np.zeros(1, np.int64),
        )

    @property
    def count(self) -> int:
        return len(self.bounds) - 1

    def covers(self, as_of_us: int) -> bool:
        return self.lo_us <= as_of_us - LONGEST_WINDOW_US and as_of_us <= self.hi_us

    def extended(self, pairs: Sequence[tuple[Schedule, str]]) -> PairSessions:
        """With the next pairs' sessions appended (numbered from ``count`` on)."""
        if not pairs:
            return self
        starts, ends, bounds = _flat(sessions_between_many(pairs, self.lo_us, self.hi_us))
        return PairSessions(
            self.lo_us,
            self.hi_us,
            np.concatenate((self.starts, starts)),
            np.concatenate((self.ends, ends)),
            np.concatenate((self.bounds, self.bounds[-1] + bounds[1:])),
        )

    def business(self, as_of_us: int) -> Int64s:
        """Business microseconds of the hour, day and week windows, row p for pair p."""
        if not self.covers(as_of_us):
            raise ValueError("the report time lies outside the sessions' span")
        return business_of_flat(self.starts, self.ends, self.bounds, as_of_us)


@dataclass
class SessionsKept(Generic[PairKey]):
    """Sessions per (schedule, zone) pair, computed over a span wider than the week, so the
    fleet's business time at a newer report time needs no session computed again until
    the report time leaves the span (about once a day). ``parse`` turns a pair's key (as
    its holder names pairs) into the schedule and zone."""

    parse: Callable[[PairKey], tuple[Schedule, str]]
    lo_us: int = 0
    hi_us: int = 0
    by_pair: dict[PairKey, Sessions] = field(default_factory=dict)

    def missing(self, pairs: Iterable[PairKey], as_of_us: int) -> list[PairKey]:
        """The pairs whose sessions a report at ``as_of_us`` would compute (the span moves,
        and forgets every pair, when the report time leaves it)."""
        if as_of_us - LONGEST_WINDOW_US < self.lo_us or as_of_us > self.hi_us:
            self.by_pair.clear()
            self.lo_us = as_of_us - LONGEST_WINDOW_US - SESSIONS_MARGIN_US
            self.hi_us = as_of_us + SESSIONS_MARGIN_US
        return [p for p in dict.fromkeys(pairs) if p not in self.by_pair]

    def compute(self, pairs: Sequence[PairKey]) -> list[Sessions]:
        """The sessions of ``pairs`` over the kept span (pure: may run in a thread)."""
        return sessions_between_many([self.parse(p) for p in pairs], self.lo_us, self.hi_us)

    def business(self, pairs: Sequence[PairKey], as_of_us: int) -> npt.NDArray[np.int64]:
        """Business microseconds of the hour, day and week windows, one row per pair."""
        missing = self.missing(pairs, as_of_us)
        if missing:
            self.by_pair.update(zip(missing, self.compute(missing), strict=True))
        return business_of_sessions([self.by_pair[p] for p in pairs], as_of_us)


def coverage_values(found: Coverage) -> list[float]:
    """The six extra columns of a row, as numbers (see COVERAGE_HEADER)."""
    units = [unit for _, unit in WINDOWS] * 2
    values = [*found.business_us, *found.unobserved_us]
    return [float(format_hundredths(v, u)) for v, u in zip(values, units, strict=True)]


def pack_sums(rows: Iterable[StoreWindows]) -> bytes:
    """Exact sums of report rows (in CSV order) as little-endian int64: up x3, down x3."""
    flat = array("q")
    for row in sorted(rows, key=lambda r: r.store_id):
        flat.extend(row.up_us)
        flat.extend(row.down_us)
    if flat.itemsize != 8:  # pragma: no cover - every supported platform has 8-byte q
        raise RuntimeError("int64 array expected")
    if sys.byteorder != "little":  # pragma: no cover
        flat.byteswap()
    return flat.tobytes()


def unpack_sums(store_ids: Sequence[str], packed: bytes) -> list[StoreWindows]:
    flat = array("q")
    flat.frombytes(packed)
    if sys.byteorder != "little":  # pragma: no cover
        flat.byteswap()
    if len(flat) != SUMS_PER_ROW * len(store_ids):
        raise ValueError("stored sums do not match the report's rows")
    rows = []
    for i, store_id in enumerate(store_ids):
        s = flat[SUMS_PER_ROW * i : SUMS_PER_ROW * (i + 1)]
        rows.append(StoreWindows(store_id, (s[0], s[1], s[2]), (s[3], s[4], s[5])))
    return rows
