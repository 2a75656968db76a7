"""The report job's reads: a report assembled from the aggregates in PostgreSQL.

No raw poll is scanned. Per window the database adds up whole days and whole hours with an
index range scan; the edge hours come with their runs, to be clipped exactly; the stores
table gives who is in the report and each store's open tail. Only when the report time lies
before a store's last poll are two polls looked up for it (an index probe each). Then the
core finishes every row, with the same code the in-memory state uses.

All reads run in one REPEATABLE READ transaction: one consistent snapshot.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncpg
import orjson

from storemon.aggregates.report import StoreWindows, render_csv
from storemon.aggregates.schedule import Schedule, Sessions, WeeklyInterval, sessions_between
from storemon.aggregates.state import StoreSummary
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
    probes = await conn.fetch(
        "SELECT s.store_id, s.lo, s.hi,"
        " (SELECT ARRAY[p.ts_us, p.active::int] FROM polls p WHERE p.store_id = s.store_id"
        "   AND p.ts_us >= s.lo AND p.ts_us <= $4 ORDER BY p.ts_us DESC LIMIT 1) AS before,"
        " (SELECT ARRAY[p.ts_us, p.active::int] FROM polls p WHERE p.store_id = s.store_id"
        "   AND p.ts_us > $4 AND p.ts_us < s.hi ORDER BY p.ts_us LIMIT 1) AS after"
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
        edges = await conn.fetch(
            "SELECT store_id, hour_start_us, runs FROM hourly WHERE hour_start_us = ANY($1::bigint[])",
            edge_hours,
        )
        edge_runs: dict[int, list[tuple[str, list[int]]]] = defaultdict(list)
        for row in edges:
            edge_runs[row["hour_start_us"]].append((row["store_id"], row["runs"]))
        for plan in plans:
            totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
            for store_id, (up, down) in (
                await _range_sums(conn, "hourly", "hour_start_us", list(plan.hour_ranges))
            ).items():
                totals[store_id][0] += up
                totals[store_id][1] += down
            if plan.day_range is not None:
                for store_id, (up, down) in (
                    await _range_sums(conn, "daily", "day_start_us", [plan.day_range])
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
