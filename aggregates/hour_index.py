"""Every store's hourly buckets in arrays: a report of the whole fleet in a few array sums.

The stream's aggregates (see :mod:`~storemon.aggregates.state`) are, per store and UTC
hour, the up and down microseconds of the materialised timeline and the runs they come
from. This index holds the same values for all stores at once, one *column* per hour: the
totals of every store in two arrays, and the runs of every store in a pool the column owns.
A report at T is then, for all stores together:

* the whole hours of each window: the sum of their columns' totals (the three windows end
  at the same hour, so one backward pass over at most 168 columns gives all three);
* the at most four hours that the windows cut (the hour holding T, and those holding
  T - 1 h, T - 24 h and T - 168 h): the part of each store's runs before the cut. The cut
  lies at the same offset into the hour for every store, so one array expression clips
  every run of the column;
* the open tail after each store's last poll in business hours, from per-store arrays.

That is :func:`~storemon.aggregates.windows.finish_store` applied to every store at once,
and the property tests hold the result equal to it. A report time before a store's last
poll needs that store's polls around T (the as-of fix), which the index does not keep:
:meth:`HourIndex.window_sums` says so (``None``) and the caller takes the slower path.

Columns are kept for ``hours_kept`` hours up to the newest poll seen; an older column can
no longer be reached by any supported report time, so it is dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from storemon.aggregates.fleet_summary import business_of_pairs
from storemon.aggregates.report import WINDOWS
from storemon.aggregates.schedule import Schedule, WeeklyInterval
from storemon.aggregates.timebase import FOREVER_US, HOUR_US, NEVER_US, floor_to

Int64s = npt.NDArray[np.int64]

# Stand-in for "no poll" in the per-store arrays (every real instant is larger).
NO_POLL_US = NEVER_US
_WINDOW_LENGTHS = tuple(length for length, _ in WINDOWS)
_FIRST_CAPACITY = 1024
# Whole hours are summed in aligned blocks of this many hours where a window covers a
# block, each block's sums kept until one of its hours is written (see ``_block_sums``).
BLOCK_HOURS = 12
_BLOCK_US = BLOCK_HOURS * HOUR_US
# Runs of one store in one hour that a column can count (a run per 55 ms of the hour).
_MOST_RUNS_PER_HOUR = 2**16 - 1


class DayBuckets(NamedTuple):
    """One store's UTC day as the sink writes it (the shape of ``state.DayRecord``)."""

    store_id: str
    day_start_us: int
    hour_up_us: Sequence[int]  # 24 entries
    hour_down_us: Sequence[int]
    runs: Sequence[int]  # flat [start_us, end_us, active, ...], cut at hour boundaries
    run_bounds: Sequence[int]  # 25 entries: hour h's runs are runs[b[h] : b[h + 1]]


class HourRuns(NamedTuple):
    """One store's UTC hour as an update of the state emits it (``state.HourBucket``)."""

    store_id: str
    hour_start_us: int
    up_us: int
    down_us: int
    runs: Sequence[tuple[int, int, bool]]  # (start_us, end_us, active), inside the hour


# A store's weekly schedule as plain (weekday, start_s, end_s) rows, and its zone: the key
# of the stores that share their business hours (and so their business time).
ScheduleRows = tuple[tuple[int, int, int], ...]
PairKey = tuple[ScheduleRows, str]


def parse_pair(pair: PairKey) -> tuple[Schedule, str]:
    rows, zone = pair
    return tuple(WeeklyInterval(*r) for r in rows), zone


class StoreTail(NamedTuple):
    """What a report needs of a store besides its buckets."""

    store_id: str
    first_poll_us: int | None  # earliest poll: the store is in reports from then on
    newest_poll_us: int | None
    last_poll_us: int | None  # last poll in business hours (end of the buckets)
    last_active: bool | None
    tail_end_us: int | None  # end of that poll's session


@dataclass(frozen=True, slots=True)
class IndexSums:
    """A report's exact sums: row i is store ``store_ids[i]`` (sorted), columns up over the
    hour, day and week windows, then down over the same."""

    as_of_us: int
    sums: Int64s  # shape (stores, 6)
    rows: Int64s  # the index's row of each store (for caches kept per row)
    index_ids: list[str]  # the index's store ids by row (only ever appended to)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def store_ids(self) -> list[str]:
        # Built only when asked: the CSV is rendered from ids cached per row instead.
        ids = self.index_ids
        return [ids[i] for i in self.rows.tolist()]


class _HourColumn:
    """One UTC hour of every store: totals, and each store's runs as offsets into the hour."""

    __slots__ = (
        "down",
        "run_active",
        "run_at",
        "run_count",
        "run_end",
        "run_start",
        "runs_live",
        "runs_used",
        "up",
    )

    def __init__(self, capacity: int) -> None:
        # An hour holds at most 3.6e9 us, which fits 32 bits unsigned.
        self.up = np.zeros(capacity, np.uint32)
        self.down = np.zeros(capacity, np.uint32)
        self.run_at = np.zeros(capacity, np.int32)  # a store's first run in the pool
        # A store's runs in the pool; 0 with a total of a whole hour means one run over
        # the whole hour, which is implied and not stored (most business hours).
        self.run_count = np.zeros(capacity, np.uint16)
        self.run_start = np.zeros(64, np.uint32)
        self.run_end = np.zeros(64, np.uint32)
        self.run_active = np.zeros(64, np.bool_)
        self.runs_used = 0  # pool entries written, live or replaced
        self.runs_live = 0

    def grow_stores(self, capacity: int) -> None:
        for name in ("up", "down", "run_at", "run_count"):
            old = getattr(self, name)
            new = np.zeros(capacity, old.dtype)
            new[: len(old)] = old
            setattr(self, name, new)

    def write(
        self,
        rows: Int64s,
        up: Int64s,
        down: Int64s,
        counts: Int64s,
        starts: Int64s,
        ends: Int64s,
        active: npt.NDArray[np.bool_],
    ) -> None:
        """Set the stores ``rows`` (distinct) to new totals and runs; ``counts[i]`` runs of
        ``starts/ends/active`` (offsets into the hour, in row order) belong to ``rows[i]``."""
        self.up[rows] = up
        self.down[rows] = down
        # The rows' old runs become garbage first, so making room never keeps them.
        self.runs_live -= int(self.run_count[rows].sum())
        self.run_count[rows] = 0
        needed = len(starts)
        if self.runs_used + needed > len(self.run_start):
            self._make_room(needed)
        first = self.runs_used
        self.run_start[first : first + needed] = starts
        self.run_end[first : first + needed] = ends
        self.run_active[first : first + needed] = active
        self.run_at[rows] = first + np.cumsum(counts) - counts
        self.run_count[rows] = counts
        self.runs_used += needed
        self.runs_live += needed

    def _make_room(self, needed: int, headroom: int = 2) -> None:
        """Drop replaced runs (they pile up as the live hour is rewritten poll after poll),
        and grow the pool if that is not enough."""
        live_rows = np.flatnonzero(self.run_count)
        counts = self.run_count[live_rows].astype(np.int64)
        picks = _expand(self.run_at[live_rows].astype(np.int64), counts)
        # Half the pool stays free after this, so compaction is rare (amortised O(1)).
        capacity = len(self.run_start) if headroom > 1 else max(1, len(picks) + needed)
        while capacity < headroom * (len(picks) + needed):
            capacity *= 2
        start = np.zeros(capacity, np.uint32)
        end = np.zeros(capacity, np.uint32)
        active = np.zeros(capacity, np.bool_)
        start[: len(picks)] = self.run_start[picks]
        end[: len(picks)] = self.run_end[picks]
        active[: len(picks)] = self.run_active[picks]
        self.run_start, self.run_end, self.run_active = start, end, active
        self.run_at[live_rows] = np.cumsum(counts) - counts
        self.runs_used = self.runs_live = len(picks)

    def trim(self) -> None:
        """Shrink the pool to its live runs (an hour no longer written keeps no slack)."""
        if self.runs_used != self.runs_live or len(self.run_start) > self.runs_live:
            self._make_room(0, headroom=1)

    def before(self, offset_us: int, stores: int) -> tuple[Int64s, Int64s]:
        """Up and down microseconds of each store's runs in ``[hour, hour + offset)``."""
        # a whole hour of one status (its run implied): the first ``offset`` of it
        up = np.where(self.up[:stores] == HOUR_US, offset_us, 0).astype(np.int64)
        down = np.where(self.down[:stores] == HOUR_US, offset_us, 0).astype(np.int64)
        rows = np.flatnonzero(self.run_count[:stores])
        if len(rows) == 0:
            return up, down
        counts = self.run_count[rows].astype(np.int64)
        picks = _expand(self.run_at[rows].astype(np.int64), counts)
        start = self.run_start[picks].astype(np.int64)
        end = np.minimum(self.run_end[picks].astype(np.int64), offset_us)
        part = np.maximum(end - start, 0)
        is_up = self.run_active[picks]
        segment = np.cumsum(counts) - counts  # where each store's runs begin in ``picks``
        up[rows] = np.add.reduceat(np.where(is_up, part, 0), segment)
        down[rows] = np.add.reduceat(np.where(is_up, 0, part), segment)
        return up, down


def _expand(first: Int64s, counts: Int64s) -> Int64s:
    """Indices ``first[i], first[i] + 1, ..., first[i] + counts[i] - 1`` for every i."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    shift: Int64s = np.repeat(first - (np.cumsum(counts) - counts), counts)
    return np.arange(total, dtype=np.int64) + shift


class HourIndex:
    """The hourly buckets and tails of many stores. Not thread-safe; one owner."""

    def __init__(self, hours_kept: int) -> None:
        if hours_kept < max(_WINDOW_LENGTHS) // HOUR_US + 2:
            raise ValueError("the index must keep at least a week of hours")
        self.hours_kept = hours_kept
        self.rows: dict[str, int] = {}
        self.store_ids: list[str] = []
        self.columns: dict[int, _HourColumn] = {}
        self._capacity = _FIRST_CAPACITY
        self.first_poll = np.full(self._capacity, FOREVER_US, np.int64)
        self.last_poll = np.full(self._capacity, NO_POLL_US, np.int64)
        self.last_active = np.zeros(self._capacity, np.bool_)
        self.tail_end = np.zeros(self._capacity, np.int64)
        # Each store's (schedule, zone) pair, numbered in ``pairs`` (-1: not given yet).
        self.pair = np.full(self._capacity, -1, np.int32)
        self.pairs: list[PairKey] = []
        self._pair_numbers: dict[PairKey, int] = {}
        self.newest_us: int | None = None  # newest poll of any store
        # Set if some hour had more runs than a column counts: the index then answers
        # nothing (it would be wrong), and the owner rebuilds it or reads elsewhere.
        self.overflowed = False
        self._order: Int64s | None = None  # rows sorted by store id
        # block start -> (stores counted, up and down summed over the block's hours). A week
        # is then about 14 block additions and a dozen single hours instead of 168 hours;
        # live ingestion rewrites only the newest hours, so the older blocks stay valid.
        self._blocks: dict[int, tuple[int, Int64s]] = {}

    def __len__(self) -> int:
        return len(self.store_ids)

    # -- writing -----------------------------------------------------------------------------

    def _row(self, store_id: str) -> int:
        row = self.rows.get(store_id)
        if row is None:
            row = self.rows[store_id] = len(self.store_ids)
            self.store_ids.append(store_id)
            self._order = None
            if row >= self._capacity:
                # Modest steps: every hour column grows with the stores, so slack is costly.
                self._grow(self._capacity + self._capacity // 8)
        return row

    def _grow(self, capacity: int) -> None:
        for name, fill in (
            ("first_poll", FOREVER_US),
            ("last_poll", NO_POLL_US),
            ("last_active", False),
            ("tail_end", 0),
            ("pair", -1),
        ):
            old = getattr(self, name)
            new = np.full(capacity, fill, old.dtype)
            new[: len(old)] = old
            setattr(self, name, new)
        for column in self.columns.values():
            column.grow_stores(capacity)
        self._capacity = capacity

    def trim(self) -> None:
        """Give back the pools' slack (after a bulk load: the next rewrite of a live hour
        makes room again)."""
        for column in self.columns.values():
            column.trim()

    def oldest_hour_kept(self) -> int | None:
        if self.newest_us is None:
            return None
        return floor_to(self.newest_us, HOUR_US) - (self.hours_kept - 1) * HOUR_US

    def apply_tails(self, tails: Iterable[StoreTail]) -> None:
        """Set stores' tails (the newest value per store wins, as in the sink)."""
        listed = list(tails)
        if listed:
            self.apply_tail_columns(*zip(*listed, strict=True))

    def _rows_of(self, store_ids: Sequence[str]) -> Int64s:
        """The rows of the stores, new ones added."""
        known = self.rows
        found = [known.get(s, -1) for s in store_ids]
        if -1 in found:
            found = [self._row(s) if r < 0 else r for s, r in zip(store_ids, found, strict=True)]
        return np.array(found, np.int64)

    def apply_tail_columns(
        self,
        store_ids: Sequence[str],
        first_poll_us: Sequence[int | None],
        newest_poll_us: Sequence[int | None],
        last_poll_us: Sequence[int | None],
        last_active: Sequence[bool | None],
        tail_end_us: Sequence[int | None],
    ) -> None:
        """:meth:`apply_tails` with the tails' fields as columns (one entry per store)."""
        if not store_ids:
            return
        rows = self._rows_of(store_ids)

        def values(pick: Sequence[int | None], missing: int) -> Int64s:
            return np.array([missing if v is None else v for v in pick], np.int64)

        self.first_poll[rows] = values(first_poll_us, FOREVER_US)
        # Only the newest poll of all stores matters (it places the hours kept).
        newest = values(newest_poll_us, NO_POLL_US)
        self.last_poll[rows] = values(last_poll_us, NO_POLL_US)
        self.last_active[rows] = [bool(a) for a in last_active]
        self.tail_end[rows] = values(tail_end_us, 0)
        top = int(newest.max())
        if top != NO_POLL_US and (self.newest_us is None or top > self.newest_us):
            self.newest_us = top
            self._drop_old_columns()

    def apply_schedules(self, schedules: Iterable[tuple[str, ScheduleRows, str]]) -> None:
        """Set stores' schedules and zones ((store, schedule rows, zone); the newest wins)."""
        numbers = self._pair_numbers
        for store_id, rows, zone in schedules:
            key = (rows, zone)
            number = numbers.get(key)
            if number is None:
                number = numbers[key] = len(self.pairs)
                self.pairs.append(key)
            self.pair[self._row(store_id)] = number

    def _drop_old_columns(self) -> None:
        oldest = self.oldest_hour_kept()
        if oldest is None:
            return
        for hour in [h for h in self.columns if h < oldest]:
            del self.columns[hour]
        for start in [b for b in self._blocks if b < oldest]:
            del self._blocks[start]

    def apply_days(self, days: Sequence[DayBuckets]) -> None:
        """Overwrite whole store-days (distinct (store, day) pairs), as the sink does."""
        if not days:
            return
        n = len(days)
        rows = np.array([self._row(d.store_id) for d in days], np.int64)
        day_starts = np.array([d.day_start_us for d in days], np.int64)
        ups = np.array([d.hour_up_us for d in days], np.int64).reshape(n, 24)
        downs = np.array([d.hour_down_us for d in days], np.int64).reshape(n, 24)
        bounds = np.array([d.run_bounds for d in days], np.int64).reshape(n, 25)
        flat = np.fromiter(
            chain.from_iterable(d.runs for d in days), np.int64, int(bounds[:, 24].sum())
        ).reshape(-1, 3)
        # Bounds count entries of the flat list, three per run.
        record_first = (np.cumsum(bounds[:, 24]) - bounds[:, 24]) // 3
        counts = np.diff(bounds, axis=1) // 3  # (n, 24) runs per hour
        first_run = record_first[:, None] + bounds[:, :24] // 3
        hours = day_starts[:, None] + np.arange(24, dtype=np.int64) * HOUR_US
        self._write(
            np.repeat(rows, 24),
            hours.ravel(),
            ups.ravel(),
            downs.ravel(),
            counts.ravel(),
            first_run.ravel(),
            flat,
        )

    def apply_hours(self, hours: Sequence[HourRuns]) -> None:
        """Overwrite single store-hours (distinct (store, hour) pairs): what one update of
        the stream changed, usually an hour or two per store, not its whole day."""
        if hours:
            store_ids, starts, ups, downs, runs = zip(*hours, strict=True)
            self.apply_hour_columns(store_ids, starts, ups, downs, runs)

    def apply_hour_columns(
        self,
        store_ids: Sequence[str],
        hour_start_us: Sequence[int],
        up_us: Sequence[int],
        down_us: Sequence[int],
        runs: Sequence[Sequence[tuple[int, int, bool]]],
    ) -> None:
        """:meth:`apply_hours` with the hours' fields as columns (one entry per store-hour)."""
        n = len(store_ids)
        if not n:
            return
        rows = self._rows_of(store_ids)
        starts = np.array(hour_start_us, np.int64)
        ups = np.array(up_us, np.int64)
        downs = np.array(down_us, np.int64)
        counts = np.array(list(map(len, runs)), np.int64)
        flat = np.fromiter(
            chain.from_iterable(chain.from_iterable(runs)), np.int64, 3 * int(counts.sum())
        ).reshape(-1, 3)
        self._write(rows, starts, ups, downs, counts, np.cumsum(counts) - counts, flat)

    def _write(
        self,
        rows: Int64s,
        hours: Int64s,
        ups: Int64s,
        downs: Int64s,
        counts: Int64s,
        first_run: Int64s,
        flat: Int64s,
    ) -> None:
        """Entry i: store-hour (rows[i], hours[i]) holds ups[i], downs[i] and the runs
        flat[first_run[i] : first_run[i] + counts[i]] (start, end, active)."""
        oldest = self.oldest_hour_kept()
        order = np.argsort(hours, kind="stable")
        cuts = np.flatnonzero(np.diff(hours[order])) + 1
        for segment in np.split(order, cuts):
            hour = int(hours[segment[0]])
            if oldest is not None and hour < oldest:
                continue  # no supported report reaches it
            self._blocks.pop(hour - hour % _BLOCK_US, None)  # its sums are no longer right
            seg_up = ups[segment]
            seg_down = downs[segment]
            seg_counts = counts[segment]
            column = self.columns.get(hour)
            if column is None:
                if not (seg_up.any() or seg_down.any() or seg_counts.any()):
                    continue  # nothing to hold, nothing held
                column = self.columns[hour] = _HourColumn(self._capacity)
            # One run over the whole hour is implied by its total (see _HourColumn).
            whole = (seg_counts == 1) & ((seg_up == HOUR_US) | (seg_down == HOUR_US))
            seg_counts = np.where(whole, 0, seg_counts)
            if int(seg_counts.max(initial=0)) > _MOST_RUNS_PER_HOUR:
                self.overflowed = True  # more than a count can say: answer from elsewhere
                seg_counts = np.minimum(seg_counts, _MOST_RUNS_PER_HOUR)
            runs = flat[_expand(first_run[segment], seg_counts)]
            column.write(
                rows[segment],
                seg_up,
                seg_down,
                seg_counts,
                runs[:, 0] - hour,
                runs[:, 1] - hour,
                runs[:, 2] != 0,
            )

    # -- reading -----------------------------------------------------------------------------

    def sorted_rows(self) -> Int64s:
        if self._order is None:
            ids = self.store_ids
            self._order = np.array(sorted(range(len(ids)), key=ids.__getitem__), np.int64)
        return self._order

    def covers(self, as_of_us: int) -> bool:
        """Whether every hour a report at T reads is still kept (a supported report time
        always is: see the adapter's choice of ``hours_kept``)."""
        oldest = self.oldest_hour_kept()
        longest = max(_WINDOW_LENGTHS)
        return oldest is None or floor_to(as_of_us - longest, HOUR_US) >= oldest

    def needs_as_of_fix(self, as_of_us: int) -> bool:
        """Whether some store in the report has a poll in business hours after T: then its
        buckets hold a stretch before T that a later poll claimed, and only its polls can
        say what T saw there."""
        n = len(self.store_ids)
        included = self.first_poll[:n] <= as_of_us
        return bool(np.any(included & (self.last_poll[:n] > as_of_us)))

    def _block_sums(self, start: int, stores: int) -> Int64s:
        """Up (row 0) and down (row 1) of the ``stores`` first rows summed over the hours
        ``[start, start + BLOCK_HOURS h)``; kept until one of those hours is written."""
        kept = self._blocks.get(start)
        if kept is not None and kept[0] == stores:
            return kept[1]
        total = np.zeros((2, stores), np.int64)
        for hour in range(start, start + _BLOCK_US, HOUR_US):
            column = self.columns.get(hour)
            if column is not None:
                np.add(total[0], column.up[:stores], out=total[0])
                np.add(total[1], column.down[:stores], out=total[1])
        self._blocks[start] = (stores, total)
        return total

    def _whole_hours(self, as_of_us: int, stores: int) -> list[tuple[Int64s, Int64s]]:
        """Sums of the whole hours of each window (all end at the hour that holds T)."""
        firsts = [-((-(as_of_us - length)) // HOUR_US) * HOUR_US for length in _WINDOW_LENGTHS]
        total = np.zeros((2, stores), np.int64)
        found: list[tuple[Int64s, Int64s]] = []
        end = floor_to(as_of_us, HOUR_US)  # the hours [first, end) are still to add
        # Walk back from the newest whole hour; a window's sums are taken when its first
        # whole hour has been added (the windows are ordered shortest first).
        for first in firsts:
            while end > first:
                if end % _BLOCK_US == 0 and end - _BLOCK_US >= first:
                    total += self._block_sums(end - _BLOCK_US, stores)
                    end -= _BLOCK_US
                    continue
                column = self.columns.get(end - HOUR_US)
                if column is not None:
                    np.add(total[0], column.up[:stores], out=total[0])
                    np.add(total[1], column.down[:stores], out=total[1])
                end -= HOUR_US
            found.append((total[0].copy(), total[1].copy()))
        return found

    def window_sums(self, as_of_us: int) -> IndexSums | None:
        """The report's exact sums at ``as_of_us`` for every store with a poll at or before
        it, or None when some store needs an as-of fix (see :meth:`needs_as_of_fix`)."""
        if not self.covers(as_of_us):
            raise ValueError("the report time reaches before the hours the index keeps")
        if self.overflowed:
            return None
        if self.needs_as_of_fix(as_of_us):
            return None
        n = len(self.store_ids)
        whole = self._whole_hours(as_of_us, n)
        sums = np.zeros((n, 6), np.int64)
        end_hour = floor_to(as_of_us, HOUR_US)
        cut_cache: dict[int, tuple[Int64s, Int64s]] = {}

        def before(hour: int, offset: int) -> tuple[Int64s, Int64s]:
            column = self.columns.get(hour)
            if column is None:
                zero = np.zeros(n, np.int64)
                return zero, zero
            if hour not in cut_cache:
                cut_cache[hour] = column.before(offset, n)
            return cut_cache[hour]

        for w, length in enumerate(_WINDOW_LENGTHS):
            up, down = whole[w]
            lo = as_of_us - length
            if as_of_us != end_hour:
                # the hour holding T: its runs before T
                cut_up, cut_down = before(end_hour, as_of_us - end_hour)
                up, down = up + cut_up, down + cut_down
                # the hour holding the window's start: its runs from lo on
                lo_hour = floor_to(lo, HOUR_US)
                column = self.columns.get(lo_hour)
                if column is not None:
                    cut_up, cut_down = before(lo_hour, lo - lo_hour)
                    up = up + column.up[:n] - cut_up
                    down = down + column.down[:n] - cut_down
            sums[:, w], sums[:, 3 + w] = up, down
        self._add_tails(sums, as_of_us, n)
        order = self.sorted_rows()
        kept = order[self.first_poll[order] <= as_of_us]
        return IndexSums(as_of_us, sums[kept], kept, self.store_ids)

    def business_windows(self, rows: Int64s, per_pair: Int64s) -> tuple[int, int, int] | None:
        """The business microseconds per window of the stores ``rows`` together, from the
        business time of each (schedule, zone) pair (``per_pair[p]`` for ``pairs[p]``);
        None if some store's schedule and zone were never given."""
        pairs = self.pair[rows].astype(np.int64)
        if len(pairs) and int(pairs.min()) < 0:
            return None
        if len(pairs) and int(pairs.max()) >= len(per_pair):
            raise ValueError("a store's pair has no business time given")
        return business_of_pairs(per_pair, pairs)

    def fleet_hours(self, lo_us: int, hi_us: int) -> list[tuple[int, int, int]]:
        """(hour start, up, down) summed over every store, for each hour that starts in
        ``[lo_us, hi_us)``, oldest first: the buckets as stored, without the open tails
        (the fleet's hourly picture on the dashboard, as the database sums its rows)."""
        n = len(self.store_ids)
        found: list[tuple[int, int, int]] = []
        for hour in range(-((-lo_us) // HOUR_US) * HOUR_US, hi_us, HOUR_US):
            column = self.columns.get(hour)
            if column is None:
                found.append((hour, 0, 0))
            else:
                up = int(column.up[:n].sum(dtype=np.int64))
                found.append((hour, up, int(column.down[:n].sum(dtype=np.int64))))
        return found

    def _add_tails(self, sums: Int64s, as_of_us: int, n: int) -> None:
        """The open tail ``[max(last poll, window start), min(session end, T))``."""
        last = self.last_poll[:n]
        tail_end = np.minimum(self.tail_end[:n], as_of_us)
        has_tail = (last != NO_POLL_US) & (last <= as_of_us) & (last < tail_end)
        is_up = self.last_active[:n]
        for w, length in enumerate(_WINDOW_LENGTHS):
            part = np.where(has_tail, tail_end - np.maximum(last, as_of_us - length), 0)
            part = np.maximum(part, 0)
            sums[:, w] += np.where(is_up, part, 0)
            sums[:, 3 + w] += np.where(is_up, 0, part)


__all__ = [
    "DayBuckets",
    "HourIndex",
    "HourRuns",
    "IndexSums",
    "PairKey",
    "ScheduleRows",
    "StoreTail",
    "parse_pair",
]
