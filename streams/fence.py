"""A worker writes for its input partitions only while the group's current assignment is
the one its batch began under.

Faust stamps every message it fetches with the consumer group's generation, and a rebalance
always starts a new one. When partitions are revoked, Faust stops its streams but does not
wait for a batch already taken (``stream_wait_empty=False``), and its ``take_events`` buffer
may still hand out events fetched before the revocation. Without a fence such a batch goes
on writing PostgreSQL rows and changelog messages while the partitions' next owner rebuilds
the same stores and writes newer rows: an old row landing last would leave a store-day short
of polls until its next poll, and an old changelog message landing last would be what a
later recovery restores.

The fence is closed when partitions are revoked (before the worker rejoins the group, so
before anyone else can be given them); a batch checks its :class:`Licence` before every
write and stops with :exc:`Fenced` when the licence is no longer valid. Its events are then
taken out of Faust's acknowledgements (:func:`disown`): after the rebalance Faust seeks every
partition back to its committed offset, so whoever owns them now reads them again, and
counting them as acknowledged could let a commit run past writes that never happened.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any


class Fenced(Exception):
    """The batch's generation is over: it must not write anything more."""


class WriteFence:
    """Which consumer-group generation may still write. ``current_generation`` reads the
    generation of the consumer's latest assignment (Faust's ``consumer_generation_id``)."""

    def __init__(self, current_generation: Callable[[], int]) -> None:
        self._current = current_generation
        self._closed_through: int | None = None  # generations up to it may no longer write

    def close(self) -> None:
        """Partitions are being revoked: no batch of the generation now current (or older)
        may write again. The next assignment brings a new generation, which is open."""
        self._closed_through = self._current()

    def admits(self, generation: int) -> bool:
        closed = self._closed_through
        return generation == self._current() and (closed is None or generation > closed)

    def licence(self) -> Licence:
        """The licence of a batch that begins now."""
        return Licence(self, self._current())

    def split(self, events: Sequence[Any]) -> tuple[list[Any], list[Any]]:
        """The events of a batch that may be processed now, and those fetched under a
        generation that is over (they will be delivered again after the rebalance)."""
        fresh: list[Any] = []
        stale: list[Any] = []
        for event in events:
            (fresh if self.admits(event.message.generation_id) else stale).append(event)
        return fresh, stale


@dataclass(frozen=True, slots=True)
class Licence:
    """A batch's right to write: valid while its generation is admitted."""

    fence: WriteFence | None  # None: partitions never move (benchmarks, tests of the core)
    generation: int = 0

    def valid(self) -> bool:
        return self.fence is None or self.fence.admits(self.generation)

    def check(self) -> None:
        if not self.valid():
            raise Fenced(f"partitions revoked: generation {self.generation} may not write")


UNFENCED = Licence(None)


def disown(consumer: Any, events: Iterable[Any]) -> int:
    """Mark events as acknowledged without recording their offsets, so that neither
    ``take_events``' final acknowledgement nor a later commit counts them. Returns how many
    were still unacknowledged."""
    unacknowledged = consumer._unacked_messages
    count = 0
    for event in events:
        message = event.message
        if not message.acked:
            message.acked = True  # Message.ack() does nothing for an acknowledged message
            count += 1
        unacknowledged.discard(message)
    return count
