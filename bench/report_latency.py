"""Report latency through the real API: the worker's in-memory index against PostgreSQL.

    .venv/bin/python bench/report_latency.py --stores 14000 --days 8 [--runs 3]

Fills a fresh pipeline with a generated data set (a worker up, then a replay packed by week
as ``storemon replay --as-fast-as-possible`` does; ``--preload`` publishes first, ``--pack-hours
0`` one message per poll; the fill's time is recorded, but this measures reports), then,
for each run:

* with the index (the default), ``--reports`` reports at the default moment (the first is
  computed, the others reuse it: nothing changed in between) and as many at moments never
  asked before (after the newest poll, inside the lead, a new set for every run and path:
  each is computed), each timed from ``POST /trigger_report`` until ``GET /get_report``
  returns the CSV, the client asking every 10 ms (as a simple client polls); then as many
  new moments again with the client asking once with ``wait=5`` (the API answers when the
  report finishes);
* the worker restarted with ``STOREMON_REPORT_INDEX=0``: the same, from PostgreSQL;
* the batch command (``storemon report``) on the same files, the same-run baseline.

Prints and writes ``bench/work/report-<stores>x<days>/result.json``: medians per run and
over runs, each report's phases (the job's: queued, read, finish, render, compress, store;
for the computed ones the API's share, the client's time less the job's; and as the client
saw them: the trigger's answer, the answer after the report finished, the body's download
and unzip), the index's load time and the worker's RSS with and without it, and whether
every CSV equals the batch command's.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from stream_ingest import (  # noqa: E402
    command_median_s,
    fresh_pipeline,
    rss_mb,
    serve_api,
    wait_worker_ready,
)

from storemon.aggregates.timebase import MINUTE_US, format_utc  # noqa: E402
from storemon.producers.replay import DEFAULT_PACK_HOURS, replay  # noqa: E402
from storemon.streams import messages  # noqa: E402
from tests.integration.pipeline import Pipeline  # noqa: E402


async def reports_through_the_api(
    pipeline: Pipeline,
    reports: int,
    as_of: list[str] | None = None,
    wait_s: float | None = None,
) -> tuple[list[float], str, list[dict[str, Any]]]:
    """Trigger -> CSV as a client sees it: `POST /trigger_report` on the real API (run in
    this process), then `GET /get_report` every 10 ms until the CSV comes back, or, with
    ``wait_s``, with ``wait=<wait_s>`` (asked again only if still unfinished). The client
    accepts gzip, as browsers do. Returns the latencies, the last CSV and per report the
    client's moments (epoch seconds) to split the time with the reports table."""
    import aiohttp

    runner, base = await serve_api(pipeline.settings)
    latencies: list[float] = []
    moments: list[dict[str, Any]] = []
    csv_text = ""
    wait = {"wait": str(wait_s)} if wait_s is not None else {}
    try:
        async with aiohttp.ClientSession() as session:
            for i in range(reports):
                body = {"as_of": as_of[i]} if as_of is not None else None
                t0, began = time.perf_counter(), time.time()
                async with session.post(f"{base}/trigger_report", json=body) as response:
                    report_id = (await response.json())["report_id"]
                triggered = time.time()
                asks = 0
                while True:
                    asks += 1
                    query = {"report_id": report_id, **wait}
                    async with session.get(f"{base}/get_report", params=query) as response:
                        if response.content_type == "text/csv":
                            answered = time.time()
                            csv_text = await response.text()
                            break
                        status = (await response.json())["status"]
                        assert status != "Failed", status
                    if wait_s is None:
                        await asyncio.sleep(0.01)
                latencies.append(time.perf_counter() - t0)
                moments.append(
                    {
                        "report_id": report_id,
                        "began": began,
                        "triggered": triggered,
                        "answered": answered,
                        "received": time.time(),
                        "asks": asks,
                    }
                )
    finally:
        await runner.cleanup()
    return latencies, csv_text, moments


async def client_split(pipeline: Pipeline, moments: list[dict[str, Any]]) -> dict[str, float]:
    """Medians (ms) of where each report's time went, from the client's moments and the
    reports table (same machine, same clock): trigger = POST until its answer; queued =
    created until a job started it; job = started until its completing write began (sums,
    render, compress); store = that write; answer = from the write's start until the CSV's
    answer reached the client (the completion signal, the read-back, the response head; the
    store overlaps it); body = the CSV's download and unzip; asks = GETs per report."""
    assert pipeline.pool is not None
    rows = {
        str(r["report_id"]): r
        for r in await pipeline.pool.fetch(
            "SELECT report_id, extract(epoch FROM created_at)::float8 AS created,"
            " extract(epoch FROM started_at)::float8 AS started,"
            " extract(epoch FROM finished_at)::float8 AS finished, timings"
            " FROM reports WHERE report_id = ANY($1::uuid[])",
            [m["report_id"] for m in moments],
        )
    }
    parts: dict[str, list[float]] = {}
    for m in moments:
        row = rows[m["report_id"]]
        timings = json.loads(row["timings"]) if row["timings"] else {}
        found = {
            "trigger": m["triggered"] - m["began"],
            "queued": row["started"] - row["created"],
            "job": row["finished"] - row["started"],
            "store": timings.get("store_s", float("nan")),
            "answer": m["answered"] - row["finished"],
            "body": m["received"] - m["answered"],
            "asks": m["asks"] / 1000,
        }
        for name, value in found.items():
            parts.setdefault(name, []).append(value)
    return {f"{k}_ms": round(statistics.median(v) * 1000, 2) for k, v in parts.items()}


async def phases(pipeline: Pipeline, since: float) -> list[dict[str, Any]]:
    assert pipeline.pool is not None
    rows = await pipeline.pool.fetch(
        "SELECT extract(epoch FROM started_at - created_at)::float8 AS queued,"
        " extract(epoch FROM finished_at - started_at)::float8 AS running, timings,"
        " requested_as_of_us IS NULL AS default_moment"
        " FROM reports WHERE status = 'Complete' AND extract(epoch FROM created_at) >= $1",
        since,
    )
    found = []
    for row in rows:
        timings = json.loads(row["timings"]) if row["timings"] else {}
        found.append(
            {
                "queued": row["queued"],
                "running": row["running"],
                "default_moment": row["default_moment"],
                **timings,
            }
        )
    return found


def medians(rows: list[dict[str, Any]]) -> dict[str, float]:
    out: dict[str, float] = {}
    names = ("queued", "running", "catch_up_s", "read_s", "finish_s", "render_s", "digest_wait_s")
    for name in (*names, "compress_s", "store_s"):
        values = [r[name] for r in rows if r.get(name) is not None]
        if values:
            out[f"{name.removesuffix('_s')}_ms"] = round(statistics.median(values) * 1000, 2)
    return out


def p95(values: list[float]) -> float:
    return round(sorted(values)[int(0.95 * (len(values) - 1))], 4)


async def measure(
    pipeline: Pipeline,
    reports: int,
    moments: list[str],
    expected: dict[str | None, str],
    wait_moments: list[str] | None = None,
) -> dict[str, Any]:
    db_now = await pipeline.pool.fetchval("SELECT extract(epoch FROM now())")  # type: ignore[union-attr]
    default_s, default_csv, _ = await reports_through_the_api(pipeline, reports)
    fresh_s, fresh_csv, fresh_moments = await reports_through_the_api(pipeline, reports, moments)
    done = await phases(pipeline, float(db_now))
    computed = [r for r in done if not r["default_moment"]]
    api_s = statistics.median(fresh_s) - statistics.median(
        r["queued"] + r["running"] for r in computed
    )
    out = {
        "default_median_s": round(statistics.median(default_s), 4),
        "default_p95_s": p95(default_s),
        "fresh_median_s": round(statistics.median(fresh_s), 4),
        "fresh_p95_s": p95(fresh_s),
        "default_csv_equals_batch": default_csv == expected[None],
        "fresh_csv_equals_batch": fresh_csv == expected[moments[-1]],
        "phases": medians(done),
        # The new moments' reports, each computed; the rest of the client's time (trigger's
        # insert and send, the 10 ms polling, the CSV's read-back and download) is the API's.
        "phases_computed": {**medians(computed), "api_ms": round(1000 * api_s, 2)},
        "phases_reused": medians([r for r in done if "finish_s" not in r]),
        "fresh_client_split": await client_split(pipeline, fresh_moments),
        "from_index": sum(1 for r in done if "index" in r),
    }
    if wait_moments is not None:
        wait_s, wait_csv, wait_split = await reports_through_the_api(
            pipeline, reports, wait_moments, wait_s=5.0
        )
        out["wait_median_s"] = round(statistics.median(wait_s), 4)
        out["wait_p95_s"] = p95(wait_s)
        out["wait_csv_equals_batch"] = wait_csv == expected[wait_moments[-1]]
        out["wait_client_split"] = await client_split(pipeline, wait_split)
    return out


async def main(
    stores: int,
    days: int,
    reports: int,
    runs: int,
    pack_hours: int = DEFAULT_PACK_HOURS,
    preload: bool = False,
) -> dict[str, Any]:
    _, work, data, pipeline = await fresh_pipeline("report", stores, days)
    pipeline.settings = dataclasses.replace(pipeline.settings, batch_timeout_s=0.5)
    assert pipeline.pool is not None

    async def publish() -> tuple[Any, float]:
        # Packed as `storemon replay --as-fast-as-possible` packs (a store's polls of a week
        # in one message): one message per poll would measure live ingestion instead, a
        # store update per poll (3.15 M of them at 100,000 stores).
        t0 = time.perf_counter()
        stats = await replay(
            pipeline.settings, data, speedup=None, progress=False, pack_hours=pack_hours
        )
        return stats, time.perf_counter() - t0

    # By default the worker is up first, as in a deployment: the replay publishes the
    # schedules and zones before the polls, so each store's first polls meet its schedule.
    # Preloaded, the worker reads the three topics at once and many stores' polls come
    # before their schedules: every such store's timeline is computed again.
    if preload:
        stats, replay_s = await publish()
    pipeline.start_worker()
    await wait_worker_ready(pipeline)
    t1 = time.perf_counter()
    if not preload:
        stats, replay_s = await publish()
    await pipeline.wait_consumed(timeout_s=7200)
    ingest_s = time.perf_counter() - t1
    polls = stats.topics[messages.POLLS].sent
    print(
        f"filled: {polls} polls in {stats.poll_messages} messages, replay {replay_s:.1f} s,"
        f" {'worker ready' if preload else 'replay start'} -> consumed {ingest_s:.1f} s"
        f" ({polls / ingest_s:.0f} polls/s)",
        flush=True,
    )
    newest = await pipeline.pool.fetchval("SELECT max(newest_poll_us) FROM stores")
    # Moments never asked before, a different set for every run and path (inside the lead).
    step = (110 * MINUTE_US) // (3 * runs * reports)
    every = [format_utc(newest + (i + 1) * step + 1) for i in range(3 * runs * reports)]
    sets = [every[k * reports : (k + 1) * reports] for k in range(3 * runs)]
    expected: dict[str | None, str] = {}
    batch_runs: list[float] = []
    for as_of in (None, *(moments[-1] for moments in sets)):
        out = work / "batch.csv"
        command = [sys.executable, "-m", "storemon", "report", "--data", str(data)]
        command += ["--out", str(out), *(["--as-of", as_of] if as_of else [])]
        batch_runs.append(command_median_s(command, runs=1))
        expected[as_of] = out.read_text()

    results: list[dict[str, Any]] = []
    for run in range(runs):
        # with the index: a fresh worker, loaded from PostgreSQL
        pipeline.stop_worker()
        pipeline.extra_env.pop("STOREMON_REPORT_INDEX", None)
        pipeline.start_worker()
        t0 = time.perf_counter()
        described = await pipeline.wait_report_index(timeout_s=600)
        load_s = time.perf_counter() - t0
        assert pipeline.worker is not None
        rss_with = rss_mb(pipeline.worker.pid)
        with_index = await measure(
            pipeline, reports, sets[3 * run], expected, wait_moments=sets[3 * run + 2]
        )
        # from PostgreSQL only
        pipeline.stop_worker()
        pipeline.extra_env["STOREMON_REPORT_INDEX"] = "0"
        pipeline.start_worker()
        await wait_worker_ready(pipeline)
        await asyncio.sleep(3)  # the worker joins its groups and settles
        rss_without = rss_mb(pipeline.worker.pid)
        from_database = await measure(pipeline, reports, sets[3 * run + 1], expected)
        out = work / "batch.csv"
        batch_s = command_median_s(
            [sys.executable, "-m", "storemon", "report", "--data", str(data), "--out", str(out)],
            runs=1,
        )
        batch_runs.append(batch_s)
        results.append(
            {
                "run": run + 1,
                "postgresql": from_database,
                "batch_command_s": round(batch_s, 3),
                "index_ready_after_start_s": round(load_s, 2),
                "index": {**with_index, "described": described},
                "worker_rss_with_index_mb": round(rss_with, 1),
                "worker_rss_without_index_mb": round(rss_without, 1),
            }
        )
        print(json.dumps(results[-1], indent=2), flush=True)
    await pipeline.close()

    def over_runs(path: tuple[str, str]) -> float:
        return round(statistics.median(r[path[0]][path[1]] for r in results), 4)

    batch_median = statistics.median(batch_runs)
    summary: dict[str, Any] = {
        "stores": stores,
        "days": days,
        "reports_per_kind": reports,
        "runs": runs,
        "fill": {
            "pack_hours": pack_hours,
            "preloaded": preload,
            "polls": polls,
            "poll_messages": stats.poll_messages,
            "replay_s": round(replay_s, 1),
            "ingest_s": round(ingest_s, 1),
            "ingest_polls_per_s": round(polls / ingest_s),
        },
        "batch_command_median_s": round(batch_median, 3),
        "index_default_median_s": over_runs(("index", "default_median_s")),
        "index_fresh_median_s": over_runs(("index", "fresh_median_s")),
        "index_fresh_wait_median_s": over_runs(("index", "wait_median_s")),
        "postgresql_default_median_s": over_runs(("postgresql", "default_median_s")),
        "postgresql_fresh_median_s": over_runs(("postgresql", "fresh_median_s")),
        "all_csv_equal_batch": all(
            r[k][f"{m}_csv_equals_batch"]
            for r in results
            for k in ("index", "postgresql")
            for m in ("default", "fresh", "wait")
            if f"{m}_csv_equals_batch" in r[k]
        ),
        "runs_detail": results,
    }
    summary["batch_over_index_default"] = round(batch_median / summary["index_default_median_s"], 1)
    summary["batch_over_index_fresh"] = round(batch_median / summary["index_fresh_median_s"], 1)
    summary["batch_over_index_fresh_wait"] = round(
        batch_median / summary["index_fresh_wait_median_s"], 1
    )
    (work / "result.json").write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stores", type=int, default=2000)
    parser.add_argument("--days", type=int, default=8)
    parser.add_argument("--reports", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--pack-hours", type=int, default=DEFAULT_PACK_HOURS, help="0: one message per poll"
    )
    parser.add_argument(
        "--preload", action="store_true", help="publish everything before the worker starts"
    )
    args = parser.parse_args()
    summary = asyncio.run(
        main(args.stores, args.days, args.reports, args.runs, args.pack_hours, args.preload)
    )
    print(json.dumps({k: v for k, v in summary.items() if k != "runs_detail"}, indent=2))
