"""The worker's :class:`Ingestor` on its own: internal batches in (built with the batcher's
encoder), plain dictionaries for its two tables, and the sink and dead-letter calls recorded
in one log, so the order of the writes can be read off it."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from storemon.aggregates.records import Rejection
from storemon.aggregates.state import StoreState
from storemon.aggregates.timebase import DAY_US, HOUR_US, format_utc
from storemon.db.sink import SinkBatch, StoreRow
from storemon.streams import messages, state_codec
from storemon.streams.batcher import PartitionBatch
from storemon.streams.fence import Licence
from storemon.streams.ingest import YIELD_EVERY_TABLE_WRITES, Ingestor

T0 = 1_674_000_000_000_000 - 1_674_000_000_000_000 % DAY_US  # a UTC midnight in January 2023
HORIZON_US = 192 * HOUR_US  # the default: eight days kept
NINE_TO_FIVE_MONDAY = [[0, 9 * 3600, 17 * 3600]]

Polls = Mapping[str, Sequence[tuple[int, bool]]]


@dataclass(frozen=True)
class Message:
    partition: int
    offset: int
    topic: str = "storemon.input-batches"


@dataclass(frozen=True)
class Event:
    value: bytes
    message: Message


def batch_event(
    offset: int,
    polls: Polls | None = None,
    *,
    schedules: Mapping[str, list[list[int]]] | None = None,
    zones: Mapping[str, str] | None = None,
    partition: int = 0,
) -> Event:
    """An internal batch as the batcher writes it."""
    value = messages.input_batch_message(
        {s: ([ts for ts, _ in p], [a for _, a in p]) for s, p in (polls or {}).items()},
        schedules or {},
        zones or {},
        [],
    )
    return Event(value, Message(partition, offset))


class RecordedTable(MutableMapping[bytes, bytes]):
    """A table that notes each write (``None`` for a delete) in the shared log."""

    def __init__(self, name: str, log: list[tuple[str, Any]]) -> None:
        self.name = name
        self.log = log
        self.data: dict[bytes, bytes] = {}

    def __getitem__(self, key: bytes) -> bytes:
        return self.data[key]

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.log.append(("table", (self.name, key, value)))
        self.data[key] = value

    def __delitem__(self, key: bytes) -> None:
        self.log.append(("table", (self.name, key, None)))
        del self.data[key]

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


@dataclass
class Worker:
    """An ingestor with its tables, and the log of everything it wrote, in order."""

    log: list[tuple[str, Any]] = field(default_factory=list)
    stores: RecordedTable = field(init=False)
    store_polls: RecordedTable = field(init=False)
    ingestor: Ingestor = field(init=False)
    failing_sink_calls: int = 0  # how many of the next sink calls raise

    def __post_init__(self) -> None:
        self.stores = RecordedTable("stores", self.log)
        self.store_polls = RecordedTable("store_polls", self.log)
        self.ingestor = self.start()

    def start(self) -> Ingestor:
        """A new process over the same tables: nothing cached."""
        self.ingestor = Ingestor(
            stores=self.stores,
            store_polls=self.store_polls,
            write_sink=self.write_sink,
            send_dead_letter=self.send_dead_letter,
            horizon_us=HORIZON_US,
        )
        return self.ingestor

    async def write_sink(self, batch: SinkBatch, licence: Licence) -> None:
        if self.failing_sink_calls:
            self.failing_sink_calls -= 1
            raise ConnectionError("database down")
        self.log.append(("sink", batch))

    async def send_dead_letter(
        self, rejection: Rejection, partition: int | None, offset: int | None
    ) -> None:
        self.log.append(("dead letter", (rejection, partition, offset)))

    def bind(self, event: Any) -> None:
        self.log.append(("bind", event))

    def deliver(self, *events: Event) -> None:
        asyncio.run(self.ingestor.process(events, self.bind))

    # -- what was written -------------------------------------------------------------------

    def entries(self, kind: str) -> list[Any]:
        return [what for k, what in self.log if k == kind]

    def tables(self) -> tuple[dict[bytes, bytes], dict[bytes, bytes]]:
        return dict(self.stores.data), dict(self.store_polls.data)

    def sink_rows(self, since: int = 0) -> tuple[dict[str, StoreRow], dict[tuple[str, int], Any]]:
        """The database's rows after the sink calls logged from ``since``: last value wins."""
        stores: dict[str, StoreRow] = {}
        days: dict[tuple[str, int], Any] = {}
        for kind, batch in self.log[since:]:
            if kind == "sink":
                stores.update(batch.stores)
                days.update(batch.days)
        return stores, days


def kinds_in_order(log: Iterable[tuple[str, Any]]) -> list[str]:
    """The kinds of writes, repeats collapsed (binding an event is not a write)."""
    order: list[str] = []
    for kind, _ in log:
        if kind != "bind" and (not order or order[-1] != kind):
            order.append(kind)
    return order


def hourly_polls(first_us: int, hours: int, rng: random.Random) -> list[tuple[int, bool]]:
    return [
        (first_us + h * HOUR_US + rng.randrange(HOUR_US), rng.random() < 0.8) for h in range(hours)
    ]


def test_the_sink_is_written_before_the_tables_and_the_tables_before_the_dead_letters() -> None:
    worker = Worker()
    batch = PartitionBatch(0.0, partitions=8)
    batch.add("polls", b"s1", messages.poll_message("s1", format_utc(T0 + HOUR_US), "active"), 0, 1)
    batch.add("polls", b"s2", messages.poll_message("s2", format_utc(T0), "inactive"), 0, 2)
    batch.add("polls", b"s2", messages.poll_message("s2", "noon", "active"), 0, 3)
    worker.deliver(Event(batch.message(), Message(0, 40)))
    assert kinds_in_order(worker.log) == ["sink", "table", "dead letter"]
    (sunk,) = worker.entries("sink")
    assert set(sunk.stores) == {"s1", "s2"}
    assert {("s1", T0), ("s2", T0)} <= set(sunk.days)
    assert {store_id for store_id, _ in sunk.days} == {"s1", "s2"}
    # The database gets the rejection too, numbered within its input record.
    assert [row[:2] + row[4:] for row in sunk.dead_letters] == [("polls", "bad timestamp", 0, 3, 0)]
    written = {key for _, key, _ in worker.entries("table")}
    assert written == {b"s1", b"s2", f"s1@{T0}".encode(), f"s2@{T0}".encode()}
    (letter,) = worker.entries("dead letter")
    assert (letter[0].reason, letter[1], letter[2]) == ("bad timestamp", 0, 3)


def test_each_table_write_happens_while_an_event_of_its_store_is_bound() -> None:
    """Faust writes a table entry to the partition of the current event: a store's entries
    must be written while the store's own (last) event is current."""
    worker = Worker()
    first = batch_event(0, {"a": [(T0, True)], "b": [(T0, True)]}, partition=1)
    second = batch_event(1, {"b": [(T0 + HOUR_US, False)]}, partition=2)
    worker.deliver(first, second)
    last_event_of = {"a": first, "b": second}
    bound: Event | None = None
    writes = 0
    for kind, what in worker.log:
        if kind == "bind":
            bound = what
        elif kind == "table":
            store_id = what[1].decode().split("@")[0]
            assert bound is last_event_of[store_id], store_id
            writes += 1
    assert writes == 4  # a settings entry and one day of polls per store


def test_other_tasks_run_while_a_large_batch_writes_its_tables() -> None:
    """Faust's timers and the consumer thread's keepalive run on the worker's loop: a batch
    that writes thousands of table entries must give the loop turns while it writes them,
    without changing what it writes or their order."""
    stores = 2 * YIELD_EVERY_TABLE_WRITES  # two entries each: settings and a day of polls
    polls = {f"s{i}": [(T0 + i, True)] for i in range(stores)}
    worker = Worker()

    async def deliver_while_ticking() -> None:
        done = False

        async def tick() -> None:
            while not done:
                worker.log.append(("tick", None))
                await asyncio.sleep(0)

        ticker = asyncio.ensure_future(tick())
        await worker.ingestor.process([batch_event(0, polls)], worker.bind)
        done = True
        await ticker

    asyncio.run(deliver_while_ticking())
    table_at = [i for i, (kind, _) in enumerate(worker.log) if kind == "table"]
    ticks_while_writing = [
        i for i in range(table_at[0], table_at[-1]) if worker.log[i][0] == "tick"
    ]
    assert len(table_at) == 2 * stores
    assert len(ticks_while_writing) >= len(table_at) // YIELD_EVERY_TABLE_WRITES - 1
    quiet = Worker()
    quiet.deliver(batch_event(0, polls))
    assert [w for k, w in worker.log if k == "table"] == quiet.entries("table")


def test_many_polls_of_one_store_in_one_event_are_written_once_per_day() -> None:
    rng = random.Random(5)
    polls = hourly_polls(T0, 72, rng)
    shuffled = rng.sample(polls, len(polls))
    worker = Worker()
    worker.deliver(batch_event(0, {"s": shuffled}))
    (sunk,) = worker.entries("sink")
    reference = StoreState("s", horizon_us=HORIZON_US)
    reference.apply_polls(polls)
    days = [T0, T0 + DAY_US, T0 + 2 * DAY_US]
    # the days of the polls, and the days before them that the first poll's status reaches
    assert {day for _, day in sunk.days} == set(days) | set(reference.day_hours)
    assert sunk.days == {key: reference.day_record(key[1]) for key in sunk.days}
    row = sunk.stores["s"]
    assert row.newest_poll_us == max(ts for ts, _ in polls)
    assert row.first_poll_us == min(ts for ts, _ in polls)
    stores, store_polls = worker.tables()
    assert orjson.loads(stores[b"s"])["span"] == [days[0], days[-1]]
    assert state_codec.listed_days(orjson.loads(stores[b"s"])) == days
    for day in days:
        kept = orjson.loads(store_polls[f"s@{day}".encode()])
        in_day = sorted(p for p in polls if day <= p[0] < day + DAY_US)
        assert list(zip(kept["ts"], map(bool, kept["active"]), strict=True)) == in_day
    assert len(worker.entries("table")) == 1 + len(days)


def test_a_pack_and_the_same_polls_one_event_each_end_in_the_same_tables_and_rows() -> None:
    rng = random.Random(6)
    polls = hourly_polls(T0, 24 * 11, rng)  # past the horizon: pruning and an anchor
    packed, single = Worker(), Worker()
    packed.deliver(batch_event(0, {"s": polls}))
    for offset, one in enumerate(polls):
        single.deliver(batch_event(offset, {"s": [one]}))
    assert single.ingestor.cache["s"].cutoff_us > T0
    assert packed.tables() == single.tables()
    packed_stores, packed_days = packed.sink_rows()
    single_stores, single_days = single.sink_rows()
    assert packed_stores == single_stores
    # The pack writes every day once; one at a time, the old days were written while they
    # were kept. Each day's last value is the same.
    assert packed_days == single_days


def test_redelivered_events_give_the_same_tables_and_rows() -> None:
    rng = random.Random(7)
    events = [
        batch_event(0, {"a": hourly_polls(T0, 30, rng), "b": hourly_polls(T0, 5, rng)}),
        batch_event(1, {"b": hourly_polls(T0 + 5 * HOUR_US, 40, rng)}),
        batch_event(2, schedules={"a": NINE_TO_FIVE_MONDAY}, zones={"a": "Asia/Tokyo"}),
        batch_event(3, {"a": hourly_polls(T0 + 30 * HOUR_US, 10, rng)}),
    ]
    once = Worker()
    once.deliver(*events[:2])
    once.deliver(*events[2:])
    tables = once.tables()
    rows = once.sink_rows()

    # The same events again, to the same process: nothing changes, and every row written
    # again carries the value the database already has.
    redelivered_from = len(once.log)
    once.deliver(*events)
    assert once.tables() == tables
    again_stores, again_days = once.sink_rows(redelivered_from)
    assert again_stores == {s: rows[0][s] for s in again_stores}
    assert again_days == {key: rows[1][key] for key in again_days}
    assert set(again_stores) == {"a", "b"}

    # Every event twice, within a batch and across batches, to a fresh process.
    twice = Worker()
    twice.deliver(events[0], events[0], events[1])
    twice.deliver(events[1], *events[2:])
    twice.deliver(*events[2:])
    assert twice.tables() == tables
    assert twice.sink_rows() == rows


def test_a_redelivery_to_a_restarted_process_gives_the_same_tables_and_rows() -> None:
    rng = random.Random(8)
    events = [batch_event(n, {"s": hourly_polls(T0 + n * DAY_US, 24, rng)}) for n in range(10)]
    worker = Worker()
    worker.deliver(*events[:6])
    tables = worker.tables()
    rows = worker.sink_rows()
    worker.start()
    since = len(worker.log)
    worker.deliver(*events[3:6])
    assert worker.tables() == tables
    stores, days = worker.sink_rows(since)
    assert stores == {"s": rows[0]["s"]}
    assert days == {key: rows[1][key] for key in days}


@pytest.mark.parametrize("inactive_first", [False, True])
def test_a_conflicting_duplicate_poll_is_inactive_whichever_arrives_first(
    inactive_first: bool,
) -> None:
    ts = T0 + 10 * HOUR_US
    active = batch_event(0, {"s": [(T0, True), (ts, True)]})
    inactive = batch_event(1, {"s": [(ts, False)]})
    worker = Worker()
    worker.deliver(*([inactive, active] if inactive_first else [active, inactive]))
    stores, days = worker.sink_rows()
    assert stores["s"].last_active is False
    assert days[("s", T0)].poll_ts_us == [T0, ts]
    assert days[("s", T0)].poll_active == [True, False]
    kept = orjson.loads(worker.tables()[1][f"s@{T0}".encode()])
    assert kept == {"ts": [T0, ts], "active": [True, False]}
    # and the same in one event
    together = Worker()
    together.deliver(batch_event(0, {"s": [(T0, True), (ts, False), (ts, True)]}))
    assert together.tables() == worker.tables()
    assert together.sink_rows() == (stores, days)


def test_bad_messages_and_rejected_records_go_to_dead_letters_and_good_rows_go_through() -> None:
    batch = PartitionBatch(0.0, partitions=8)
    good = [(T0 + h * HOUR_US, h % 3 != 0) for h in range(5)]
    for n, (ts, active) in enumerate(good):
        status = "active" if active else "inactive"
        batch.add("polls", b"s1", messages.poll_message("s1", format_utc(ts), status), 4, n)
    batch.add("polls", b"s1", messages.poll_message("s1", format_utc(T0), "asleep"), 4, 10)
    batch.add("polls", b"s9", messages.poll_message("s1", format_utc(T0), "active"), 4, 11)
    # a pack with a good poll and two bad ones: the bad ones are numbered 0 and 1
    pack = messages.poll_pack_message(
        "s2", [("yesterday", "active"), (format_utc(T0), "inactive"), ("noon", "active")]
    )
    batch.add("polls", b"s2", pack, 4, 12)
    batch.add("timezones", b"s1", messages.timezone_message("s1", "Mars/Olympus_Mons"), 4, 13)
    events = [
        Event(batch.message(), Message(4, 100)),
        Event(b"not json", Message(4, 101)),
        Event(orjson.dumps({"polls": []}), Message(4, 102)),  # fields missing
    ]
    worker = Worker()
    worker.deliver(*events)

    letters = [(r.source, r.reason, p, o) for r, p, o in worker.entries("dead letter")]
    assert letters == [
        ("polls", "bad status", 4, 10),
        ("polls", "key mismatch", 4, 11),
        ("polls", "bad timestamp", 4, 12),
        ("polls", "bad timestamp", 4, 12),
        ("timezones", "unknown zone", 4, 13),
        ("input-batches", "bad message", 4, 101),
        ("input-batches", "bad message", 4, 102),
    ]
    (sunk,) = worker.entries("sink")
    assert [(row[1], row[5], row[6]) for row in sunk.dead_letters] == [
        ("bad status", 10, 0),
        ("key mismatch", 11, 0),
        ("bad timestamp", 12, 0),
        ("bad timestamp", 12, 1),
        ("unknown zone", 13, 0),
        ("bad message", 101, 0),
        ("bad message", 102, 0),
    ]
    bad_json = orjson.loads(sunk.dead_letters[5][3])
    assert bad_json == {"raw": "not json"}
    assert worker.ingestor.stats.rejected[("input-batches", "bad message")] == 2
    # The good rows of the same batch went through.
    assert set(sunk.stores) == {"s1", "s2"}
    assert sunk.days[("s1", T0)].poll_ts_us == [ts for ts, _ in good]
    assert sunk.days[("s2", T0)].poll_active == [False]
    assert sunk.stores["s1"].zone == "America/Chicago"  # the bad zone left the default
    stores, store_polls = worker.tables()
    assert set(stores) == {b"s1", b"s2"}
    assert set(store_polls) == {f"s1@{T0}".encode(), f"s2@{T0}".encode()}

    # A redelivery numbers the rejections the same way, so the dead-letter rows keep their keys.
    again = Worker()
    again.deliver(*events)
    assert again.entries("sink")[0].dead_letters == sunk.dead_letters


def test_a_sink_failure_writes_no_table_and_a_redelivery_after_restart_repairs_it() -> None:
    rng = random.Random(9)
    events = [batch_event(n, {"s": hourly_polls(T0 + n * DAY_US, 24, rng)}) for n in range(3)]
    events.append(Event(b"[]", Message(0, 99)))
    expected = Worker()
    expected.deliver(*events)

    worker = Worker(failing_sink_calls=1)
    with pytest.raises(ConnectionError):
        worker.deliver(*events)
    assert kinds_in_order(worker.log) == []  # nothing written
    worker.start()  # the worker stopped; its successor gets the batch again
    worker.deliver(*events)
    assert worker.tables() == expected.tables()
    assert worker.sink_rows() == expected.sink_rows()
    assert worker.entries("dead letter") == expected.entries("dead letter")


def test_states_rebuilt_after_forget_equal_the_live_ones_and_go_on_the_same() -> None:
    rng = random.Random(10)
    days = 12  # past the eight days kept: old days pruned, an anchor before the cutoff
    events = [
        batch_event(
            n, {"a": hourly_polls(T0 + n * DAY_US, 24, rng), "b": [(T0 + n * DAY_US, n % 2 == 0)]}
        )
        for n in range(days)
    ]
    events.insert(
        3, batch_event(99, schedules={"a": NINE_TO_FIVE_MONDAY}, zones={"b": "Asia/Tokyo"})
    )
    live, rebuilt = Worker(), Worker()
    for event in events:
        live.deliver(event)
        rebuilt.deliver(event)
    later = [
        batch_event(100, {"a": [(T0 + days * DAY_US, False)], "b": [(T0 + days * DAY_US, True)]})
    ]

    rebuilt.ingestor.forget()
    assert rebuilt.ingestor.cache == {}
    for store_id in ("a", "b"):
        want = live.ingestor.cache[store_id]
        got = rebuilt.ingestor.state_for(store_id)
        assert want.cutoff_us > T0
        assert list(got.poll_ts) == list(want.poll_ts)
        assert got.poll_ts[0] < got.cutoff_us  # the anchor came back
        assert got.poll_active == want.poll_active
        assert (got.schedule, got.zone_name) == (want.schedule, want.zone_name)
        assert (got.first_poll_us, got.cutoff_us) == (want.first_poll_us, want.cutoff_us)
        assert got.hours_with_time() == want.hours_with_time()
        assert got.summary() == want.summary()
        kept = [h for h in want.hours_with_time() if h >= want.cutoff_us]
        assert [got.bucket(h) for h in kept] == [want.bucket(h) for h in kept]

    since_live, since_rebuilt = len(live.log), len(rebuilt.log)
    live.deliver(*later)
    rebuilt.deliver(*later)
    assert rebuilt.tables() == live.tables()
    assert rebuilt.sink_rows(since_rebuilt) == live.sink_rows(since_live)
