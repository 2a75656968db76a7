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
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from storemon.aggregates.files import (
    add_data_argument,
    find_input,
    read_hours,
    read_polls,
    read_zones,
)
from storemon.aggregates.records import DEFAULT_ZONE, HoursRow, Rejection
from storemon.aggregates.report import LONGEST_WINDOW_US, StoreWindows, render_csv
from storemon.aggregates.schedule import Schedule, build_schedule, sessions_between
from storemon.aggregates.timebase import format_utc, parse_as_of
from storemon.aggregates.windows import windows_from_polls


@dataclass
class Dataset:
    polls_by_store: dict[str, list[tuple[int, bool]]] = field(default_factory=dict)
    schedules: dict[str, Schedule] = field(default_factory=dict)
    zones: dict[str, str] = field(default_factory=dict)
    rejections: list[Rejection] = field(default_factory=list)
    poll_count: int = 0
    newest_poll_us: int | None = None


def load_dataset(directory: Path) -> Dataset:
    data = Dataset()
    hours_rows: dict[str, list[HoursRow]] = {}
    for hours in read_hours(find_input(directory, "menu_hours")):
        if isinstance(hours, Rejection):
            data.rejections.append(hours)
        else:
            hours_rows.setdefault(hours.store_id, []).append(hours)
    data.schedules = {store: build_schedule(rows) for store, rows in hours_rows.items()}
    for zone in read_zones(find_input(directory, "timezones")):
        if isinstance(zone, Rejection):
            data.rejections.append(zone)
        else:
            data.zones[zone.store_id] = zone.zone_name  # the last valid row wins
    polls_by_store = data.polls_by_store
    newest = None
    for poll in read_polls(find_input(directory, "store_status")):
        if isinstance(poll, Rejection):
            data.rejections.append(poll)
            continue
        data.poll_count += 1
        polls = polls_by_store.get(poll.store_id)
        if polls is None:
            polls = polls_by_store[poll.store_id] = []
        polls.append((poll.ts_us, poll.active))
        if newest is None or poll.ts_us > newest:
            newest = poll.ts_us
    data.newest_poll_us = newest
    return data


def dedupe_polls(polls: Iterable[tuple[int, bool]]) -> tuple[list[int], list[bool]]:
    """Sorted timestamps and statuses; one timestamp twice counts once, inactive winning."""
    merged: dict[int, bool] = {}
    for ts, active in polls:
        merged[ts] = merged.get(ts, True) and active
    ordered = sorted(merged)
    return ordered, [merged[ts] for ts in ordered]


def compute_report(data: Dataset, as_of_us: int) -> list[StoreWindows]:
    rows: list[StoreWindows] = []
    for store_id, polls in data.polls_by_store.items():
        poll_ts, poll_active = dedupe_polls(polls)
        if not poll_ts or poll_ts[0] > as_of_us:
            continue  # a store enters the report with its first poll at or before T
        sessions = sessions_between(
            data.schedules.get(store_id, ()),
            data.zones.get(store_id, DEFAULT_ZONE),
            as_of_us - LONGEST_WINDOW_US,
            as_of_us,
        )
        rows.append(windows_from_polls(store_id, sessions, poll_ts, poll_active, as_of_us))
    return rows


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
