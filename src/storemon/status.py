"""``storemon status``: is everything up, how far behind is the worker, how fresh is the data.

Prints, or with ``--json`` emits as one object: Kafka and PostgreSQL (reachable or not), the
API and the worker's web views (``/healthz`` and ``/storemon/`` answer or not), the lag of
the worker's consumer groups per topic and partition (end offset minus committed offset; the
input topics and the report requests), the newest poll ingested, the supported range of
report times (``report_range``: earliest and latest ``as_of`` the API accepts, see
docs/semantics.md), and the last report. Nothing is started. Exit status 0 when Kafka and
PostgreSQL answer, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from storemon.aggregates.reach import supported_range
from storemon.aggregates.timebase import format_utc
from storemon.db.retention import report_range
from storemon.settings import Settings

PROBE_TIMEOUT_S = 3.0


@dataclass
class Status:
    kafka: bool = False
    postgres: bool = False
    api: bool | None = None
    worker: bool | None = None
    kafka_bootstrap: str = ""
    lag: dict[str, dict[str, int]] = field(default_factory=dict)  # topic -> partition -> lag
    newest_poll: str | None = None
    # The report times the API accepts (earliest_as_of, latest_as_of, reach/lead hours).
    report_range: dict[str, Any] | None = None
    stores: int | None = None
    last_report: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def total_lag(self) -> int:
        return sum(sum(parts.values()) for parts in self.lag.values())


async def _http_ok(url: str, token: str) -> bool:
    import aiohttp

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        timeout = aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url, headers=headers) as response,
        ):
            return response.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


async def _lag(settings: Settings) -> dict[str, dict[str, int]]:
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    from storemon.streams import messages
    from storemon.streams.batcher import batcher_group
    from storemon.streams.report_jobs import report_group

    names = [*messages.INPUT_TOPICS, messages.INPUT_BATCHES, messages.REPORT_REQUESTS]
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=5000)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=5000)
    await admin.start()
    await consumer.start()
    try:
        topics = await consumer.topics()
        # Every storemon topic has settings.partitions partitions (the worker checks that).
        tps = [
            TopicPartition(settings.topic(name), p)
            for name in names
            if settings.topic(name) in topics
            for p in range(settings.partitions)
        ]
        ends = await consumer.end_offsets(tps) if tps else {}
        committed = dict(await admin.list_consumer_group_offsets(settings.faust_app_id))
        # The input topics are read by the batching stage, in a group of its own
        # (streams/batcher.py); the Faust group reads what it wrote (input-batches).
        committed.update(await admin.list_consumer_group_offsets(batcher_group(settings)))
        # Report requests have a consumer group of their own (streams/report_jobs.py).
        committed.update(await admin.list_consumer_group_offsets(report_group(settings)))
        lag: dict[str, dict[str, int]] = {}
        for tp in tps:
            done = committed[tp].offset if tp in committed and committed[tp].offset >= 0 else 0
            lag.setdefault(tp.topic, {})[str(tp.partition)] = max(0, ends[tp] - done)
        return lag
    finally:
        await consumer.stop()
        await admin.close()


async def _database_facts(settings: Settings, status: Status) -> None:
    import asyncpg

    conn = await asyncpg.connect(settings.database_url, timeout=PROBE_TIMEOUT_S)
    try:
        status.postgres = True
        if not await conn.fetchval("SELECT to_regclass('reports') IS NOT NULL"):
            status.problems.append("database has no storemon tables yet (no worker started)")
            return
        row = await conn.fetchrow("SELECT count(*) AS n, max(newest_poll_us) AS newest FROM stores")
        if row is not None:
            status.stores = row["n"]
            status.newest_poll = format_utc(row["newest"]) if row["newest"] is not None else None
        if await conn.fetchval("SELECT to_regclass('retention_mark') IS NOT NULL"):
            allowed = await report_range(conn, settings.reach_us, settings.lead_us)
        else:  # the worker has not migrated this database yet: nothing was pruned
            allowed = supported_range(
                row["newest"] if row is not None else None, settings.reach_us, settings.lead_us
            )
        if allowed is not None:
            status.report_range = {
                **allowed.as_json(),
                "reach_hours": settings.report_reach_hours,
                "lead_hours": settings.report_lead_hours,
            }
        report = await conn.fetchrow(
            "SELECT report_id, status, as_of_us, created_at, finished_at, error, row_count"
            " FROM reports WHERE NOT for_dashboard ORDER BY created_at DESC LIMIT 1"
        )
        if report is not None:
            status.last_report = {
                "report_id": str(report["report_id"]),
                "status": report["status"],
                "as_of": format_utc(report["as_of_us"]) if report["as_of_us"] else None,
                "requested_at": report["created_at"].isoformat(),
                "finished_at": report["finished_at"].isoformat() if report["finished_at"] else None,
                "stores": report["row_count"],
                "error": report["error"],
            }
    finally:
        await conn.close()


async def gather_status(settings: Settings) -> Status:
    from storemon import services

    status = Status()
    try:
        endpoints = services.resolve_endpoints(settings)
        settings = endpoints.apply_to(settings)
    except services.ServiceError as error:
        status.problems.append(str(error))
        local = services.status(settings)  # whichever of the two does run
        settings = dataclasses.replace(
            settings,
            kafka_bootstrap=settings.kafka_bootstrap
            or (local.kafka.address if local.kafka.running else ""),
            database_url=settings.database_url
            or (local.postgres.address if local.postgres.running else ""),
        )
    status.kafka_bootstrap = settings.kafka_bootstrap
    if settings.kafka_bootstrap:
        try:
            async with asyncio.timeout(15):
                status.lag = await _lag(settings)
            status.kafka = True
        except Exception as error:  # any failure here means "Kafka is not usable"
            status.problems.append(f"kafka: {error.__class__.__name__}: {error}")
    if settings.database_url:
        try:
            await _database_facts(settings, status)
        except Exception as error:
            status.problems.append(f"postgres: {error.__class__.__name__}: {error}")
    token = settings.api_token
    status.api = await _http_ok(f"http://{settings.api_host}:{settings.api_port}/healthz", token)
    status.worker = await _http_ok(
        f"http://{settings.worker_web_host}:{settings.worker_web_port}/storemon/", token
    )
    return status


def _print(status: Status) -> None:
    def mark(flag: bool | None) -> str:
        return "up" if flag else "down"

    print(f"kafka      {mark(status.kafka)}  {status.kafka_bootstrap}")
    print(f"postgres   {mark(status.postgres)}")
    print(f"api        {mark(status.api)}")
    print(f"worker     {mark(status.worker)}")
    print(f"lag        {status.total_lag} messages not yet processed")
    for topic, parts in sorted(status.lag.items()):
        shown = ", ".join(f"{p}: {n}" for p, n in sorted(parts.items(), key=lambda i: int(i[0])))
        print(f"  {topic:<32} {shown}")
    print(f"stores     {status.stores if status.stores is not None else '-'}")
    print(f"newest     {status.newest_poll or 'no poll yet'}")
    shown_range = status.report_range
    if shown_range is not None:
        print(
            f"as_of      {shown_range['earliest_as_of']} .. {shown_range['latest_as_of']}"
            f" (reach {shown_range['reach_hours']} h, lead {shown_range['lead_hours']} h)"
        )
    report = status.last_report
    if report is None:
        print("report     none yet")
    else:
        detail = f" ({report['error']})" if report["error"] else ""
        print(
            f"report     {report['report_id']} {report['status']}{detail}, as of {report['as_of']}"
        )
    for problem in status.problems:
        print(f"problem    {problem}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.CRITICAL)  # client libraries' retries are noise here
    settings = Settings.from_env()
    status = asyncio.run(gather_status(settings))
    if args.json:
        body = asdict(status)
        body["total_lag"] = status.total_lag
        sys.stdout.write(orjson.dumps(body).decode() + "\n")
    else:
        with contextlib.suppress(BrokenPipeError):
            _print(status)
    return 0 if status.kafka and status.postgres else 1
