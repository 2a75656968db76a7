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
  real API, over 10 reports (median, p95) at the default report time (the first computes,
  the others may reuse its answer: the aggregates have not changed), then 10 at moments
  never asked for (the newest poll minus 7, 14, ... minutes: each computed); baseline: the
  `storemon report` command on the same files (median of 3 runs); the split of a report's
  time (queued, read, finish, render, store) from the reports table;
- worker peak memory (VmHWM; its batching process's apart) and memory after the replay
  (VmRSS), CPU seconds of the worker and of its batching process, RocksDB and PostgreSQL
  sizes (``store_days`` after a prune and ``VACUUM FULL``: the rows the retention keeps),
  and whether the stream's CSV equals the batch command's. ``--reach-hours`` sets the
  worker's ``STOREMON_REPORT_REACH_HOURS``: two runs on a data set longer than both
  retentions give the cost of a day of reach. ``STOREMON_BATCHER_PROCESS=0`` in the
  environment runs the batching stage on the worker's event loop (the A side of issue 14's
  comparison).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import os
import shutil
import signal
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
from storemon.aggregates.timebase import MINUTE_US, format_utc  # noqa: E402
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


def cpu_s(pid: int) -> float:
    """User and system CPU seconds ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def wait_worker_ready(pipeline: Pipeline, timeout_s: float = 120.0) -> None:
    """Until the worker's web views answer (its group is joined soon after) and its batching
    process, if it runs one, has started and reported."""
    import aiohttp

    url = f"http://127.0.0.1:{pipeline.settings.worker_web_port}/storemon/"
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            pipeline.check_worker_alive()
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        child = (await response.json()).get("batcher", {}).get("process")
                        if child is None or child.get("seconds_since_status") is not None:
                            return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.5)
    raise TimeoutError("worker not ready")


async def serve_api(settings: Settings) -> tuple[Any, str]:
    """The real API in this process on a free port: (its runner, to clean up; its address)."""
    from aiohttp import web

    from storemon.web.app import build_app

    runner = web.AppRunner(build_app(settings))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


async def reports_through_the_api(
    pipeline: Pipeline, reports: int, as_of: list[str] | None = None
) -> tuple[list[float], str]:
    """Trigger -> Complete as a client sees it: `POST /trigger_report` on the real API (run
    in this process), then `GET /get_report` every 10 ms until the CSV comes back. With
    ``as_of``, report i asks for ``as_of[i]`` (moments no report was taken at before)."""
    import aiohttp

    runner, base = await serve_api(pipeline.settings)
    latencies: list[float] = []
    csv_text = ""
    try:
        async with aiohttp.ClientSession() as session:
            for i in range(reports):
                body = {"as_of": as_of[i]} if as_of is not None else None
                t0 = time.perf_counter()
                async with session.post(f"{base}/trigger_report", json=body) as response:
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


def changelog_bytes(settings: Settings) -> int:
    """Bytes in the broker's log segments of the worker's table changelogs (nothing is
    compacted during a run this short: that is what the tables wrote)."""
    data = settings.state_dir / "kafka" / "data"
    prefix = f"{settings.faust_app_id}-"
    return sum(
        f.stat().st_size for d in data.glob(f"{prefix}*-changelog-*") for f in d.glob("*.log")
    )


def du_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def start_profiler(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling the worker (collapsed stacks, all threads, native frames off)."""
    return subprocess.Popen(
        [
            str(Path(sys.executable).parent / "py-spy"),
            "record",
            "-p",
            str(pid),
            "-r",
            "100",
            "--nonblocking",
            "-f",
            "raw",
            "-o",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop_profiler(profiler: subprocess.Popen[bytes]) -> None:
    profiler.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
    try:
        profiler.wait(timeout=60)
    except subprocess.TimeoutExpired:
        profiler.kill()


async def fresh_pipeline(
    kind: str, stores: int, days: int
) -> tuple[Settings, Path, Path, Pipeline]:
    """Local services (started if none are configured), the generated data set of this size
    under ``bench/work/<kind>-<stores>x<days>`` (made once) and a new empty pipeline."""
    base = Settings.from_env()
    if not base.kafka_bootstrap or not base.database_url:
        base = services.ensure_up(base).apply_to(base)
    work = ROOT / "bench" / "work" / f"{kind}-{stores}x{days}"
    work.mkdir(parents=True, exist_ok=True)
    data = work / "data"
    if not (data / "store_status.csv").exists():
        generate(data, stores=stores, days=days, seed=1)
    shutil.rmtree(work / "state", ignore_errors=True)
    return base, work, data, await Pipeline.create(base, "bench", work)


async def main(
    stores: int,
    days: int,
    reports: int,
    pack_hours: int,
    batch_size: int | None = None,
    profile: bool = False,
    preload: bool = False,
    reach_hours: int | None = None,
) -> dict[str, object]:
    base, work, data, pipeline = await fresh_pipeline("stream", stores, days)
    pipeline.settings = dataclasses.replace(
        pipeline.settings,
        batch_timeout_s=0.5,
        batch_size=batch_size or base.batch_size,
        report_reach_hours=base.report_reach_hours if reach_hours is None else reach_hours,
    )
    assert pipeline.pool is not None
    wal_before = await pipeline.pool.fetchval("SELECT pg_current_wal_lsn()::text")
    if preload:
        # The worker alone: the topics are filled first, the clock starts once the worker
        # answers (it then joins its groups and drains the backlog).
        t0 = time.perf_counter()
        stats = await replay(
            pipeline.settings, data, speedup=None, progress=False, pack_hours=pack_hours
        )
        replay_s = time.perf_counter() - t0
    pipeline.start_worker()
    assert pipeline.worker is not None
    await wait_worker_ready(pipeline)
    profile_out = work / f"profile-pack{pack_hours}.txt"
    profiler = start_profiler(pipeline.worker.pid, profile_out) if profile else None
    # End to end: from the replay's first read of the files to the worker's last commit
    # (the worker writes PostgreSQL before it commits: the aggregates are then complete).
    started = time.perf_counter()
    if not preload:
        stats = await replay(
            pipeline.settings, data, speedup=None, progress=False, pack_hours=pack_hours
        )
        replay_s = time.perf_counter() - started
    await pipeline.wait_consumed(timeout_s=7200)
    end_to_end_s = time.perf_counter() - started
    if profiler is not None:
        stop_profiler(profiler)
    wal_bytes = await pipeline.pool.fetchval(
        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)::bigint", wal_before
    )
    table_bytes = changelog_bytes(
        dataclasses.replace(base, faust_app_id=pipeline.settings.faust_app_id)
    )
    polls = stats.topics[messages.POLLS].sent
    baseline_rate = await plain_consumer_rate(pipeline.settings, stats.poll_messages, polls)
    latencies, csv_text = await reports_through_the_api(pipeline, reports)
    assert pipeline.pool is not None
    # Reports at moments never asked for before (so none can reuse an earlier answer): the
    # newest poll minus 7, 14, ... minutes, which also puts them before many stores' last poll.
    newest = await pipeline.pool.fetchval("SELECT max(newest_poll_us) FROM stores")
    moments = [format_utc(newest - (i + 1) * 7 * MINUTE_US) for i in range(reports)]
    fresh_latencies, fresh_csv = await reports_through_the_api(pipeline, reports, moments)
    # Where a report's time goes, from the reports table's own clock and the job's timings:
    # queued (trigger -> the job starts), read (its transaction), finish (the core's rows),
    # render (the CSV), store (the completing write); "running" is start -> finish.
    phases = await pipeline.pool.fetch(
        "SELECT requested_as_of_us IS NULL AS default_moment, timings ? 'finish_s' AS computed,"
        " extract(epoch FROM started_at - created_at)::float8 AS queued,"
        " extract(epoch FROM finished_at - started_at)::float8 AS running,"
        " (timings->>'read_s')::float8 AS read, (timings->>'finish_s')::float8 AS finish,"
        " (timings->>'render_s')::float8 AS render, (timings->>'store_s')::float8 AS store"
        " FROM reports WHERE status = 'Complete' AND timings IS NOT NULL"
    )
    rss = peak_rss_mb(pipeline.worker.pid)
    rss_now = rss_mb(pipeline.worker.pid)
    worker_cpu_s = cpu_s(pipeline.worker.pid)
    worker_stats = await worker_page(pipeline)
    # The batching stage's own process (STOREMON_BATCHER_PROCESS), if it runs in one.
    child = (worker_stats.get("batcher") or {}).get("process") or {}
    child_pid = child.get("pid") if child.get("running") else None
    batcher_rss = peak_rss_mb(child_pid) if child_pid else None
    batcher_cpu_s = cpu_s(child_pid) if child_pid else None
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
    fresh_latencies.sort()
    fresh_median = statistics.median(fresh_latencies)
    fresh_batch = work / "batch-fresh.csv"
    command_median_s(
        [sys.executable, "-m", "storemon", "report", "--data", str(data), "--out",
         str(fresh_batch), "--as-of", moments[-1]],
        runs=1,
    )  # fmt: skip

    def split(rows: list[Any]) -> dict[str, float | int]:
        out: dict[str, float | int] = {"reports": len(rows)}
        for name in ("queued", "read", "finish", "render", "store", "running"):
            values = [r[name] for r in rows if r[name] is not None]
            if values:
                out[f"{name}_ms"] = round(statistics.median(values) * 1000, 1)
        return out

    result: dict[str, object] = {
        "stores": stores,
        "days": days,
        "polls": polls,
        "poll_messages": stats.poll_messages,
        "pack_hours": pack_hours,
        "preloaded": preload,
        "batch_size": pipeline.settings.batch_size,
        "worker_batch_polls": pipeline.settings.worker_batch_polls,
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
        "fresh_moment_report_latency_median_s": round(fresh_median, 3),
        "fresh_moment_report_latency_p95_s": round(
            fresh_latencies[max(0, math.ceil(0.95 * len(fresh_latencies)) - 1)], 3
        ),
        "batch_over_fresh_moment_report": round(batch_s / fresh_median, 1),
        "fresh_moment_csv_equals_batch": fresh_csv == fresh_batch.read_text(),
        "split_reused": split([r for r in phases if not r["computed"]]),
        "split_computed_default": split(
            [r for r in phases if r["computed"] and r["default_moment"]]
        ),
        "split_computed_fresh": split(
            [r for r in phases if r["computed"] and not r["default_moment"]]
        ),
        "worker_peak_rss_mb": round(rss, 1),
        "batcher_process": pipeline.settings.batcher_process,
        "batcher_peak_rss_mb": batcher_rss,
        "worker_cpu_s": round(worker_cpu_s, 1),
        "batcher_cpu_s": round(batcher_cpu_s, 1) if batcher_cpu_s is not None else None,
        "changelog_bytes_per_poll": round(table_bytes / polls, 1),
        "postgres_wal_bytes_per_poll": round(wal_bytes / polls, 1),
        "report_reach_hours": pipeline.settings.report_reach_hours,
        "retention_days": pipeline.settings.retention_us / 86_400_000_000,
        "worker_rss_after_mb": round(rss_now, 1),
        "store_days_mb": round(store_days_mb, 1),
        "store_day_rows": store_day_rows,
        "rocksdb_mb": round(rocksdb_mb, 1),
        "postgres_db_mb": round(pg_mb, 1),
        "stream_csv_equals_batch": csv_text == out.read_text(),
        "worker_batches": worker_stats.get("batches"),
        "worker_seconds": worker_stats.get("seconds"),
        "worker_table_writes": worker_stats.get("table_writes"),
        "batcher": worker_stats.get("batcher"),
    }
    suffix = f"-reach{reach_hours}" if reach_hours is not None else ""
    suffix += "-preloaded" if preload else ""
    (work / f"result-pack{pack_hours}{suffix}.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stores", type=int, default=2000)
    parser.add_argument("--days", type=int, default=8)
    parser.add_argument("--reports", type=int, default=10)
    parser.add_argument("--pack-hours", type=int, default=DEFAULT_PACK_HOURS)
    parser.add_argument("--batch-size", type=int, default=None, help="polls per input batch")
    parser.add_argument("--profile", action="store_true", help="py-spy the worker meanwhile")
    parser.add_argument(
        "--preload", action="store_true", help="publish everything first, then time the worker"
    )
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
            args.profile,
            args.preload,
            args.reach_hours,
        )
    )
    for key, value in outcome.items():
        print(f"{key:<30} {value}")
