"""Creating the project's topics, with the partition count of the Faust tables.

Faust creates its own changelog topics but not the topics its agents read, and a topic with
the wrong partition count breaks co-partitioning silently; so the project creates them all,
explicitly, and refuses to run against a topic whose partition count differs.
"""

from __future__ import annotations

import contextlib

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from storemon.settings import Settings
from storemon.streams.messages import ALL_TOPICS, DEAD_LETTERS
from storemon.waiting import retry_async

# How long a new topic may take until every partition's leader serves requests.
LEADERS_TIMEOUT_S = 60.0

# The worker's Faust tables; their changelog topics are created here too, before the worker
# starts, so that Faust never meets a changelog topic it has no metadata for yet.
TABLES = ("stores",)


class TopicMismatch(RuntimeError):
    pass


def changelog_topic(settings: Settings, table: str) -> str:
    return f"{settings.faust_app_id}-{table}-changelog"


async def ensure_topics(settings: Settings) -> list[str]:
    """Create any missing topic; returns the names created. Raises TopicMismatch when an
    existing topic has another partition count than ``settings.partitions``."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        configs: dict[str, dict[str, str]] = {settings.topic(name): {} for name in ALL_TOPICS}
        # Dead letters are evidence: keep them a month.
        configs[settings.topic(DEAD_LETTERS)] = {"retention.ms": str(30 * 24 * 3600 * 1000)}
        for table in TABLES:
            configs[changelog_topic(settings, table)] = {"cleanup.policy": "compact"}
        wanted = list(configs)
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                name,
                num_partitions=settings.partitions,
                replication_factor=1,
                topic_configs=configs[name],
            )
            for name in wanted
            if name not in existing
        ]
        created: list[str] = []
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # a race lost: checked below
                await admin.create_topics(missing)
            created = [t.name for t in missing]
            await wait_for_leaders(settings, created)
        described = await admin.describe_topics(list(wanted))
        for topic in described:
            count = len(topic.get("partitions", []))
            if count and count != settings.partitions:
                raise TopicMismatch(
                    f"topic {topic['topic']} has {count} partitions, "
                    f"STOREMON_PARTITIONS is {settings.partitions}"
                )
        return created
    finally:
        await admin.close()


async def wait_for_leaders(settings: Settings, topics: list[str]) -> None:
    """Return once every partition of ``topics`` has a leader that serves requests.

    The metadata names a new topic's leaders before the broker acts as one: a producer
    writing at once gets NotLeaderForPartition, retried (and logged as a warning) by aiokafka.
    A ListOffsets request to each partition's leader succeeds only once it does act as one;
    the consumer repeats it until then (up to its request timeout, then we retry).
    """
    if not topics:
        return
    partitions = [TopicPartition(t, p) for t in topics for p in range(settings.partitions)]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=10_000
    )
    await consumer.start()
    try:
        await retry_async(
            lambda: consumer.end_offsets(partitions),
            retry_on=(KafkaError,),
            timeout_s=LEADERS_TIMEOUT_S,
        )
    finally:
        await consumer.stop()
