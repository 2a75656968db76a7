"""A paced live run: `storemon replay --speedup X` into one worker for a fixed time, with the
worker's lag sampled every second and a report taken during the run.

    .venv/bin/python bench/live_paced.py --stores 14000 --days 8 --speedup 1290 --seconds 120

(14,000 stores polled about hourly at speedup 1290 make about 5,000 polls/s.) Figures:
- input rate: polls published per second (end offsets of `polls`, sampled);
- lag in messages: input records not yet batched and committed by the worker's batching
  stage plus internal batches not yet committed by the ingest agent (each sample), its
  p50/p99/max; lag in seconds: the lag in messages over the input rate of that second;
- a report requested during the run, as of one data-hour before the newest poll stored
  then, compared byte for byte with `storemon report --as-of` on the same files.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.stream_ingest import wait_worker_ready  # noqa: E402
from storemon import services  # noqa: E402
from storemon.aggregates.timebase import HOUR_US, format_utc  # noqa: E402
from storemon.producers.replay import replay  # noqa: E402
from storemon.settings import Settings  # noqa: E402
from storemon.streams import messages  # noqa: E402
from tests.integration.pipeline import Pipeline, batch_csv, generate  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main(stores: int, days: int, speedup: float, seconds: float) -> dict[str, object]:
    base = Settings.from_env()
    if not base.kafka_bootstrap or not base.database_url:
        base = services.ensure_up(base).apply_to(base)
    work = ROOT / "bench" / "work" / f"stream-{stores}x{days}"
    work.mkdir(parents=True, exist_ok=True)
    data = work / "data"
    if not (data / "store_status.csv").exists():
        generate(data, stores=stores, days=days, seed=1)
    shutil.rmtree(work / "state-live", ignore_errors=True)
    pipeline = await Pipeline.create(base, "live", work / "live")
    pipeline.start_worker()
    await wait_worker_ready(pipeline)
    assert pipeline.pool is not None
    sender = asyncio.ensure_future(replay(pipeline.settings, data, speedup=speedup, progress=False))
    polls_topic = pipeline.settings.topic(messages.POLLS)
    samples: list[tuple[float, int, int]] = []  # (time, polls published, lag in messages)
    report: dict[str, object] = {}
    began = time.monotonic()
    try:
        while time.monotonic() - began < seconds:
            ends, committed = await pipeline.offsets()
            published = sum(v for tp, v in ends.items() if tp.topic == polls_topic)
            lag = sum(ends[tp] - committed[tp] for tp in ends)
            samples.append((time.monotonic(), published, lag))
            if not report and time.monotonic() - began >= seconds / 2:
                newest = await pipeline.pool.fetchval("SELECT max(newest_poll_us) FROM stores")
                if newest is not None:
                    as_of = format_utc(newest - HOUR_US)
                    report_id = await pipeline.request_report(as_of)
                    t0 = time.monotonic()
                    stream_csv = await pipeline.wait_report(report_id, timeout_s=120)
                    report = {
                        "as_of": as_of,
                        "latency_s": round(time.monotonic() - t0, 2),
                        "equals_batch": stream_csv == batch_csv(data, as_of),
                    }
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - samples[-1][0])))
    finally:
        sender.cancel()
        pipeline.check_worker_alive()
        await pipeline.close()
    rates = []
    lags_s = []
    lags = []
    for (t0, p0, _), (t1, p1, lag) in itertools.pairwise(samples):
        rate = (p1 - p0) / (t1 - t0)
        if p1 == 0:
            continue  # schedules and zones still being published
        rates.append(rate)
        lags.append(lag)
        lags_s.append(lag / rate if rate > 0 else float("nan"))
    steady = [x for x in lags_s if x == x]
    result: dict[str, object] = {
        "stores": stores,
        "speedup": speedup,
        "seconds": seconds,
        "input_polls_per_s_median": round(statistics.median(rates)) if rates else None,
        "lag_messages_p50": percentile(lags, 0.5) if lags else None,
        "lag_messages_p99": percentile(lags, 0.99) if lags else None,
        "lag_messages_max": max(lags) if lags else None,
        "lag_seconds_p99": round(percentile(steady, 0.99), 2) if steady else None,
        "lag_seconds_max": round(max(steady), 2) if steady else None,
        "report_during_run": report,
    }
    (work / "result-live.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stores", type=int, default=14000)
    parser.add_argument("--days", type=int, default=8)
    parser.add_argument("--speedup", type=float, default=1290)
    parser.add_argument("--seconds", type=float, default=120)
    args = parser.parse_args()
    outcome = asyncio.run(main(args.stores, args.days, args.speedup, args.seconds))
    for key, value in outcome.items():
        print(f"{key:<28} {value}")
