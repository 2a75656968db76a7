"""A report counts every input published before its job started: the job first waits until
the worker's two stages have applied the input topics up to where they ended then.

Without this wait a report asked while the worker is behind (a replay just sent, a live
backlog) was computed from what happened to be applied: its report time is the newest poll
*applied*, and polls of other stores before that time, still in Kafka, were missing from
its numbers without a word. With it the report is either exact or Failed, saying how much
input was still waiting.

The two stages and how far each has got:

1. the batching stage (:mod:`storemon.streams.batcher`) commits an input partition's offset
   only after the internal messages holding its records are acknowledged by the broker;
2. the ingest agent applies the internal messages (PostgreSQL and the in-memory index are
   written before a batch returns).

So the wait has two steps. First the input's end offsets E (read when the job starts) must
be committed by the batching stage. Then the internal topic's end offsets read *after*
that hold every message made from the input before E, and the agent must have applied
them. Positions are taken from this process where it runs the stage for a partition (no
round trip; the agent's applied offsets move before Faust's periodic commit), and from the
broker's committed offsets of the stage's consumer group otherwise (another worker, or the
batching stage in its own process). When nothing is waiting the whole check is one
ListOffsets request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from storemon.settings import Settings
from storemon.streams import messages
from storemon.streams.batcher import batcher_group

log = logging.getLogger(__name__)

CHECK_INTERVAL_S = 0.02  # between looks at this process's own positions
BROKER_CHECK_INTERVAL_S = 0.25  # between reads of a group's committed offsets

Positions = Mapping[TopicPartition, int]


def records_behind(ends: Positions, done: Positions) -> int:
    """Records before ``ends`` not yet done (a partition absent from ``done``: none done)."""
    return sum(max(0, end - done.get(tp, 0)) for tp, end in ends.items())


def merged(*sources: Positions) -> dict[TopicPartition, int]:
    """The furthest position each source knows for each partition (offsets only grow)."""
    out: dict[TopicPartition, int] = {}
    for source in sources:
        for tp, offset in source.items():
            if offset > out.get(tp, -1):
                out[tp] = offset
    return out


class NotCaughtUp(Exception):
    """A speculative answer began before all the input published before it was applied."""


class IngestBehind(Exception):
    """The worker did not apply the input published before the report within the wait."""

    def __init__(self, records: int, waited_s: float) -> None:
        self.records = records
        self.waited_s = waited_s
        super().__init__(
            f"ingestion is behind: {records} input records published before this report"
            f" started were not applied after {waited_s:.0f} s; ask again once"
            " `storemon status` shows no lag"
        )


class Speculation:
    """A job's answer computed while the input's end offsets are read, kept only if this
    process's positions, taken before the computation began, already reached them: then
    every record before the ends was applied before the answer read anything."""

    def __init__(
        self,
        input_done: Positions,
        internal_done: Positions,
        ends: asyncio.Future[dict[TopicPartition, int]],
        internal_topics: tuple[str, ...],
    ) -> None:
        self.input_done, self.internal_done = input_done, internal_done
        self.ends = ends
        self.internal_topics = internal_topics

    async def split_ends(self) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
        """The end offsets read: (input topics', internal topic's)."""
        ends = await self.ends
        internal = {tp: o for tp, o in ends.items() if tp.topic in self.internal_topics}
        inputs = {tp: o for tp, o in ends.items() if tp.topic not in self.internal_topics}
        return inputs, internal

    async def confirm(self) -> None:
        """Raises :class:`NotCaughtUp` unless the answer may be kept (call before any
        write that depends on it)."""
        inputs, internal = await self.split_ends()
        if records_behind(inputs, self.input_done) or records_behind(internal, self.internal_done):
            raise NotCaughtUp

    def cancel(self) -> None:
        if not self.ends.done():
            self.ends.cancel()


@dataclass(frozen=True, slots=True)
class Stage:
    """One stage: its consumer group, the topics it reads, and what this process knows of
    its progress (next offset to do, per partition; empty where it runs elsewhere)."""

    group_id: str
    topics: tuple[str, ...]
    local_positions: Callable[[], Positions]


class CatchUp:
    """Waits until both stages have passed the input's end offsets at the call."""

    def __init__(
        self,
        settings: Settings,
        batcher_positions: Callable[[], Positions],
        agent_positions: Callable[[], Positions],
    ) -> None:
        self.settings = settings
        self.input = Stage(
            batcher_group(settings),
            tuple(settings.topic(t) for t in messages.INPUT_TOPICS),
            batcher_positions,
        )
        self.internal = Stage(
            settings.faust_app_id,
            (settings.topic(messages.INPUT_BATCHES),),
            agent_positions,
        )
        self._consumer: Any = None
        self._admin: Any = None
        # The broker's committed offsets last read, per group: still true lower bounds
        # later (offsets only grow), so a worker restarted with nothing new to read asks
        # the broker once, not at every report.
        self._known: dict[str, dict[TopicPartition, int]] = {}

    def _partitions(self, stage: Stage) -> list[TopicPartition]:
        return [TopicPartition(t, p) for t in stage.topics for p in range(self.settings.partitions)]

    async def _clients(self) -> tuple[Any, Any]:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.kafka_bootstrap)
            admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap)
            await consumer.start()
            try:
                await admin.start()
            except BaseException:
                await consumer.stop()
                raise
            self._consumer, self._admin = consumer, admin
        return self._consumer, self._admin

    async def close(self) -> None:
        consumer, admin = self._consumer, self._admin
        self._consumer = self._admin = None
        if consumer is not None:
            with contextlib.suppress(Exception):
                await consumer.stop()
        if admin is not None:
            with contextlib.suppress(Exception):
                await admin.close()

    async def _ends(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        consumer, _ = await self._clients()
        try:
            ends: dict[TopicPartition, int] = await consumer.end_offsets(list(partitions))
        except KafkaError:
            await self.close()  # a broker restart can leave the clients unusable
            raise
        return ends

    async def _committed(self, stage: Stage) -> dict[TopicPartition, int]:
        _, admin = await self._clients()
        try:
            found = await admin.list_consumer_group_offsets(stage.group_id)
        except KafkaError as error:  # no coordinator yet: nothing known from the broker
            log.debug("committed offsets of %s unknown: %s", stage.group_id, error)
            return {}
        return {tp: meta.offset for tp, meta in found.items() if meta.offset >= 0}

    def _positions(self, stage: Stage) -> dict[TopicPartition, int]:
        return merged(stage.local_positions(), self._known.get(stage.group_id, {}))

    async def _until_done(self, stage: Stage, ends: Positions, deadline: float) -> int:
        """Wait until ``stage`` has done every record before ``ends``; returns the records
        still behind (0, or what is left when ``deadline`` passes)."""
        asked_broker = float("-inf")
        while True:
            behind = records_behind(ends, self._positions(stage))
            now = time.monotonic()
            if behind == 0 or now >= deadline:
                return behind
            if now - asked_broker >= BROKER_CHECK_INTERVAL_S:
                asked_broker = now
                committed = await self._committed(stage)
                self._known[stage.group_id] = merged(self._known.get(stage.group_id, {}), committed)
                continue
            await asyncio.sleep(CHECK_INTERVAL_S)

    def speculate(self) -> Speculation:
        """Start reading the end offsets while the caller computes its answer."""
        input_done = self._positions(self.input)
        internal_done = self._positions(self.internal)
        partitions = self._partitions(self.input) + self._partitions(self.internal)
        ends = asyncio.ensure_future(self._ends(partitions))
        return Speculation(input_done, internal_done, ends, self.internal.topics)

    async def wait(self, timeout_s: float) -> float:
        """Wait until the input published before this call is applied; returns the seconds
        waited. Raises :class:`IngestBehind` after ``timeout_s``."""
        began = time.monotonic()
        deadline = began + timeout_s
        # Positions are looked at before the end offsets are read: when they already reach
        # those ends, the internal ends read in the same request hold all of that input.
        first_look = self.speculate()
        input_ends, internal_ends = await first_look.split_ends()
        if records_behind(input_ends, first_look.input_done) > 0:
            left = await self._until_done(self.input, input_ends, deadline)
            if left:
                raise IngestBehind(left, time.monotonic() - began)
            internal_ends = await self._ends(self._partitions(self.internal))
        left = await self._until_done(self.internal, internal_ends, deadline)
        if left:
            raise IngestBehind(left, time.monotonic() - began)
        return time.monotonic() - began
