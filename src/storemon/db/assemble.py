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
from storemon.aggregates.timeline import up_down_us
from storemon.aggregates.windows import AsOfFix, as_of_fix, plan_report, windows_from_buckets
from storemon.db.aggregates import unflatten_runs

if TYPE_CHECKING:
    from storemon.db import Connection


class NoData(RuntimeError):
    """Nothing ingested yet, so there is no default report time."""


@dataclass(frozen=True, slots=True)
class AssembledReport:
    as_of_us: int
    csv_text: str
    row_count: int


async def newest_poll_us(conn: Connection) -> int | None:
    value: int | None = await conn.fetchval("SELECT max(newest_poll_us) FROM stores")
    return value


async def _range_sums(
    conn: Connection, table: str, column: str, ranges: list[tuple[int, int]]
) -> dict[str, tuple[int, int]]:
    if not ranges:
        return {}
    starts = [a for a, _ in ranges]
    ends = [b for _, b in ranges]
    rows = await conn.fetch(
        f"SELECT t.store_id, sum(t.up_us)::bigint AS up, sum(t.down_us)::bigint AS down"
        f" FROM unnest($1::bigint[], $2::bigint[]) AS r(lo, hi)"
        f" JOIN {table} t ON t.{column} >= r.lo AND t.{column} < r.hi"
        f" GROUP BY t.store_id",
        starts,
        ends,
    )
    return {r["store_id"]: (r["up"], r["down"]) for r in rows}


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


async def _hour_sums(
    conn: Connection, ranges: Iterable[tuple[int, int]]
) -> dict[str, tuple[int, int]]:
    pieces = _split_by_day(ranges)
    if not pieces:
        return {}
    rows = await conn.fetch(
        "SELECT d.store_id, sum(x.up)::bigint AS up, sum(x.down)::bigint AS down"
        " FROM unnest($1::bigint[], $2::int[], $3::int[]) AS r(day, a, b)"
        " JOIN store_days d ON d.day_start_us = r.day"
        " CROSS JOIN LATERAL unnest(d.hour_up_us[r.a + 1 : r.b], d.hour_down_us[r.a + 1 : r.b])"
        "   AS x(up, down)"
        " GROUP BY d.store_id",
        [p[0] for p in pieces],
        [p[1] for p in pieces],
        [p[2] for p in pieces],
    )
    return {r["store_id"]: (r["up"], r["down"]) for r in rows}


async def _edge_runs(conn: Connection, hours: list[int]) -> dict[int, list[tuple[str, list[int]]]]:
    """hour -> (store, the hour's flat runs) for every store with runs in it."""
    found: dict[int, list[tuple[str, list[int]]]] = defaultdict(list)
    if not hours:
        return found
    rows = await conn.fetch(
        "SELECT d.store_id, r.hour,"
        " d.runs[d.run_bounds[r.h + 1] + 1 : d.run_bounds[r.h + 2]] AS runs"
        " FROM unnest($1::bigint[], $2::bigint[], $3::int[]) AS r(hour, day, h)"
        " JOIN store_days d ON d.day_start_us = r.day"
        " WHERE d.run_bounds[r.h + 2] > d.run_bounds[r.h + 1]",
        hours,
        [floor_to(h, DAY_US) for h in hours],
        [(h - floor_to(h, DAY_US)) // HOUR_US for h in hours],
    )
    for row in rows:
        found[row["hour"]].append((row["store_id"], row["runs"]))
    return found


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


async def assemble_report(pool: asyncpg.Pool, requested_as_of_us: int | None) -> AssembledReport:
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        as_of_us = (
            requested_as_of_us if requested_as_of_us is not None else await newest_poll_us(conn)
        )
        if as_of_us is None:
            raise NoData("no poll has been ingested yet")
        plans = plan_report(as_of_us)
        stores = await conn.fetch(
            "SELECT store_id, first_poll_us, last_poll_us, last_active, tail_end_us, schedule::text"
            " AS schedule, zone FROM stores WHERE first_poll_us <= $1",
            as_of_us,
        )
        per_window: list[dict[str, list[int]]] = []
        edge_hours = sorted({h for plan in plans for h in plan.edge_hours})
        edge_runs = await _edge_runs(conn, edge_hours)
        for plan in plans:
            totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
            for store_id, (up, down) in (await _hour_sums(conn, plan.hour_ranges)).items():
                totals[store_id][0] += up
                totals[store_id][1] += down
            if plan.day_range is not None:
                for store_id, (up, down) in (
                    await _range_sums(conn, "store_days", "day_start_us", [plan.day_range])
                ).items():
                    totals[store_id][0] += up
                    totals[store_id][1] += down
            for hour in plan.edge_hours:
                for store_id, flat in edge_runs.get(hour, ()):
                    up, down = up_down_us(unflatten_runs(flat), plan.lo_us, plan.hi_us)
                    totals[store_id][0] += up
                    totals[store_id][1] += down
            per_window.append(totals)
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
    return AssembledReport(as_of_us, render_csv(rows), len(rows))
