"""The store-day row's arrays on their way to PostgreSQL: the sink's text form, cast by the
server, against asyncpg's binary array encoding of the same rows (what the sink did before
session 11), alternating in one run.

    .venv/bin/python bench/sink_arrays.py [--rows 14000] [--rounds 5]

Uses the database of `storemon services up` (or STOREMON_DATABASE_URL), temporary tables
only. Per row: the worker's CPU (building the records and encoding the COPY, process time)
and the wall time of COPY plus the INSERT into a table shaped like ``store_days``. Checks
that both ways store the same values.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from itertools import accumulate
from typing import Any

import asyncpg

from storemon import services
from storemon.aggregates.state import DayRecord
from storemon.aggregates.timebase import DAY_US, HOUR_US
from storemon.db.sink import SinkBatch, sink_records
from storemon.settings import Settings

DAY = 19_675 * DAY_US
COLUMNS = (
    "store_id, day_start_us, up_us, down_us, up_before_us, down_before_us, runs, run_bounds,"
    " poll_ts_us, poll_active"
)
SHAPE = (
    "store_id text, day_start_us bigint, up_us bigint, down_us bigint, up_before_us bigint[],"
    " down_before_us bigint[], runs bigint[], run_bounds integer[], poll_ts_us bigint[],"
    " poll_active boolean[]"
)
CASTS = (
    "store_id, day_start_us, up_us, down_us, up_before_us::bigint[], down_before_us::bigint[],"
    " runs::bigint[], run_bounds::integer[], poll_ts_us::bigint[], poll_active::boolean[]"
)


def live_day(seed: int) -> DayRecord:
    """A full day of a store open around the clock: 24 polls, a run per hour."""
    hour_up = [(seed * 7_919 + h * 104_729) % HOUR_US for h in range(24)]
    runs = [v for h in range(24) for v in (DAY + h * HOUR_US, DAY + (h + 1) * HOUR_US, h % 2)]
    return DayRecord(
        up_us=sum(hour_up),
        down_us=24 * HOUR_US - sum(hour_up),
        hour_up_us=hour_up,
        hour_down_us=[HOUR_US - up for up in hour_up],
        runs=runs,
        run_bounds=[3 * h for h in range(25)],
        poll_ts_us=[DAY + h * HOUR_US + seed % HOUR_US for h in range(24)],
        poll_active=[(h + seed) % 3 != 0 for h in range(24)],
    )


def binary_records(batch: SinkBatch) -> list[tuple[Any, ...]]:
    return [
        (
            store,
            day,
            r.up_us,
            r.down_us,
            list(accumulate(r.hour_up_us, initial=0)),
            list(accumulate(r.hour_down_us, initial=0)),
            r.runs,
            r.run_bounds,
            r.poll_ts_us,
            r.poll_active,
        )
        for (store, day), r in batch.days.items()
    ]


async def one_round(conn: asyncpg.Connection, batch: SinkBatch, way: str) -> tuple[float, float]:
    """(worker CPU µs per row, wall µs per row) of one way."""
    rows = len(batch.days)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    if way == "text":
        records = sink_records(batch)[1]
        await conn.copy_records_to_table("staged_text", records=records)
        await conn.execute(f"INSERT INTO landed_text SELECT {CASTS} FROM staged_text")
    else:
        await conn.copy_records_to_table("staged_binary", records=binary_records(batch))
        await conn.execute(f"INSERT INTO landed_binary SELECT {COLUMNS} FROM staged_binary")
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return 1e6 * cpu / rows, 1e6 * wall / rows


async def main(rows: int, rounds: int) -> None:
    settings = services.resolve_endpoints(Settings.from_env()).apply_to(Settings.from_env())
    conn = await asyncpg.connect(settings.database_url)
    # The columns of store_days (migrations 0002), in temporary tables of this session.
    await conn.execute(
        f"CREATE TEMP TABLE landed_binary ({SHAPE}); CREATE TEMP TABLE landed_text ({SHAPE});"
        f" CREATE TEMP TABLE staged_binary ({SHAPE});"
        " CREATE TEMP TABLE staged_text AS SELECT store_id, day_start_us, up_us, down_us,"
        " up_before_us::text, down_before_us::text, runs::text, run_bounds::text,"
        " poll_ts_us::text, poll_active::text FROM landed_binary WITH NO DATA"
    )
    batch = SinkBatch(days={(f"store-{i}", DAY): live_day(i) for i in range(rows)})
    figures: dict[str, list[tuple[float, float]]] = {"binary": [], "text": []}
    for _ in range(rounds):
        for way in ("binary", "text"):
            figures[way].append(await one_round(conn, batch, way))
            if len(figures["text"]) < rounds or way == "binary":
                await conn.execute(f"TRUNCATE staged_{way}, landed_{way}")
    # The last text round is kept: compare it with a binary round of the same rows.
    await conn.execute("TRUNCATE landed_binary")
    await one_round(conn, batch, "binary")
    differing = await conn.fetchval(
        "SELECT count(*) FROM ((TABLE landed_binary EXCEPT TABLE landed_text)"
        " UNION ALL (TABLE landed_text EXCEPT TABLE landed_binary)) d"
    )
    await conn.close()
    print(f"{rows} store-day rows a round, {rounds} rounds alternating, medians:")
    for way, runs in figures.items():
        cpu = statistics.median(c for c, _ in runs)
        wall = statistics.median(w for _, w in runs)
        print(f"  {way:6}  worker CPU {cpu:6.1f} µs/row   wall {wall:6.1f} µs/row")
    pairs = [t[0] / b[0] for b, t in zip(figures["binary"], figures["text"], strict=True)]
    print(f"  worker CPU text/binary, median of the pairs: {statistics.median(pairs):.2f}")
    print(f"  rows that differ between the two ways: {differing}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=14_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.rows, args.rounds))
