"""A real pipeline for tests: its own database, topics and Faust worker (a subprocess) on
the session's Kafka broker and PostgreSQL. Nothing is mocked."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from storemon.aggregates.report import render_csv
from storemon.aggregates.timebase import parse_as_of, parse_poll_timestamp
from storemon.batch import compute_report, load_dataset
from storemon.db import reports as db_reports
from storemon.db.migrate import connect
from storemon.settings import Settings
from storemon.sources import find_input, read_text_columns
from storemon.streams import messages
from storemon.streams.batcher import batcher_group
from storemon.streams.topics import ensure_topics
from storemon.waiting import poll_async

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def create_database(base_url: str, name: str) -> str:
    admin = await asyncpg.connect(base_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return base_url.rsplit("/", 1)[0] + "/" + name


def generate(out: Path, stores: int, days: int, seed: int, end: str | None = None) -> Path:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "storemon",
            "generate",
            "--stores",
            str(stores),
            "--days",
            str(days),
            "--seed",
            str(seed),
            "--out",
            str(out),
            *(["--end", end] if end is not None else []),
        ],
        check=True,
        capture_output=True,
    )
    return out


def batch_csv(data_dir: Path, as_of: str | None = None) -> str:
    data = load_dataset(data_dir)
    as_of_us = parse_as_of(as_of) if as_of else data.newest_poll_us
    assert as_of_us is not None
    return render_csv(compute_report(data, as_of_us))


def poll_us(message: tuple[str, str, bytes]) -> int:
    """The poll time of one message from :func:`read_messages`."""
    return parse_poll_timestamp(orjson.loads(message[2])["timestamp_utc"])


def newest_poll_us(polls: Iterable[tuple[str, str, bytes]]) -> int:
    """The newest poll time of messages from :func:`read_messages` (the default report time)."""
    return max(map(poll_us, polls))


def read_messages(
    data_dir: Path,
) -> tuple[list[tuple[str, str, bytes]], list[tuple[str, str, bytes]]]:
    """(reference messages, poll messages) of a data set: (logical topic, key, value)."""
    reference: list[tuple[str, str, bytes]] = []
    hours: dict[str, list[dict[str, str]]] = defaultdict(list)
    hours_columns = [
        ("store_id",),
        ("dayOfWeek", "day"),
        ("start_time_local",),
        ("end_time_local",),
    ]
    rows, _ = read_text_columns(find_input(data_dir, "menu_hours"), "hours", hours_columns)
    for store_id, day, start, end in rows:
        hours[store_id].append({"dayOfWeek": day, "start_time_local": start, "end_time_local": end})
    for store_id, intervals in hours.items():
        reference.append((messages.HOURS, store_id, messages.hours_message(store_id, intervals)))
    zone_columns = [("store_id",), ("timezone_str",)]
    rows, _ = read_text_columns(find_input(data_dir, "timezones"), "timezones", zone_columns)
    for store_id, zone in rows:
        reference.append((messages.TIMEZONES, store_id, messages.timezone_message(store_id, zone)))
    poll_columns = [("store_id",), ("timestamp_utc",), ("status",)]
    rows, _ = read_text_columns(find_input(data_dir, "store_status"), "polls", poll_columns)
    polls = [
        (messages.POLLS, store_id, messages.poll_message(store_id, stamp, status))
        for store_id, stamp, status in rows
    ]
    return reference, polls


class TcpProxy:
    """Forwards a local port to PostgreSQL until :meth:`cut`, which drops every connection
    and stops listening: to the application that is the database going away."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    def url(self, database_url: str) -> str:
        """``database_url`` pointed at the proxy."""
        parts = urlsplit(database_url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@127.0.0.1:{self.port}" if userinfo else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self.writers += [writer, up_writer]
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def cut(self) -> None:
        if self.server is not None:
            self.server.close()
        for writer in self.writers:
            writer.close()
        self.writers.clear()

    async def resume(self) -> None:
        """Listen again, on the same port: the database is back."""
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)


@dataclasses.dataclass
class Pipeline:
    """One pipeline per test: create it with :meth:`create`, close it with :meth:`close`
    (the ``pipeline`` fixture in ``conftest.py`` does both)."""

    settings: Settings
    worker: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    pool: asyncpg.Pool | None = None
    others: list[subprocess.Popen[bytes]] = dataclasses.field(default_factory=list)
    # Environment variables every worker started from now on gets besides the settings.
    extra_env: dict[str, str] = dataclasses.field(default_factory=dict)
    loglevel: str = os.environ.get("STOREMON_TEST_LOGLEVEL", "warning")

    @classmethod
    async def create(cls, base: Settings, name: str, tmp: Path) -> Pipeline:
        tag = f"{name}-{uuid.uuid4().hex[:8]}"
        database_url = await create_database(base.database_url, tag.replace("-", "_"))
        settings = dataclasses.replace(
            base,
            database_url=database_url,
            topic_prefix=tag,
            faust_app_id=tag,
            state_dir=tmp / "state",
            worker_web_port=free_port(),
            broker_session_timeout_s=6.0,
            batch_timeout_s=0.2,
        )
        await ensure_topics(settings)
        pipeline = cls(settings)
        pipeline.pool = await connect(database_url)
        return pipeline

    def env(self) -> dict[str, str]:
        s = self.settings
        return {
            **os.environ,
            "STOREMON_KAFKA_BOOTSTRAP": s.kafka_bootstrap,
            "STOREMON_DATABASE_URL": s.database_url,
            "STOREMON_TOPIC_PREFIX": s.topic_prefix,
            "STOREMON_APP_ID": s.faust_app_id,
            "STOREMON_STATE_DIR": str(s.state_dir),
            "STOREMON_WORKER_WEB_PORT": str(s.worker_web_port),
            "STOREMON_BROKER_SESSION_TIMEOUT_S": str(s.broker_session_timeout_s),
            "STOREMON_BATCH_SIZE": str(s.batch_size),
            "STOREMON_BATCH_TIMEOUT_S": str(s.batch_timeout_s),
            "STOREMON_BATCH_WINDOW_S": str(s.batch_window_s),
            "STOREMON_BATCHER_PROCESS": "1" if s.batcher_process else "0",
            "STOREMON_WORKER_BATCH_POLLS": str(s.worker_batch_polls),
            "STOREMON_PARTITIONS": str(s.partitions),
            "STOREMON_REPORT_TIMEOUT_S": str(s.report_timeout_s),
            "STOREMON_API_TOKEN": s.api_token,
            "STOREMON_PRUNE_INTERVAL_S": str(s.prune_interval_s),
            "STOREMON_RECOVERY_STALL_S": str(s.recovery_stall_s),
            "STOREMON_LOG_FORMAT": s.log_format,
            "STOREMON_REPORT_REACH_HOURS": str(s.report_reach_hours),
            "STOREMON_REPORT_LEAD_HOURS": str(s.report_lead_hours),
            **self.extra_env,
        }

    def start_worker(self, module: str = "storemon") -> None:
        """Start the worker (``python -m <module> worker``; tests may wrap it)."""
        self.worker, self.log_path = self._spawn_worker(self.env(), module)

    def start_other_worker(self) -> tuple[subprocess.Popen[bytes], int]:
        """A second worker in the same group (own web port, own RocksDB folder); the caller
        stops it. Returns the process and its web port."""
        port = free_port()
        process, _ = self._spawn_worker({**self.env(), "STOREMON_WORKER_WEB_PORT": str(port)})
        self.others.append(process)
        return process, port

    def _spawn_worker(
        self, env: dict[str, str], module: str = "storemon"
    ) -> tuple[subprocess.Popen[bytes], Path]:
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        log_path = (
            self.settings.state_dir
            / f"worker-{len(list(self.settings.state_dir.glob('worker-*.log')))}.log"
        )
        log = log_path.open("wb")
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                module,
                "worker",
                "--loglevel",
                self.loglevel,
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        return process, log_path

    def stop_worker(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.worker is None:
            return
        self.worker.send_signal(sig)
        try:
            self.worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.worker.kill()
            self.worker.wait()
        self.worker = None

    def worker_log(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-4000:]

    async def close(self) -> None:
        self.stop_worker()
        for process in self.others:
            if process.poll() is None:
                process.kill()
                process.wait()
        if self.pool is not None:
            await self.pool.close()

    async def ingest_all(self, data_dir: Path) -> None:
        """Start the worker, publish a data set (schedules and zones first) and wait until
        the worker has committed all of it."""
        reference, polls = read_messages(data_dir)
        self.start_worker()
        await self.publish(reference + polls)
        await self.wait_consumed()

    async def publish(self, items: Iterable[tuple[str, str, bytes]], keyed: bool = True) -> int:
        """Send (topic, key, value) items; ``keyed=False`` sends them without a key, as a
        careless client would (Kafka then picks any partition)."""
        producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            linger_ms=10,
            acks="all",
            enable_idempotence=True,
        )
        await producer.start()
        sent = 0
        try:
            pending = []
            for topic, key, value in items:
                pending.append(
                    await producer.send(
                        self.settings.topic(topic), value, key=key.encode() if keyed else None
                    )
                )
                sent += 1
                if len(pending) >= 5000:
                    await asyncio.gather(*pending)
                    pending = []
            await asyncio.gather(*pending)
        finally:
            await producer.stop()
        return sent

    async def offsets(self) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
        """(end offset, offset committed) of every input partition and of every partition of
        the internal batches. The input topics are committed by the worker's batching stage
        once their batches are acknowledged, so their offsets are read first and the batch
        topic's end after them: when both are caught up, everything is processed."""
        s = self.settings
        stages = (
            (batcher_group(s), messages.INPUT_TOPICS),
            (s.faust_app_id, (messages.INPUT_BATCHES,)),
        )
        admin = AIOKafkaAdminClient(bootstrap_servers=s.kafka_bootstrap)
        consumer = AIOKafkaConsumer(bootstrap_servers=s.kafka_bootstrap)
        await admin.start()
        await consumer.start()
        ends: dict[TopicPartition, int] = {}
        committed: dict[TopicPartition, int] = {}
        try:
            for group_id, topics in stages:
                tps = [TopicPartition(s.topic(t), p) for t in topics for p in range(s.partitions)]
                stage_ends = await consumer.end_offsets(tps)
                try:
                    group = await admin.list_consumer_group_offsets(group_id)
                except KafkaError:  # the group's coordinator is still being set up
                    group = {}
                for tp in tps:
                    ends[tp] = stage_ends[tp]
                    done = group[tp].offset if tp in group and group[tp].offset >= 0 else 0
                    committed[tp] = min(done, stage_ends[tp])
            return ends, committed
        finally:
            await consumer.stop()
            await admin.close()

    async def consumed_fraction(self) -> float:
        """Share of the input messages the worker has committed so far."""
        ends, committed = await self.offsets()
        return sum(committed.values()) / (sum(ends.values()) or 1)

    async def agent_committed(self) -> int:
        """Internal batches the ingest agent (which writes PostgreSQL) has committed."""
        _, committed = await self.offsets()
        batches = self.settings.topic(messages.INPUT_BATCHES)
        return sum(offset for tp, offset in committed.items() if tp.topic == batches)

    async def wait_consumed(self, timeout_s: float = 400.0) -> None:
        """Until the worker's committed offsets reach the end of every input topic (the
        worker writes PostgreSQL before it acknowledges, so the database is then complete)."""
        behind: dict[TopicPartition, int] = {}

        async def caught_up() -> bool | None:
            ends, committed = await self.offsets()
            behind.clear()
            behind.update({tp: ends[tp] - committed[tp] for tp in ends if committed[tp] < ends[tp]})
            if not behind:
                return True
            self.check_worker_alive()
            return None

        await poll_async(
            caught_up,
            timeout_s=timeout_s,
            on_timeout=lambda: AssertionError(
                f"worker still behind {behind}:\n{self.worker_log()}"
            ),
            first_s=0.1,
            cap_s=0.5,
        )

    def check_worker_alive(self) -> None:
        if self.worker is not None and self.worker.poll() is not None:
            raise AssertionError(f"worker exited early:\n{self.worker_log()}")

    async def wait_progress(self, at_least: float, timeout_s: float = 300.0) -> float:

        async def progressed() -> float | None:
            fraction = await self.consumed_fraction()
            if fraction >= at_least:
                return fraction
            self.check_worker_alive()
            return None

        return await poll_async(
            progressed,
            timeout_s=timeout_s,
            on_timeout=lambda: AssertionError(
                f"no progress to {at_least:.0%}:\n{self.worker_log()}"
            ),
            cap_s=0.2,
        )

    async def worker_overview(self, port: int | None = None) -> dict[str, Any]:
        """The worker's operator page (``/storemon/``) as JSON."""
        url = f"http://127.0.0.1:{port or self.settings.worker_web_port}/storemon/"
        headers = (
            {"Authorization": f"Bearer {self.settings.api_token}"}
            if self.settings.api_token
            else {}
        )
        timeout = aiohttp.ClientTimeout(total=3)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url, headers=headers) as response,
        ):
            response.raise_for_status()
            found: dict[str, Any] = await response.json()
            return found

    async def wait_report_index(self, timeout_s: float = 60.0) -> dict[str, Any]:
        """Until the worker's in-memory report index is loaded; returns its description."""

        async def ready() -> dict[str, Any] | None:
            self.check_worker_alive()
            try:
                described: dict[str, Any] = (await self.worker_overview())["report_index"]
            except (aiohttp.ClientError, TimeoutError):
                return None
            return described if described.get("ready") else None

        return await poll_async(
            ready,
            timeout_s=timeout_s,
            on_timeout=lambda: AssertionError(
                f"report index not ready in {timeout_s} s:\n{self.worker_log()}"
            ),
            cap_s=0.2,
        )

    async def report_timings(self, report_id: uuid.UUID) -> dict[str, float]:
        assert self.pool is not None
        raw = await self.pool.fetchval(
            "SELECT timings FROM reports WHERE report_id = $1", report_id
        )
        found: dict[str, float] = orjson.loads(raw) if raw else {}
        return found

    async def dead_letter_reasons(self) -> list[tuple[str, str]]:
        """(source, reason) of every row of the ``dead_letters`` table, sorted."""
        assert self.pool is not None
        rows = await self.pool.fetch("SELECT source, reason FROM dead_letters")
        return sorted((r["source"], r["reason"]) for r in rows)

    async def request_report(self, as_of: str | None = None) -> uuid.UUID:
        """What ``POST /trigger_report`` does: a Pending row, then the request message."""
        report_id = await self.store_report(as_of)
        await self.send_report_request(report_id, as_of)
        return report_id

    async def store_report(self, as_of: str | None = None) -> uuid.UUID:
        assert self.pool is not None
        report_id = uuid.uuid4()
        await db_reports.create_report(self.pool, report_id, parse_as_of(as_of) if as_of else None)
        return report_id

    async def send_report_request(self, report_id: uuid.UUID, as_of: str | None = None) -> None:
        await self.publish(
            [
                (
                    messages.REPORT_REQUESTS,
                    str(report_id),
                    messages.encode({"report_id": str(report_id), "as_of": as_of}),
                )
            ]
        )

    async def wait_report(
        self, report_id: uuid.UUID, timeout_s: float = 60.0, poll_s: float = 0.2
    ) -> str:
        pool = self.pool
        assert pool is not None

        async def complete() -> str | None:
            record = await db_reports.get_report(pool, report_id)
            assert record is not None
            assert record.status != db_reports.ReportStatus.FAILED, record.error
            if record.status != db_reports.ReportStatus.COMPLETE:
                return None
            csv_text = await db_reports.get_report_csv(pool, report_id)
            assert csv_text is not None
            return csv_text

        return await poll_async(
            complete,
            timeout_s=timeout_s,
            on_timeout=lambda: AssertionError(
                f"report {report_id} not complete in {timeout_s} s:\n{self.worker_log()}"
            ),
            first_s=min(0.05, poll_s),
            cap_s=poll_s,
        )


@contextlib.asynccontextmanager
async def own_topics(base: Settings, name: str, **changes: Any) -> AsyncIterator[Settings]:
    """The session's services under a topic prefix and app id of one test's own (``name``
    and a random tag), with ``changes`` to the settings; its topics are deleted after."""
    tag = f"{name}-{uuid.uuid4().hex[:10]}"
    yield dataclasses.replace(base, topic_prefix=tag, faust_app_id=tag, **changes)
    admin = AIOKafkaAdminClient(bootstrap_servers=base.kafka_bootstrap)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(tag)]
        if names:
            await admin.delete_topics(names)
    finally:
        await admin.close()
