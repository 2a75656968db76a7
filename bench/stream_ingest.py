"""Stream ingestion and report latency, against same-run baselines.

    .venv/bin/python bench/stream_ingest.py --stores 2000 --days 8

Uses the broker and database of `storemon services up` (or STOREMON_KAFKA_BOOTSTRAP /
STOREMON_DATABASE_URL), a fresh topic prefix and database each run, and one worker.
Figures:
- ingestion: polls per second from the worker's first commit to its last, and the same
  topic read by a plain aiokafka consumer that does nothing with the messages (baseline);
- report latency: trigger -> Complete over 10 reports (median, p95), and the batch
  computation on the same files in-process (baseline, median of 3);
- worker peak memory (VmHWM) and whether the stream's CSV equals the batch's.
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

from aiokafka import AIOKafkaConsumer, TopicPartition

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from storemon import services  # noqa: E402
from storemon.settings import Settings  # noqa: E402
from storemon.streams import messages  # noqa: E402
from tests.integration.pipeline import Pipeline, batch_csv, generate, read_messages  # noqa: E402


async def plain_consumer_rate(settings: Settings, expected: int) -> float:
    """Baseline: read every poll message once, doing nothing with it."""
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
        return seen / (time.perf_counter() - started)
    finally:
        await consumer.stop()


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def main(stores: int, days: int, reports: int) -> dict[str, object]:
    base = Settings.from_env()
    if not base.kafka_bootstrap or not base.database_url:
        base = services.ensure_up(base).apply_to(base)
    work = ROOT / "bench" / "work" / f"stream-{stores}x{days}"
    work.mkdir(parents=True, exist_ok=True)
    data = work / "data"
    if not (data / "store_status.csv").exists():
        generate(data, stores=stores, days=days, seed=1)
    pipeline = await Pipeline.create(base, "bench", work)
    pipeline.settings = dataclasses.replace(pipeline.settings, batch_timeout_s=0.5)
    reference, polls = read_messages(data)
    started = time.perf_counter()
    await pipeline.publish(reference + polls)
    publish_s = time.perf_counter() - started
    baseline_rate = await plain_consumer_rate(pipeline.settings, len(polls))
    pipeline.start_worker()
    assert pipeline.worker is not None
    await pipeline.wait_progress(0.001, timeout_s=300)
    started = time.perf_counter()
    await pipeline.wait_consumed(timeout_s=3600)
    ingest_s = time.perf_counter() - started
    latencies = []
    csv_text = ""
    for _ in range(reports):
        t0 = time.perf_counter()
        csv_text = await pipeline.wait_report(await pipeline.request_report(), timeout_s=300)
        latencies.append(time.perf_counter() - t0)
    batch_times = []
    expected = ""
    for _ in range(3):
        t0 = time.perf_counter()
        expected = batch_csv(data)
        batch_times.append(time.perf_counter() - t0)
    rss = peak_rss_mb(pipeline.worker.pid)
    await pipeline.close()
    latencies.sort()
    result: dict[str, object] = {
        "stores": stores,
        "days": days,
        "polls": len(polls),
        "publish_polls_per_s": round(len(polls) / publish_s),
        "worker_polls_per_s": round(len(polls) / ingest_s),
        "plain_consumer_polls_per_s": round(baseline_rate),
        "worker_vs_plain_consumer": round(len(polls) / ingest_s / baseline_rate, 4),
        "report_latency_median_s": round(statistics.median(latencies), 3),
        "report_latency_p95_s": round(latencies[max(0, int(0.95 * len(latencies)) - 1)], 3),
        "batch_report_median_s": round(statistics.median(batch_times), 3),
        "batch_over_stream_report": round(
            statistics.median(batch_times) / statistics.median(latencies), 1
        ),
        "worker_peak_rss_mb": round(rss, 1),
        "stream_csv_equals_batch": csv_text == expected,
    }
    (work / "result.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stores", type=int, default=2000)
    parser.add_argument("--days", type=int, default=8)
    parser.add_argument("--reports", type=int, default=10)
    args = parser.parse_args()
    outcome = asyncio.run(main(args.stores, args.days, args.reports))
    for key, value in outcome.items():
        print(f"{key:<30} {value}")
