"""Where an assembled report's time goes, on a database a benchmark left behind.

    .venv/bin/python bench/report_split.py [--database NAME] [--rounds 7]

Times ``assemble_report`` (read: its transaction; finish: the core's rows; render: the CSV)
and storing the CSV in a ``reports`` row (a scratch row, deleted afterwards), at the
default report time and at report times 5 and 30 hours before it, 17 minutes into the hour
(a report before the newest poll also looks up polls). By default the newest ``bench-*``
database of the local PostgreSQL. Prints the median of each phase.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from benchdb import open_bench_database  # noqa: E402

from storemon.aggregates.timebase import HOUR_US, MINUTE_US, floor_to  # noqa: E402
from storemon.db import reports as db_reports  # noqa: E402
from storemon.db.assemble import assemble_report, newest_poll_us  # noqa: E402


async def main(database: str | None, rounds: int) -> None:
    pool = await open_bench_database(database)
    async with pool.acquire() as conn:
        newest = await newest_poll_us(conn)
    assert newest is not None
    moments: dict[str, int | None] = {"default": None}
    for hours in (5, 30):
        moments[f"newest - {hours} h, :17"] = floor_to(newest - hours * HOUR_US, HOUR_US) + (
            17 * MINUTE_US
        )
    print(f"database {database}, {rounds} rounds")
    for name, as_of in moments.items():
        phases: dict[str, list[float]] = {}
        rows = 0
        for _ in range(rounds):
            built = await assemble_report(pool, as_of)
            rows = built.row_count
            for key, value in built.timings.items():
                phases.setdefault(key, []).append(value)
            report_id = uuid.uuid4()
            await db_reports.create_report(pool, report_id, as_of)
            began = time.perf_counter()
            await db_reports.complete_report(
                pool, report_id, built.as_of_us, built.csv_text, built.row_count
            )
            phases.setdefault("store_s", []).append(time.perf_counter() - began)
            await pool.execute("DELETE FROM reports WHERE report_id = $1", report_id)
        total = sum(statistics.median(v) for v in phases.values())
        split = ", ".join(
            f"{k[:-2]} {statistics.median(v) * 1000:.0f} ms" for k, v in phases.items()
        )
        print(f"{name:<22} {rows} stores: {total * 1000:.0f} ms = {split}")
    await pool.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", default=None)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    asyncio.run(main(args.database, args.rounds))
