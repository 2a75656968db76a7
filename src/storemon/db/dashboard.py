"""The dashboard's reads. Everything comes from the aggregates the worker keeps; no raw
poll file is read. Pure helpers shape the rows; the async functions only query.

* the fleet's business-hours up and down per UTC hour, from the running hour sums of
  ``store_days`` (summed per day and hour index over every store, then differenced);
* one store's week: its business sessions (from its schedule and zone), its status runs
  (merged where the stored runs were cut at hour boundaries) and its polls;
* the newest reports.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import orjson

from storemon.aggregates.schedule import Schedule, WeeklyInterval, sessions_between
from storemon.aggregates.timebase import DAY_US, HOUR_US, floor_to

if TYPE_CHECKING:
    from storemon.db import Connection


# ------------------------------------------------------------------------------ pure shaping


def hours_from_running_sums(
    rows: Iterable[tuple[int, int, int, int]], lo_us: int, hi_us: int
) -> list[tuple[int, int, int]]:
    """(day start, 1-based index i, sum of up_before[i], sum of down_before[i]) rows ->
    (hour start, up, down) of every whole hour in [lo_us, hi_us), oldest first.

    A sum of running sums is the running sum of the sums, so hour h of a day is entry h + 2
    minus entry h + 1, as for one store."""
    by_day: dict[int, dict[int, tuple[int, int]]] = defaultdict(dict)
    for day, index, up, down in rows:
        by_day[day][index] = (up, down)
    hours: list[tuple[int, int, int]] = []
    for hour in range(floor_to(lo_us, HOUR_US), hi_us, HOUR_US):
        if hour < lo_us:
            continue
        day = floor_to(hour, DAY_US)
        h = (hour - day) // HOUR_US
        sums = by_day.get(day, {})
        after, before = sums.get(h + 2, (0, 0)), sums.get(h + 1, (0, 0))
        hours.append((hour, after[0] - before[0], after[1] - before[1]))
    return hours


def merge_runs(
    flat_runs: Iterable[Sequence[int]], lo_us: int, hi_us: int
) -> list[tuple[int, int, bool]]:
    """Flat ``[start, end, active, ...]`` arrays (one per day) -> (start, end, active) runs
    clipped to [lo_us, hi_us), neighbours of the same status joined."""
    merged: list[tuple[int, int, bool]] = []
    for flat in flat_runs:
        for i in range(0, len(flat), 3):
            start, end, active = max(flat[i], lo_us), min(flat[i + 1], hi_us), bool(flat[i + 2])
            if end <= start:
                continue
            if merged and merged[-1][1] == start and merged[-1][2] == active:
                merged[-1] = (merged[-1][0], end, active)
            else:
                merged.append((start, end, active))
    return merged


def with_open_tail(
    runs: list[tuple[int, int, bool]],
    last_poll_us: int | None,
    last_active: bool | None,
    tail_end_us: int | None,
    lo_us: int,
    hi_us: int,
) -> list[tuple[int, int, bool]]:
    """The stored runs end at the last poll in business hours; a report extends that poll's
    status to the end of its session or to the report time (the open tail). So does the
    chart, to show what the report counts."""
    if last_poll_us is None or last_active is None or tail_end_us is None:
        return runs
    start, end = max(last_poll_us, lo_us), min(tail_end_us, hi_us)
    if end <= start:
        return runs
    if runs and runs[-1][1] == start and runs[-1][2] == last_active:
        return [*runs[:-1], (runs[-1][0], end, last_active)]
    return [*runs, (start, end, last_active)]


def clipped_sessions(
    schedule: Schedule, zone: str, lo_us: int, hi_us: int
) -> list[tuple[int, int]]:
    sessions = sessions_between(schedule, zone, lo_us, hi_us)
    spans = zip(sessions.starts, sessions.ends, strict=True)
    return [(max(a, lo_us), min(b, hi_us)) for a, b in spans if min(b, hi_us) > max(a, lo_us)]


# ------------------------------------------------------------------------------ queries


async def fleet_hours(conn: Connection, lo_us: int, hi_us: int) -> list[tuple[int, int, int]]:
    """(hour start, up_us, down_us) of the whole fleet for every hour in [lo_us, hi_us)."""
    rows = await conn.fetch(
        "SELECT d.day_start_us, t.i, sum(t.up)::bigint AS up, sum(t.down)::bigint AS down"
        " FROM store_days d,"
        " unnest(d.up_before_us, d.down_before_us) WITH ORDINALITY AS t(up, down, i)"
        " WHERE d.day_start_us >= $1 AND d.day_start_us < $2"
        " GROUP BY d.day_start_us, t.i",
        floor_to(lo_us, DAY_US),
        hi_us,
    )
    return hours_from_running_sums(
        ((r["day_start_us"], r["i"], r["up"], r["down"]) for r in rows), lo_us, hi_us
    )


@dataclass(frozen=True, slots=True)
class FleetMarks:
    """What the fleet page reads on every request, in one statement's snapshot."""

    newest_poll_us: int | None
    pruned_before_us: int | None
    version: int  # the aggregates' version (migration 0004)


async def fleet_marks(conn: Connection) -> FleetMarks:
    row = await conn.fetchrow(
        "SELECT (SELECT max(newest_poll_us) FROM stores) AS newest_poll_us,"
        " (SELECT pruned_before_us FROM retention_mark) AS pruned_before_us,"
        " (SELECT version FROM aggregates_version) AS version"
    )
    assert row is not None
    return FleetMarks(row["newest_poll_us"], row["pruned_before_us"], row["version"])


@dataclass(frozen=True, slots=True)
class StoreWeek:
    store_id: str
    zone: str
    schedule: Schedule
    first_poll_us: int | None
    newest_poll_us: int | None
    sessions: list[tuple[int, int]]
    runs: list[tuple[int, int, bool]]
    polls: list[tuple[int, bool]]


async def store_week(conn: Connection, store_id: str, lo_us: int, hi_us: int) -> StoreWeek | None:
    store = await conn.fetchrow(
        "SELECT schedule::text AS schedule, zone, first_poll_us, newest_poll_us,"
        " last_poll_us, last_active, tail_end_us FROM stores WHERE store_id = $1",
        store_id,
    )
    if store is None:
        return None
    days = await conn.fetch(
        "SELECT runs, poll_ts_us, poll_active FROM store_days"
        " WHERE store_id = $1 AND day_start_us > $2 AND day_start_us < $3"
        " ORDER BY day_start_us",
        store_id,
        lo_us - DAY_US,
        hi_us,
    )
    schedule: Schedule = tuple(WeeklyInterval(*i) for i in orjson.loads(store["schedule"]))
    polls = [
        (ts, bool(active))
        for day in days
        for ts, active in zip(day["poll_ts_us"], day["poll_active"], strict=True)
        if lo_us <= ts < hi_us
    ]
    return StoreWeek(
        store_id=store_id,
        zone=store["zone"],
        schedule=schedule,
        first_poll_us=store["first_poll_us"],
        newest_poll_us=store["newest_poll_us"],
        sessions=clipped_sessions(schedule, store["zone"], lo_us, hi_us),
        runs=with_open_tail(
            merge_runs((day["runs"] for day in days), lo_us, hi_us),
            store["last_poll_us"],
            store["last_active"],
            store["tail_end_us"],
            lo_us,
            hi_us,
        ),
        polls=polls,
    )


@dataclass(frozen=True, slots=True)
class ReportListing:
    report_id: uuid.UUID
    status: str
    as_of_us: int | None
    requested_as_of_us: int | None
    created_at: datetime
    finished_at: datetime | None
    row_count: int | None
    error: str | None


async def recent_reports(conn: Connection, limit: int) -> list[ReportListing]:
    rows = await conn.fetch(
        "SELECT report_id, status, as_of_us, requested_as_of_us, created_at, finished_at,"
        " row_count, error FROM reports WHERE NOT for_dashboard"
        " ORDER BY created_at DESC LIMIT $1",
        limit,
    )
    return [ReportListing(**dict(row)) for row in rows]
