"""``storemon demo``: the whole pipeline end to end, with one command.

1. start (or reuse) the local Kafka and PostgreSQL (``storemon services up``);
2. generate a sample data set into ``<state dir>/demo/data`` (200 stores, 8 days, seed 7);
3. give this run its own namespace: a fresh database ``storemon_demo``, topics and a Faust
   app id ``storemon-demo-<run>``, a fresh worker state dir, so nothing left by an earlier
   run (or by your own work on the same services) can leak into the report;
4. start a worker (``python -m storemon worker``, a subprocess) and replay the data set;
5. wait until the worker has written every store's newest poll to PostgreSQL;
6. start the API in-process, ``POST /trigger_report``, poll ``GET /get_report`` until the
   report is Complete, and write it to ``--out`` (default ``<state dir>/demo/report.csv``);
7. run the batch command ``storemon report`` on the same files and say whether the two
   reports are identical byte for byte;
8. stop the worker and the API, delete the run's topics; Kafka and PostgreSQL keep running
   (``storemon services down`` stops them).

Progress goes to stderr; the result goes to stdout, whose last line is the report's
absolute path. Exit status: 0 when the reports match, 1 when they differ or a step fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import random
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
from aiohttp import web
from aiokafka.admin import AIOKafkaAdminClient

from storemon import services
from storemon.aggregates.timebase import format_utc, parse_as_of
from storemon.batch import load_dataset
from storemon.db.migrate import connect
from storemon.producers.generate import DEFAULT_END, build_dataset, write_dataset
from storemon.producers.replay import DEFAULT_PACK_HOURS, replay
from storemon.settings import Settings
from storemon.streams import messages
from storemon.streams.topics import ensure_topics
from storemon.waiting import poll_async
from storemon.web.app import build_app

DEMO_DATABASE = "storemon_demo"
POLL_INTERVAL_S = 0.5
WORKER_STOP_TIMEOUT_S = 30.0
REPO_ROOT = Path(__file__).resolve().parents[2]


class DemoError(RuntimeError):
    """A step failed; the message says which, with the worker's log tail when it helps."""


def say(message: str) -> None:
    print(f"[demo] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


@dataclasses.dataclass(frozen=True)
class DemoPaths:
    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def worker_state(self) -> Path:
        return self.root / "worker-state"

    @property
    def worker_log(self) -> Path:
        return self.root / "worker.log"

    @property
    def batch_report(self) -> Path:
        return self.root / "batch-report.csv"


# ------------------------------------------------------------------------------ steps


def generate_data(out: Path, stores: int, days: float, seed: int) -> None:
    began = time.perf_counter()
    dataset = build_dataset(random.Random(seed), stores, days, parse_as_of(DEFAULT_END))
    summary = write_dataset(dataset, out)
    say(
        f"generated {stores} stores, {summary.polls:,} polls, {summary.hours_rows:,} hours rows,"
        f" {summary.zone_rows:,} zones into {out} ({time.perf_counter() - began:.1f} s)"
    )


async def fresh_database(base_url: str, name: str) -> str:
    """Drop and create database ``name`` on the server of ``base_url``, with the schema."""
    admin = await asyncpg.connect(base_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = with_database(base_url, name)
    pool = await connect(url)  # applies the migrations
    await pool.close()
    return url


def worker_env(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "STOREMON_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "STOREMON_DATABASE_URL": settings.database_url,
        "STOREMON_TOPIC_PREFIX": settings.topic_prefix,
        "STOREMON_APP_ID": settings.faust_app_id,
        "STOREMON_STATE_DIR": str(settings.state_dir),
        "STOREMON_WORKER_WEB_PORT": str(settings.worker_web_port),
        "STOREMON_PARTITIONS": str(settings.partitions),
    }


@contextlib.contextmanager
def running_worker(settings: Settings, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A ``storemon worker`` subprocess, stopped (SIGTERM, then SIGKILL) on exit."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "storemon", "worker", "--loglevel", "info"],
            env=worker_env(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=REPO_ROOT if (REPO_ROOT / "pyproject.toml").exists() else None,
            start_new_session=True,  # a Ctrl-C of the demo does not reach it: we stop it
        )
    say(f"worker started (pid {worker.pid}, log {log_path})")
    try:
        yield worker
    finally:
        stop_worker(worker)


def stop_worker(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is not None:
        return
    worker.terminate()
    try:
        worker.wait(timeout=WORKER_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        say(f"worker (pid {worker.pid}) still running after {WORKER_STOP_TIMEOUT_S:.0f} s: kill")
        worker.kill()
        worker.wait()
    say(f"worker stopped (pid {worker.pid})")


async def wait_for_worker(
    database_url: str,
    expected: dict[str, int],
    worker: subprocess.Popen[bytes],
    log_path: Path,
    timeout_s: float,
) -> None:
    """Until every polled store's row in ``stores`` has the data set's newest poll of that
    store (so the count of polled stores and the newest poll overall match too)."""
    newest = max(expected.values())
    shown = -1
    conn = await asyncpg.connect(database_url)

    async def caught_up() -> bool | None:
        nonlocal shown
        if worker.poll() is not None:
            raise DemoError(
                f"the worker exited with status {worker.returncode}; last lines of"
                f" {log_path}:\n{log_tail(log_path)}"
            )
        rows = await conn.fetch(
            "SELECT store_id, newest_poll_us FROM stores WHERE newest_poll_us IS NOT NULL"
        )
        got = {r["store_id"]: r["newest_poll_us"] for r in rows}
        done = sum(1 for store, ts in expected.items() if got.get(store) == ts)
        if done != shown:
            say(f"worker: {done}/{len(expected)} stores up to their newest poll")
            shown = done
        return True if done == len(expected) and max(got.values()) == newest else None

    def too_late() -> DemoError:
        return DemoError(
            f"the worker did not catch up within {timeout_s:.0f} s ({shown} of"
            f" {len(expected)} stores); last lines of {log_path}:\n{log_tail(log_path)}"
        )

    try:
        await poll_async(caught_up, timeout_s=timeout_s, on_timeout=too_late, cap_s=POLL_INTERVAL_S)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def running_api(settings: Settings) -> AsyncIterator[str]:
    """The API on a free local port, in this process; yields its base URL."""
    runner = web.AppRunner(build_app(settings), access_log=None)
    await runner.setup()
    try:
        port = free_port()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        say(f"API listening on http://127.0.0.1:{port}")
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
        say("API stopped")


async def fetch_report(base_url: str, token: str, timeout_s: float) -> StreamReport:
    """Trigger a report and wait for it: (report id, CSV bytes, X-Report-As-Of)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession(base_url, headers=headers) as http:
        async with http.post("/trigger_report") as response:
            body = await response.json()
            if response.status != 202:
                raise DemoError(f"POST /trigger_report: {response.status} {body}")
        report_id = str(body["report_id"])
        say(f"report {report_id} triggered")

        async def finished() -> StreamReport | None:
            async with http.get("/get_report", params={"report_id": report_id}) as response:
                if response.status == 200 and response.content_type == "text/csv":
                    as_of = response.headers["X-Report-As-Of"]
                    return StreamReport(report_id, await response.read(), as_of)
                body = await response.json()
                if response.status != 200 or body.get("status") == "Failed":
                    raise DemoError(f"GET /get_report: {response.status} {body}")
            return None

        return await poll_async(
            finished,
            timeout_s=timeout_s,
            on_timeout=lambda: DemoError(
                f"report {report_id} not complete within {timeout_s:.0f} s"
            ),
            cap_s=POLL_INTERVAL_S,
        )


def batch_report(data_dir: Path, out: Path) -> bytes:
    """The batch command, run as users run it."""
    result = subprocess.run(
        [sys.executable, "-m", "storemon", "report", "--data", str(data_dir), "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise DemoError(f"storemon report failed ({result.returncode}): {result.stderr}")
    return out.read_bytes()


async def delete_topics(settings: Settings, prefix: str) -> None:
    """Best effort: the run's topics (inputs, Faust changelogs), so runs do not pile up."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        await admin.start()
        names = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if names:
            await admin.delete_topics(names)
        say(f"deleted {len(names)} topics {prefix}*")
    except Exception as error:  # cleanup must not hide the result
        say(f"could not delete topics {prefix}*: {error!r}")
    finally:
        await admin.close()


# ------------------------------------------------------------------------------ the run


@dataclasses.dataclass(frozen=True)
class StreamReport:
    report_id: str
    csv_bytes: bytes
    as_of: str


async def stream_report(
    base: Settings, paths: DemoPaths, expected: dict[str, int], timeout_s: float, tag: str
) -> StreamReport:
    """Steps 3 to 6 and 8: the report as the streaming path computes it."""
    database_url = await fresh_database(base.database_url, DEMO_DATABASE)
    settings = dataclasses.replace(
        base,
        database_url=database_url,
        topic_prefix=tag,
        faust_app_id=tag,
        state_dir=paths.worker_state,
        worker_web_port=free_port(),
    )
    say(f"database {DEMO_DATABASE} (fresh), topics {tag}.*")
    await ensure_topics(settings)
    try:
        with running_worker(settings, paths.worker_log) as worker:
            stats = await replay(
                settings, paths.data, speedup=None, progress=True, pack_hours=DEFAULT_PACK_HOURS
            )
            say(
                f"replayed {stats.topics[messages.POLLS].sent:,} polls in {stats.polls_elapsed_s:.1f} s"
                f" ({stats.polls_per_s:,.0f}/s), {stats.rejected} rows rejected"
            )
            await wait_for_worker(database_url, expected, worker, paths.worker_log, timeout_s)
            async with running_api(settings) as base_url:
                return await fetch_report(base_url, settings.api_token, timeout_s)
    finally:
        await delete_topics(settings, tag)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stores", type=int, default=200, help="stores to generate (200)")
    parser.add_argument("--days", type=float, default=8.0, help="days of polls (8)")
    parser.add_argument("--seed", type=int, default=7, help="random seed of the data (7)")
    parser.add_argument(
        "--out", type=Path, default=None, help="report CSV (default <state dir>/demo/report.csv)"
    )
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds to wait for each step (300)"
    )


def run(args: argparse.Namespace) -> int:
    if args.stores < 1 or args.days <= 0:
        print("storemon demo: need --stores >= 1 and --days > 0", file=sys.stderr)
        return 2
    settings = Settings.from_env()
    paths = DemoPaths(settings.state_dir / "demo")
    out: Path = args.out or paths.root / "report.csv"
    began = time.monotonic()
    try:
        endpoints = services.ensure_up(settings)
        say(f"kafka {endpoints.kafka_bootstrap}, postgres {endpoints.postgres_backend}")
        shutil.rmtree(paths.worker_state, ignore_errors=True)
        generate_data(paths.data, args.stores, args.days, args.seed)
        data = load_dataset(paths.data)
        expected = {s: max(ts for ts, _ in polls) for s, polls in data.polls_by_store().items()}
        if not expected:
            raise DemoError(f"no valid poll in {paths.data}")
        tag = f"storemon-demo-{uuid.uuid4().hex[:8]}"
        stream = asyncio.run(
            stream_report(endpoints.apply_to(settings), paths, expected, args.timeout, tag)
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(stream.csv_bytes)
        batch = batch_report(paths.data, paths.batch_report)
    except (DemoError, services.ServiceError) as error:
        print(f"storemon demo: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("storemon demo: interrupted", file=sys.stderr)
        return 130
    rows = max(0, stream.csv_bytes.count(b"\n") - 1)
    newest = format_utc(max(expected.values()))
    print(f"stream report {stream.report_id}: {rows} stores as of {stream.as_of}")
    if stream.as_of != newest:
        print(f"  (the newest poll of the data set is {newest})")
    same = batch == stream.csv_bytes
    verdict = "identical, byte for byte" if same else "DIFFERENT from the stream report"
    print(f"batch report {paths.batch_report.resolve()}: {verdict}")
    print(f"done in {time.monotonic() - began:.0f} s; the worker and the API are stopped.")
    print("Kafka and PostgreSQL keep running; stop them with: storemon services down")
    print(out.resolve())
    return 0 if same else 1
