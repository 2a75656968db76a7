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
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import orjson

from storemon.aggregates.fleet import Int64s, fleet_sums
from storemon.aggregates.records import DEFAULT_ZONE, HoursRow, Rejection
from storemon.aggregates.report import LONGEST_WINDOW_US, StoreWindows, render_csv
from storemon.aggregates.schedule import (
    ALWAYS_OPEN,
    END_OF_DAY_FROM_S,
    Schedule,
    Sessions,
    WeeklyInterval,
    build_schedule,
    sessions_between_many,
)
from storemon.aggregates.timebase import SECONDS_PER_DAY, format_utc, parse_as_of
from storemon.sources import (
    HoursTable,
    PollTable,
    ZoneTable,
    add_data_argument,
    find_input,
    read_hours_table,
    read_poll_table,
    read_zone_table,
)


@dataclass
class Dataset:
    polls: PollTable
    hours: HoursTable
    zone_table: ZoneTable
    rejections: list[Rejection] = field(default_factory=list)

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
        polls = reading.result()
    # the rejections of each file in file order, the files in the order they were read
    rejections = [r for _, r in sorted(hours.rejected, key=lambda pair: pair[0])]
    rejections += [r for _, r in sorted(zones.rejected, key=lambda pair: pair[0])]
    rejections += polls.rejections()
    return Dataset(polls, hours, zones, rejections)


def _codes_in(ids: Sequence[str], number_of: dict[str, int]) -> Int64s:
    """Each of ``ids``' number in ``number_of`` (-1 when it has none)."""
    return np.array([number_of.get(i, -1) for i in ids], dtype=np.int64)


def store_schedules(data: Dataset) -> tuple[Int64s, list[Schedule]]:
    """Each polled store's schedule, as an index into the list of distinct schedules
    returned beside (index 0: no rows, open 24x7)."""
    n_stores = len(data.polls.store_ids)
    number_of = {store_id: n for n, store_id in enumerate(data.polls.store_ids)}
    hours = data.hours
    store = _codes_in(hours.store_ids, number_of)[hours.store] if len(hours) else hours.store
    polled = store >= 0
    store, weekday, start_s = store[polled], hours.weekday[polled], hours.start_s[polled]
    # normalise_interval on arrays: 23:59 or later ends the day, then an end at or before
    # the start runs into the next day.
    end_s = hours.end_s[polled]
    end_s = np.where(end_s >= END_OF_DAY_FROM_S, SECONDS_PER_DAY, end_s)
    end_s = np.where(end_s <= start_s, end_s + SECONDS_PER_DAY, end_s)
    order = np.lexsort((end_s, start_s, weekday, store))
    rows = np.stack([store, weekday, start_s, end_s], axis=1)[order]
    if len(rows):
        distinct = np.r_[True, (rows[1:] != rows[:-1]).any(axis=1)]
        rows = rows[distinct]
    schedules: list[Schedule] = [ALWAYS_OPEN]
    index_of: dict[bytes, int] = {}
    schedule_of = np.zeros(n_stores, dtype=np.int64)
    if len(rows):
        firsts = np.flatnonzero(np.r_[True, rows[1:, 0] != rows[:-1, 0]])
        bounds = np.r_[firsts, len(rows)].tolist()
        intervals = np.ascontiguousarray(rows[:, 1:])
        which: list[int] = []
        for a, b in itertools.pairwise(bounds):
            key = intervals[a:b].tobytes()
            number = index_of.get(key)
            if number is None:
                number = index_of[key] = len(schedules)
                schedules.append(
                    tuple(WeeklyInterval(*interval) for interval in intervals[a:b].tolist())
                )
            which.append(number)
        schedule_of[rows[firsts, 0]] = which
    return schedule_of, schedules


def store_zones(data: Dataset) -> tuple[Int64s, list[str]]:
    """Each polled store's zone (its last valid row, else the default), as an index into
    the list of zone names returned beside."""
    table = data.zone_table
    names = [*table.zone_names, DEFAULT_ZONE]
    zone_of = np.full(len(data.polls.store_ids), len(names) - 1, dtype=np.int64)
    number_of = {store_id: n for n, store_id in enumerate(data.polls.store_ids)}
    store = _codes_in(table.store_ids, number_of)[table.store] if len(table.store) else table.store
    polled = store >= 0
    store, zone, ordinals = store[polled], table.zone[polled], table.ordinals[polled]
    if len(store):
        order = np.lexsort((ordinals, store))
        store, zone = store[order], zone[order]
        last = np.r_[store[1:] != store[:-1], True]
        zone_of[store[last]] = zone[last]
    return zone_of, names


def report_sums(data: Dataset, as_of_us: int) -> tuple[Int64s, Int64s]:
    """The numbers (into ``data.polls.store_ids``) of the stores with a poll at or before
    ``as_of_us``, ascending, and their sums (see :func:`fleet_sums`)."""
    schedule_of, schedules = store_schedules(data)
    zone_of, zone_names = store_zones(data)

    def sessions_of(numbers: Int64s) -> tuple[Int64s, list[Sessions]]:
        # Stores share schedules and zones: each pair's sessions are computed once.
        pairs, which = np.unique(
            schedule_of[numbers] * len(zone_names) + zone_of[numbers], return_inverse=True
        )
        shared = sessions_between_many(
            [
                (schedules[pair // len(zone_names)], zone_names[pair % len(zone_names)])
                for pair in pairs.tolist()
            ],
            as_of_us - LONGEST_WINDOW_US,
            as_of_us,
        )
        return which.reshape(-1).astype(np.int64), shared

    polls = data.polls
    n_stores = len(polls.store_ids)
    return fleet_sums(polls.store, polls.ts_us, polls.active, n_stores, sessions_of, as_of_us)


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
    rows = compute_report(data, as_of_us)
    text = render_csv(rows)
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
        f"as_of {format_utc(as_of_us)}: {len(rows)} stores, {data.poll_count} polls, "
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
