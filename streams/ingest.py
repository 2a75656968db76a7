"""The worker's ingestion: a batch of events in; store states, tables and PostgreSQL updated.

Order of writes, and why: PostgreSQL first, then the Faust tables, then (by returning) the
acknowledgement of the events. A crash before the tables are written redelivers the events
and rebuilds the same absolute values; a crash after it redelivers events the state already
holds, whose rows PostgreSQL also already has. Every write is idempotent, so at-least-once
delivery never counts anything twice.

Table layout (keys and values are bytes; values orjson):
- ``stores``  ``store_id`` -> schedule, zone, first poll, cutoff and the polls kept (the
  anchor before the cutoff among them): all a store's state is rebuilt from, in one entry,
  so a batch writes one entry (one changelog message) per store it touched. Faust hands
  changelog messages to the producer one at a time, which made one entry per store and
  day the bottleneck of ingestion.
PostgreSQL gets the store-days (totals, hours, runs, polls); in the table the hours and
runs are recomputed from the polls when a state is rebuilt.
A store's entry is written while an event of that store is current, so it lands in the
store's partition, the partition its messages come from.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from storemon.aggregates.records import (
    BadField,
    Rejection,
    parse_poll,
    parse_zone,
    poll_from_fields,
)
from storemon.aggregates.schedule import Schedule, WeeklyInterval, build_schedule
from storemon.aggregates.state import StoreChanges, StoreState
from storemon.aggregates.timebase import DAY_US, floor_to
from storemon.db.aggregates import SinkBatch, StoreRow
from storemon.streams.messages import (
    HOURS,
    POLLS,
    decode_object,
    parse_hours_message,
    text_fields,
    unpack_polls,
)

log = logging.getLogger(__name__)

ZONE_FIELDS = ("store_id", "timezone_str")
# Stores per PostgreSQL write within a batch, and how often computing gives the loop a turn.
CHUNK_STORES = 500
YIELD_EVERY_STORES = 20

Table = MutableMapping[bytes, bytes]


@dataclass
class _StoreWork:
    event: Any  # the store's last event in the batch: it fixes the tables' partition
    polls: list[tuple[int, bool]] = field(default_factory=list)
    schedule: Schedule | None = None
    zone: str | None = None


@dataclass
class IngestStats:
    events: int = 0
    polls: int = 0
    rejected: Counter[tuple[str, str]] = field(default_factory=Counter)
    day_rows: int = 0
    batches: int = 0
    # where the time went: computing, writing PostgreSQL, writing tables, waiting for events
    seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))


class Ingestor:
    """Owns the in-memory states of the stores of this worker's partitions."""

    def __init__(
        self,
        *,
        kind_of_topic: dict[str, str],
        stores: Table,
        write_sink: Callable[[SinkBatch], Awaitable[None]],
        send_dead_letter: Callable[[Rejection, int | None, int | None], Awaitable[None]],
        horizon_us: int,
    ) -> None:
        self.kind_of_topic = kind_of_topic
        self.stores_table = stores
        self.write_sink = write_sink
        self.send_dead_letter = send_dead_letter
        self.horizon_us = horizon_us
        self.cache: dict[str, StoreState] = {}
        self.stats = IngestStats()
        self._last_end: float | None = None

    def forget(self) -> None:
        """Drop every cached state (partitions moved): they are rebuilt from the tables."""
        self.cache.clear()

    # -- parsing -----------------------------------------------------------------------------

    def _parse(
        self, kind: str, raw: bytes | None, rejected: list[Rejection]
    ) -> tuple[str, Any] | Rejection | None:
        """(store_id, payload) or the message's rejection; rows rejected from inside a
        message that is still used (bad intervals of a schedule, bad polls of a pack) go to
        ``rejected``; None when nothing of the message is left."""
        try:
            value = decode_object(raw)
        except ValueError as error:
            text = (raw or b"")[:500].decode("utf-8", "replace")
            return Rejection(kind, "bad message", str(error), {"raw": text})
        if kind == POLLS:
            records = unpack_polls(value)
            if len(records) == 1:
                poll = parse_poll(records[0])
                if isinstance(poll, Rejection):
                    return poll
                return poll.store_id, [(poll.ts_us, poll.active)]
            # A pack: each bad entry is rejected alone, the good ones are used.
            good: list[tuple[int, bool]] = []
            store_id = None
            for record in records:
                try:
                    poll = poll_from_fields(
                        record["store_id"], record["timestamp_utc"], record["status"]
                    )
                except BadField as error:
                    rejected.append(Rejection(POLLS, error.reason, str(error), record))
                    continue
                store_id = poll.store_id
                good.append((poll.ts_us, poll.active))
            if store_id is None:
                return None
            return store_id, good
        if kind == HOURS:
            parsed = parse_hours_message(value)
            if isinstance(parsed, Rejection):
                return parsed
            store_id, rows, bad_rows = parsed
            rejected.extend(bad_rows)
            return store_id, build_schedule(rows)
        zone = parse_zone(text_fields(value, ZONE_FIELDS))
        return zone if isinstance(zone, Rejection) else (zone.store_id, zone.zone_name)

    # -- state -------------------------------------------------------------------------------

    def state_for(self, store_id: str) -> StoreState:
        state = self.cache.get(store_id)
        if state is not None:
            return state
        raw = self.stores_table.get(store_id.encode())
        if raw is None:
            state = StoreState(store_id, horizon_us=self.horizon_us)
        else:
            meta = orjson.loads(raw)
            polls = [(ts, bool(a)) for ts, a in zip(meta["ts"], meta["active"], strict=True)]
            state = StoreState.restore(
                store_id,
                tuple(WeeklyInterval(*i) for i in meta["schedule"]),
                meta["zone"],
                horizon_us=self.horizon_us,
                first_poll_us=meta["first"],
                cutoff_us=meta["cutoff"],
                polls=polls,
            )
        self.cache[store_id] = state
        return state

    # -- the batch -----------------------------------------------------------------------------

    async def process(self, events: Sequence[Any], bind_event: Callable[[Any], None]) -> None:
        began = time.perf_counter()
        if self._last_end is not None:
            self.stats.seconds["waiting for events"] += began - self._last_end
        work, rejected = self._collect(events)
        self.stats.events += len(events)
        table_writes: list[tuple[Any, Table, bytes, bytes | None]] = []
        # PostgreSQL works in another process: while it writes one chunk of stores, the
        # next chunk is computed here (the loop is given a turn every few stores so the
        # write moves on). Everything is written before the batch is acknowledged; each
        # store's rows go in one transaction, with the store's row.
        writing: asyncio.Task[None] | None = None
        waited = 0.0
        batch = SinkBatch()
        for n, (store_id, item) in enumerate(work.items(), 1):
            bind_event(item.event)  # table reads of a rebuild go to the store's partition
            self._update_store(store_id, item, batch, table_writes)
            if n % YIELD_EVERY_STORES == 0:
                await asyncio.sleep(0)
            if len(batch.stores) >= CHUNK_STORES:
                waited += await self._finish(writing)
                writing = asyncio.ensure_future(self.write_sink(batch))
                batch = SinkBatch()
        index_in_message: Counter[tuple[int | None, int | None]] = Counter()
        for rejection, partition, offset in rejected:
            self.stats.rejected[(rejection.source, rejection.reason)] += 1
            record = orjson.dumps(dict(rejection.record)).decode()
            index = index_in_message[(partition, offset)]
            index_in_message[(partition, offset)] += 1
            batch.dead_letters.append(
                (
                    rejection.source,
                    rejection.reason,
                    rejection.detail,
                    record,
                    partition,
                    offset,
                    index,
                )
            )
        computed = time.perf_counter()
        waited += await self._finish(writing)
        if batch:
            await self.write_sink(batch)
        written = time.perf_counter()
        self.stats.seconds["computing"] += computed - began - waited
        self.stats.seconds["writing PostgreSQL"] += written - computed + waited
        for event, table, key, value in table_writes:
            bind_event(event)
            if value is None:
                table.pop(key, None)
            else:
                table[key] = value
        for rejection, partition, offset in rejected:
            await self.send_dead_letter(rejection, partition, offset)
        self.stats.batches += 1
        self._last_end = time.perf_counter()
        self.stats.seconds["writing tables"] += self._last_end - written

    @staticmethod
    async def _finish(writing: asyncio.Task[None] | None) -> float:
        """Wait for a chunk's write (raising its error); returns the seconds waited."""
        if writing is None:
            return 0.0
        began = time.perf_counter()
        await writing
        return time.perf_counter() - began

    def _collect(
        self, events: Sequence[Any]
    ) -> tuple[dict[str, _StoreWork], list[tuple[Rejection, int | None, int | None]]]:
        """Parse the batch and group it by store, in arrival order; set aside what is bad."""
        work: dict[str, _StoreWork] = {}
        rejected: list[tuple[Rejection, int | None, int | None]] = []
        for event in events:
            message = event.message
            kind = self.kind_of_topic.get(message.topic, POLLS)
            inner: list[Rejection] = []
            parsed = self._parse(kind, event.value, inner)
            rejected.extend((r, message.partition, message.offset) for r in inner)
            if parsed is None:
                continue
            if not isinstance(parsed, Rejection) and message.key not in (None, parsed[0].encode()):
                parsed = Rejection(
                    kind,
                    "key mismatch",
                    "message key is not the store_id: the store would be split over partitions",
                    {"key": message.key.decode("utf-8", "replace"), "store_id": parsed[0]},
                )
            if isinstance(parsed, Rejection):
                rejected.append((parsed, message.partition, message.offset))
                continue
            store_id, payload = parsed
            item = work.get(store_id)
            if item is None:
                item = work[store_id] = _StoreWork(event)
            item.event = event
            if kind == POLLS:
                item.polls.extend(payload)
            elif kind == HOURS:
                item.schedule = payload
            else:
                item.zone = payload
        return work, rejected

    def _update_store(
        self,
        store_id: str,
        item: _StoreWork,
        batch: SinkBatch,
        table_writes: list[tuple[Any, Table, bytes, bytes | None]],
    ) -> None:
        state = self.state_for(store_id)
        changes = StoreChanges()
        if item.schedule is not None or item.zone is not None:
            schedule = item.schedule if item.schedule is not None else state.schedule
            changes = state.replace_schedule(schedule, item.zone or state.zone_name)
        if item.polls:
            applied = state.apply_polls(item.polls)
            changes.hours.update(applied.hours)
            changes.days.update(applied.days)
            self.stats.polls += len(item.polls)
        if state.poll_ts:
            # Whole days: the cutoff moves once a day, not with every poll.
            state.prune(floor_to(state.poll_ts[-1] - self.horizon_us, DAY_US))
        days = set(changes.days)
        days.update(h - h % DAY_US for h in changes.hours)
        # The days of the polls kept, the anchor's among them (a report before a later poll
        # looks the anchor up in its day's row).
        kept_from = state.poll_ts[0] if state.poll_ts else state.cutoff_us
        days.update(ts - ts % DAY_US for ts, _ in item.polls if ts >= kept_from)
        for day in sorted(days):
            batch.days[(store_id, day)] = state.day_record(day, changes.hours)
        self.stats.day_rows += len(days)
        summary = state.summary()
        newest = state.poll_ts[-1] if state.poll_ts else None
        schedule_rows = [list(i) for i in state.schedule]
        batch.stores[store_id] = StoreRow(
            store_id,
            schedule_rows,
            state.zone_name,
            summary.first_poll_us,
            newest,
            summary.last_poll_us,
            summary.last_active if summary.last_poll_us is not None else None,
            summary.tail_end_us if summary.last_poll_us is not None else None,
        )
        # Written whenever the store had events, changed or not: after a crash between the
        # local store and the changelog, a redelivered poll is put back in both.
        entry = orjson.dumps(
            {
                "schedule": schedule_rows,
                "zone": state.zone_name,
                "first": state.first_poll_us,
                "cutoff": state.cutoff_us,
                "ts": state.poll_ts.tolist(),
                "active": list(state.poll_active),
            }
        )
        table_writes.append((item.event, self.stores_table, store_id.encode(), entry))


async def retry_forever(
    action: Callable[[], Awaitable[None]],
    retry_on: tuple[type[BaseException], ...],
    what: str,
    max_delay_s: float = 10.0,
) -> None:
    """Run ``action`` until it succeeds, backing off on the errors of an outage."""
    delay = 0.2
    while True:
        try:
            await action()
            return
        except retry_on as error:
            log.warning("%s failed (%s); retrying in %.1f s", what, error.__class__.__name__, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay_s)
