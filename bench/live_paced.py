"""A paced live run: `storemon replay --speedup X` into one worker for a fixed time, with the
worker's lag sampled every second and a report taken during the run.

    .venv/bin/python bench/live_paced.py --stores 14000 --days 8 --speedup 1290 --seconds 120

(14,000 stores polled about hourly at speedup 1290 make about 5,000 polls/s.) Figures:
- input rate: polls published per second (end offsets of `polls`, sampled);
- lag in messages: input records not yet batched and committed by the worker's batching
  stage plus internal batches not yet committed by the ingest agent (each sample), its
  p50/p99/max; lag in seconds: the lag in messages over the run's median input rate;
- after the input stops, the seconds until less than one second of input is left, and the
  lag when sampling ends (at 0, or after `--drain-max` seconds);
- two reports requested half-way, while the sampling goes on: as of one data-hour before
  the newest poll stored then, compared byte for byte with `storemon report --as-of` on the
  same files, and the default one (latency, the part of it spent waiting for the input
  published before the report to be applied, and whether memory answered it).
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


def lag_figures(samples: list[tuple[float, int, int]], stopped_at: float) -> dict[str, object]:
    """Input rate and lag while the input ran, and how long the lag took to drain after."""
    running = [x for x in samples if x[0] <= stopped_at]
    rates: list[float] = []
    lags: list[float] = []
    for (t0, p0, _), (t1, p1, lag) in itertools.pairwise(running):
        if p1 == 0:
            continue  # schedules and zones still being published
        rates.append((p1 - p0) / (t1 - t0))
        lags.append(lag)
    rate = statistics.median(rates) if rates else 0.0
    after = [(t - stopped_at, lag) for t, _, lag in samples if t > stopped_at]
    # Caught up: less than one second of input left (the last internal batches and offsets
    # are committed on Faust's and the batching stage's own clocks, so 0 may come late).
    caught_up = next((t for t, lag in after if lag < rate), None)
    return {
        "input_polls_per_s_median": round(rate),
        "lag_messages_p50": percentile(lags, 0.5) if lags else None,
        "lag_messages_p99": percentile(lags, 0.99) if lags else None,
        "lag_messages_max": max(lags) if lags else None,
        # Seconds of input the lag holds, at the run's median input rate.
        "lag_seconds_p99": round(percentile(lags, 0.99) / rate, 2) if lags and rate else None,
        "lag_seconds_max": round(max(lags) / rate, 2) if lags and rate else None,
        "caught_up_after_input_stopped_s": round(caught_up, 1) if caught_up is not None else None,
        "lag_messages_at_end": after[-1][1] if after else None,
        "seconds_sampled_after_input_stopped": round(after[-1][0], 1) if after else None,
    }


def compare_with_batch(
    reports: dict[str, dict[str, object]], stream_csvs: dict[str, str], data: Path
) -> None:
    """Each report of an explicit time against `storemon report --as-of` on the files."""
    for entry in reports.values():
        as_of = entry["as_of"]
        if isinstance(as_of, str):
            entry["equals_batch"] = stream_csvs[as_of] == batch_csv(data, as_of)


async def lag_by_partition(pipeline: Pipeline) -> dict[str, int]:
    """Where the lag sits, per topic and partition (each read by its own stage)."""
    ends, committed = await pipeline.offsets()
    return {
        f"{tp.topic.rsplit('.', 1)[-1]}:{tp.partition}": ends[tp] - committed[tp]
        for tp in ends
        if ends[tp] > committed[tp]
    }


async def main(
    stores: int, days: int, speedup: float, seconds: float, drain_max_s: float
) -> dict[str, object]:
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
    reports: dict[str, dict[str, object]] = {}
    stream_csvs: dict[str, str] = {}
    lag_left: dict[str, int] = {}
    applied: dict[str, int] = {}
    agent_batch: object = None

    async def report_during_run() -> None:
        """Two reports half-way, timed while the sampling goes on: as of one data-hour
        before the newest stored poll (every earlier poll is in by then, so it must equal
        `storemon report --as-of`; it reads polls around T, so PostgreSQL answers it), and
        the default one, as of the newest poll (from memory; its bytes move with the polls
        in flight, so only its latency and path are reported)."""
        assert pipeline.pool is not None
        newest = await pipeline.pool.fetchval("SELECT max(newest_poll_us) FROM stores")
        for name, as_of in (
            ("hour_before_newest", format_utc(newest - HOUR_US)),
            ("default", None),
        ):
            report_id = await pipeline.request_report(as_of)
            t0 = time.monotonic()
            stream_csv = await pipeline.wait_report(report_id, timeout_s=180)
            latency = time.monotonic() - t0
            timings = await pipeline.report_timings(report_id)
            entry: dict[str, object] = {
                "as_of": as_of,
                "latency_s": round(latency, 3),
                # the part spent waiting for the input published before it to be applied
                "catch_up_s": round(timings.get("catch_up_s", 0.0), 3),
                "from_memory": "index" in timings,
            }
            if as_of is not None:
                stream_csvs[as_of] = stream_csv  # compared after the run, off its clock
            reports[name] = entry

    reporting: asyncio.Task[None] | None = None
    began = time.monotonic()
    stopped_at: float | None = None
    try:
        while True:
            now = time.monotonic()
            ends, committed = await pipeline.offsets()
            published = sum(v for tp, v in ends.items() if tp.topic == polls_topic)
            lag = sum(ends[tp] - committed[tp] for tp in ends)
            samples.append((now, published, lag))
            if reporting is None and published and now - began >= seconds / 2:
                reporting = asyncio.ensure_future(report_during_run())
            if stopped_at is None and now - began >= seconds:
                sender.cancel()  # the input stops: how long until the worker has caught up
                stopped_at = now
            if stopped_at is not None and (lag == 0 or now - stopped_at > drain_max_s):
                break
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - now)))
        if reporting is not None:
            await reporting
        lag_left.update(await lag_by_partition(pipeline))
        # Applied or only not committed: the internal messages the agent has processed
        # against the end of the internal topic.
        batches_topic = pipeline.settings.topic(messages.INPUT_BATCHES)
        ends, _ = await pipeline.offsets()
        applied["internal_messages_published"] = sum(
            v for tp, v in ends.items() if tp.topic == batches_topic
        )
        overview = await pipeline.worker_overview()
        applied["internal_messages_processed"] = overview["events"]
        # In polls: internal messages hold a varying number of them.
        applied["polls_published"] = samples[-1][1]
        applied["polls_applied"] = overview["polls"]
        agent_batch = overview.get("agent_batch")  # absent from older checkouts
    finally:
        sender.cancel()
        pipeline.check_worker_alive()
        await pipeline.close()
    assert stopped_at is not None
    compare_with_batch(reports, stream_csvs, data)
    result: dict[str, object] = {
        "stores": stores,
        "speedup": speedup,
        "seconds": seconds,
        **lag_figures(samples, stopped_at),
        "lag_left_by_partition": lag_left,
        "agent_at_end": applied,
        "worker_agent_batch": agent_batch,
        "reports_during_run": reports,
    }
    (work / "result-live.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stores", type=int, default=14000)
    parser.add_argument("--days", type=int, default=8)
    parser.add_argument("--speedup", type=float, default=1290)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument(
        "--drain-max", type=float, default=120, help="longest wait for the lag to reach 0"
    )
    args = parser.parse_args()
    outcome = asyncio.run(main(args.stores, args.days, args.speedup, args.seconds, args.drain_max))
    for key, value in outcome.items():
        print(f"{key:<28} {value}")
