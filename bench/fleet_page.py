"""The dashboard's fleet page against a report, through the real API.

    .venv/bin/python bench/fleet_page.py --stores 14000 --days 8 [--loads 5]

Fills a fresh pipeline with a generated data set (packed replay), starts the worker with its
report index, then times, through the API run in this process:

* ``GET /dashboard/`` right after the aggregates changed (a poll delivered again: the
  numbers stay the same, the version moves on, so the page's cache cannot answer): *cold*;
* the same page asked again with nothing changed: *warm*, and its parts in process (the
  three small reads, the context, the template);
* a report at the default moment (``POST /trigger_report``, then ``GET /get_report``
  polled every 10 ms, and again with ``wait=5``: the page waits the same way), each after
  the same kind of change, so it is computed;
* a cold build step by step: the worker asked for the page's numbers (asked, answered,
  the one row read), the job's own time for them (``fleet_summary_s``), and the way of
  session 6 on the same report: its CSV and exact sums read back and unpacked, then the
  fleet's hours summed by PostgreSQL and business time from the stores table;
* how the page was built before the worker's index summed it, part by part: the fleet's
  rows assembled from PostgreSQL, their business and unobserved time with no sessions
  kept, and the fleet's hours summed by PostgreSQL.

Prints medians and writes ``bench/work/report-<stores>x<days>/fleet-page.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from stream_ingest import fresh_pipeline, serve_api, wait_worker_ready  # noqa: E402

from storemon.producers.replay import DEFAULT_PACK_HOURS, replay  # noqa: E402
from tests.integration.pipeline import Pipeline  # noqa: E402


async def touch_aggregates(pipeline: Pipeline) -> None:
    """Deliver a store's newest poll again as ``active``: a duplicate changes nothing (if the
    poll was ``inactive``, that still wins), but the aggregates' version moves on."""
    from storemon.aggregates.timebase import format_utc
    from storemon.db.assemble import aggregates_version
    from storemon.streams import messages

    assert pipeline.pool is not None
    row = await pipeline.pool.fetchrow(
        "SELECT store_id, newest_poll_us FROM stores WHERE newest_poll_us IS NOT NULL LIMIT 1"
    )
    async with pipeline.pool.acquire() as conn:
        before = await aggregates_version(conn)
    store_id, stamp = row["store_id"], format_utc(row["newest_poll_us"])
    await pipeline.publish(
        [(messages.POLLS, store_id, messages.poll_message(store_id, stamp, "active"))]
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        async with pipeline.pool.acquire() as conn:
            if await aggregates_version(conn) != before:
                return
        await asyncio.sleep(0.02)
    raise TimeoutError("the poll delivered again never reached PostgreSQL")


async def main(stores: int, days: int, loads: int) -> dict[str, Any]:
    import aiohttp
    from aiohttp.test_utils import make_mocked_request

    from storemon.aggregates.coverage import unpack_sums
    from storemon.aggregates.reach import supported_range
    from storemon.db import reports as db_reports
    from storemon.db.assemble import AssembledReport, assemble_report
    from storemon.web import dashboard, formats
    from storemon.web.keys import SETTINGS

    _, work, data, pipeline = await fresh_pipeline("report", stores, days)
    assert pipeline.pool is not None
    # The worker first, then a replay packed by week (as `storemon replay` does by default).
    pipeline.start_worker()
    await wait_worker_ready(pipeline)
    await replay(
        pipeline.settings, data, speedup=None, progress=False, pack_hours=DEFAULT_PACK_HOURS
    )
    await pipeline.wait_consumed(timeout_s=7200)
    await pipeline.wait_report_index(timeout_s=600)

    runner, base = await serve_api(pipeline.settings)
    timings: dict[str, list[float]] = {"cold": [], "warm": [], "report": [], "report_wait": []}
    parts: dict[str, list[float]] = {"rows": [], "coverage": [], "hours": []}
    # A cold build step by step: the worker asked for the page's numbers (one row read
    # back), the job's share of them, and session 6's way on the same report.
    steps: dict[str, list[float]] = {
        "worker_summary": [],
        "job_fleet_summary": [],
        "session6_read_back": [],
        "session6_hours_and_coverage": [],
    }
    warm_parts: dict[str, list[float]] = {"reads": [], "context": [], "template": []}
    try:
        async with aiohttp.ClientSession() as session:

            async def page() -> float:
                t0 = time.perf_counter()
                async with session.get(f"{base}/dashboard/") as response:
                    assert response.status == 200, response.status
                    await response.read()
                return time.perf_counter() - t0

            async def report(wait: bool = False) -> float:
                t0 = time.perf_counter()
                async with session.post(f"{base}/trigger_report") as response:
                    report_id = (await response.json())["report_id"]
                params = {"report_id": report_id, **({"wait": "5"} if wait else {})}
                while True:
                    async with session.get(f"{base}/get_report", params=params) as response:
                        if response.content_type == "text/csv":
                            await response.read()
                            return time.perf_counter() - t0
                    await asyncio.sleep(0.01)

            async def warm_split() -> None:
                """The warm page's parts, in process (the API runs in this process)."""
                app = runner.app
                t0 = time.perf_counter()
                async with pipeline.pool.acquire() as conn:
                    marks = await dashboard.queries.fleet_marks(conn)
                t1 = time.perf_counter()
                settings = app[SETTINGS]
                allowed = supported_range(
                    marks.newest_poll_us, settings.reach_us, settings.lead_us, None
                )
                assert allowed is not None
                assert fleet.summary is not None
                context = dashboard.fleet_context(
                    fleet.summary,
                    allowed,
                    settings.report_reach_hours,
                    settings.report_lead_hours,
                )
                t2 = time.perf_counter()
                request = make_mocked_request("GET", "/dashboard/", app=app)
                dashboard.render(request, "fleet.html", context)
                t3 = time.perf_counter()
                warm_parts["reads"].append(t1 - t0)
                warm_parts["context"].append(t2 - t1)
                warm_parts["template"].append(t3 - t2)

            fleet = runner.app[dashboard.FLEET]
            t0 = time.perf_counter()
            await page()  # the first page after start-up: templates, every pair's sessions
            first_page_s = time.perf_counter() - t0
            built_from: list[str] = []
            session6_sessions = dashboard.stored_pairs_sessions()
            for _ in range(loads):
                await touch_aggregates(pipeline)
                # The cache keeps a page of the same newest poll for a minute: drop it.
                fleet.summary = None
                timings["cold"].append(await page())
                built_from.append(fleet.built_from)
                timings.setdefault("cold_build", []).append(fleet.build_s)
                timings["warm"].append(await page())
                await warm_split()
                await touch_aggregates(pipeline)
                timings["report"].append(await report())
                await touch_aggregates(pipeline)
                timings["report_wait"].append(await report(wait=True))
                newest = await pipeline.pool.fetchval("SELECT max(newest_poll_us) FROM stores")
                t0 = time.perf_counter()
                assembled = await assemble_report(pipeline.pool, newest, with_digest=True)
                t1 = time.perf_counter()
                await dashboard.fleet_coverage(
                    pipeline.pool, assembled, dashboard.stored_pairs_sessions()
                )
                t2 = time.perf_counter()
                async with pipeline.pool.acquire() as conn:
                    hour = 3_600_000_000
                    top = newest - newest % hour
                    await dashboard.queries.fleet_hours(conn, top - 167 * hour, top + hour)
                t3 = time.perf_counter()
                parts["rows"].append(t1 - t0)
                parts["coverage"].append(t2 - t1)
                parts["hours"].append(t3 - t2)
                await touch_aggregates(pipeline)
                t0 = time.perf_counter()
                found = await dashboard.fleet_from_the_worker(runner.app, fleet.sessions)
                t1 = time.perf_counter()
                assert found is not None
                assert found[2] == "worker", found[2]
                steps["worker_summary"].append(t1 - t0)
                row = await pipeline.pool.fetchrow(
                    "SELECT report_id, as_of_us, data_version, schedules_digest,"
                    " (timings->>'fleet_summary_s')::float8 AS job_s FROM reports"
                    " WHERE for_dashboard ORDER BY created_at DESC LIMIT 1"
                )
                steps["job_fleet_summary"].append(row["job_s"])
                # Session 6's way on the same report: read back, unpack, sum here.
                t0 = time.perf_counter()
                csv_text = await db_reports.get_report_csv(pipeline.pool, row["report_id"])
                packed, digest = await db_reports.get_report_exact(pipeline.pool, row["report_id"])
                assert csv_text is not None
                assert packed is not None
                rows = await asyncio.to_thread(unpack_sums, formats.store_ids(csv_text), packed)
                steps["session6_read_back"].append(time.perf_counter() - t0)
                assembled_again = AssembledReport(
                    row["as_of_us"],
                    "",
                    len(rows),
                    rows=tuple(rows),
                    data_version=row["data_version"],
                    schedules_digest=digest,
                )
                if not session6_sessions.by_pair:  # as session 6 measured: sessions kept
                    await dashboard.summary_of_report(
                        pipeline.pool, assembled_again, session6_sessions
                    )
                t1 = time.perf_counter()
                same = await dashboard.summary_of_report(
                    pipeline.pool, assembled_again, session6_sessions
                )
                t2 = time.perf_counter()
                assert same == found[0], "the two ways disagree"
                steps["session6_hours_and_coverage"].append(t2 - t1)
    finally:
        await runner.cleanup()
        await pipeline.close()

    def med(values: list[float]) -> float:
        return round(statistics.median(values), 4)

    result: dict[str, Any] = {
        "stores": stores,
        "days": days,
        "loads": loads,
        "first_page_s": round(first_page_s, 4),
        "cold_built_from": built_from,
        **{f"{k}_median_s": med(v) for k, v in timings.items()},
        **{f"cold_part_{k}_median_s": med(v) for k, v in parts.items()},
        **{f"cold_step_{k}_median_s": med(v) for k, v in steps.items()},
        **{f"warm_part_{k}_median_s": med(v) for k, v in warm_parts.items()},
        "all": {**timings, **parts, **steps, **{f"warm_{k}": v for k, v in warm_parts.items()}},
    }
    result["cold_over_report"] = round(result["cold_median_s"] / result["report_median_s"], 2)
    result["cold_over_report_wait"] = round(
        result["cold_median_s"] / result["report_wait_median_s"], 2
    )
    old_way = sum(result[f"cold_part_{k}_median_s"] for k in parts)
    result["old_way_over_cold"] = round(old_way / result["cold_median_s"], 2)
    (work / "fleet-page.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stores", type=int, default=2000)
    parser.add_argument("--days", type=int, default=8)
    parser.add_argument("--loads", type=int, default=5)
    args = parser.parse_args()
    outcome = asyncio.run(main(args.stores, args.days, args.loads))
    for key, value in outcome.items():
        if key != "all":
            print(f"{key:<32} {value}")
