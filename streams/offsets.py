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

from collections.abc import Callable
from typing import Any


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


def guard_offset_commits(consumer: Any) -> None:
    """Install the guard on a Faust consumer (once), before its fetcher starts."""
    if getattr(consumer, "_storemon_guarded", False):
        return
    consumer._read_offset = DeliverEveryMessage()
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
