"""``storemon report``: the uptime report computed in one pass from the CSV files.

This is the batch path. It shares every rule with the stream (both call the same core), so
for the same inputs and ``as_of`` its CSV is byte for byte the stream's.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson

from storemon.aggregates.fleet import Int64s, fleet_windows
from storemon.aggregates.records import DEFAULT_ZONE, HoursRow, Rejection
from storemon.aggregates.report import LONGEST_WINDOW_US, StoreWindows, render_csv
from storemon.aggregates.schedule import Schedule, Sessions, build_schedule, sessions_between
from storemon.aggregates.timebase import format_utc, parse_as_of
from storemon.sources import (
    PollTable,
    add_data_argument,
    find_input,
    read_hours,
    read_poll_table,
    read_zones,
)


@dataclass
class Dataset:
    polls: PollTable
    schedules: dict[str, Schedule] = field(default_factory=dict)
    zones: dict[str, str] = field(default_factory=dict)
    rejections: list[Rejection] = field(default_factory=list)

    @property
    def poll_count(self) -> int:
        return len(self.polls)

    @property
    def newest_poll_us(self) -> int | None:
        return int(self.polls.ts_us.max()) if len(self.polls) else None

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
        rejections: list[Rejection] = []
        hours_rows: dict[str, list[HoursRow]] = {}
        for hours in read_hours(hours_path):
            if isinstance(hours, Rejection):
                rejections.append(hours)
            else:
                hours_rows.setdefault(hours.store_id, []).append(hours)
        zones: dict[str, str] = {}
        for zone in read_zones(zones_path):
            if isinstance(zone, Rejection):
                rejections.append(zone)
            else:
                zones[zone.store_id] = zone.zone_name  # the last valid row wins
        polls = reading.result()
    rejections += polls.rejections()
    # Many stores keep the same hours: each distinct set of rows is built once.
    built: dict[frozenset[tuple[int, int, int]], Schedule] = {}
    schedules: dict[str, Schedule] = {}
    for store, rows in hours_rows.items():
        key = frozenset(row[1:] for row in rows)
        schedule = built.get(key)
        if schedule is None:
            schedule = built[key] = build_schedule(rows)
        schedules[store] = schedule
    return Dataset(polls, schedules, zones, rejections)


def compute_report(data: Dataset, as_of_us: int) -> list[StoreWindows]:
    """One row per store with a poll at or before ``as_of_us`` (in no particular order)."""
    store_ids = data.polls.store_ids

    def sessions_of(numbers: Int64s) -> tuple[Int64s, list[Sessions]]:
        # Stores share schedules and zones: each pair's sessions are computed once.
        index_of: dict[tuple[Schedule, str], int] = {}
        which: list[int] = []
        for number in numbers.tolist():
            store_id = store_ids[number]
            key = (data.schedules.get(store_id, ()), data.zones.get(store_id, DEFAULT_ZONE))
            which.append(index_of.setdefault(key, len(index_of)))
        shared = [
            sessions_between(schedule, zone, as_of_us - LONGEST_WINDOW_US, as_of_us)
            for schedule, zone in index_of
        ]
        return np.array(which, dtype=np.int64), shared

    polls = data.polls
    return fleet_windows(store_ids, polls.store, polls.ts_us, polls.active, sessions_of, as_of_us)


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
