"""The batching stage on the real broker: after a backlog, schedules and zones before polls."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from storemon.settings import Settings
from storemon.streams import messages
from storemon.streams.batcher import InputBatcher
from storemon.streams.topics import ensure_topics

from .pipeline import own_topics

pytestmark = [pytest.mark.services, pytest.mark.timeout(180)]

STORES = 60
POLLS_PER_STORE = 3


@pytest.fixture
async def settings(service_settings: Settings) -> AsyncIterator[Settings]:
    """The session's services under a topic prefix and app id of this test's own; one poll
    per internal batch, so a batch flushed before a store's schedule was read shows."""
    async with own_topics(
        service_settings, "test-batcher", batch_size=1, batch_window_s=0.05
    ) as settings:
        yield settings


@contextlib.asynccontextmanager
async def let_errors_through(what: str) -> AsyncIterator[None]:
    yield


async def publish_backlog(settings: Settings) -> None:
    """Every store's polls first, then its schedule and zone: a backlog in the worst order."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        sent = []
        for i in range(STORES):
            store = f"store-{i}"
            for h in range(POLLS_PER_STORE):
                value = messages.poll_message(store, f"2023-01-2{h} 10:00:00.0 UTC", "active")
                sent.append(
                    await producer.send(settings.topic(messages.POLLS), value, store.encode())
                )
        for i in range(STORES):
            store = f"store-{i}"
            hours = [
                {"dayOfWeek": "0", "start_time_local": "09:00:00", "end_time_local": "17:00:00"}
            ]
            sent.append(
                await producer.send(
                    settings.topic(messages.HOURS),
                    messages.hours_message(store, hours),
                    store.encode(),
                )
            )
            sent.append(
                await producer.send(
                    settings.topic(messages.TIMEZONES),
                    messages.timezone_message(store, "Asia/Tokyo"),
                    store.encode(),
                )
            )
        for delivery in sent:
            await delivery
    finally:
        await producer.stop()


async def read_batches(settings: Settings, polls_expected: int) -> list[dict[str, object]]:
    """The internal batches, partition by partition in offset order, until every poll is in."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = [
            TopicPartition(settings.topic(messages.INPUT_BATCHES), p)
            for p in range(settings.partitions)
        ]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        by_partition: dict[int, list[dict[str, object]]] = {}
        polls = 0
        while polls < polls_expected:
            fetched = await asyncio.wait_for(consumer.getmany(timeout_ms=500), 60)
            for tp, records in fetched.items():
                for record in records:
                    value = messages.decode_object(record.value)
                    by_partition.setdefault(tp.partition, []).append(value)
                    polls += sum(len(ts) for _, ts, _ in value["polls"])
        return [value for p in sorted(by_partition) for value in by_partition[p]]
    finally:
        await consumer.stop()


async def test_after_a_backlog_each_store_gets_its_schedule_and_zone_before_its_polls(
    settings: Settings,
) -> None:
    await ensure_topics(settings)
    await publish_backlog(settings)
    batcher = InputBatcher(settings, let_errors_through)
    running = asyncio.ensure_future(batcher.run())
    try:
        batches = await read_batches(settings, STORES * POLLS_PER_STORE)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    first: dict[tuple[str, str], int] = {}  # (kind, store) -> index of the first batch with it
    polls_seen: dict[str, int] = {}
    for n, batch in enumerate(batches):
        for store, ts, _ in batch["polls"]:  # type: ignore[attr-defined]
            first.setdefault(("polls", store), n)
            polls_seen[store] = polls_seen.get(store, 0) + len(ts)
        for store, _ in batch["schedules"]:  # type: ignore[attr-defined]
            first.setdefault(("schedule", store), n)
        for store, _ in batch["zones"]:  # type: ignore[attr-defined]
            first.setdefault(("zone", store), n)
    assert polls_seen == {f"store-{i}": POLLS_PER_STORE for i in range(STORES)}
    late = [
        (kind, store)
        for store in polls_seen
        for kind in ("schedule", "zone")
        if first.get((kind, store), len(batches)) > first[("polls", store)]
    ]
    assert late == []
