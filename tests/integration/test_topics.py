"""Topic creation on the real broker: the first writes to new topics go through at once."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped,unused-ignore]

from storemon.settings import Settings
from storemon.streams.messages import ALL_TOPICS
from storemon.streams.topics import TABLES, changelog_topic, ensure_topics

from .pipeline import own_topics

pytestmark = [pytest.mark.services, pytest.mark.timeout(120)]


@pytest.fixture
async def settings(service_settings: Settings) -> AsyncIterator[Settings]:
    """The session's services under a topic prefix and app id of this test's own."""
    async with own_topics(service_settings, "test-topics") as settings:
        yield settings


async def test_new_topics_take_writes_to_every_partition_at_once(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Without waiting for the leaders, a producer writing right after creation gets
    NotLeaderForPartition on some partitions, which aiokafka retries and logs as warnings
    (dozens of them per run on this broker)."""
    created = await ensure_topics(settings)
    expected = [settings.topic(name) for name in ALL_TOPICS]
    expected.extend(changelog_topic(settings, table) for table in TABLES)
    assert sorted(created) == sorted(expected)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    with caplog.at_level(logging.WARNING, logger="aiokafka"):
        await producer.start()
        try:
            sent = [
                await producer.send(topic, b"{}", key=b"k", partition=partition)
                for topic in created
                for partition in range(settings.partitions)
            ]
            for delivery in sent:
                metadata = await delivery
                assert metadata.offset == 0
        finally:
            await producer.stop()
    complaints = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert complaints == []
    # A second call finds every topic there and creates none.
    assert await ensure_topics(settings) == []
