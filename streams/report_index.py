"""Reports from the worker's memory: the hour index fed by the sink, and the job's fast path.

The worker writes every change of the aggregates to PostgreSQL (:mod:`storemon.db.sink`);
right after each write, the same rows go into an :class:`~storemon.aggregates.hour_index.HourIndex`,
so the index is an in-memory mirror of the ``stores`` and ``store_days`` rows this worker
wrote. A report job then reads no table at all: it sums the index's arrays (a few
milliseconds for 14,000 stores), renders the CSV with pyarrow's kernels and stores it.

The mirror is complete only when this worker owns every partition of the input: then every
row in PostgreSQL was written by it or before it started. So the index is (re)built on each
assignment that gives the worker all partitions, from one snapshot of PostgreSQL; the sink's
writes that commit meanwhile are kept and applied after it (a row written twice holds the
same value, so overlap does no harm). With partitions shared between workers, or while the
index loads, or when a report time lies before some store's last poll (the as-of fix needs
polls the index does not keep), the job takes the PostgreSQL path of
:mod:`storemon.db.assemble`. Both paths give the same bytes; the tests compare them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np
import orjson
import pyarrow as pa

from storemon.aggregates.coverage import PairSessions
from storemon.aggregates.fleet_summary import FleetSummary, summary_of_sums
from storemon.aggregates.hour_index import (
    DayBuckets,
    HourIndex,
    IndexSums,
    ScheduleRows,
    StoreTail,
    parse_pair,
)
from storemon.aggregates.reach import out_of_range_message, supported_range
from storemon.aggregates.timebase import DAY_US, HOUR_US, floor_to
from storemon.db.assemble import (
    AssembledReport,
    NoData,
    OutOfRange,
    answer_lookups,
    report_digest,
    reused_answer,
)
from storemon.report_csv import csv_field, render_fields_csv

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    import asyncpg

    from storemon.db.sink import SinkBatch

log = logging.getLogger(__name__)

# Rows read per round trip while the index loads, and applied per call.
LOAD_CHUNK_ROWS = 5000


def hours_to_keep(reach_us: int) -> int:
    """Hours the index keeps up to the newest poll: every hour a supported report time can
    read (the reach, the week window before it, the hour that holds the window's start)."""
    return -(-reach_us // HOUR_US) + 168 + 2


def pack_index_sums(found: IndexSums) -> bytes:
    """The packed exact sums stored with a report (see aggregates.coverage.pack_sums)."""
    return np.ascontiguousarray(found.sums, dtype="<i8").tobytes()


class ReportIndex:
    """The index, whether it can answer, and its loading."""

    def __init__(self, reach_us: int, lead_us: int, *, enabled: bool = True) -> None:
        self.reach_us = reach_us
        self.lead_us = lead_us
        self.enabled = enabled
        self.index: HourIndex | None = None  # set once loaded and complete
        self._pending: list[tuple[SinkBatch, int]] | None = None  # writes made while loading
        # The aggregates' version (migration 0004) whose content the index holds: the
        # version after the last write applied. Reports from the index carry it, so a
        # finished answer is reused exactly as on the PostgreSQL path.
        self.version: int | None = None
        # (index, version, stores in the report) -> the schedules' digest of those stores
        self._digest: tuple[int, int, int, int] | None = None
        self._loader: asyncio.Task[None] | None = None
        self.loads = 0
        self.answered = 0
        # The index's store ids as CSV fields, by row (rows only ever get appended).
        self._id_fields: list[str] = []
        self._id_array: pa.Array | None = None
        # The sessions of the index's (schedule, zone) pairs, numbered as the index numbers
        # them, for the fleet's business time (dropped with the index).
        self._pair_sessions: PairSessions | None = None

    @property
    def ready(self) -> bool:
        return self.index is not None

    def describe(self) -> dict[str, object]:
        """For the operator page: whether reports come from memory, and how much it holds."""
        index = self.index
        return {
            "enabled": self.enabled,
            "ready": index is not None,
            "loading": self._pending is not None,
            "stores": len(index) if index is not None else 0,
            "hours": len(index.columns) if index is not None else 0,
            "loads": self.loads,
            "reports_answered": self.answered,
        }

    # -- keeping the mirror ------------------------------------------------------------------

    def written(self, batch: SinkBatch, version: int) -> None:
        """Called right after the sink committed ``batch`` to PostgreSQL, which raised the
        aggregates' version to ``version``."""
        if self.index is not None:
            apply_batch(self.index, batch)
            self.version = max(self.version or 0, version)
        elif self._pending is not None:
            self._pending.append((batch, version))

    def invalidate(self) -> None:
        """Partitions moved: what this worker wrote is no longer all there is."""
        self.index = None
        self.version = None
        self._pending = None
        self._pair_sessions = None
        if self._loader is not None:
            self._loader.cancel()
            self._loader = None

    def start_loading(self, pool: asyncpg.Pool) -> None:
        """This worker now owns every input partition: build the index from PostgreSQL."""
        self.invalidate()
        if not self.enabled:
            return
        self._pending = []
        self._loader = asyncio.ensure_future(self._load(pool))

    async def _load(self, pool: asyncpg.Pool) -> None:
        began = time.perf_counter()
        index = HourIndex(hours_to_keep(self.reach_us))
        try:
            async with (
                pool.acquire() as conn,
                conn.transaction(isolation="repeatable_read", readonly=True),
            ):
                version = await conn.fetchval("SELECT version FROM aggregates_version")
                tails = await conn.fetch(
                    "SELECT store_id, first_poll_us, newest_poll_us, last_poll_us, last_active,"
                    " tail_end_us, schedule::text AS schedule, zone FROM stores"
                )
                index.apply_tails(StoreTail(*row[:6]) for row in tails)
                index.apply_schedules(
                    (r["store_id"], schedule_rows(orjson.loads(r["schedule"])), r["zone"])
                    for r in tails
                )
                oldest = index.oldest_hour_kept()
                first_day = floor_to(oldest, DAY_US) if oldest is not None else 0
                cursor = conn.cursor(
                    "SELECT store_id, day_start_us, up_before_us, down_before_us, runs,"
                    " run_bounds FROM store_days WHERE day_start_us >= $1",
                    first_day,
                    prefetch=LOAD_CHUNK_ROWS,
                )
                chunk: list[asyncpg.Record] = []
                async for row in cursor:
                    chunk.append(row)
                    if len(chunk) >= LOAD_CHUNK_ROWS:
                        index.apply_days(_days_from_rows(chunk))
                        chunk = []
                index.apply_days(_days_from_rows(chunk))
        except asyncio.CancelledError:
            raise
        except Exception:
            # The PostgreSQL path answers meanwhile; the next assignment tries again.
            log.exception("the report index could not be loaded; reports use PostgreSQL")
            self._pending = None
            return
        for batch, written in self._pending or ():
            apply_batch(index, batch)
            version = max(version, written)
        index.trim()
        self.version = version
        self._pending = None
        self._id_fields, self._id_array = [], None
        self._pair_sessions = None
        self.index = index
        self.loads += 1
        log.info(
            "report index ready: %d stores, %d hours, in %.1f s",
            len(index),
            len(index.columns),
            time.perf_counter() - began,
        )

    # -- answering ---------------------------------------------------------------------------

    def _id_fields_of(self, index: HourIndex) -> pa.Array:
        if len(self._id_fields) > len(index.store_ids):  # a new index: start again
            self._id_fields, self._id_array = [], None
        if self._id_array is None or len(self._id_fields) < len(index.store_ids):
            self._id_fields.extend(csv_field(s) for s in index.store_ids[len(self._id_fields) :])
            self._id_array = pa.array(self._id_fields, pa.string())
        return self._id_array

    def _snapshot(
        self, requested: int | None, pruned_before: int | None
    ) -> tuple[HourIndex, int, int] | None:
        """The index, its version and the report time, checked against the supported range
        (OutOfRange, NoData), or None where only PostgreSQL can answer exactly. No await:
        what it returns is one consistent state until the caller's next await."""
        index, version = self.index, self.version
        if index is None or version is None:
            return None
        as_of_us = _report_time(index, requested)
        allowed = supported_range(index.newest_us, self.reach_us, self.lead_us, pruned_before)
        if requested is not None and requested not in (allowed or ()):
            raise OutOfRange(out_of_range_message(requested, allowed))
        if not index.covers(as_of_us) or index.needs_as_of_fix(as_of_us):
            return None
        return index, version, as_of_us

    async def try_report(
        self,
        pool: asyncpg.Pool,
        requested: int | None,
        *,
        with_fleet_summary: bool = False,
        created_before: datetime | None = None,
    ) -> AssembledReport | None:
        """The report from memory, or None where only PostgreSQL can answer exactly. When a
        Complete report of the same report time was taken from the same version of the
        aggregates, it is named (``reused_from``) instead of computed again. With
        ``with_fleet_summary``, what the dashboard's fleet page shows comes along."""
        if self.index is None or self.version is None:
            return None
        began = time.perf_counter()
        if with_fleet_summary:
            # Before the snapshot: the report time may still move on a little (the sessions
            # are kept over a span a day wider than the week, and a late pair is added there).
            expected_as_of = requested if requested is not None else self.index.newest_us
            await self._prepare_sessions(self.index, expected_as_of)
        index, version = self.index, self.version
        if index is None or version is None:
            return None
        # The report time and version the look-up of a finished answer is for; checked again
        # after it, below.
        asked_as_of = _report_time(index, requested)
        async with pool.acquire() as conn:
            # Pending reports that asked for the same report time were stored before this
            # read, so the index as it is below (never older than now) answers them too.
            # One statement for the three look-ups (retention mark, alike, finished).
            looked = await answer_lookups(conn, requested, asked_as_of, version, created_before)
        alike = looked.alike
        # The snapshot is taken after the reads: while polls stream in, the version moves
        # with every chunk the worker writes, and a snapshot held across the reads was
        # nearly always stale by the sums, which sent live reports to PostgreSQL.
        snapshot = self._snapshot(requested, looked.pruned_before_us)
        if snapshot is None:
            return None
        # Moved on during the look-up: a report of the newer version is computed, so
        # nothing finished from the older one can be shared.
        moved = snapshot != (index, version, asked_as_of)
        earlier = None if moved else looked.earlier
        index, version, as_of_us = snapshot
        # No await from here to the end of the sums: the index is one consistent state.
        if earlier is not None:
            timings = {"read_s": time.perf_counter() - began, "index": 1.0}
            reused = reused_answer(as_of_us, alike, version, earlier, timings)
            return self._with_summary(index, reused, with_fleet_summary)
        read = time.perf_counter()
        found = index.window_sums(as_of_us)
        if found is None:
            return None
        key = (id(index), version, len(found.rows))
        digest_task = None
        if self._digest is None or self._digest[:3] != key:
            # The schedules' digest is the database's to compute: it runs there meanwhile.
            digest_task = asyncio.ensure_future(_digest(pool, as_of_us))
        try:
            summed = time.perf_counter()
            fleet = self._fleet_summary(index, found) if with_fleet_summary else None
            summarised = time.perf_counter()
            csv_text = render_fields_csv(self._id_fields_of(index).take(found.rows), found.sums)
            rendered = time.perf_counter()
            if digest_task is not None:
                self._digest = (*key, await digest_task)
        finally:
            if digest_task is not None and not digest_task.done():
                digest_task.cancel()
        assert self._digest is not None
        self.answered += 1
        return AssembledReport(
            as_of_us,
            csv_text,
            len(found),
            alike_pending=alike,
            data_version=version,
            timings={
                "read_s": read - began,
                "finish_s": summed - read,
                "render_s": rendered - summarised,
                "digest_wait_s": time.perf_counter() - rendered,
                "index": 1.0,
                "fleet_summary_s": summarised - summed,  # 0 unless the page asked
            },
            schedules_digest=self._digest[3],
            packed_sums=pack_index_sums(found),
            fleet_summary=fleet,
        )

    def _with_summary(
        self, index: HourIndex, reused: AssembledReport, wanted: bool
    ) -> AssembledReport:
        """A reused answer, with the page's numbers if ``wanted`` (they need the sums, not
        the CSV)."""
        if not wanted:
            return reused
        found = index.window_sums(reused.as_of_us)
        fleet = self._fleet_summary(index, found) if found is not None else None
        return dataclasses.replace(reused, fleet_summary=fleet)

    async def _prepare_sessions(self, index: HourIndex, as_of_us: int | None) -> None:
        """Compute the sessions of the index's pairs not kept yet, in a thread
        (a second or more for a fleet of distinct schedules: the first time, then once a
        day as the span moves), so the job's consistent part finds them all but a few."""
        if as_of_us is None:
            return
        kept = self._kept_sessions(as_of_us)
        if kept.count < len(index.pairs):
            new = [parse_pair(p) for p in index.pairs[kept.count :]]
            kept = await asyncio.to_thread(kept.extended, new)
            if self.index is index:  # else numbered for an index gone meanwhile
                self._pair_sessions = kept

    def _kept_sessions(self, as_of_us: int) -> PairSessions:
        kept = self._pair_sessions
        return kept if kept is not None and kept.covers(as_of_us) else PairSessions.around(as_of_us)

    def _business(self, index: HourIndex, found: IndexSums) -> tuple[int, int, int] | None:
        """The fleet's business time per window (pairs new since the sessions were prepared
        are computed here, in the consistent part: a handful at most)."""
        kept = self._kept_sessions(found.as_of_us)
        if kept.count < len(index.pairs):
            kept = kept.extended([parse_pair(p) for p in index.pairs[kept.count :]])
        self._pair_sessions = kept
        return index.business_windows(found.rows, kept.business(found.as_of_us))

    def _fleet_summary(self, index: HourIndex, found: IndexSums) -> FleetSummary:
        """The fleet page's numbers from the report's sums: totals, the most-down stores,
        business and unobserved time, the week's hours (the hour holding T and the 167
        before it, as the page charts them)."""
        as_of_us = found.as_of_us
        top = floor_to(as_of_us, HOUR_US)
        hours = index.fleet_hours(top - 167 * HOUR_US, top + HOUR_US)
        business = self._business(index, found)
        try:
            return summary_of_sums(as_of_us, found.store_ids, found.sums, hours, business)
        except ValueError:  # the contract broken somewhere: the page shows no coverage
            log.exception("the fleet's business time at %d is less than up and down", as_of_us)
            return summary_of_sums(as_of_us, found.store_ids, found.sums, hours, None)


def schedule_rows(schedule: Iterable[Sequence[int]]) -> ScheduleRows:
    """A schedule as the sink writes it ([weekday, start_s, end_s] lists) -> its key."""
    return tuple((i[0], i[1], i[2]) for i in schedule)


async def _digest(pool: asyncpg.Pool, as_of_us: int) -> int:
    async with pool.acquire() as conn:
        return await report_digest(conn, as_of_us)


def _days_from_rows(rows: list[asyncpg.Record]) -> list[DayBuckets]:
    """``store_days`` rows keep running sums of the hours: back to hours, in arrays."""
    if not rows:
        return []
    up = np.diff(np.array([r["up_before_us"] for r in rows], np.int64), axis=1)
    down = np.diff(np.array([r["down_before_us"] for r in rows], np.int64), axis=1)
    return [
        DayBuckets(r["store_id"], r["day_start_us"], up[i], down[i], r["runs"], r["run_bounds"])
        for i, r in enumerate(rows)
    ]


def _report_time(index: HourIndex, requested: int | None) -> int:
    """The report's T: the one asked for, or by default the newest poll ingested."""
    as_of_us = requested if requested is not None else index.newest_us
    if as_of_us is None:
        raise NoData("no poll has been ingested yet")
    return as_of_us


def apply_batch(index: HourIndex, batch: SinkBatch) -> None:
    """Mirror one sink write: the stores' rows first (they move the newest poll, which
    decides the hours kept), then their hours."""
    if batch.stores:
        # StoreRow fields: id, schedule, zone, first, newest, last, active, tail end, ...
        columns = list(zip(*batch.stores.values(), strict=True))
        index.apply_tail_columns(*columns[0:1], *columns[3:8])
    # The hours the update changed: the rest of each day it wrote is unchanged, and
    # already in the index (the load read it, or an earlier write brought it).
    rows_of: dict[int, ScheduleRows] = {}  # stores of one schedule share its list (ingest)
    index.apply_schedules(
        (s.store_id, _memo(rows_of, s.schedule), s.zone) for s in batch.stores.values()
    )
    if batch.hours:
        store_ids, hours = zip(*batch.hours, strict=True)
        _, ups, downs, runs = zip(*batch.hours.values(), strict=True)
        index.apply_hour_columns(store_ids, hours, ups, downs, runs)


def _memo(rows_of: dict[int, ScheduleRows], schedule: Sequence[Sequence[int]]) -> ScheduleRows:
    found = rows_of.get(id(schedule))
    if found is None:
        found = rows_of[id(schedule)] = schedule_rows(schedule)
    return found


__all__ = ["ReportIndex", "apply_batch", "hours_to_keep", "schedule_rows"]
