"""The write fence: a batch whose partitions are revoked while it runs writes nothing more,
marks nothing applied, and its events are not counted as acknowledged.

The ingestor runs with the recording tables and sink of ``test_ingestor``; the revocation is
simulated by closing the fence from inside a sink write or between table writes, the points
where the worker's loop can run the revocation handler."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any
from weakref import WeakSet

import pytest

from storemon.db.sink import SinkBatch
from storemon.streams.fence import UNFENCED, Fenced, Licence, WriteFence, disown
from storemon.streams.ingest import CHUNK_STORES, YIELD_EVERY_TABLE_WRITES, Ingestor
from tests.unit.test_ingestor import HORIZON_US, T0, RecordedTable, batch_event


@dataclass(eq=False)
class FakeMessage:
    generation_id: int
    offset: int = 0
    acked: bool = False


@dataclass(frozen=True)
class FakeEvent:
    message: FakeMessage


@dataclass
class Group:
    """The consumer group's generation as Faust's app holds it."""

    generation: int = 1

    def rebalance(self) -> None:
        self.generation += 1


def test_a_batch_of_the_current_generation_may_write_until_the_fence_closes() -> None:
    group = Group()
    fence = WriteFence(lambda: group.generation)
    licence = fence.licence()
    licence.check()
    fence.close()
    assert not licence.valid()
    with pytest.raises(Fenced):
        licence.check()
    # Between the revocation and the next assignment nothing may write, not even a batch
    # that begins now.
    assert not fence.licence().valid()
    group.rebalance()
    assert fence.licence().valid()
    assert not licence.valid()  # the old generation stays closed


def test_a_rebalance_alone_ends_the_old_generations_licence() -> None:
    group = Group()
    fence = WriteFence(lambda: group.generation)
    licence = fence.licence()
    group.rebalance()
    assert not licence.valid()
    assert UNFENCED.valid()


def test_events_fetched_before_a_rebalance_are_set_apart() -> None:
    group = Group(generation=4)
    fence = WriteFence(lambda: group.generation)
    old = [FakeEvent(FakeMessage(3, offset)) for offset in range(3)]
    new = [FakeEvent(FakeMessage(4, offset)) for offset in range(3, 5)]
    fresh, stale = fence.split([old[0], new[0], old[1], new[1], old[2]])
    assert fresh == new
    assert stale == old
    fence.close()
    assert fence.split(new) == ([], new)


def test_disowned_events_are_acknowledged_without_being_counted() -> None:
    class Consumer:
        def __init__(self) -> None:
            self._unacked_messages: WeakSet[FakeMessage] = WeakSet()

    consumer = Consumer()
    events = [FakeEvent(FakeMessage(1, offset)) for offset in range(3)]
    events[2].message.acked = True
    for event in events:
        consumer._unacked_messages.add(event.message)
    assert disown(consumer, events) == 2
    assert all(event.message.acked for event in events)
    assert len(consumer._unacked_messages) == 0


@dataclass
class FencedWorker:
    """An ingestor whose sink can close the fence while it writes."""

    group: Group = field(default_factory=Group)
    log: list[tuple[str, Any]] = field(default_factory=list)
    close_on_sink_call: int | None = None  # close the fence during this sink call (1-based)
    sink_calls: int = 0
    licences_seen: list[Licence] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.fence = WriteFence(lambda: self.group.generation)
        self.ingestor = Ingestor(
            stores=RecordedTable("stores", self.log),
            store_polls=RecordedTable("store_polls", self.log),
            write_sink=self.write_sink,
            send_dead_letter=self.send_dead_letter,
            horizon_us=HORIZON_US,
        )

    async def write_sink(self, batch: SinkBatch, licence: Licence) -> None:
        self.sink_calls += 1
        self.licences_seen.append(licence)
        licence.check()
        await asyncio.sleep(0)
        self.log.append(("sink", batch))
        if self.sink_calls == self.close_on_sink_call:
            self.fence.close()  # revoked while this chunk was being written

    async def send_dead_letter(self, *args: Any) -> None:
        self.log.append(("dead letter", args))

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.log]


def many_stores(count: int) -> Any:
    return batch_event(7, {f"s{i}": [(T0 + i, True)] for i in range(count)})


def test_a_batch_revoked_between_its_database_chunks_writes_nothing_after_it() -> None:
    worker = FencedWorker(close_on_sink_call=1)
    event = many_stores(2 * CHUNK_STORES + 1)  # three chunks
    with pytest.raises(Fenced):
        asyncio.run(worker.ingestor.process([event], lambda e: None, worker.fence.licence()))
    assert worker.sink_calls == 1
    assert worker.kinds() == ["sink"]  # no later chunk, no table entry, no dead letter
    assert worker.ingestor.applied_offsets == {}


def test_a_batch_revoked_after_its_last_chunk_writes_no_table_entry() -> None:
    worker = FencedWorker(close_on_sink_call=1)
    with pytest.raises(Fenced):
        asyncio.run(
            worker.ingestor.process([many_stores(3)], lambda e: None, worker.fence.licence())
        )
    assert worker.kinds() == ["sink"]
    assert worker.ingestor.applied_offsets == {}


def test_a_batch_revoked_while_it_writes_its_tables_stops_at_the_next_turn() -> None:
    worker = FencedWorker()
    stores = 2 * YIELD_EVERY_TABLE_WRITES  # two entries each: settings and a day of polls

    class RevokedAtFirstWrite(RecordedTable):
        def __setitem__(self, key: bytes, value: bytes) -> None:
            super().__setitem__(key, value)
            worker.fence.close()  # the revocation, handled in the loop's next turn

    worker.ingestor.stores_table = RevokedAtFirstWrite("stores", worker.log)
    worker.ingestor.polls_table = RevokedAtFirstWrite("store_polls", worker.log)
    with pytest.raises(Fenced):
        asyncio.run(
            worker.ingestor.process([many_stores(stores)], lambda e: None, worker.fence.licence())
        )
    table_writes = worker.kinds().count("table")
    assert table_writes == YIELD_EVERY_TABLE_WRITES  # one run of writes, then the check
    assert worker.ingestor.applied_offsets == {}


def test_the_same_batch_unfenced_writes_everything() -> None:
    """The counterpart of the tests above: without a revocation every write happens."""
    worker = FencedWorker()
    event = many_stores(2 * CHUNK_STORES + 1)
    asyncio.run(worker.ingestor.process([event], lambda e: None, worker.fence.licence()))
    assert worker.sink_calls == 3
    assert worker.kinds().count("table") == 2 * (2 * CHUNK_STORES + 1)
    assert worker.ingestor.applied_offsets == {("storemon.input-batches", 0): 8}
    assert all(licence.generation == 1 for licence in worker.licences_seen)


def test_settle_waits_for_the_database_write_under_way() -> None:
    release = asyncio.Event()
    finished: list[str] = []

    async def slow_sink(batch: SinkBatch, licence: Licence) -> None:
        await release.wait()
        finished.append("written")

    async def scenario() -> tuple[bool, bool]:
        ingestor = Ingestor(
            stores={},
            store_polls={},
            write_sink=slow_sink,
            send_dead_letter=lambda *a: asyncio.sleep(0),
            horizon_us=HORIZON_US,
        )
        assert await ingestor.settle(0.01)  # nothing under way
        batch = asyncio.ensure_future(ingestor.process([many_stores(2)], lambda e: None))
        await asyncio.sleep(0.01)
        still_running = await ingestor.settle(0.01)
        release.set()
        settled = await ingestor.settle(1.0)
        await batch
        return still_running, settled

    still_running, settled = asyncio.run(scenario())
    assert (still_running, settled) == (False, True)
    assert finished == ["written"]
