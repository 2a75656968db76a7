"""A guard on Faust's offset commits against an offset listed twice.

Faust commits a partition up to the end of the first run of consecutive offsets in its list
of acknowledged offsets. After a restart it may list an offset twice: once as acknowledged
and once from a "gap" it recorded while the fetch position was being moved back to the
committed offset. A duplicate splits every run after it, so each commit advanced the
partition by a single message, one every commit interval: a restarted worker looked idle.
The guard merges the gaps and removes duplicates before Faust picks the run; which offsets
are committed is unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def merge_acknowledged(acked: list[int], gap: Any) -> None:
    """Fold the recorded gaps up to the highest acknowledged offset into ``acked`` and keep
    each offset once, sorted. ``gap`` is Faust's interval tree of offsets never delivered."""
    if not acked:
        return
    highest = max(acked)
    if gap:
        intervals = sorted(gap.overlap(0, highest), key=lambda interval: interval.begin)
        if intervals:
            for interval in intervals:
                acked.extend(range(interval.begin, interval.end))
            gap.chop(0, max(intervals[-1].end, highest + 1))
    unique = sorted(set(acked))
    if len(unique) != len(acked) or unique != acked:
        acked[:] = unique


def guard_offset_commits(consumer: Any) -> None:
    """Install the guard on a Faust consumer (once)."""
    if getattr(consumer, "_storemon_guarded", False):
        return
    original: Callable[[Any], int | None] = consumer._new_offset

    def new_offset(tp: Any) -> int | None:
        merge_acknowledged(consumer._acked[tp], consumer._gap[tp])
        return original(tp)

    consumer._new_offset = new_offset
    consumer._storemon_guarded = True


def commit_hole(acked: list[int], committed: int | None, in_flight: set[int]) -> int | None:
    """The offset Faust's commit waits for in vain, or None.

    Faust commits a partition only while its lowest acknowledged offset is at most one past
    the committed one. Messages fetched just before a restart's seek back to the committed
    offset can leave the offsets between them unread: nothing will ever acknowledge them,
    so the partition would never be committed again. A hole counts only when no message of
    it is still on its way through the stream (``in_flight``: delivered, not acknowledged).
    """
    if not acked or committed is None:
        return None
    lowest = min(acked)
    if lowest - committed <= 1:
        return None
    if any(committed <= offset < lowest for offset in in_flight):
        return None
    return committed


class CommitWatchdog:
    """Finds partitions whose commit is stuck behind a hole and reads them again from the
    committed offset. Re-reading is safe: every update is idempotent, and offsets already
    acknowledged are not listed twice."""

    def __init__(self, consumer: Any, patience: int = 3) -> None:
        self.consumer = consumer
        self.patience = patience  # consecutive checks a hole must persist
        self._seen: dict[Any, tuple[int, int]] = {}  # tp -> (committed, times seen)
        self.repairs = 0

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

    async def check(self) -> list[tuple[Any, int]]:
        """One check; returns the (partition, offset) pairs it re-read from."""
        holes = self.holes()
        repaired = []
        for tp in list(self._seen):
            if tp not in holes:
                del self._seen[tp]
        for tp, offset in holes.items():
            previous, times = self._seen.get(tp, (offset, 0))
            times = times + 1 if previous == offset else 1
            self._seen[tp] = (offset, times)
            if times >= self.patience:
                await self.consumer.seek(tp, offset)
                del self._seen[tp]
                self.repairs += 1
                repaired.append((tp, offset))
        return repaired
