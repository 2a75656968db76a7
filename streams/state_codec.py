"""How a :class:`StoreState` persists: the one codec, pure functions from a state to its
table entries and back.

A state is two kinds of entries (values orjson), so that no entry carries a store's whole
history and the work per poll does not grow with the history kept:

- the *settings entry* (table ``stores``, key ``store_id``): schedule, zone, first poll ever
  seen, cutoff of the last prune, the anchor (the newest poll before the cutoff, the status
  of the instants just after it) and the first and last UTC day that hold kept polls (two
  numbers, not the list of days: the entry keeps one size however long the history is);
- one *day entry* per such day (table ``store_polls``, key ``store_id@day_start_us``): that
  day's polls at or after the cutoff.

Hours and runs are not stored: decoding recomputes them from the polls. The layout before
the day entries (every kept poll in the settings entry, fields ``ts`` and ``active``) and
the one listing every kept day (field ``days``) are still read.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from storemon.aggregates.schedule import Schedule, WeeklyInterval
from storemon.aggregates.state import StoreState
from storemon.aggregates.timebase import DAY_US
from storemon.streams.messages import compact_json


class Layout(NamedTuple):
    """What the settings entry of a state holds. Two states with equal layouts have equal
    settings entries, so comparing layouts tells whether the entry must be written."""

    schedule: Schedule
    zone: str
    first_poll_us: int | None
    cutoff_us: int
    anchor: tuple[int, bool] | None
    days: list[int]  # the days with kept polls (at or after the cutoff), ascending


@dataclass(frozen=True, slots=True)
class Decoded:
    state: StoreState
    days: list[int]  # the day entries found, of those the settings entry names
    old_layout: bool  # read from the one-entry layout: write every day entry anew


def store_key(store_id: str) -> bytes:
    return store_id.encode()


def day_key(store_id: str, day_start_us: int) -> bytes:
    return f"{store_id}@{day_start_us}".encode()


def layout(state: StoreState) -> Layout:
    poll_ts, poll_active = state.poll_ts, state.poll_active
    cutoff = state.cutoff_us
    first_kept = bisect_left(poll_ts, cutoff)
    anchor = (poll_ts[first_kept - 1], bool(poll_active[first_kept - 1])) if first_kept else None
    days: list[int] = []
    i = first_kept
    while i < len(poll_ts):  # one step per day, not per poll
        day = poll_ts[i] - poll_ts[i] % DAY_US
        days.append(day)
        i = bisect_left(poll_ts, day + DAY_US, i)
    return Layout(state.schedule, state.zone_name, state.first_poll_us, cutoff, anchor, days)


def encode_settings(kept: Layout) -> bytes:
    # Exact-size bytes: table writes wait in numbers in Faust's producer buffer.
    return compact_json(
        {
            "schedule": [list(interval) for interval in kept.schedule],
            "zone": kept.zone,
            "first": kept.first_poll_us,
            "cutoff": kept.cutoff_us,
            "anchor": [kept.anchor[0], int(kept.anchor[1])] if kept.anchor is not None else None,
            # The span, not the list: a list of days made the entry, written about once a
            # store and day, grow with each day of history up to the retention.
            "span": [kept.days[0], kept.days[-1]] if kept.days else None,
        }
    )


def encode_day(state: StoreState, day_start_us: int) -> bytes:
    """The day entry: the day's polls at or after the cutoff."""
    poll_ts = state.poll_ts
    j = bisect_left(poll_ts, max(day_start_us, state.cutoff_us))
    k = bisect_left(poll_ts, day_start_us + DAY_US, j)
    return compact_json({"ts": poll_ts[j:k].tolist(), "active": list(state.poll_active[j:k])})


def encode(state: StoreState) -> tuple[bytes, dict[int, bytes]]:
    """Every entry of a state: the settings entry and the day entries by day."""
    kept = layout(state)
    return encode_settings(kept), {day: encode_day(state, day) for day in kept.days}


def decode(
    store_id: str,
    settings: bytes,
    day_entry: Callable[[int], bytes | None],
    *,
    horizon_us: int,
) -> Decoded:
    """The state from its settings entry and ``day_entry(day)``, the day entries it lists
    (a missing one, ``None``, holds no polls)."""
    meta = orjson.loads(settings)
    days: list[int]
    if "ts" in meta:
        polls = list(zip(meta["ts"], map(bool, meta["active"]), strict=True))
        days, old_layout = [], True
    else:
        polls = [(meta["anchor"][0], bool(meta["anchor"][1]))] if meta["anchor"] else []
        old_layout = False
        days = []
        for day in listed_days(meta):
            raw = day_entry(day)
            if raw is not None:
                days.append(day)
                kept = orjson.loads(raw)
                polls.extend(zip(kept["ts"], map(bool, kept["active"]), strict=True))
    state = StoreState.restore(
        store_id,
        tuple(WeeklyInterval(*interval) for interval in meta["schedule"]),
        meta["zone"],
        horizon_us=horizon_us,
        first_poll_us=meta["first"],
        cutoff_us=meta["cutoff"],
        polls=polls,
    )
    return Decoded(state, days, old_layout)


def listed_days(meta: dict[str, Any]) -> list[int]:
    """The days whose entries a settings entry names: every day of its span (a day without
    polls has no entry), or the list the previous layout wrote."""
    if "days" in meta:
        return list(meta["days"])
    span = meta.get("span")
    if span is None:
        return []
    first: int
    last: int
    first, last = span
    return list(range(first, last + 1, DAY_US))
