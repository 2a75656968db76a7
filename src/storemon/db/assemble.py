"""The report job's reads: a report assembled from the aggregates in PostgreSQL.

No raw poll is scanned. Per window the database adds up whole days (an index range scan of
``store_days``) and whole hours (slices of the days' hour arrays, summed in the database);
the edge hours come with their runs, sliced out of the day's runs, to be clipped exactly; the
stores table gives who is in the report and each store's open tail. Only when the report time
lies before a store's last poll are two polls looked up for it (in one or two of its days).
Then the core finishes every row, with the same code the in-memory state uses.

All reads run in one REPEATABLE READ transaction: one consistent snapshot.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncpg
import orjson

from storemon.aggregates.report import StoreWindows, render_csv
from storemon.aggregates.schedule import Schedule, Sessions, WeeklyInterval, sessions_between
from storemon.aggregates.state import StoreSummary
from storemon.aggregates.timebase import DAY_US, HOUR_US, floor_to
from storemon.aggregates.windows import (
    AsOfFix,
    WindowPlan,
    as_of_fix,
    plan_report,
    windows_from_buckets,
)

if TYPE_CHECKING:
    from storemon.db import Connection


class NoData(RuntimeError):
    """Nothing ingested yet, so there is no default report time."""


@dataclass(frozen=True, slots=True)
class AssembledReport:
    as_of_us: int
    csv_text: str
    row_count: int
    rows: tuple[StoreWindows, ...] = ()


async def newest_poll_us(conn: Connection) -> int | None:
    value: int | None = await conn.fetchval("SELECT max(newest_poll_us) FROM stores")
    return value


def _split_by_day(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """[a, b) ranges of whole hours -> (day start, first hour index, end hour index)."""
    pieces: list[tuple[int, int, int]] = []
    for lo, hi in ranges:
        while lo < hi:
            day = floor_to(lo, DAY_US)
            end = min(hi, day + DAY_US)
            pieces.append((day, (lo - day) // HOUR_US, (end - day) // HOUR_US))
            lo = end
    return pieces


async def _window_sums(
    conn: Connection, plans: list[WindowPlan], only_store: str | None = None
) -> list[dict[str, list[int]]]:
    """Per window, store -> [up_us, down_us] of its buckets.

    One statement adds whole days (their totals) and whole hours (two running sums of their
    day subtracted), joining each piece to its store-days by the day; a second one fetches
    the runs of the edge hours (sliced out of each day's runs, at most four distinct hours),
    which are clipped to the window here. With ``only_store``, that store's rows alone."""
    # A separate statement text per case: a store filter written as "$n IS NULL OR ..."
    # would give the whole-fleet statement a plan made for one store.
    store_filter = " AND d.store_id = $5" if only_store is not None else ""
    store_arg = [only_store] if only_store is not None else []
    pieces: list[tuple[int, int, int, int]] = []  # window, day, first hour, end hour (-1: all)
    edges: dict[int, list[int]] = defaultdict(list)  # edge hour -> the windows it cuts
    for w, plan in enumerate(plans):
        if plan.day_range is not None:
            pieces.extend((w, day, -1, -1) for day in range(*plan.day_range, DAY_US))
        pieces.extend((w, day, a, b) for day, a, b in _split_by_day(plan.hour_ranges))
        for hour in plan.edge_hours:
            edges[hour].append(w)
    totals: list[dict[str, list[int]]] = [defaultdict(lambda: [0, 0]) for _ in plans]
    if pieces:
        rows = await conn.fetch(
            "SELECT d.store_id, p.w,"
            " sum(CASE WHEN p.a < 0 THEN d.up_us"
            "   ELSE d.up_before_us[p.b + 1] - d.up_before_us[p.a + 1] END)::bigint AS up,"
            " sum(CASE WHEN p.a < 0 THEN d.down_us"
            "   ELSE d.down_before_us[p.b + 1] - d.down_before_us[p.a + 1] END)::bigint AS down"
            " FROM unnest($1::int[], $2::bigint[], $3::int[], $4::int[]) AS p(w, day, a, b)"
            " JOIN store_days d ON d.day_start_us = p.day"
            + store_filter
            + " GROUP BY d.store_id, p.w",
            *(list(column) for column in zip(*pieces, strict=True)),
            *store_arg,
        )
        for row in rows:
            sums = totals[row["w"]][row["store_id"]]
            sums[0] += row["up"]
            sums[1] += row["down"]
    if edges:
        hours = sorted(edges)
        rows = await conn.fetch(
            "SELECT d.store_id, r.hour,"
            " d.runs[d.run_bounds[r.h + 1] + 1 : d.run_bounds[r.h + 2]] AS runs"
            " FROM unnest($1::bigint[], $2::bigint[], $3::int[]) AS r(hour, day, h)"
            " JOIN store_days d ON d.day_start_us = r.day"
            " WHERE d.run_bounds[r.h + 2] > d.run_bounds[r.h + 1]"
            + store_filter.replace("$5", "$4"),
            hours,
            [floor_to(h, DAY_US) for h in hours],
            [(h - floor_to(h, DAY_US)) // HOUR_US for h in hours],
            *store_arg,
        )
        for row in rows:
            flat = row["runs"]
            for w in edges[row["hour"]]:
                lo, hi = plans[w].lo_us, plans[w].hi_us
                sums = totals[w][row["store_id"]]
                for i in range(0, len(flat), 3):
                    overlap = min(flat[i + 1], hi) - max(flat[i], lo)
                    if overlap > 0:
                        sums[0 if flat[i + 2] else 1] += overlap
    return totals


async def _as_of_fixes(
    conn: Connection, stores: list[asyncpg.Record], as_of_us: int
) -> dict[str, AsOfFix]:
    """Fixes for the stores whose last poll in business hours lies after the report time."""
    ids: list[str] = []
    los: list[int] = []
    his: list[int] = []
    for row in stores:
        if row["last_poll_us"] is None or row["last_poll_us"] <= as_of_us:
            continue
        schedule: Schedule = tuple(WeeklyInterval(*i) for i in orjson.loads(row["schedule"]))
        sessions = sessions_between(schedule, row["zone"], as_of_us, as_of_us + 1)
        i = sessions.index_containing(as_of_us)
        if i >= 0:
            ids.append(row["store_id"])
            los.append(sessions.starts[i])
            his.append(sessions.ends[i])
    if not ids:
        return {}
    # The days searched are those that can hold a poll of the range (a day holds the polls
    # of [day, day + 1 day)); the primary key finds them.
    probes = await conn.fetch(
        "SELECT s.store_id, s.lo, s.hi,"
        " (SELECT ARRAY[p.ts, p.a::int] FROM store_days d,"
        "   unnest(d.poll_ts_us, d.poll_active) AS p(ts, a)"
        "   WHERE d.store_id = s.store_id"
        "   AND d.day_start_us > s.lo - 86400000000 AND d.day_start_us <= $4"
        "   AND p.ts >= s.lo AND p.ts <= $4 ORDER BY p.ts DESC LIMIT 1) AS before,"
        " (SELECT ARRAY[p.ts, p.a::int] FROM store_days d,"
        "   unnest(d.poll_ts_us, d.poll_active) AS p(ts, a)"
        "   WHERE d.store_id = s.store_id"
        "   AND d.day_start_us > $4 - 86400000000 AND d.day_start_us < s.hi"
        "   AND p.ts > $4 AND p.ts < s.hi ORDER BY p.ts LIMIT 1) AS after"
        " FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS s(store_id, lo, hi)",
        ids,
        los,
        his,
        as_of_us,
    )
    fixes: dict[str, AsOfFix] = {}
    for probe in probes:
        polls = [p for p in (probe["before"], probe["after"]) if p is not None]
        fix = as_of_fix(
            Sessions([probe["lo"]], [probe["hi"]]),
            [p[0] for p in polls],
            [p[1] for p in polls],
            as_of_us,
        )
        if fix is not None:
            fixes[probe["store_id"]] = fix
    return fixes


async def assemble_report(
    pool: asyncpg.Pool, requested_as_of_us: int | None, only_store: str | None = None
) -> AssembledReport:
    """The report as of ``requested_as_of_us`` (None: the newest poll), of every store or,
    with ``only_store``, of that one (its row, computed exactly as in the full report)."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        # The statements read every store's days once: JIT compilation (triggered by the
        # planner's guess for generate_series) cost more than the query, and the sorts and
        # hashes of the grouping fit in memory.
        await conn.execute("SET LOCAL jit = off; SET LOCAL work_mem = '64MB'")
        as_of_us = (
            requested_as_of_us if requested_as_of_us is not None else await newest_poll_us(conn)
        )
        if as_of_us is None:
            raise NoData("no poll has been ingested yet")
        plans = plan_report(as_of_us)
        stores = await conn.fetch(
            "SELECT store_id, first_poll_us, last_poll_us, last_active, tail_end_us, schedule::text"
            " AS schedule, zone FROM stores WHERE first_poll_us <= $1"
            + (" AND store_id = $2" if only_store is not None else ""),
            as_of_us,
            *([only_store] if only_store is not None else []),
        )
        per_window = await _window_sums(conn, plans, only_store)
        fixes = await _as_of_fixes(conn, list(stores), as_of_us)
    rows: list[StoreWindows] = []
    for store in stores:
        store_id = store["store_id"]
        summary = StoreSummary(
            store["first_poll_us"],
            store["last_poll_us"],
            bool(store["last_active"]),
            store["tail_end_us"] if store["tail_end_us"] is not None else 0,
        )
        sums = [tuple(w.get(store_id, (0, 0))) for w in per_window]
        rows.append(
            windows_from_buckets(
                store_id, as_of_us, [(s[0], s[1]) for s in sums], summary, fixes.get(store_id)
            )
        )
    return AssembledReport(as_of_us, render_csv(rows), len(rows), tuple(rows))
