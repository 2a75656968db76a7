"""``storemon report``: the uptime report computed in one pass from the CSV files.

This is the batch path. It shares every rule with the stream (both call the same core), so
for the same inputs and ``as_of`` its CSV is byte for byte the stream's.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import orjson

from storemon.aggregates.fleet import Int64s, sorted_fleet_sums, sorted_unique_polls
from storemon.aggregates.records import DEFAULT_ZONE, HoursRow, Rejection
from storemon.aggregates.report import LONGEST_WINDOW_US, StoreWindows
from storemon.aggregates.schedule import (
    END_OF_DAY_FROM_S,
    Schedule,
    ScheduleTable,
    build_schedule,
    sessions_of_pairs,
)
from storemon.aggregates.timebase import SECONDS_PER_DAY, format_utc, parse_as_of
from storemon.report_csv import render_sums_csv
from storemon.sources import (
    HoursTable,
    PollTable,
    ZoneTable,
    add_data_argument,
    find_input,
    in_file_order,
    read_hours_table,
    read_poll_table,
    read_zone_table,
)


@dataclass
class Dataset:
    polls: PollTable
    hours: HoursTable
    zone_table: ZoneTable
    rejections: list[Rejection]
    # each store of hours.store_ids: its schedule's index into the table of schedules
    hours_schedules: tuple[Int64s, ScheduleTable]
    # each store of zone_table.store_ids: its zone's index into zone_table.zone_names
    table_zones: Int64s

    @property
    def poll_count(self) -> int:
        return len(self.polls)

    @property
    def newest_poll_us(self) -> int | None:
        return int(self.polls.ts_us.max()) if len(self.polls) else None

    @cached_property
    def schedules(self) -> dict[str, Schedule]:
        """Each store's schedule, for the stores with hours rows (the others: open 24x7)."""
        grouped: dict[str, list[HoursRow]] = {}
        for row in self.hours.rows():
            grouped.setdefault(row.store_id, []).append(row)
        return {store: build_schedule(rows) for store, rows in grouped.items()}

    @cached_property
    def zones(self) -> dict[str, str]:
        """Each store's zone, for the stores with a valid zone row (the last one wins)."""
        table = self.zone_table
        zones: dict[str, str] = {}
        order = np.argsort(table.ordinals, kind="stable")
        for s, z in zip(table.store[order].tolist(), table.zone[order].tolist(), strict=True):
            zones[table.store_ids[s]] = table.zone_names[z]
        return zones

    def polls_by_store(self) -> dict[str, list[tuple[int, bool]]]:
        """Each store's polls as (timestamp, active), in no particular order."""
        grouped: dict[str, list[tuple[int, bool]]] = {}
        for poll in self.polls.polls():
            grouped.setdefault(poll.store_id, []).append((poll.ts_us, poll.active))
        return grouped


def load_dataset(directory: Path) -> Dataset:
    hours_path = find_input(directory, "menu_hours")
    zones_path = find_input(directory, "timezones")
    polls_path = find_input(directory, "store_status")
    # pyarrow reads the polls without holding the GIL most of the time, so the hours and
    # zones are read and parsed meanwhile.
    with ThreadPoolExecutor(max_workers=1) as pool:
        reading = pool.submit(read_poll_table, polls_path)
        hours = read_hours_table(hours_path)
        zones = read_zone_table(zones_path)
        schedules = hours_schedules(hours)
        zone_of = table_zones(zones)
        polls = reading.result()
    # the rejections of each file in file order, the files in the order they were read
    rejections = in_file_order(hours.rejected) + in_file_order(zones.rejected)
    rejections += polls.rejections()
    return Dataset(polls, hours, zones, rejections, schedules, zone_of)


def _codes_in(ids: Sequence[str], number_of: dict[str, int]) -> Int64s:
    """Each of ``ids``' number in ``number_of`` (-1 when it has none)."""
    return np.array([number_of.get(i, -1) for i in ids], dtype=np.int64)


def hours_schedules(hours: HoursTable) -> tuple[Int64s, ScheduleTable]:
    """The schedule of each store of ``hours.store_ids``, as an index into the table of
    distinct schedules returned beside (schedule 0: no rows, open 24x7)."""
    # normalise_interval on arrays: 23:59 or later ends the day, then an end at or before
    # the start runs into the next day.
    store, weekday, start_s = hours.store, hours.weekday, hours.start_s
    end_s = np.where(hours.end_s >= END_OF_DAY_FROM_S, SECONDS_PER_DAY, hours.end_s)
    end_s = np.where(end_s <= start_s, end_s + SECONDS_PER_DAY, end_s)
    order = np.lexsort((end_s, start_s, weekday, store))
    rows = np.stack([store, weekday, start_s, end_s], axis=1)[order]
    schedule_of = np.zeros(len(hours.store_ids), dtype=np.int64)
    if len(rows) == 0:
        return schedule_of, ScheduleTable(np.zeros((0, 3), dtype=np.int64), np.zeros(2, np.int64))
    rows = rows[np.r_[True, (rows[1:] != rows[:-1]).any(axis=1)]]
    # Many stores keep the same hours: each distinct schedule is kept once.
    index_of: dict[bytes, int] = {b"": 0}
    firsts = np.flatnonzero(np.r_[True, rows[1:, 0] != rows[:-1, 0]])
    intervals = np.ascontiguousarray(rows[:, 1:])
    which: list[int] = []
    kept: list[int] = []  # the first store of each distinct schedule, by its place in rows
    for a, b in itertools.pairwise([*firsts.tolist(), len(rows)]):
        key = intervals[a:b].tobytes()
        number = index_of.get(key)
        if number is None:
            number = index_of[key] = len(index_of)
            kept.append(a)
        which.append(number)
    schedule_of[rows[firsts, 0]] = which
    # the kept stores' rows, in the order of their schedules' numbers
    ends = np.r_[firsts[1:], len(rows)]
    starts_of_kept = np.array(kept, dtype=np.int64)
    counts = ends[np.searchsorted(firsts, starts_of_kept)] - starts_of_kept
    taken = np.repeat(starts_of_kept - (np.cumsum(counts) - counts), counts)
    taken += np.arange(len(taken), dtype=np.int64)
    bounds = np.r_[0, 0, np.cumsum(counts)].astype(np.int64)
    return schedule_of, ScheduleTable(intervals[taken], bounds)


def table_zones(table: ZoneTable) -> Int64s:
    """The zone of each store of ``table.store_ids`` (its last valid row), as an index into
    ``table.zone_names``; -1 for a store whose every row was bad (it keeps the default)."""
    # store_ids also numbers the ids of rows rejected for their zone alone
    zone_of = np.full(len(table.store_ids), -1, dtype=np.int64)
    if len(table.store):
        order = np.lexsort((table.ordinals, table.store))
        store, zone = table.store[order], table.zone[order]
        last = np.r_[store[1:] != store[:-1], True]
        zone_of[store[last]] = zone[last]
    return zone_of


def store_schedules(data: Dataset) -> tuple[Int64s, ScheduleTable]:
    """Each polled store's schedule (by its number in ``data.polls.store_ids``), as an
    index into the table of distinct schedules returned beside (schedule 0: open 24x7)."""
    schedule_of, schedules = data.hours_schedules
    number_of = {store_id: n for n, store_id in enumerate(data.hours.store_ids)}
    rows = _codes_in(data.polls.store_ids, number_of)
    return np.where(
        rows >= 0, schedule_of[np.maximum(rows, 0)] if len(schedule_of) else 0, 0
    ), schedules


def store_zones(data: Dataset) -> tuple[Int64s, list[str]]:
    """Each polled store's zone (its last valid row, else the default), as an index into
    the list of zone names returned beside."""
    table = data.zone_table
    names = [*table.zone_names, DEFAULT_ZONE]
    number_of = {store_id: n for n, store_id in enumerate(table.store_ids)}
    rows = _codes_in(data.polls.store_ids, number_of)
    zone_of = data.table_zones
    picked = zone_of[np.maximum(rows, 0)] if len(zone_of) else np.full(len(rows), -1, np.int64)
    return np.where((rows >= 0) & (picked >= 0), picked, len(names) - 1), names


def report_sums(data: Dataset, as_of_us: int) -> tuple[Int64s, Int64s]:
    """The numbers (into ``data.polls.store_ids``) of the stores with a poll at or before
    ``as_of_us``, ascending, and their sums (see :func:`~storemon.aggregates.fleet.fleet_sums`)."""
    polls = data.polls
    store, ts_us, active = polls.store, polls.ts_us, polls.active
    used = ts_us <= as_of_us
    if not used.all():
        store, ts_us, active = store[used], ts_us[used], active[used]
    # The polls are sorted on another core while the sessions are computed, then the sums
    # are taken in two halves of the stores, one on each core.
    with ThreadPoolExecutor(max_workers=1) as pool:
        sorting = pool.submit(sorted_unique_polls, store, ts_us, active)
        schedule_of, schedules = store_schedules(data)
        zone_of, zone_names = store_zones(data)
        # Stores share schedules and zones: each pair's sessions are computed once, for
        # every polled store (the few without a poll before the report time are not asked).
        pairs, pair_of_store = np.unique(
            schedule_of * len(zone_names) + zone_of, return_inverse=True
        )
        shared = sessions_of_pairs(
            schedules,
            pairs // len(zone_names),
            pairs % len(zone_names),
            zone_names,
            as_of_us - LONGEST_WINDOW_US,
            as_of_us,
        )
        pair_of_store = pair_of_store.reshape(-1).astype(np.int64)
        store, ts_us, active = sorting.result()
        # a cut between two stores near the middle: each half holds whole stores
        cut = int(np.searchsorted(store, store[len(store) // 2])) if len(store) else 0

        def sums_of(a: int, b: int) -> tuple[Int64s, Int64s]:
            return sorted_fleet_sums(
                store[a:b],
                ts_us[a:b],
                active[a:b],
                len(polls.store_ids),
                lambda numbers: (pair_of_store[numbers], shared),
                as_of_us,
            )

        first_half = pool.submit(sums_of, 0, cut)
        second = sums_of(cut, len(store))
        first = first_half.result()
    return np.concatenate([first[0], second[0]]), np.concatenate([first[1], second[1]])


def compute_report(data: Dataset, as_of_us: int) -> list[StoreWindows]:
    """One row per store with a poll at or before ``as_of_us`` (in no particular order)."""
    reported, sums = report_sums(data, as_of_us)
    store_ids = data.polls.store_ids
    return [
        StoreWindows(store_ids[number], (s[0], s[1], s[2]), (s[3], s[4], s[5]))
        for number, s in zip(reported.tolist(), sums.tolist(), strict=True)
    ]


def write_rejections(path: Path, rejections: Iterable[Rejection]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(("source", "reason", "detail", "record"))
        for r in rejections:
            writer.writerow((r.source, r.reason, r.detail, orjson.dumps(dict(r.record)).decode()))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_argument(parser)
    parser.add_argument(
        "--as-of",
        default=None,
        help="report time, 'YYYY-MM-DD HH:MM:SS[.ffffff]' UTC (default: newest poll)",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="CSV file to write (default: stdout)"
    )
    parser.add_argument(
        "--rejects",
        type=Path,
        default=None,
        help="where rejected rows go with their reasons (default: OUT.rejected.csv)",
    )


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    try:
        data = load_dataset(args.data)
        as_of_us = parse_as_of(args.as_of) if args.as_of else data.newest_poll_us
    except (OSError, ValueError) as error:
        print(f"storemon report: {error}", file=sys.stderr)
        return 2
    if as_of_us is None:
        print("storemon report: no valid poll in the data, so no report time", file=sys.stderr)
        return 2
    reported, sums = report_sums(data, as_of_us)
    store_ids = data.polls.store_ids
    ids = [store_ids[number] for number in reported.tolist()]
    order = sorted(range(len(ids)), key=ids.__getitem__)
    text = render_sums_csv([ids[i] for i in order], sums[np.array(order, dtype=np.int64)])
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
    rejects_path = args.rejects
    if rejects_path is None and args.out is not None and data.rejections:
        rejects_path = args.out.with_name(args.out.name + ".rejected.csv")
    if rejects_path is not None:
        write_rejections(rejects_path, data.rejections)
    elapsed = time.perf_counter() - started
    print(
        f"as_of {format_utc(as_of_us)}: {len(ids)} stores, {data.poll_count} polls, "
        f"{len(data.rejections)} rows rejected, {elapsed:.2f} s",
        file=sys.stderr,
    )
    by_reason = Counter((r.source, r.reason) for r in data.rejections)
    for (source, reason), count in sorted(by_reason.items()):
        print(f"  rejected {source}: {reason}: {count}", file=sys.stderr)
    if rejects_path is not None:
        print(f"  rejected rows written to {rejects_path}", file=sys.stderr)
    if args.out is not None:
        print(f"report written to {args.out}", file=sys.stderr)
    return 0
