"""Stream ingestion and report latency, against same-run baselines.

    .venv/bin/python bench/stream_ingest.py --stores 2000 --days 8

Uses the broker and database of `storemon services up` (or STOREMON_KAFKA_BOOTSTRAP /
STOREMON_DATABASE_URL), a fresh topic prefix and database each run, and one worker.
Figures:
- ingestion end to end: `storemon replay` (as fast as possible, packs of --pack-hours)
  into a worker that is already up, from the replay's start to the worker's last commit,
  in polls per second; baseline: the same poll topic read by a plain aiokafka consumer that
  does nothing with the messages;
- report latency: `POST /trigger_report` -> `GET /get_report` answering the CSV, through the
  real API, over 10 reports (median, p95); baseline: the
  `storemon report` command on the same files (median of 3 runs);
- worker peak memory (VmHWM) and memory after the replay (VmRSS), RocksDB and PostgreSQL
  sizes (``store_days`` after a prune and ``VACUUM FULL``: the rows the retention keeps),
  and whether the stream's CSV equals the batch command's. ``--reach-hours`` sets the
  worker's ``STOREMON_REPORT_REACH_HOURS``: two runs on a data set longer than both
  retentions give the cost of a day of reach.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from storemon import services  # noqa: E402
from storemon.db.retention import prune_history  # noqa: E402
from storemon.producers.replay import DEFAULT_PACK_HOURS, replay  # noqa: E402
from storemon.settings import Settings  # noqa: E402
from storemon.streams import messages  # noqa: E402
from tests.integration.pipeline import Pipeline, generate  # noqa: E402


async def plain_consumer_rate(settings: Settings, expected: int, polls: int) -> float:
    """Baseline: read every poll message once, doing nothing with it; polls per second."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    try:
        tps = [
            TopicPartition(settings.topic(messages.POLLS), p) for p in range(settings.partitions)
        ]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen = 0
        started = time.perf_counter()
        while seen < expected:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10000)
            seen += sum(len(records) for records in batch.values())
        return polls / (time.perf_counter() - started)
    finally:
        await consumer.stop()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def wait_worker_ready(pipeline: Pipeline, timeout_s: float = 120.0) -> None:
    """Until the worker's web views answer (its group is joined soon after)."""
    import aiohttp

    url = f"http://127.0.0.1:{pipeline.settings.worker_web_port}/storemon/"
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            pipeline.check_worker_alive()
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.5)
    raise TimeoutError("worker not ready")


async def reports_through_the_api(pipeline: Pipeline, reports: int) -> tuple[list[float], str]:
    """Trigger -> Complete as a client sees it: `POST /trigger_report` on the real API (run
    in this process), then `GET /get_report` every 10 ms until the CSV comes back."""
    import aiohttp
    from aiohttp import web

    from storemon.web.app import build_app

    runner = web.AppRunner(build_app(pipeline.settings))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    base = f"http://127.0.0.1:{port}"
    latencies: list[float] = []
    csv_text = ""
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(reports):
                t0 = time.perf_counter()
                async with session.post(f"{base}/trigger_report") as response:
                    report_id = (await response.json())["report_id"]
                while True:
                    async with session.get(
                        f"{base}/get_report", params={"report_id": report_id}
                    ) as response:
                        if response.content_type == "text/csv":
                            csv_text = await response.text()
                            break
                        status = (await response.json())["status"]
                        assert status != "Failed", status
                    await asyncio.sleep(0.01)
                latencies.append(time.perf_counter() - t0)
    finally:
        await runner.cleanup()
    return latencies, csv_text


async def worker_page(pipeline: Pipeline) -> dict[str, Any]:
    import aiohttp

    url = f"http://127.0.0.1:{pipeline.settings.worker_web_port}/storemon/"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        page: dict[str, Any] = await response.json()
        return page


def command_median_s(command: list[str], runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def du_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


async def main(
    stores: int,
    days: int,
    reports: int,
    pack_hours: int,
    batch_size: int | None = None,
    reach_hours: int | None = None,
) -> dict[str, object]:
    base = Settings.from_env()
    if not base.kafka_bootstrap or not base.database_url:
        base = services.ensure_up(base).apply_to(base)
    work = ROOT / "bench" / "work" / f"stream-{stores}x{days}"
    work.mkdir(parents=True, exist_ok=True)
    data = work / "data"
    if not (data / "store_status.csv").exists():
        generate(data, stores=stores, days=days, seed=1)
    shutil.rmtree(work / "state", ignore_errors=True)
    pipeline = await Pipeline.create(base, "bench", work)
    pipeline.settings = dataclasses.replace(
        pipeline.settings,
        batch_timeout_s=0.5,
        batch_size=batch_size or base.batch_size,
        report_reach_hours=base.report_reach_hours if reach_hours is None else reach_hours,
    )
    pipeline.start_worker()
    assert pipeline.worker is not None
    await wait_worker_ready(pipeline)
    # End to end: from the replay's first read of the files to the worker's last commit
    # (the worker writes PostgreSQL before it commits: the aggregates are then complete).
    started = time.perf_counter()
    stats = await replay(
        pipeline.settings, data, speedup=None, progress=False, pack_hours=pack_hours
    )
    replay_s = time.perf_counter() - started
    await pipeline.wait_consumed(timeout_s=7200)
    end_to_end_s = time.perf_counter() - started
    polls = stats.topics[messages.POLLS].sent
    baseline_rate = await plain_consumer_rate(pipeline.settings, stats.poll_messages, polls)
    latencies, csv_text = await reports_through_the_api(pipeline, reports)
    assert pipeline.pool is not None
    # Where a report's time goes, from the reports table's own clock: queued (trigger ->
    # the job starts) and running (the job's assembly and the CSV write).
    phases = await pipeline.pool.fetch(
        "SELECT extract(epoch FROM started_at - created_at)::float8 AS queued,"
        " extract(epoch FROM finished_at - started_at)::float8 AS running FROM reports"
        " WHERE status = 'Complete'"
    )
    rss = peak_rss_mb(pipeline.worker.pid)
    rss_now = rss_mb(pipeline.worker.pid)
    worker_stats = await worker_page(pipeline)
    assert pipeline.pool is not None
    # What the retention keeps: the prune timer's work done now, the table rewritten
    # compactly, so the size is that of the rows kept, not of their deleted versions.
    await prune_history(pipeline.pool, pipeline.settings.retention_us)
    await pipeline.pool.execute("VACUUM FULL store_days")
    store_days_mb = (
        await pipeline.pool.fetchval("SELECT pg_total_relation_size('store_days')") / 2**20
    )
    store_day_rows = await pipeline.pool.fetchval("SELECT count(*) FROM store_days")
    pg_mb = await pipeline.pool.fetchval("SELECT pg_database_size(current_database())") / 2**20
    rocksdb_mb = du_mb(pipeline.settings.state_dir / "worker")
    await pipeline.close()
    out = work / "batch.csv"
    batch_s = command_median_s(
        [sys.executable, "-m", "storemon", "report", "--data", str(data), "--out", str(out)]
    )
    latencies.sort()
    median = statistics.median(latencies)
    result: dict[str, object] = {
        "stores": stores,
        "days": days,
        "polls": polls,
        "poll_messages": stats.poll_messages,
        "pack_hours": pack_hours,
        "batch_size": pipeline.settings.batch_size,
        "replay_s": round(replay_s, 2),
        "end_to_end_s": round(end_to_end_s, 2),
        "end_to_end_polls_per_s": round(polls / end_to_end_s),
        "plain_consumer_polls_per_s": round(baseline_rate),
        "end_to_end_vs_plain_consumer": round(polls / end_to_end_s / baseline_rate, 4),
        "report_latency_median_s": round(median, 3),
        "report_latency_p95_s": round(latencies[max(0, math.ceil(0.95 * len(latencies)) - 1)], 3),
        "report_queued_median_s": round(statistics.median(r["queued"] for r in phases), 3),
        "report_running_median_s": round(statistics.median(r["running"] for r in phases), 3),
        "batch_report_command_median_s": round(batch_s, 3),
        "batch_over_stream_report": round(batch_s / median, 1),
        "report_reach_hours": pipeline.settings.report_reach_hours,
        "retention_days": pipeline.settings.retention_us / 86_400_000_000,
        "worker_peak_rss_mb": round(rss, 1),
        "worker_rss_after_mb": round(rss_now, 1),
        "store_days_mb": round(store_days_mb, 1),
        "store_day_rows": store_day_rows,
        "rocksdb_mb": round(rocksdb_mb, 1),
        "postgres_db_mb": round(pg_mb, 1),
        "stream_csv_equals_batch": csv_text == out.read_text(),
        "worker_batches": worker_stats.get("batches"),
        "worker_seconds": worker_stats.get("seconds"),
    }
    suffix = f"-reach{reach_hours}" if reach_hours is not None else ""
    (work / f"result-pack{pack_hours}{suffix}.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stores", type=int, default=2000)
    parser.add_argument("--days", type=int, default=8)
    parser.add_argument("--reports", type=int, default=10)
    parser.add_argument("--pack-hours", type=int, default=DEFAULT_PACK_HOURS)
    parser.add_argument("--batch-size", type=int, default=None, help="worker events per batch")
    parser.add_argument(
        "--reach-hours", type=int, default=None, help="STOREMON_REPORT_REACH_HOURS of the worker"
    )
    args = parser.parse_args()
    outcome = asyncio.run(
        main(
            args.stores,
            args.days,
            args.reports,
            args.pack_hours,
            args.batch_size,
            args.reach_hours,
        )
    )
    for key, value in outcome.items():
        print(f"{key:<30} {value}")
