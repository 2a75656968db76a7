"""``storemon replay`` against the real broker: what lands on the topics is read back with a
consumer and compared with the files. Each test publishes under its own topic prefix."""

from __future__ import annotations

import csv
import dataclasses
import gzip
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition  # type: ignore[import-untyped,unused-ignore]
from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped,unused-ignore]

from storemon.aggregates.timebase import HOUR_US, parse_as_of, parse_poll_timestamp
from storemon.producers.generate import build_dataset, write_dataset
from storemon.producers.replay import MAX_PACK, UNPARSABLE_TS, replay
from storemon.settings import Settings
from storemon.streams import messages

pytestmark = [pytest.mark.services, pytest.mark.timeout(120)]

Record = tuple[int, int, bytes | None, dict[str, Any]]  # partition, offset, key, value


@pytest.fixture
async def settings(service_settings: Settings) -> AsyncIterator[Settings]:
    """The session's services under a topic prefix of this test's own (deleted after)."""
    prefix = f"test-replay-{uuid.uuid4().hex[:10]}"
    yield dataclasses.replace(service_settings, topic_prefix=prefix)
    admin = AIOKafkaAdminClient(bootstrap_servers=service_settings.kafka_bootstrap)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(f"{prefix}.")]
        if names:
            await admin.delete_topics(names)
    finally:
        await admin.close()


async def read_topic(settings: Settings, name: str) -> list[Record]:
    """Every message of a topic, by partition and offset."""
    topic = settings.topic(name)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[Record] = []
        remaining = {tp for tp in partitions if ends[tp] > 0}
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp, batch in batches.items():
                for r in batch:
                    records.append((tp.partition, r.offset, r.key, orjson.loads(r.value)))
            remaining = {tp for tp in remaining if await consumer.position(tp) < ends[tp]}
        return sorted(records, key=lambda r: (r[0], r[1]))
    finally:
        await consumer.stop()


def csv_rows(path: Path) -> list[dict[str, str]]:
    opener: Any = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("replay") / "set"
    dataset = build_dataset(random.Random(3), 20, 2, parse_as_of("2023-01-25 18:13:22.47922"))
    write_dataset(dataset, out)
    return out


async def test_replay_of_a_generated_set(settings: Settings, generated: Path) -> None:
    stats = await replay(settings, generated, speedup=None, progress=False, pack_hours=0)

    polls_in = csv_rows(generated / "store_status.csv")
    hours_in = csv_rows(generated / "menu_hours.csv")
    zones_in = csv_rows(generated / "timezones.csv")
    polls = await read_topic(settings, messages.POLLS)
    hours = await read_topic(settings, messages.HOURS)
    zones = await read_topic(settings, messages.TIMEZONES)
    assert await read_topic(settings, messages.DEAD_LETTERS) == []

    # counts: every row, one schedule message per store
    schedules_in: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in hours_in:
        schedules_in[row["store_id"]].append(
            {k: row[k] for k in ("dayOfWeek", "start_time_local", "end_time_local")}
        )
    assert len(polls) == len(polls_in) == stats.topics[messages.POLLS].sent
    assert len(zones) == len(zones_in) == stats.topics[messages.TIMEZONES].sent
    assert len(hours) == len(schedules_in) == stats.topics[messages.HOURS].sent
    assert stats.rejected == stats.dead_letters == 0

    # contents: the raw fields, whole schedules in file order
    assert {r[3]["store_id"]: r[3]["intervals"] for r in hours} == schedules_in
    assert Counter(orjson.dumps(r[3]) for r in polls) == Counter(
        orjson.dumps({k: row[k] for k in ("store_id", "timestamp_utc", "status")})
        for row in polls_in
    )
    assert sorted((r[3]["store_id"], r[3]["timezone_str"]) for r in zones) == sorted(
        (row["store_id"], row["timezone_str"]) for row in zones_in
    )

    # keys are the store ids, and a store has one partition number in all three topics
    partition_of: dict[str, int] = {}
    for partition, _, key, value in polls + hours + zones:
        assert key == value["store_id"].encode()
        assert partition_of.setdefault(value["store_id"], partition) == partition

    # polls in timestamp order within each partition
    by_partition: dict[int, list[int]] = defaultdict(list)
    for partition, _, _, value in polls:
        by_partition[partition].append(parse_poll_timestamp(value["timestamp_utc"]))
    assert len(by_partition) > 1
    for stamps in by_partition.values():
        assert stamps == sorted(stamps)


async def test_replay_packs_a_stores_polls_per_window(settings: Settings, generated: Path) -> None:
    stats = await replay(settings, generated, speedup=None, progress=False, pack_hours=6)
    polls_in = csv_rows(generated / "store_status.csv")
    packs = await read_topic(settings, messages.POLLS)
    assert len(packs) == stats.poll_messages < len(polls_in) == stats.topics[messages.POLLS].sent
    unpacked = []
    windows_seen: dict[str, set[int]] = defaultdict(set)
    for _, _, key, value in packs:
        records = messages.unpack_polls(value)
        assert 1 <= len(records) <= MAX_PACK
        assert key == value["store_id"].encode()
        stamps = [parse_poll_timestamp(r["timestamp_utc"]) for r in records]
        assert stamps == sorted(stamps)
        windows = {ts // (6 * HOUR_US) for ts in stamps}
        assert len(windows) == 1  # one store, one 6-hour window per message
        assert not windows & windows_seen[value["store_id"]]  # ... and one message per window
        windows_seen[value["store_id"]] |= windows
        unpacked.extend(records)
    # every row exactly once, fields as the file has them
    assert Counter(orjson.dumps(r) for r in unpacked) == Counter(
        orjson.dumps({k: row[k] for k in ("store_id", "timestamp_utc", "status")})
        for row in polls_in
    )


def write(path: Path, text: str) -> None:
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8", newline="") as handle:
            handle.write(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")


async def test_replay_of_messy_files(settings: Settings, tmp_path: Path) -> None:
    """2023-style `day` header, gzip, CRLF, a byte-order mark, blank lines, unsorted polls,
    rows with a wrong field count and a timestamp that does not parse."""
    write(
        tmp_path / "menu_hours.csv.gz",
        "\ufeffstore_id,day,start_time_local,end_time_local\r\n"
        "s1,0,09:00:00,17:00:00\r\n"
        "s2,1,10:00:00,12:00:00\r\n"
        "s1,1,09:00:00,23:59:59\r\n"
        "s2,1,10:00:00\r\n"
        "\r\n"
        "s3,7,25:00,xx\r\n",
    )
    write(
        tmp_path / "timezones.csv",
        "store_id,timezone_str\ns1,America/New_York\ns2,Not/AZone\ns1,Europe/Paris,extra\n",
    )
    write(
        tmp_path / "store_status.csv",
        "store_id,status,timestamp_utc\n"
        "s1,active,2023-01-25 10:00:00.5 UTC\n"
        "s2,inactive,garbage\n"
        "s1,inactive,2023-01-25 09:00:00 UTC\n"
        " s2 ,ACTIVE,2023-01-25T09:30:00Z\n"
        "s3,active\n"
        "s1,active,2023-01-25 09:00:00 UTC\n",
    )
    stats = await replay(settings, tmp_path, speedup=None, progress=False, pack_hours=0)

    assert {name: (s.rows, s.sent, s.rejected) for name, s in stats.topics.items()} == {
        messages.HOURS: (5, 3, 1),  # s1, s2 and the invalid s3: the worker rejects that one
        messages.TIMEZONES: (3, 2, 1),  # the unknown zone is the worker's to reject
        messages.POLLS: (6, 5, 1),
    }
    assert stats.dead_letters == 3
    assert stats.unparsable_timestamps == 1
    assert stats.newest_poll_us == parse_poll_timestamp("2023-01-25 10:00:00.5 UTC")

    dead = await read_topic(settings, messages.DEAD_LETTERS)
    assert sorted((d[3]["source"], d[3]["reason"]) for d in dead) == [
        ("hours", "wrong field count"),
        ("polls", "wrong field count"),
        ("timezones", "wrong field count"),
    ]
    assert {d[3]["record"].get("store_id") for d in dead} == {"s1", "s2", "s3"}

    hours = {r[3]["store_id"]: r[3]["intervals"] for r in await read_topic(settings, "hours")}
    assert hours["s1"] == [
        {"dayOfWeek": "0", "start_time_local": "09:00:00", "end_time_local": "17:00:00"},
        {"dayOfWeek": "1", "start_time_local": "09:00:00", "end_time_local": "23:59:59"},
    ]
    assert hours["s3"] == [{"dayOfWeek": "7", "start_time_local": "25:00", "end_time_local": "xx"}]

    polls = await read_topic(settings, messages.POLLS)
    by_store: dict[bytes | None, list[str]] = defaultdict(list)
    for _, _, key, value in polls:
        by_store[key].append(value["timestamp_utc"])
    # sorted by time (stable for equal times), the unparsable one last; ids keyed stripped
    assert by_store[b"s1"] == [
        "2023-01-25 09:00:00 UTC",
        "2023-01-25 09:00:00 UTC",
        "2023-01-25 10:00:00.5 UTC",
    ]
    assert by_store[b"s2"] == ["2023-01-25T09:30:00Z", "garbage"]
    s2 = [v for _, _, k, v in polls if k == b"s2"]
    assert s2[0]["store_id"] == " s2 "  # the raw field: the worker strips it
    assert s2[0]["status"] == "ACTIVE"
    assert parse_poll_timestamp("9999-12-31 23:59:59.999999 UTC") < UNPARSABLE_TS


async def test_speedup_paces_polls_by_their_timestamps(settings: Settings, tmp_path: Path) -> None:
    write(tmp_path / "menu_hours.csv", "store_id,dayOfWeek,start_time_local,end_time_local\n")
    write(tmp_path / "timezones.csv", "store_id,timezone_str\n")
    write(
        tmp_path / "store_status.csv",
        "store_id,status,timestamp_utc\n"
        "a,active,2023-01-25 10:00:00 UTC\n"
        "b,active,2023-01-25 10:00:10 UTC\n"
        "a,active,2023-01-25 10:00:20 UTC\n",
    )
    began = time.monotonic()
    stats = await replay(settings, tmp_path, speedup=20.0, progress=False)  # 20 s in 1 s
    assert time.monotonic() - began >= 1.0
    assert stats.topics[messages.POLLS].sent == 3
    assert stats.topics[messages.HOURS].sent == 0
    assert len(await read_topic(settings, messages.POLLS)) == 3
