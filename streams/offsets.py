"""Guards on Faust's offset commits, for topics written without transactions.

Faust commits a partition up to the end of the first run of consecutive offsets in its list
of acknowledged offsets, and counts as acknowledged any "gap": offsets it never received
(meant for compacted topics and transaction markers). After a crash restart, messages
fetched just before the seek back to the committed offset move its read position ahead, so
the messages after the committed offset are dropped as already read and recorded as a gap:
Faust would then commit past polls nobody processed (seen in the fault tests as a report
missing polls, or, when an offset was also listed twice, as a worker that committed one
message per commit interval and looked idle).

Our input topics hold a record at every offset (idempotent producers, no transactions) and
every update is idempotent, so the guard (1) lets every fetched message through: a message
delivered twice after a seek costs a little work, a dropped one cost correctness; (2)
forgets gaps, lists each offset once, and commits only from the committed offset on. The
watchdog below re-reads a partition whose next offset still never arrives.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)


def merge_acknowledged(acked: list[int], gap: Any) -> None:
    """Keep each acknowledged offset once, sorted, and forget the recorded gaps (``gap`` is
    Faust's interval tree of offsets it never received: not acknowledged, only missing)."""
    if gap:
        gap.clear()
    if not acked:
        return
    unique = sorted(set(acked))
    if unique != acked:
        acked[:] = unique


class DeliverEveryMessage(dict[Any, Any]):
    """Faust's read positions, answering "none" to its fetch loop: that loop drops a message
    whose offset is below the position it last read, which is how messages fetched again
    after a seek were lost. Positions are still recorded (other readers may look)."""

    def __getitem__(self, key: Any) -> None:
        return None


async def seek_uncommitted_to_start(consumer: Any, stream_topics: frozenset[str]) -> dict[Any, int]:
    """Read the assigned partitions of ``stream_topics`` that the group never committed from
    their first offset, and take that offset as their committed one. Returns what it moved.

    After a rebalance Faust drops the records it had fetched while its flow was stopped and
    seeks every partition back to its committed offset, but a partition without one (or at
    0) is not moved: the records dropped from it were never read again. Seen in the fault
    tests, where a worker took over a partition its dead peer had never committed: either
    nothing more of it arrived (the worker looked idle while behind), or its later messages
    were processed and committed over the dropped first ones (the stores' schedules), and a
    report counted those stores as open around the clock. With the first offset as the
    committed one, the guard above also refuses to commit past a hole at the start."""
    uncommitted = [
        tp
        for tp in consumer.assignment()
        if tp.topic in stream_topics and not consumer._committed_offset.get(tp)
    ]
    if not uncommitted:
        return {}
    starts: dict[Any, int] = dict(await consumer.earliest_offsets(*uncommitted))
    moved = {tp: starts[tp] for tp in uncommitted if tp in starts}
    if moved:
        await consumer._thread.seek_wait(moved)
        consumer._committed_offset.update(moved)
        log.info(
            "partitions without a committed offset read from their first offset: %s",
            ", ".join(f"{tp.topic}[{tp.partition}]@{offset}" for tp, offset in moved.items()),
        )
    return moved


def guard_offset_commits(consumer: Any, stream_topics: frozenset[str]) -> None:
    """Install the guard on a Faust consumer (once), before its fetcher starts.
    ``stream_topics``: the topics the agents read (not the tables' changelogs)."""
    if getattr(consumer, "_storemon_guarded", False):
        return
    consumer._read_offset = DeliverEveryMessage()
    seek_to_committed: Callable[[], Awaitable[None]] = consumer.perform_seek

    async def perform_seek() -> None:
        await seek_to_committed()
        await seek_uncommitted_to_start(consumer, stream_topics)

    consumer.perform_seek = perform_seek
    original: Callable[[Any], int | None] = consumer._new_offset

    def new_offset(tp: Any) -> int | None:
        acked = consumer._acked[tp]
        merge_acknowledged(acked, consumer._gap[tp])
        committed = consumer._committed_offset[tp]
        if acked and committed is not None and acked[0] > committed:
            return None  # the next offset to commit was never processed: wait, or re-read
        return original(tp)

    consumer._new_offset = new_offset
    consumer._storemon_guarded = True


def commit_hole(acked: list[int], committed: int | None, in_flight: set[int]) -> int | None:
    """The offset Faust's commit waits for in vain, or None.

    The guard commits a partition only from its committed offset on. Messages dropped after
    a restart's seek leave offsets nothing will ever acknowledge, so the partition would
    never be committed again. A hole counts only when no message of it is still on its way
    through the stream (``in_flight``: delivered, not acknowledged).
    """
    if not acked or committed is None:
        return None
    lowest = min(acked)
    if lowest <= committed:
        return None
    if any(committed <= offset < lowest for offset in in_flight):
        return None
    return committed


class CommitWatchdog:
    """Finds partitions whose commit is stuck behind a hole and reads them again from the
    committed offset. Re-reading is safe: every update is idempotent, and offsets already
    acknowledged are not listed twice. Offsets still missing after ``max_rereads`` re-reads
    hold no record (a transactional producer's markers, say): they are then skipped, with
    an error in the log, rather than stalling the partition for ever."""

    def __init__(self, consumer: Any, patience: int = 3, max_rereads: int = 2) -> None:
        self.consumer = consumer
        self.patience = patience  # consecutive checks a hole must persist
        self.max_rereads = max_rereads
        self._seen: dict[Any, tuple[int, int]] = {}  # tp -> (hole offset, times seen)
        self._rereads: dict[Any, tuple[int, int]] = {}  # tp -> (hole offset, re-reads)

    def holes(self) -> dict[Any, int]:
        consumer = self.consumer
        in_flight: dict[Any, set[int]] = {}
        for message in list(consumer._unacked_messages):
            in_flight.setdefault(message.tp, set()).add(message.offset)
        found = {}
        for tp, acked in list(consumer._acked.items()):
            committed = consumer._committed_offset.get(tp)
            hole = commit_hole(acked, committed, in_flight.get(tp, set()))
            if hole is not None:
                found[tp] = hole
        return found

    async def check(self) -> list[tuple[Any, int, str]]:
        """One check; returns (partition, offset, "re-read" or "skipped") for each action."""
        if self.consumer._commit_fut is not None:
            # A commit takes its offsets off the acknowledged list before it records the new
            # committed offset: meanwhile the list looks like it starts past a hole.
            self._seen.clear()
            return []
        holes = self.holes()
        actions: list[tuple[Any, int, str]] = []
        for tp in list(self._seen):
            if tp not in holes:
                del self._seen[tp]
        for tp, offset in holes.items():
            previous, times = self._seen.get(tp, (offset, 0))
            times = times + 1 if previous == offset else 1
            self._seen[tp] = (offset, times)
            if times < self.patience:
                continue
            del self._seen[tp]
            hole_at, rereads = self._rereads.get(tp, (offset, 0))
            rereads = rereads if hole_at == offset else 0
            if rereads >= self.max_rereads:
                acked = self.consumer._acked[tp]
                acked.extend(range(offset, min(acked)))
                acked.sort()
                del self._rereads[tp]
                actions.append((tp, offset, "skipped"))
            else:
                # On the consumer's own thread: a seek from here raced its fetch loop.
                await self.consumer._thread.seek_wait({tp: offset})
                self._rereads[tp] = (offset, rereads + 1)
                actions.append((tp, offset, "re-read"))
        return actions


class UndeliveredSends:
    """The messages handed to Faust's producer that the broker has not acknowledged yet.

    Faust flushes its producer before it commits, but that flush gives up once nothing was
    sent for 0.1 s, and it covers only messages already passed on to aiokafka: on a busy
    machine a commit could record a batch as done while some of its table writes still
    waited in the buffer. A worker killed right then would lose those writes for good (the
    batch is never delivered again), and a store rebuilt from the changelog by the next
    owner would go on without them. Found by reading Faust's flush while looking for the
    takeover failure that ``seek_uncommitted_to_start`` fixes; not observed on its own."""

    def __init__(self) -> None:
        self._pending: set[asyncio.Future[Any]] = set()

    def __len__(self) -> int:
        return len(self._pending)

    def track(self, sent: asyncio.Future[Any]) -> None:
        if not sent.done():
            self._pending.add(sent)
            sent.add_done_callback(self._pending.discard)

    async def delivered(self) -> bool:
        """Wait for every message handed over until now; False when one of them failed."""
        waiting = list(self._pending)
        if waiting:
            await asyncio.wait(waiting)
        return all(not sent.cancelled() and sent.exception() is None for sent in waiting)


def commit_only_delivered(consumer: Any, producer: Any) -> UndeliveredSends:
    """Make Faust's consumer commit offsets only once everything the app handed its producer
    before the commit is on the broker (table changelogs included). A batch's table writes
    are handed over before its events are acknowledged, so the offsets a commit records
    never run ahead of the writes they stand for. A send that failed holds the commit back:
    the batch is then processed again, which the idempotent updates allow."""
    existing: UndeliveredSends | None = getattr(consumer, "_storemon_undelivered", None)
    if existing is not None:
        return existing
    undelivered = UndeliveredSends()
    hand_over: Callable[[Any], None] = producer.send_soon
    commit: Callable[[Any], Awaitable[bool]] = consumer._commit

    def send_soon(message: Any) -> None:
        undelivered.track(message)
        hand_over(message)

    async def commit_when_delivered(offsets: Any) -> bool:
        if not await undelivered.delivered():
            return False
        return await commit(offsets)

    producer.send_soon = send_soon
    consumer._commit = commit_when_delivered
    consumer._storemon_undelivered = undelivered
    return undelivered
