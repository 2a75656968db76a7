"""The batching stage and the ingestor's table layout, without a broker: input records in,
internal batches out; batches in, tables and database rows out. Real code on both sides,
with dictionaries for the Faust tables and a list for the database."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka.partitioner import DefaultPartitioner

from storemon.aggregates.state import StoreState
from storemon.aggregates.timebase import DAY_US, HOUR_US, format_utc
from storemon.db.sink import SinkBatch
from storemon.streams import messages, state_codec
from storemon.streams.batcher import PartitionBatch, home_partition
from storemon.streams.fence import Licence
from storemon.streams.ingest import Ingestor

T0 = 1_674_000_000_000_000 - 1_674_000_000_000_000 % DAY_US  # a UTC midnight in January 2023
HORIZON_US = 192 * HOUR_US  # the default


@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None


@dataclass
class Event:
    message: Message
    value: bytes


def poll(store: str, ts_us: int, status: str = "active") -> bytes:
    return messages.poll_message(store, format_utc(ts_us), status)


def test_good_records_go_through_and_bad_ones_are_rejected_with_their_reason() -> None:
    batch = PartitionBatch(0.0, partitions=8)
    batch.add("polls", b"s1", poll("s1", T0), 2, 10)
    batch.add(
        "polls", b"s1", messages.poll_message("s1", "2023-13-01 00:00:00 UTC", "active"), 2, 11
    )
    batch.add(
        "polls", b"s1", messages.poll_message("s1", "2023-01-20 00:00:00 UTC", "asleep"), 2, 12
    )
    batch.add("polls", b"other", poll("s1", T0 + HOUR_US), 2, 13)  # key is not the store
    batch.add("polls", b"s1", b"not json", 2, 14)
    pack = messages.poll_pack_message("s2", [(format_utc(T0), "inactive"), ("yesterday", "active")])
    batch.add("polls", b"s2", pack, 2, 15)
    hours = messages.hours_message(
        "s1",
        [
            {"dayOfWeek": "0", "start_time_local": "09:00:00", "end_time_local": "17:00:00"},
            {"dayOfWeek": "7", "start_time_local": "09:00:00", "end_time_local": "17:00:00"},
        ],
    )
    batch.add("hours", b"s1", hours, 2, 3)
    batch.add("timezones", b"s1", messages.timezone_message("s1", "Mars/Olympus_Mons"), 2, 4)
    batch.add("timezones", b"s2", messages.timezone_message("s2", "Asia/Tokyo"), 2, 5)
    value = orjson.loads(batch.message())
    assert value["polls"] == [["s1", [T0], [True]], ["s2", [T0], [False]]]
    assert value["schedules"] == [["s1", [[0, 9 * 3600, 17 * 3600]]]]
    assert value["zones"] == [["s2", "Asia/Tokyo"]]
    reasons = [(source, reason, offset) for source, reason, _, _, _, offset in value["rejected"]]
    assert reasons == [
        ("polls", "bad timestamp", 11),
        ("polls", "bad status", 12),
        ("polls", "key mismatch", 13),
        ("polls", "bad message", 14),
        ("polls", "bad timestamp", 15),
        ("hours", "bad day", 3),
        ("timezones", "unknown zone", 4),
    ]
    assert batch.poll_count == 2


def test_a_keyless_record_goes_to_its_stores_partition() -> None:
    """Without a key Kafka spreads a store's messages over the partitions, and two workers
    could then update one store at once: a keyless record is sent on to the partition its
    keyed ones go to (Kafka's own partitioner), in the same flush as the batch it was read
    with."""
    stores = [f"store-{n}" for n in range(40)]
    homes = {s: DefaultPartitioner()(s.encode(), list(range(8)), list(range(8))) for s in stores}
    assert len(set(homes.values())) > 1
    assert all(home_partition(s, 8) == homes[s] for s in stores)
    home, away = stores[0], next(s for s in stores if homes[s] != homes[stores[0]])
    here, there = homes[home], homes[away]
    batch = PartitionBatch(0.0, partitions=8)
    batch.add("polls", None, poll(home, T0), here, 1)
    batch.add("polls", None, poll(away, T0), here, 2)
    batch.add("polls", None, poll(away, T0 + HOUR_US, "inactive"), here, 3)
    batch.add("timezones", None, messages.timezone_message(away, "Asia/Tokyo"), here, 4)
    batch.add("polls", b"other", poll(away, T0), here, 5)  # keyed by another id: rejected
    sent = [(partition, orjson.loads(value)) for partition, value in batch.messages(here)]
    assert [partition for partition, _ in sent] == [here, there]
    (_, own), (_, routed) = sent
    assert own["polls"] == [[home, [T0], [True]]]
    assert own["zones"] == []
    assert [(source, reason) for source, reason, *_ in own["rejected"]] == [
        ("polls", "key mismatch")
    ]
    assert routed["polls"] == [[away, [T0, T0 + HOUR_US], [True, False]]]
    assert routed["zones"] == [[away, "Asia/Tokyo"]]
    assert routed["rejected"] == []
    assert batch.poll_count == 3  # what this input partition read, wherever it goes


class Sink:
    """The database side: every row written, and the bytes of each write."""

    def __init__(self) -> None:
        self.days: dict[tuple[str, int], Any] = {}
        self.bytes_written = 0

    async def write(self, batch: SinkBatch, licence: Licence) -> None:
        for key, record in batch.days.items():
            self.days[key] = record
            self.bytes_written += len(orjson.dumps(list(record)))
        self.bytes_written += sum(len(repr(row)) for row in batch.stores.values())


class CountingTable(dict[bytes, bytes]):
    def __init__(self) -> None:
        super().__init__()
        self.bytes_written = 0
        self.writes = 0

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.writes += 1
        self.bytes_written += len(key) + len(value)
        super().__setitem__(key, value)


def make_ingestor(stores: CountingTable, polls: CountingTable, sink: Sink) -> Ingestor:
    async def dead_letter(*_: Any) -> None:
        return None

    return Ingestor(
        stores=stores,
        store_polls=polls,
        write_sink=sink.write,
        send_dead_letter=dead_letter,
        horizon_us=HORIZON_US,
    )


def batch_event(polls: dict[str, list[tuple[int, bool]]], offset: int) -> Event:
    value = messages.input_batch_message(
        {s: ([ts for ts, _ in p], [a for _, a in p]) for s, p in polls.items()}, {}, {}, []
    )
    return Event(Message("x.input-batches", 0, offset, None), value)


def feed(ingestor: Ingestor, events: list[Event]) -> None:
    asyncio.run(ingestor.process(events, lambda event: None))


def test_a_state_rebuilt_from_the_tables_equals_the_live_one() -> None:
    rng = random.Random(3)
    stores, polls, sink = CountingTable(), CountingTable(), Sink()
    ingestor = make_ingestor(stores, polls, sink)
    stamps = [T0 + i * HOUR_US + rng.randrange(HOUR_US) for i in range(24 * 12)]
    delivered = stamps + rng.sample(stamps, 20)
    rng.shuffle(delivered)
    for n in range(0, len(delivered), 17):
        chunk = [(ts, rng.random() < 0.8) for ts in delivered[n : n + 17]]
        feed(ingestor, [batch_event({"s": chunk}, n)])
    live = ingestor.cache["s"]
    rebuilt = make_ingestor(stores, polls, Sink()).state_for("s")
    assert live.cutoff_us > T0  # pruning happened: old days were deleted from the table
    assert list(rebuilt.poll_ts) == list(live.poll_ts)
    assert rebuilt.poll_active == live.poll_active
    assert (rebuilt.first_poll_us, rebuilt.cutoff_us) == (live.first_poll_us, live.cutoff_us)
    assert rebuilt.hours_with_time() == live.hours_with_time()
    first, last = orjson.loads(stores[b"s"])["span"]
    days_kept = {ts - ts % DAY_US for ts in live.poll_ts if ts >= live.cutoff_us}
    assert (first, last) == (min(days_kept), max(days_kept))
    assert sorted(polls) == sorted(f"s@{d}".encode() for d in sorted(days_kept))


def test_tables_hold_exactly_each_states_encoding_after_every_live_batch() -> None:
    """Batch after batch of live polls (one per store, days and prunes crossed, late polls
    before the cutoff moving the anchor, redeliveries), the tables hold exactly what the
    codec makes of each state: the settings entry, one entry per listed day, nothing else.
    (The ingestor skips recomputing the settings entry when an update cannot change it.)
    A horizon of 100 hours moves the cutoff at 04:00 UTC, not with a new day's first poll;
    the stream starts at noon, so a late poll can come before the first in the same day."""
    rng = random.Random(7)
    stores, store_polls = CountingTable(), CountingTable()
    ingestor = make_ingestor(stores, store_polls, Sink())
    ingestor.horizon_us = 100 * HOUR_US
    names = ["a", "b", "c"]
    start = T0 + 12 * HOUR_US
    newest = dict.fromkeys(names, start)
    events: list[Event] = []
    for hour in range(12 * 24):
        batch: dict[str, list[tuple[int, bool]]] = {}
        for store in names:
            ts = start + hour * HOUR_US + rng.randrange(HOUR_US)
            if rng.random() < 0.05:  # late: up to six days back, before the cutoff too
                ts = newest[store] - rng.randrange(6 * DAY_US)
            newest[store] = max(newest[store], ts)
            batch[store] = [(ts, rng.random() < 0.8)]
        events.append(batch_event(batch, hour))
        if rng.random() < 0.1:
            events.append(events[rng.randrange(len(events))])  # redelivered
    # before the first poll, in its day: a new first poll, no new day
    events.insert(3, batch_event({"a": [(T0 + HOUR_US, False)]}, 10_000))
    for event in events:
        feed(ingestor, [event])
        for store in names:
            state = ingestor.cache[store]
            settings_entry, day_entries = state_codec.encode(state)
            assert stores[state_codec.store_key(store)] == settings_entry
            kept = {k: v for k, v in store_polls.items() if k.startswith(f"{store}@".encode())}
            assert kept == {state_codec.day_key(store, d): v for d, v in day_entries.items()}


def test_table_and_database_bytes_per_poll_do_not_grow_with_history() -> None:
    """One poll per store and hour, one batch per hour: what a day costs at day 3 and at
    day 12 of history (the horizon is 8 days) is the same."""
    stores, polls, sink = CountingTable(), CountingTable(), Sink()
    ingestor = make_ingestor(stores, polls, sink)
    names = [f"s{i}" for i in range(5)]
    per_day: list[tuple[int, int, int]] = []
    for day in range(12):
        before = (stores.bytes_written + polls.bytes_written, sink.bytes_written, stores.writes)
        for hour in range(24):
            ts = T0 + day * DAY_US + hour * HOUR_US + 600_000_000
            feed(
                ingestor, [batch_event({s: [(ts, hour % 5 != 0)] for s in names}, day * 24 + hour)]
            )
        per_day.append(
            (
                stores.bytes_written + polls.bytes_written - before[0],
                sink.bytes_written - before[1],
                stores.writes - before[2],
            )
        )
    tables_day3, database_day3, _ = per_day[2]
    tables_day12, database_day12, settings_writes = per_day[11]
    assert tables_day12 <= 1.1 * tables_day3
    assert database_day12 <= 1.1 * database_day3
    assert settings_writes <= 2 * len(names)  # the settings entry: about once a day


def test_old_one_entry_layout_is_still_read_and_rewritten_in_the_new_one() -> None:
    state = StoreState("s", horizon_us=HORIZON_US)
    state.apply_polls([(T0 + h * HOUR_US, True) for h in range(30)])
    stores, polls, sink = CountingTable(), CountingTable(), Sink()
    stores[b"s"] = orjson.dumps(
        {
            "schedule": [],
            "zone": state.zone_name,
            "first": state.first_poll_us,
            "cutoff": state.cutoff_us,
            "ts": state.poll_ts.tolist(),
            "active": list(state.poll_active),
        }
    )
    ingestor = make_ingestor(stores, polls, sink)
    feed(ingestor, [batch_event({"s": [(T0 + 31 * HOUR_US, False)]}, 0)])
    assert "ts" not in orjson.loads(stores[b"s"])
    rebuilt = make_ingestor(stores, polls, Sink()).state_for("s")
    assert len(rebuilt.poll_ts) == 31
