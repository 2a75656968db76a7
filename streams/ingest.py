"""The worker's ingestion: a batch of events in; store states, tables and PostgreSQL updated.

The events are internal batches (``input-batches``, written by :mod:`streams.batcher`):
each holds the validated polls, schedules and zones of many stores of one partition, and
the records rejected on the way.

Order of writes, and why: PostgreSQL first, then the Faust tables, then (by returning) the
acknowledgement of the events. A crash before the tables are written redelivers the events
and rebuilds the same absolute values; a crash after it redelivers events the state already
holds, whose rows PostgreSQL also already has. Every write is idempotent, so at-least-once
delivery never counts anything twice. A batch whose partitions are revoked while it runs
stops before its next write (:mod:`streams.fence`): the partitions' next owner does its work
again, and nothing of the old batch lands after the new owner's rows.

Tables: ``stores`` (a store's settings entry) and ``store_polls`` (one entry per store and
UTC day with kept polls), encoded by :mod:`streams.state_codec`; a state is rebuilt from
them and its hours and runs recomputed from the polls. The settings entry is written when
it changes (settings, or about once a day as the cutoff moves or a day begins) and on a
store's first update in this process; a batch writes the day entries of the days its polls
fall in, one entry (one changelog message) per store and day touched. PostgreSQL gets the
store-days (totals, hours, runs, polls).
A store's entries are written while an event of that store is current, so they land in the
store's partition, the partition its batch came from.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from storemon.aggregates.records import Rejection
from storemon.aggregates.schedule import Schedule, WeeklyInterval
from storemon.aggregates.state import StoreChanges, StoreState
from storemon.aggregates.timebase import DAY_US, floor_to
from storemon.db.sink import SinkBatch, StoreRow
from storemon.streams import state_codec
from storemon.streams.fence import UNFENCED, Licence
from storemon.streams.messages import INPUT_BATCHES, decode_object

# Stores per PostgreSQL write within a batch, and how often computing gives the loop a turn.
CHUNK_STORES = 500
YIELD_EVERY_STORES = 20
# How often the table writes give the loop a turn: a batch of live polls at 100,000 stores
# writes about one entry per store, each a RocksDB put and a changelog message handed to
# Faust's producer, seconds of work in which Faust's timers and the consumer thread's
# keepalive would otherwise not run.
YIELD_EVERY_TABLE_WRITES = 500

Table = MutableMapping[bytes, bytes]
Located = tuple[Rejection, int | None, int | None]  # a rejection, its input partition, offset


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
    table_writes: int = 0
    batches: int = 0
    # where the time went: computing, writing PostgreSQL, writing tables, waiting for events
    seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))


@dataclass(slots=True)
class _Persisted:
    """What this process knows the tables hold for a store."""

    settings: state_codec.Layout | None  # None: not written by this process yet (rewrite it)
    days: list[int]  # the days listed in the stores entry
    rewrite_all_days: bool = False  # loaded from the old one-entry layout


class Ingestor:
    """Owns the in-memory states of the stores of this worker's partitions."""

    def __init__(
        self,
        *,
        stores: Table,
        store_polls: Table,
        write_sink: Callable[[SinkBatch, Licence], Awaitable[None]],
        send_dead_letter: Callable[[Rejection, int | None, int | None], Awaitable[None]],
        horizon_us: int,
    ) -> None:
        self.stores_table = stores
        self.polls_table = store_polls
        self.write_sink = write_sink
        self.send_dead_letter = send_dead_letter
        self.horizon_us = horizon_us
        self.cache: dict[str, StoreState] = {}
        self.persisted: dict[str, _Persisted] = {}
        # Each distinct schedule as rows, made once (rows are only read, never changed).
        self._schedule_rows: dict[Schedule, tuple[list[list[int]], str]] = {}
        self._store_schedule: dict[str, tuple[Schedule, tuple[list[list[int]], str]]] = {}
        self.stats = IngestStats()
        # (topic, partition) -> next offset: every message before it is applied (reports wait
        # for it, streams/catch_up.py; Faust commits it only later).
        self.applied_offsets: dict[tuple[str, int], int] = {}
        self._last_end: float | None = None
        self._writing: asyncio.Future[None] | None = None  # the PostgreSQL write under way

    @property
    def write_under_way(self) -> bool:
        return self._writing is not None and not self._writing.done()

    async def settle(self, timeout_s: float) -> bool:
        """Wait for the PostgreSQL write under way, if any, to end (its outcome is the
        batch's business). False when it was still running after ``timeout_s``."""
        writing = self._writing
        if writing is None or writing.done():
            return True
        done, _ = await asyncio.wait({writing}, timeout=timeout_s)
        return bool(done)

    def forget(self) -> None:
        """Drop every cached state (partitions moved): they are rebuilt from the tables."""
        self.cache.clear()
        self.persisted.clear()
        self._store_schedule.clear()

    # -- state -------------------------------------------------------------------------------

    def state_for(self, store_id: str) -> StoreState:
        state = self.cache.get(store_id)
        if state is not None:
            return state
        raw = self.stores_table.get(state_codec.store_key(store_id))
        if raw is None:
            state = StoreState(store_id, horizon_us=self.horizon_us)
            self.persisted[store_id] = _Persisted(None, [])
        else:
            decoded = state_codec.decode(
                store_id,
                raw,
                lambda day: self.polls_table.get(state_codec.day_key(store_id, day)),
                horizon_us=self.horizon_us,
            )
            state = decoded.state
            self.persisted[store_id] = _Persisted(None, decoded.days, decoded.old_layout)
        self.cache[store_id] = state
        return state

    # -- the batch -----------------------------------------------------------------------------

    async def process(
        self,
        events: Sequence[Any],
        bind_event: Callable[[Any], None],
        licence: Licence = UNFENCED,
    ) -> None:
        """Apply a batch. Every write first checks ``licence``: once the batch's partitions
        are revoked it raises :exc:`~storemon.streams.fence.Fenced` and writes nothing more
        (nor marks anything applied)."""
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
        writing: asyncio.Future[None] | None = None
        waited = 0.0
        batch = SinkBatch()
        for n, (store_id, item) in enumerate(work.items(), 1):
            bind_event(item.event)  # table reads of a rebuild go to the store's partition
            self._update_store(store_id, item, batch, table_writes)
            if n % YIELD_EVERY_STORES == 0:
                await asyncio.sleep(0)
            if len(batch.stores) >= CHUNK_STORES:
                waited += await self._finish(writing)
                writing = self._start_write(batch, licence)
                batch = SinkBatch()
        # A message's rejections are numbered within it, so a redelivery finds the same keys.
        index_in_message: Counter[tuple[str, int | None, int | None]] = Counter()
        for rejection, partition, offset in rejected:
            self.stats.rejected[(rejection.source, rejection.reason)] += 1
            record = orjson.dumps(dict(rejection.record)).decode()
            where = (rejection.source, partition, offset)
            index = index_in_message[where]
            index_in_message[where] += 1
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
            await self._start_write(batch, licence)
        written = time.perf_counter()
        self.stats.seconds["computing"] += computed - began - waited
        self.stats.seconds["writing PostgreSQL"] += written - computed + waited
        licence.check()
        for n, (event, table, key, value) in enumerate(table_writes, 1):
            bind_event(event)
            if value is None:
                table.pop(key, None)
            else:
                table[key] = value
            if n % YIELD_EVERY_TABLE_WRITES == 0:
                await asyncio.sleep(0)
                licence.check()  # a revocation may have come in that turn
        self.stats.table_writes += len(table_writes)
        for rejection, partition, offset in rejected:
            licence.check()
            await self.send_dead_letter(rejection, partition, offset)
        self.stats.batches += 1
        self._mark_applied(events)
        self._last_end = time.perf_counter()
        self.stats.seconds["writing tables"] += self._last_end - written

    def _start_write(self, batch: SinkBatch, licence: Licence) -> asyncio.Future[None]:
        licence.check()
        self._writing = asyncio.ensure_future(self.write_sink(batch, licence))
        return self._writing

    def _mark_applied(self, events: Sequence[Any]) -> None:
        for event in events:
            message = event.message
            where = (message.topic, message.partition)
            if message.offset >= self.applied_offsets.get(where, 0):
                self.applied_offsets[where] = message.offset + 1

    @staticmethod
    async def _finish(writing: asyncio.Future[None] | None) -> float:
        """Wait for a chunk's write (raising its error); returns the seconds waited."""
        if writing is None:
            return 0.0
        began = time.perf_counter()
        await writing
        return time.perf_counter() - began

    def _collect(self, events: Sequence[Any]) -> tuple[dict[str, _StoreWork], list[Located]]:
        """Group the batches' contents by store, in arrival order; set aside what is bad."""
        work: dict[str, _StoreWork] = {}
        rejected: list[Located] = []

        def item_for(store_id: str, event: Any) -> _StoreWork:
            item = work.get(store_id)
            if item is None:
                item = work[store_id] = _StoreWork(event)
            item.event = event
            return item

        for event in events:
            message = event.message
            try:
                value = decode_object(event.value)
                polls, schedules, zones = value["polls"], value["schedules"], value["zones"]
                bad = value["rejected"]
            except (ValueError, KeyError, TypeError) as error:
                text = (event.value or b"")[:500].decode("utf-8", "replace")
                rejection = Rejection(INPUT_BATCHES, "bad message", repr(error), {"raw": text})
                rejected.append((rejection, message.partition, message.offset))
                continue
            for source, reason, detail, record, partition, offset in bad:
                rejected.append((Rejection(source, reason, detail, record), partition, offset))
            for store_id, stamps, active in polls:
                item_for(store_id, event).polls.extend(zip(stamps, active, strict=True))
            for store_id, rows in schedules:
                item_for(store_id, event).schedule = tuple(WeeklyInterval(*r) for r in rows)
            for store_id, zone in zones:
                item_for(store_id, event).zone = zone
        return work, rejected

    def _update_store(
        self,
        store_id: str,
        item: _StoreWork,
        batch: SinkBatch,
        table_writes: list[tuple[Any, Table, bytes, bytes | None]],
    ) -> None:
        state = self.state_for(store_id)
        polls = item.polls
        changes = StoreChanges()
        new_settings = item.schedule is not None or item.zone is not None
        if new_settings:
            schedule = item.schedule if item.schedule is not None else state.schedule
            changes = state.replace_schedule(schedule, item.zone or state.zone_name)
        if polls:
            applied = state.apply_polls(polls)
            if new_settings:
                changes.hours.update(applied.hours)
                changes.days.update(applied.days)
            else:
                changes = applied
            self.stats.polls += len(polls)
        cutoff = state.cutoff_us
        # The days of the polls kept, the anchor's among them (a report before a later poll
        # looks the anchor up in its day's row).
        kept_from = state.poll_ts[0] if state.poll_ts else cutoff
        poll_days: set[int] = set()
        days = set(changes.days)
        for ts, _ in polls:
            day = ts - ts % DAY_US
            if day >= cutoff:
                poll_days.add(day)
            if ts >= kept_from:
                days.add(day)
        days |= poll_days
        hours = changes.hours
        for hour, bucket in hours.items():
            days.add(hour - hour % DAY_US)
            batch.hours[(store_id, hour)] = bucket
        # The rows are taken before pruning: polls that arrive together (a backlog read in
        # one batch) give their old days their exact values before the state lets them go.
        for day in sorted(days):
            batch.days[(store_id, day)] = state.day_record(day, hours)
        self.stats.day_rows += len(days)
        if state.poll_ts:
            # Whole days: the cutoff moves once a day, not with every poll.
            state.prune(floor_to(state.poll_ts[-1] - self.horizon_us, DAY_US))
            if state.cutoff_us != cutoff:
                poll_days = {d for d in poll_days if d >= state.cutoff_us}
        summary = state.summary()
        newest = state.poll_ts[-1] if state.poll_ts else None
        schedule_rows, schedule_json = self._rows_of(store_id, state.schedule)
        batch.stores[store_id] = StoreRow(
            store_id,
            schedule_rows,
            state.zone_name,
            summary.first_poll_us,
            newest,
            summary.last_poll_us,
            summary.last_active if summary.last_poll_us is not None else None,
            summary.tail_end_us if summary.last_poll_us is not None else None,
            schedule_json,
        )
        self._write_tables(store_id, state, item.polls, poll_days, item.event, table_writes)

    def _rows_of(self, store_id: str, schedule: Schedule) -> tuple[list[list[int]], str]:
        """The schedule as rows and as their JSON, made once per distinct schedule (rows are
        only read); found by the store's id first, since hashing a schedule costs a pass
        over its intervals."""
        known = self._store_schedule.get(store_id)
        if known is not None and known[0] is schedule:
            return known[1]
        rows = self._schedule_rows.get(schedule)
        if rows is None:
            listed = [list(i) for i in schedule]
            rows = self._schedule_rows[schedule] = (listed, orjson.dumps(listed).decode())
        self._store_schedule[store_id] = (schedule, rows)
        return rows

    def _write_tables(
        self,
        store_id: str,
        state: StoreState,
        polls: list[tuple[int, bool]],
        poll_days: set[int],
        event: Any,
        table_writes: list[tuple[Any, Table, bytes, bytes | None]],
    ) -> None:
        """The store's table entries that this update changed.

        The days of the polls received are rewritten even when unchanged, and the settings
        entry on the store's first update in this process: after a crash between the local
        store and the changelog, a redelivered poll puts both back."""
        persisted = self.persisted[store_id]
        before = persisted.settings
        if before is not None and _layout_unchanged(before, state, polls):
            # The common live case: nothing but polls of days already listed.
            for day in sorted(poll_days):
                key = state_codec.day_key(store_id, day)
                table_writes.append(
                    (event, self.polls_table, key, state_codec.encode_day(state, day))
                )
            return
        kept = state_codec.layout(state)
        kept_days = set(kept.days)
        to_write = kept_days if persisted.rewrite_all_days else poll_days & kept_days
        for day in sorted(to_write):
            key = state_codec.day_key(store_id, day)
            table_writes.append((event, self.polls_table, key, state_codec.encode_day(state, day)))
        for day in persisted.days:
            if day not in kept_days:
                key = state_codec.day_key(store_id, day)
                table_writes.append((event, self.polls_table, key, None))
        if kept != before:
            entry = state_codec.encode_settings(kept)
            table_writes.append((event, self.stores_table, state_codec.store_key(store_id), entry))
        self.persisted[store_id] = _Persisted(kept, kept.days)


def _layout_unchanged(
    before: state_codec.Layout, state: StoreState, polls: list[tuple[int, bool]]
) -> bool:
    """Whether ``state``'s layout is still ``before`` (its layout after the previous update),
    told without a pass over its polls: the settings, first poll and cutoff are the same and
    every poll of this update lies at or after the cutoff in a day already listed. Such a
    poll cannot move the anchor (the newest poll before the cutoff) nor add a day."""
    cutoff = state.cutoff_us
    if (
        before.cutoff_us != cutoff
        or before.first_poll_us != state.first_poll_us
        or before.zone != state.zone_name
        or (before.schedule is not state.schedule and before.schedule != state.schedule)
    ):
        return False
    days = before.days
    for ts, _ in polls:  # noqa: SIM110  (a plain loop: one poll, most of the time)
        if ts < cutoff or ts - ts % DAY_US not in days:
            return False
    return True
