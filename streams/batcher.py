"""The batching stage: input records in, one internal message per partition and moment out.

A live poller sends one message per poll. Through Faust's per-message path an event costs
about 150 µs of this machine (a Faust agent doing nothing tops out near 6,500 events/s),
while a plain aiokafka consumer reads over 400,000 messages/s. So the worker reads
``polls``, ``hours`` and ``timezones`` here, with a plain consumer in a group of its own
(``<app id>-batcher``), validates each record with the batch command's parsers, and writes
what it gathered of one partition number over ~100 ms (or ``batch_size`` polls) as ONE
message to ``input-batches``, at that same partition number. The Faust agent reads that
topic: a few dozen events per second instead of tens of thousands, and every store of an
event belongs to the event's partition, so its table writes land in the right changelog
partition.

Delivery: a batch is produced with ``acks=all`` by an idempotent producer, and the input
offsets it covers are committed only once every batch holding them is acknowledged. A
crash in between re-reads and re-sends those records: at-least-once, which every update
downstream absorbs (they are idempotent). Order: a partition's batches are produced in the
order its records were read, and a batcher hands a partition over (rebalance) only after
flushing and committing what it read from it, so a store's newer schedule never lands
before an older one.

Reference data first: on each assignment the poll partitions are paused until the hours and
zones partitions have been read up to where they ended at that moment (at most
``REFERENCE_FIRST_MAX_S``). The result does not depend on the order (a store's state is a
function of its polls and its latest schedule and zone), but its cost does: after a
backlog (a replay published before the worker started) a store whose polls came before its
schedule was materialised with the default schedule, then again with its own and again with
its zone: 12 % of a 100,000-store fill.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from storemon.aggregates.records import (
    BadField,
    Rejection,
    parse_poll,
    parse_zone,
    poll_from_fields,
)
from storemon.aggregates.schedule import build_schedule
from storemon.settings import Settings
from storemon.streams.lag import consumer_lag
from storemon.streams.messages import (
    HOURS,
    INPUT_BATCHES,
    INPUT_TOPICS,
    POLLS,
    RejectedRow,
    decode_object,
    input_batch_message,
    parse_hours_message,
    text_fields,
    unpack_polls,
)

log = logging.getLogger(__name__)

ZONE_FIELDS = ("store_id", "timezone_str")
FETCH_MAX_RECORDS = 20000
# Longest the polls wait for the reference topics after an assignment (then read anyway).
REFERENCE_FIRST_MAX_S = 60.0


@lru_cache(maxsize=65536)
def home_partition(store_id: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a message keyed by ``store_id``."""
    every = list(range(partitions))
    chosen: int = DefaultPartitioner()(store_id.encode(), every, every)
    return chosen


def batcher_group(settings: Settings) -> str:
    return f"{settings.faust_app_id}-batcher"


@dataclass
class PartitionBatch:
    """What was read of one partition number (all three input topics) since the last
    flush."""

    started: float
    partitions: int  # of the input topics: where a store's messages belong
    polls: dict[str, tuple[list[int], list[bool]]] = field(default_factory=dict)
    schedules: dict[str, list[list[int]]] = field(default_factory=dict)
    zones: dict[str, str] = field(default_factory=dict)
    rejected: list[RejectedRow] = field(default_factory=list)
    poll_count: int = 0
    records: int = 0
    next_offsets: dict[TopicPartition, int] = field(default_factory=dict)
    # keyless records read here whose store lives on another partition, by that partition
    elsewhere: dict[int, PartitionBatch] = field(default_factory=dict)

    def reject(self, rejection: Rejection, partition: int, offset: int) -> None:
        self.rejected.append(
            (
                rejection.source,
                rejection.reason,
                rejection.detail,
                dict(rejection.record),
                partition,
                offset,
            )
        )

    def add(
        self, kind: str, key: bytes | None, raw: bytes | None, partition: int, offset: int
    ) -> None:
        """Validate one input record and add what is good of it; bad parts are rejected
        with their reason (the rest of a pack or schedule still goes through)."""
        self.records += 1
        try:
            value = decode_object(raw)
        except ValueError as error:
            text = (raw or b"")[:500].decode("utf-8", "replace")
            self.reject(
                Rejection(kind, "bad message", str(error), {"raw": text}), partition, offset
            )
            return
        if kind == POLLS:
            self._add_polls(value, key, partition, offset)
        elif kind == HOURS:
            parsed = parse_hours_message(value)
            if isinstance(parsed, Rejection):
                self.reject(parsed, partition, offset)
                return
            store_id, rows, bad_rows = parsed
            for bad in bad_rows:
                self.reject(bad, partition, offset)
            target = self._home_batch(kind, key, store_id, partition, offset)
            if target is not None:
                target.schedules[store_id] = [list(i) for i in build_schedule(rows)]
        else:
            zone = parse_zone(text_fields(value, ZONE_FIELDS))
            if isinstance(zone, Rejection):
                self.reject(zone, partition, offset)
                return
            target = self._home_batch(kind, key, zone.store_id, partition, offset)
            if target is not None:
                target.zones[zone.store_id] = zone.zone_name

    def _add_polls(
        self, value: dict[str, Any], key: bytes | None, partition: int, offset: int
    ) -> None:
        records = unpack_polls(value)
        good: list[tuple[int, bool]] = []
        store_id = None
        if len(records) == 1:
            poll = parse_poll(records[0])
            if isinstance(poll, Rejection):
                self.reject(poll, partition, offset)
                return
            store_id = poll.store_id
            good.append((poll.ts_us, poll.active))
        else:  # a pack: each bad entry is rejected alone, the good ones are used
            for record in records:
                try:
                    poll = poll_from_fields(
                        record["store_id"], record["timestamp_utc"], record["status"]
                    )
                except BadField as error:
                    self.reject(
                        Rejection(POLLS, error.reason, str(error), record), partition, offset
                    )
                    continue
                store_id = poll.store_id
                good.append((poll.ts_us, poll.active))
        if store_id is None:
            return
        target = self._home_batch(POLLS, key, store_id, partition, offset)
        if target is None:
            return
        entry = target.polls.get(store_id)
        if entry is None:
            entry = target.polls[store_id] = ([], [])
        for ts, active in good:
            entry[0].append(ts)
            entry[1].append(active)
        self.poll_count += len(good)

    def _home_batch(
        self, kind: str, key: bytes | None, store_id: str, partition: int, offset: int
    ) -> PartitionBatch | None:
        """Where a record's content goes: this batch, the batch of its store's partition
        (a keyless record that Kafka put elsewhere), or nowhere (rejected: keyed by
        another id, it would split its store over partitions)."""
        if key is None:
            home = home_partition(store_id, self.partitions)
            if home == partition:
                return self
            # Applied here, its store's updates could come from two workers at once. It is
            # produced to its store's partition with this batch, and its input offset is
            # committed only once that is acknowledged too.
            other = self.elsewhere.get(home)
            if other is None:
                other = self.elsewhere[home] = PartitionBatch(self.started, self.partitions)
            return other
        if key == store_id.encode():
            return self
        self.reject(
            Rejection(
                kind,
                "key mismatch",
                "message key is not the store_id: the store would be split over partitions",
                {"key": key.decode("utf-8", "replace"), "store_id": store_id},
            ),
            partition,
            offset,
        )
        return None

    def messages(self, partition: int) -> list[tuple[int, bytes]]:
        """The internal messages of this batch: one to its own partition, and one to each
        partition that keyless records read here belong to."""
        return [
            (partition, self.message()),
            *((home, other.message()) for home, other in sorted(self.elsewhere.items())),
        ]

    def message(self) -> bytes:
        return input_batch_message(self.polls, self.schedules, self.zones, self.rejected)


@dataclass
class BatcherStats:
    records: int = 0
    batches: int = 0
    polls: int = 0
    rejected: Counter[tuple[str, str]] = field(default_factory=Counter)
    seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))


class InputBatcher:
    """Reads the input topics and writes ``input-batches`` (see the module's notes)."""

    def __init__(
        self,
        settings: Settings,
        guard: Callable[[str], contextlib.AbstractAsyncContextManager[None]],
    ) -> None:
        self.settings = settings
        self.guard = guard  # ends the process if a flush fails half-way (see streams.app)
        self.kind_of_topic = {settings.topic(name): name for name in INPUT_TOPICS}
        self.out_topic = settings.topic(INPUT_BATCHES)
        self.window_s = settings.batch_window_s
        self.max_polls = settings.batch_size
        self.open: dict[int, PartitionBatch] = {}  # partition number -> batch being gathered
        self.full: list[tuple[int, PartitionBatch]] = []  # full, waiting for the next flush
        self.stats = BatcherStats()
        self._consumer: Any = None
        self._producer: Any = None
        self._flushing = asyncio.Lock()
        self._committed: dict[TopicPartition, int] = {}
        # Poll partitions paused until the reference partitions reach these offsets.
        self._held_polls: list[TopicPartition] = []
        self._reference_ends: dict[TopicPartition, int] | None = None
        self._held_since = 0.0

    # -- gathering -----------------------------------------------------------------------

    def add(self, tp: TopicPartition, records: list[Any]) -> None:
        kind = self.kind_of_topic.get(tp.topic, POLLS)
        p = tp.partition
        batch = self.open.get(p)
        for record in records:
            if batch is None:
                batch = self.open[p] = PartitionBatch(time.monotonic(), self.settings.partitions)
            batch.add(kind, record.key, record.value, p, record.offset)
            batch.next_offsets[tp] = record.offset + 1
            if batch.poll_count >= self.max_polls:
                self.full.append((p, batch))
                del self.open[p]
                batch = None

    def due(self, now: float) -> list[tuple[int, PartitionBatch]]:
        """Full batches, and every open batch older than the window, in read order."""
        ready = self.full
        self.full = []
        for p in [p for p, b in self.open.items() if now - b.started >= self.window_s]:
            ready.append((p, self.open.pop(p)))
        return ready

    def next_deadline_s(self, now: float) -> float:
        if not self.open:
            return self.window_s
        oldest = min(b.started for b in self.open.values())
        return max(0.0, oldest + self.window_s - now)

    # -- flushing ------------------------------------------------------------------------

    async def flush(self, ready: list[tuple[int, PartitionBatch]]) -> None:
        """Produce each batch to its partition, wait for every acknowledgement, then commit
        the input offsets they cover. Sending again after an error is safe (duplicates are
        absorbed downstream); committing before the acknowledgements would not be."""
        if not ready:
            return
        began = time.perf_counter()
        values = [value for p, b in ready for value in b.messages(p)]
        offsets: dict[TopicPartition, int] = {}
        for _, b in ready:
            for tp, offset in b.next_offsets.items():
                offsets[tp] = max(offset, offsets.get(tp, 0))
        encoded = time.perf_counter()
        delay = 0.2
        while True:
            try:
                sent = [
                    await self._producer.send(self.out_topic, value, partition=p)
                    for p, value in values
                ]
                await asyncio.gather(*sent)
                break
            except KafkaError as error:
                log.warning("batcher: sending a batch failed (%s); sending again", error)
                await asyncio.sleep(delay)
                delay = min(2 * delay, 10.0)
        acked = time.perf_counter()
        await self._commit(offsets)
        for _, b in ready:
            self.stats.batches += 1
            self.stats.records += b.records
            self.stats.polls += b.poll_count
            for source, reason, *_ in b.rejected:
                self.stats.rejected[(source, reason)] += 1
        self.stats.seconds["encoding"] += encoded - began
        self.stats.seconds["waiting for acks"] += acked - encoded
        self.stats.seconds["committing"] += time.perf_counter() - acked

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        """Commit what is still assigned. A failed commit (the group rebalanced, the broker
        went away) is left to the next one or to the partition's next owner, who reads the
        records again: harmless, as the batches are already delivered and idempotent."""
        assigned = self._consumer.assignment()
        mine = {tp: o for tp, o in offsets.items() if tp in assigned}
        if not mine:
            return
        try:
            await self._consumer.commit(mine)
            self._committed.update(mine)
        except KafkaError as error:
            log.warning("batcher: commit failed (%s); the records will be read again", error)

    async def flush_everything(self) -> None:
        """Flush and commit all that was read: before partitions are handed over."""
        async with self._flushing:
            ready = self.full + list(self.open.items())
            self.full, self.open = [], {}
            async with self.guard("flushing input batches"):
                await self.flush(ready)

    # -- reference data first ---------------------------------------------------------------

    def hold_polls(self, assigned: Any) -> None:
        """Pause the newly assigned poll partitions (called as the assignment completes,
        before anything is fetched from it); they resume once the reference partitions are
        read to the end they have now."""
        polls = [tp for tp in assigned if self.kind_of_topic.get(tp.topic) == POLLS]
        if not polls or self._consumer is None:
            return
        self._consumer.pause(*polls)
        self._held_polls = polls
        self._reference_ends = None  # asked for on the loop's next turn
        self._held_since = time.monotonic()

    async def _release_polls_when_reference_read(self) -> None:
        consumer = self._consumer
        reference = [
            tp for tp in consumer.assignment() if self.kind_of_topic.get(tp.topic) != POLLS
        ]
        try:
            if self._reference_ends is None:
                self._reference_ends = await consumer.end_offsets(reference)
            behind = [
                tp
                for tp, end in self._reference_ends.items()
                if tp in reference and await consumer.position(tp) < end
            ]
        except KafkaError as error:
            log.warning("batcher: reference offsets unknown (%s); reading polls", error)
            behind = []
        waited = time.monotonic() - self._held_since
        if behind and waited < REFERENCE_FIRST_MAX_S:
            return
        if behind:
            log.warning(
                "batcher: reference topics still behind after %.0f s; reading polls", waited
            )
        assigned = consumer.assignment()
        consumer.resume(*[tp for tp in self._held_polls if tp in assigned])
        self._held_polls = []
        self._reference_ends = None

    # -- the loop ------------------------------------------------------------------------

    def lag(self) -> dict[tuple[str, int], int]:
        """Input records not yet batched and committed, per assigned partition."""
        return consumer_lag(self._consumer, self._committed)

    def committed_positions(self) -> dict[TopicPartition, int]:
        """What this process committed, per input partition: every record before it is in
        an acknowledged internal message (reports wait for it, streams/catch_up.py)."""
        return self._committed

    async def run(self) -> None:
        session_ms = int(self.settings.broker_session_timeout_s * 1000)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            group_id=batcher_group(self.settings),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=session_ms,
            heartbeat_interval_ms=max(1000, session_ms // 3),
            # Bounds what the fetcher holds ahead of the batches (~15,000 single polls per
            # partition and fetch is plenty at ~100 ms per batch; 12 partitions are read).
            max_partition_fetch_bytes=1024 * 1024,
            fetch_max_bytes=8 * 1024 * 1024,
        )
        producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=2,
            max_batch_size=1024 * 1024,
            max_request_size=16 * 1024 * 1024,
        )
        batcher = self

        class FlushBeforeHandOver(ConsumerRebalanceListener):  # type: ignore[misc]
            async def on_partitions_revoked(self, revoked: Any) -> None:
                if batcher._producer is not None:
                    await batcher.flush_everything()

            async def on_partitions_assigned(self, assigned: Any) -> None:
                batcher.hold_polls(assigned)

        while True:
            try:
                await producer.start()
                await consumer.start()
                break
            except KafkaError as error:
                log.warning("batcher: broker not reachable (%s); retrying", error)
                await asyncio.sleep(2)
        consumer.subscribe(list(self.kind_of_topic), listener=FlushBeforeHandOver())
        self._consumer, self._producer = consumer, producer
        try:
            while True:
                timeout_ms = int(1000 * self.next_deadline_s(time.monotonic()))
                fetched = await consumer.getmany(
                    timeout_ms=max(1, timeout_ms), max_records=FETCH_MAX_RECORDS
                )
                async with self._flushing:
                    began = time.perf_counter()
                    for tp, records in fetched.items():
                        self.add(tp, records)
                    self.stats.seconds["validating"] += time.perf_counter() - began
                    ready = self.due(time.monotonic())
                    if ready:
                        async with self.guard("flushing input batches"):
                            await self.flush(ready)
                if self._held_polls:
                    await self._release_polls_when_reference_read()
        finally:
            self._consumer = self._producer = None
            with contextlib.suppress(Exception):
                await consumer.stop()
            with contextlib.suppress(Exception):
                await producer.stop()
