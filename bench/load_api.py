"""Load on the API while a replay runs: bounded, loopback only, stops by itself.

    .venv/bin/python bench/load_api.py --seconds 60 --pollers 200 --triggers-per-s 20

Uses the broker and database of `storemon services up`, a fresh topic prefix and database,
one worker and the API in this process (127.0.0.1, a free port). While `replay` publishes a
generated set (8 days of polls paced over the load window), `--pollers` clients call `GET /get_report` in a loop on the reports
triggered so far and `POST /trigger_report` is called `--triggers-per-s` times a second.
Afterwards: every request's outcome, throughput, p50/p99 latency per endpoint, the reports'
final states, and whether the stream's report still equals the batch command's (no poll
lost under load).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.stream_ingest import serve_api  # noqa: E402
from storemon import services  # noqa: E402
from storemon.producers.replay import replay  # noqa: E402
from storemon.settings import Settings  # noqa: E402
from tests.integration.pipeline import Pipeline, batch_csv, generate  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def main(seconds: float, pollers: int, triggers_per_s: float, stores: int) -> dict[str, Any]:
    base = Settings.from_env()
    if not base.kafka_bootstrap or not base.database_url:
        base = services.ensure_up(base).apply_to(base)
    work = ROOT / "bench" / "work" / f"load-{stores}"
    data = work / "data"
    if not (data / "store_status.csv").exists():
        generate(data, stores=stores, days=8, seed=7)
    pipeline = await Pipeline.create(base, "load", work)
    pipeline.start_worker()
    runner, url = await serve_api(pipeline.settings)
    outcomes: Counter[str] = Counter()
    latency: dict[str, list[float]] = {"trigger": [], "get": []}
    report_ids: list[str] = []
    deadline = time.monotonic() + seconds

    async def timed(kind: str, request: Any) -> tuple[int, Any]:
        t0 = time.perf_counter()
        try:
            async with request as response:
                body = await response.read()
                latency[kind].append(time.perf_counter() - t0)
                outcomes[f"{kind} {response.status}"] += 1
                return response.status, body
        except (aiohttp.ClientError, TimeoutError) as error:
            outcomes[f"{kind} {error.__class__.__name__}"] += 1
            return 0, None

    async def trigger_once(session: aiohttp.ClientSession) -> None:
        status, body = await timed("trigger", session.post(f"{url}/trigger_report"))
        if status == 202:
            report_ids.append(json.loads(body)["report_id"])

    async def trigger_loop(session: aiohttp.ClientSession) -> None:
        # On a fixed schedule, each trigger in its own task: a slow answer does not delay
        # the next one.
        interval = 1.0 / triggers_per_s
        next_at = time.monotonic()
        sent: list[asyncio.Task[None]] = []
        while time.monotonic() < deadline:
            sent.append(asyncio.ensure_future(trigger_once(session)))
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await asyncio.gather(*sent)

    async def poll_loop(session: aiohttp.ClientSession) -> None:
        while time.monotonic() < deadline:
            if not report_ids:
                await asyncio.sleep(0.05)
                continue
            rid = random.choice(report_ids)
            await timed("get", session.get(f"{url}/get_report", params={"report_id": rid}))

    limits = aiohttp.TCPConnector(limit=pollers + 10)
    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=limits) as session:
        replaying = asyncio.ensure_future(
            # Paced so the 8 days of polls take the whole load window: one message per poll,
            # as live pollers would send them.
            replay(pipeline.settings, data, speedup=8 * 86400 / seconds, progress=False)
        )
        await asyncio.gather(trigger_loop(session), *(poll_loop(session) for _ in range(pollers)))
        stats = await replaying
    elapsed = time.perf_counter() - started
    await pipeline.wait_consumed(timeout_s=1800)
    assert pipeline.pool is not None
    states = Counter(
        f"{r['status']}: {r['error']}" if r["error"] else r["status"]
        for r in await pipeline.pool.fetch("SELECT status, error FROM reports")
    )
    final_id = await pipeline.request_report()
    final_csv = await pipeline.wait_report(final_id, timeout_s=1800)
    await runner.cleanup()
    await pipeline.close()
    requests = sum(outcomes.values())
    result: dict[str, Any] = {
        "seconds": round(elapsed, 1),
        "pollers": pollers,
        "triggers_per_s": triggers_per_s,
        "stores": stores,
        "polls_replayed": stats.topics["polls"].sent,
        "requests": requests,
        "requests_per_s": round(requests / elapsed),
        "outcomes": dict(outcomes),
        "errors": sum(n for k, n in outcomes.items() if not k.endswith((" 200", " 202"))),
        "trigger_p50_ms": round(1000 * statistics.median(latency["trigger"]), 1),
        "trigger_p99_ms": round(1000 * percentile(latency["trigger"], 0.99), 1),
        "get_p50_ms": round(1000 * statistics.median(latency["get"]), 1),
        "get_p99_ms": round(1000 * percentile(latency["get"], 0.99), 1),
        "report_states_after_load": dict(states),
        "final_report_equals_batch": final_csv == batch_csv(data),
    }
    (work / "result.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--pollers", type=int, default=200)
    parser.add_argument("--triggers-per-s", type=float, default=20.0)
    parser.add_argument("--stores", type=int, default=1000)
    args = parser.parse_args()
    outcome = asyncio.run(main(args.seconds, args.pollers, args.triggers_per_s, args.stores))
    for key, value in outcome.items():
        print(f"{key:<28} {value}")
