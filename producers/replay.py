"""``storemon replay``: publish the three CSV files to the Kafka topics.

What goes where (see :mod:`storemon.streams.messages` for the value formats):

1. ``hours``: ONE message per store with its whole weekly schedule (the rows of the store,
   in file order, as raw text);
2. ``timezones``: one message per row, in file order (the last row of a store wins);
3. ``polls``: sorted by timestamp (a stable sort: rows with the same timestamp keep their
   file order; rows whose timestamp does not parse go last, one message each). As fast as
   possible, the polls of one store within a window of ``--pack-hours`` (168, a week, by default)
   travel as one pack message (at most ``MAX_PACK`` polls): the worker's cost is mostly per
   message, so this is what lets it ingest a week of history in seconds. With ``--speedup``
   or ``--pack-hours 0``, one message per row.

Every message is keyed by the store id (stripped, UTF-8), so Kafka's default partitioner puts
a store's messages in the same partition number of every topic. Fields are sent as the file
has them: the worker validates them with the same code as the batch command. Only a row that
cannot even be read (a wrong number of fields) is rejected here; it goes to ``dead-letters``
with its reason and is counted.

Pacing: ``--as-fast-as-possible`` (the default) or ``--speedup X``, which sends each poll at
``(timestamp - first timestamp) / X`` after the first one.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from storemon.aggregates.records import Rejection
from storemon.aggregates.timebase import HOUR_US, format_utc
from storemon.settings import Settings
from storemon.sources import (
    add_data_argument,
    find_input,
    poll_timestamps,
    read_raw,
    read_text_columns,
)
from storemon.streams import messages
from storemon.streams.topics import TopicMismatch, ensure_topics

# Futures are gathered this many at a time; two chunks are in flight, so the producer's
# buffers stay full while the previous chunk's acknowledgements come back.
CHUNK_SIZE = 4000
LINGER_MS = 20
# aiokafka keeps one open batch per partition and waits when it is full: big batches keep
# the single in-flight request per broker busy. Below the broker's 1 MiB message limit.
MAX_BATCH_BYTES = 512 * 1024
DELIVERY_TIMEOUT_MS = 60_000
# Sort key of a timestamp that does not parse: after every real one.
UNPARSABLE_TS = 2**63
# Most polls in one pack message (a week of hourly polls fits three times).
MAX_PACK = 600
DEFAULT_PACK_HOURS = 168
# Under this delay, --speedup does not sleep (the next sleep catches up).
MIN_SLEEP_S = 0.005

HOURS_COLUMNS: tuple[tuple[str, ...], ...] = (
    ("store_id",),
    ("dayOfWeek", "day"),
    ("start_time_local",),
    ("end_time_local",),
)
ZONE_COLUMNS: tuple[tuple[str, ...], ...] = (("store_id",), ("timezone_str",))
POLL_COLUMNS: tuple[tuple[str, ...], ...] = (("store_id",), ("timestamp_utc",), ("status",))


@dataclass
class TopicStats:
    """Rows of one input file and what became of them."""

    rows: int = 0  # data rows read (blank lines are not rows)
    sent: int = 0  # records delivered to the topic (polls: in fewer messages when packed)
    rejected: int = 0  # rows that could not be read; each went to dead-letters


@dataclass
class ReplayStats:
    topics: dict[str, TopicStats] = field(
        default_factory=lambda: {
            name: TopicStats() for name in (messages.HOURS, messages.TIMEZONES, messages.POLLS)
        }
    )
    dead_letters: int = 0  # messages delivered to dead-letters
    unparsable_timestamps: int = 0  # polls sent last because their timestamp did not parse
    poll_messages: int = 0  # messages the polls travelled in (fewer than polls when packed)
    first_poll_us: int | None = None
    newest_poll_us: int | None = None
    elapsed_s: float = 0.0  # the whole replay, reading the files included
    polls_elapsed_s: float = 0.0  # publishing the polls only

    @property
    def polls_per_s(self) -> float:
        sent = self.topics[messages.POLLS].sent
        return sent / self.polls_elapsed_s if self.polls_elapsed_s > 0 else 0.0

    @property
    def rejected(self) -> int:
        return sum(t.rejected for t in self.topics.values())

    def summary_lines(self) -> list[str]:
        lines = [
            f"  {name:<10} {s.rows:>10,} rows  {s.sent:>10,} messages  {s.rejected:>6,} rejected"
            for name, s in self.topics.items()
        ]
        lines.append(
            f"  {messages.DEAD_LETTERS:<10} {'':>10}       {self.dead_letters:>10,} messages"
        )
        if self.unparsable_timestamps:
            lines.append(
                f"  {self.unparsable_timestamps:,} polls with an unparsable timestamp were sent"
                " last (the worker rejects them)"
            )
        if self.first_poll_us is not None and self.newest_poll_us is not None:
            lines.append(
                f"  polls from {format_utc(self.first_poll_us)} to {format_utc(self.newest_poll_us)}"
            )
        polls = self.topics[messages.POLLS].sent
        lines.append(
            f"  {polls:,} polls in {self.poll_messages:,} messages,"
            f" {self.polls_elapsed_s:.1f} s ({self.polls_per_s:,.0f}/s); total {self.elapsed_s:.1f} s"
        )
        return lines


# ------------------------------------------------------------------------------ reading


@dataclass
class _Polls:
    """The poll rows to send, in file order, with their sort keys.

    Fields are kept as text and encoded when sent: an ``orjson.dumps`` result holds on to
    a buffer of several KiB, so 1.8 M encoded messages would take gigabytes. Store ids,
    keys and statuses are shared objects (one per distinct value)."""

    ts: list[int] = field(default_factory=list)
    keys: list[bytes] = field(default_factory=list)
    store_ids: list[str] = field(default_factory=list)
    stamps: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ts)

    def order(self) -> Sequence[int]:
        """Indexes in timestamp order (stable); the identity when the file is sorted."""
        ts = self.ts
        if all(ts[i] <= ts[i + 1] for i in range(len(ts) - 1)):
            return range(len(ts))
        return sorted(range(len(ts)), key=ts.__getitem__)


def _read_rows(
    path: Path,
    source: str,
    columns: Sequence[Sequence[str]],
    stats: TopicStats,
    rejected: list[Rejection],
) -> list[list[str]]:
    """The text of ``columns`` row by row; rows with a wrong field count are rejected."""
    rows, bad = read_text_columns(path, source, columns)
    stats.rows += len(rows) + len(bad)
    stats.rejected += len(bad)
    rejected += bad
    return rows


def _read_hours(
    path: Path, stats: TopicStats, rejected: list[Rejection]
) -> dict[str, list[dict[str, str]]]:
    """Schedule rows grouped by store (stripped id), stores in order of first appearance."""
    schedules: dict[str, list[dict[str, str]]] = {}
    for store_id, day, start, end in _read_rows(
        path, messages.HOURS, HOURS_COLUMNS, stats, rejected
    ):
        interval = {"dayOfWeek": day, "start_time_local": start, "end_time_local": end}
        schedules.setdefault(store_id.strip(), []).append(interval)
    return schedules


def _read_zones(path: Path, stats: TopicStats, rejected: list[Rejection]) -> list[list[str]]:
    return _read_rows(path, messages.TIMEZONES, ZONE_COLUMNS, stats, rejected)


def _read_polls(
    path: Path, stats: TopicStats, rejected: list[Rejection], replay_stats: ReplayStats
) -> _Polls:
    raw = read_raw(path, messages.POLLS)
    columns = []
    for names in POLL_COLUMNS:
        column = raw.column(names)
        if column is None:
            raise ValueError(f"{path}: no column {' or '.join(names)} in header {raw.header}")
        columns.append(column)
    id_column, ts_column, status_column = columns
    bad = raw.rejections()
    stats.rows += raw.num_rows + len(bad)
    stats.rejected += len(bad)
    rejected += bad
    parsed, ts_us = poll_timestamps(ts_column)
    polls = _Polls()
    polls.ts = [
        ts if ok else UNPARSABLE_TS for ts, ok in zip(ts_us.tolist(), parsed.tolist(), strict=True)
    ]
    # Store ids and statuses: one object per distinct text.
    shared: dict[str, str] = {}
    polls.store_ids = [shared.setdefault(v, v) for v in id_column.to_pylist()]
    polls.statuses = [shared.setdefault(v, v) for v in status_column.to_pylist()]
    polls.stamps = ts_column.to_pylist()
    key_of: dict[str, bytes] = {}
    polls.keys = [
        key_of.get(v) or key_of.setdefault(v, v.strip().encode()) for v in polls.store_ids
    ]
    if parsed.any():
        replay_stats.first_poll_us = int(ts_us[parsed].min())
        replay_stats.newest_poll_us = int(ts_us[parsed].max())
    replay_stats.unparsable_timestamps = int((~parsed).sum())
    return polls


# ------------------------------------------------------------------------------ sending


class _Sender:
    """Sends without awaiting each delivery: futures are gathered a chunk at a time, and the
    previous chunk is awaited only when the next one is full, so two chunks are in flight.
    A failed delivery raises (from :meth:`send` or :meth:`flush`)."""

    def __init__(self, producer: Any, chunk_size: int = CHUNK_SIZE) -> None:
        self._producer = producer
        self._chunk_size = chunk_size
        self._current: list[asyncio.Future[Any]] = []
        self._previous: list[asyncio.Future[Any]] = []

    async def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        future = await self._producer.send(topic, value, key=key)
        self._current.append(future)
        if len(self._current) >= self._chunk_size:
            await asyncio.gather(*self._previous)
            self._previous, self._current = self._current, []

    async def flush(self) -> None:
        previous, current = self._previous, self._current
        self._previous, self._current = [], []
        await asyncio.gather(*previous, *current)


class _Progress:
    """``\\r``-updated line on a terminal; a plain line every few seconds otherwise."""

    def __init__(self, label: str, total: int, enabled: bool, stream: TextIO = sys.stderr):
        self.label = label
        self.total = total
        self.enabled = enabled
        self.stream = stream
        self.tty = stream.isatty()
        self.interval = 0.25 if self.tty else 5.0
        self.started = time.monotonic()
        self.shown_at = self.started

    def update(self, done: int) -> None:
        now = time.monotonic()
        if not self.enabled or now - self.shown_at < self.interval:
            return
        self.shown_at = now
        self._show(done, now)

    def finish(self, done: int) -> None:
        if self.enabled:
            self._show(done, time.monotonic())
            if self.tty:
                self.stream.write("\n")
                self.stream.flush()

    def _show(self, done: int, now: float) -> None:
        elapsed = now - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        pct = 100.0 * done / self.total if self.total else 100.0
        line = f"replay {self.label}: {pct:5.1f}% {done:,}/{self.total:,} {rate:,.0f}/s"
        if self.tty:
            self.stream.write(f"\r{line}\x1b[K")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


class MemoPartitioner:
    """Kafka's default partitioner (murmur2 of the key bytes, the choice of the Java client
    and of Faust), remembered per key: aiokafka's murmur2 is pure Python and was the most
    expensive step of a send, while a replay has only one key per store."""

    def __init__(self) -> None:
        self._default = DefaultPartitioner()
        self._memo: dict[int, dict[bytes, int]] = {}  # partition count -> key -> index

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            chosen: int = self._default(key, all_partitions, available)
            return chosen
        by_key = self._memo.setdefault(len(all_partitions), {})
        index = by_key.get(key)
        if index is None:
            index = by_key[key] = all_partitions.index(
                self._default(key, all_partitions, available)
            )
        return all_partitions[index]


def make_producer(settings: Settings) -> Any:
    """An idempotent producer tuned for throughput (big batches, a short linger)."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=LINGER_MS,
        max_batch_size=MAX_BATCH_BYTES,
        max_request_size=2 * MAX_BATCH_BYTES,
        request_timeout_ms=DELIVERY_TIMEOUT_MS,
        partitioner=MemoPartitioner(),
    )


async def _send_dead_letters(
    sender: _Sender, settings: Settings, rejected: list[Rejection], stats: ReplayStats
) -> None:
    topic = settings.topic(messages.DEAD_LETTERS)
    for rejection in rejected:
        key = rejection.record.get("store_id", "").strip().encode() or None
        await sender.send(topic, key, messages.dead_letter(rejection))
    stats.dead_letters += len(rejected)
    rejected.clear()


async def _send_polls(
    sender: _Sender,
    topic: str,
    polls: _Polls,
    speedup: float | None,
    progress: _Progress,
) -> None:
    order = polls.order()
    ts, keys = polls.ts, polls.keys
    store_ids, stamps, statuses = polls.store_ids, polls.stamps, polls.statuses
    encode = messages.poll_message
    loop = asyncio.get_running_loop()
    started = loop.time()
    first_ts = next((ts[i] for i in order if ts[i] != UNPARSABLE_TS), None)
    for done, i in enumerate(order):
        if speedup is not None and first_ts is not None and ts[i] != UNPARSABLE_TS:
            delay = started + (ts[i] - first_ts) / 1e6 / speedup - loop.time()
            if delay > MIN_SLEEP_S:
                await asyncio.sleep(delay)
        await sender.send(topic, keys[i], encode(store_ids[i], stamps[i], statuses[i]))
        if done % 1024 == 0:
            progress.update(done)


async def _send_poll_packs(
    sender: _Sender, topic: str, polls: _Polls, pack_hours: int, progress: _Progress
) -> int:
    """Time order, one message per store and window; returns the messages sent."""
    window_us = pack_hours * HOUR_US
    ts, keys = polls.ts, polls.keys
    store_ids, stamps, statuses = polls.store_ids, polls.stamps, polls.statuses
    pending: dict[str, list[int]] = {}  # raw store id -> row indexes, in time order
    window: int | None = None
    sent = 0

    async def send(rows: list[int]) -> None:
        nonlocal sent
        first = rows[0]
        if len(rows) == 1:
            value = messages.poll_message(store_ids[first], stamps[first], statuses[first])
        else:
            value = messages.poll_pack_message(
                store_ids[first], [(stamps[i], statuses[i]) for i in rows]
            )
        await sender.send(topic, keys[first], value)
        sent += 1

    async def flush() -> None:
        for rows in pending.values():
            await send(rows)
        pending.clear()

    for done, i in enumerate(polls.order()):
        if ts[i] == UNPARSABLE_TS:
            await flush()
            await send([i])
            continue
        if ts[i] // window_us != window:
            await flush()
            window = ts[i] // window_us
        rows = pending.setdefault(store_ids[i], [])
        rows.append(i)
        if len(rows) >= MAX_PACK:
            await send(rows)
            del pending[store_ids[i]]
        if done % 1024 == 0:
            progress.update(done)
    await flush()
    return sent


async def replay(
    settings: Settings,
    data_dir: Path,
    *,
    speedup: float | None,
    progress: bool,
    pack_hours: int = 0,
) -> ReplayStats:
    """Publish ``data_dir``'s menu_hours, timezones and store_status files (``.csv`` or
    ``.csv.gz``). Raises FileNotFoundError / ValueError for a missing file or column,
    TopicMismatch, and KafkaError when a message cannot be delivered. ``pack_hours`` > 0
    packs polls (see the module's notes); it is ignored with ``speedup``."""
    if speedup is not None and speedup <= 0:
        raise ValueError("speedup must be positive")
    if pack_hours < 0:
        raise ValueError("pack hours must not be negative")
    began = time.perf_counter()
    stats = ReplayStats()
    rejected: list[Rejection] = []
    hours_path = find_input(data_dir, "menu_hours")
    zones_path = find_input(data_dir, "timezones")
    polls_path = find_input(data_dir, "store_status")
    schedules = _read_hours(hours_path, stats.topics[messages.HOURS], rejected)
    zones = _read_zones(zones_path, stats.topics[messages.TIMEZONES], rejected)
    polls = _read_polls(polls_path, stats.topics[messages.POLLS], rejected, stats)
    await ensure_topics(settings)
    producer = make_producer(settings)
    await producer.start()
    try:
        for name in messages.ALL_TOPICS:  # the metadata of topics just created
            await producer.partitions_for(settings.topic(name))
        sender = _Sender(producer)
        hours_topic = settings.topic(messages.HOURS)
        for store_id, intervals in schedules.items():
            await sender.send(
                hours_topic, store_id.encode(), messages.hours_message(store_id, intervals)
            )
        zones_topic = settings.topic(messages.TIMEZONES)
        for store_id, zone in zones:
            await sender.send(
                zones_topic, store_id.strip().encode(), messages.timezone_message(store_id, zone)
            )
        await _send_dead_letters(sender, settings, rejected, stats)
        await sender.flush()
        stats.topics[messages.HOURS].sent = len(schedules)
        stats.topics[messages.TIMEZONES].sent = len(zones)
        meter = _Progress("polls", len(polls), progress)
        polls_began = time.perf_counter()
        polls_topic = settings.topic(messages.POLLS)
        if speedup is None and pack_hours > 0:
            stats.poll_messages = await _send_poll_packs(
                sender, polls_topic, polls, pack_hours, meter
            )
        else:
            await _send_polls(sender, polls_topic, polls, speedup, meter)
            stats.poll_messages = len(polls)
        await sender.flush()
        stats.polls_elapsed_s = time.perf_counter() - polls_began
        stats.topics[messages.POLLS].sent = len(polls)
        meter.finish(len(polls))
    finally:
        await producer.stop()
    stats.elapsed_s = time.perf_counter() - began
    return stats


# ------------------------------------------------------------------------------ command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_argument(parser)
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument(
        "--speedup",
        type=float,
        default=None,
        metavar="X",
        help="send polls at their timestamps' pace divided by X (3600: an hour a second)",
    )
    pace.add_argument(
        "--as-fast-as-possible",
        action="store_true",
        help="send everything without pacing (the default)",
    )
    parser.add_argument(
        "--pack-hours",
        type=int,
        default=DEFAULT_PACK_HOURS,
        metavar="H",
        help="as fast as possible, send a store's polls of each H-hour window as one message"
        f" (default {DEFAULT_PACK_HOURS}; 0: one message per poll)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress line on stderr")


def run(args: argparse.Namespace) -> int:
    from storemon import services

    settings = Settings.from_env()
    try:
        if not settings.kafka_bootstrap:
            settings = services.ensure_up(settings).apply_to(settings)
        stats = asyncio.run(
            replay(
                settings,
                args.data,
                speedup=args.speedup,
                progress=not args.no_progress,
                pack_hours=args.pack_hours,
            )
        )
    except (OSError, ValueError, TopicMismatch) as error:
        print(f"storemon replay: {error}", file=sys.stderr)
        return 2
    except (KafkaError, services.ServiceError) as error:
        print(f"storemon replay: {error.__class__.__name__}: {error}", file=sys.stderr)
        return 1
    # The result on stdout (progress went to stderr).
    print(
        f"storemon replay: {args.data} -> {settings.kafka_bootstrap} (topics {settings.topic('*')})"
    )
    for line in stats.summary_lines():
        print(line)
    return 0
