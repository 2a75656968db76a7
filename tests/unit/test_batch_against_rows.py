"""``storemon report`` (columns parsed once per distinct value, sessions and sums on arrays)
against a plain row-by-row reading of the same messy files, report row by report row: each
row parsed with the field rules of ``aggregates/records.py``, the last valid zone row kept,
one store at a time through the scalar core. Seeded random files mix every accepted form
with bad rows, so a rule the fast path applies differently shows up as a differing row."""

from __future__ import annotations

import contextlib
import csv
import io
import random
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from storemon.aggregates.records import (
    DEFAULT_ZONE,
    HoursRow,
    Rejection,
    parse_hours,
    parse_poll,
    parse_zone,
)
from storemon.aggregates.report import LONGEST_WINDOW_US, StoreWindows, render_csv
from storemon.aggregates.schedule import ALWAYS_OPEN, build_schedule, sessions_between
from storemon.aggregates.timebase import HOUR_US, format_utc
from storemon.aggregates.timeline import dedupe_polls
from storemon.aggregates.windows import windows_from_polls
from storemon.cli import main

ZONES = [
    "America/Chicago",
    "America/New_York",
    "US/Pacific",  # a link
    "Europe/London",
    "Australia/Sydney",
    "Asia/Kathmandu",
    "America/Santiago",
    "Pacific/Chatham",
    "UTC",
    " Europe/Berlin ",
    "Not/A_Zone",  # bad rows from here on
    "america/chicago",
    "",
]
TIMES = ["00:00", "00:00:00", "02:00", "09:00", "9:00", "09:30:15", "12:00:00", "17:00"]
TIMES += ["22:00:00", "23:59", "23:59:00", "23:59:59", "24:00", "24:00:00", "25:00", "xx"]
DAYS = ["0", "1", "2", "3", "4", "5", "6", "6", " 3 ", "7", "x"]


def poll_stamp(moment: datetime, rng: random.Random) -> str:
    form = rng.randrange(6)
    if form == 0:
        return moment.strftime("%Y-%m-%d %H:%M:%S UTC")
    if form == 1:
        fraction = f"{moment.microsecond:06d}".rstrip("0") or "0"
        return moment.strftime("%Y-%m-%d %H:%M:%S.") + fraction + " UTC"
    if form == 2:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if form == 3:
        return moment.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat()
    if form == 4:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return rng.choice(["2023-02-30 10:00:00 UTC", "garbage", moment.strftime("%Y-%m-%d %H:%M")])


def write_messy_set(folder: Path, seed: int) -> None:
    rng = random.Random(seed)
    folder.mkdir(parents=True)
    stores = [
        rng.choice([f"s{i}", str(rng.randrange(10**18, 9 * 10**18)), f" s{i}"])
        for i in range(rng.randrange(5, 25))
    ]
    # around a DST change in one hemisphere or the other, or none
    start = datetime(2023, rng.choice([1, 3, 4, 10, 11]), rng.randrange(1, 20), tzinfo=UTC)
    day_column = rng.choice(["day", "dayOfWeek"])
    with (folder / "menu_hours.csv").open("w") as handle:
        handle.write(f"store_id,{day_column},start_time_local,end_time_local\n")
        for store in stores:
            for _ in range(rng.choice([0, 0, 1, 2, 5, 9])):
                start_time, end_time = rng.choice(TIMES), rng.choice(TIMES)
                handle.write(f"{store},{rng.choice(DAYS)},{start_time},{end_time}\n")
    with (folder / "timezones.csv").open("w") as handle:
        handle.write("store_id,timezone_str\n")
        for store in stores:
            handle.writelines(f"{store},{rng.choice(ZONES)}\n" for _ in range(rng.randrange(4)))
    with (folder / "store_status.csv").open("w") as handle:
        handle.write("store_id,status,timestamp_utc\n")
        for store in stores:
            moment = start + timedelta(seconds=rng.randrange(7200))
            end = start + timedelta(days=rng.randrange(1, 10))
            while moment < end:
                moment = moment.replace(microsecond=rng.choice([0, rng.randrange(10**6)]))
                active = rng.random() < 0.7
                word = "active" if active else "inactive"
                status = rng.choice([word, word.upper(), f" {word.title()} ", "up"])
                handle.write(f"{store},{status},{poll_stamp(moment, rng)}\n")
                if rng.random() < 0.05:  # the same instant again, perhaps the other way
                    other = "active" if not active else "inactive"
                    handle.write(f"{store},{other},{poll_stamp(moment, rng)}\n")
                moment += timedelta(minutes=rng.randrange(20, 150), seconds=rng.randrange(60))


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def report_row_by_row(folder: Path, as_of_us: int | None) -> str:
    polls: dict[str, list[tuple[int, bool]]] = {}
    for fields in rows(folder / "store_status.csv"):
        poll = parse_poll(fields)
        if not isinstance(poll, Rejection):
            polls.setdefault(poll.store_id, []).append((poll.ts_us, poll.active))
    hours: dict[str, list[HoursRow]] = {}
    for fields in rows(folder / "menu_hours.csv"):
        row = parse_hours(fields)
        if not isinstance(row, Rejection):
            hours.setdefault(row.store_id, []).append(row)
    zones: dict[str, str] = {}
    for fields in rows(folder / "timezones.csv"):
        zone = parse_zone(fields)
        if not isinstance(zone, Rejection):
            zones[zone.store_id] = zone.zone_name  # the last valid row wins
    as_of = as_of_us if as_of_us is not None else max(t for p in polls.values() for t, _ in p)
    report: list[StoreWindows] = []
    for store_id in sorted(polls):
        used = [(t, active) for t, active in polls[store_id] if t <= as_of]
        if not used:
            continue
        schedule = build_schedule(hours[store_id]) if store_id in hours else ALWAYS_OPEN
        zone_name = zones.get(store_id, DEFAULT_ZONE)
        sessions = sessions_between(schedule, zone_name, as_of - LONGEST_WINDOW_US, as_of)
        poll_ts, poll_active = dedupe_polls(used)
        report.append(windows_from_polls(store_id, sessions, poll_ts, poll_active, as_of))
    return render_csv(report)


def batch_command(folder: Path, out: Path, as_of: str | None) -> str:
    args = ["report", "--data", str(folder), "--out", str(out)]
    with contextlib.redirect_stderr(io.StringIO()):
        assert main(args + (["--as-of", as_of] if as_of else [])) == 0
    return out.read_text()


@pytest.mark.parametrize("seed", range(40))
def test_the_batch_command_equals_a_row_by_row_reading(tmp_path: Path, seed: int) -> None:
    folder = tmp_path / "set"
    write_messy_set(folder, seed)
    assert batch_command(folder, tmp_path / "now.csv", None) == report_row_by_row(folder, None)
    # and at a report time between the polls, to the microsecond
    stamps = [
        p.ts_us
        for f in rows(folder / "store_status.csv")
        if not isinstance(p := parse_poll(f), Rejection)
    ]
    as_of_us = random.Random(seed).randrange(min(stamps), max(stamps) + 2 * HOUR_US)
    as_of = format_utc(as_of_us)[:26]
    expected = report_row_by_row(folder, as_of_us)
    assert batch_command(folder, tmp_path / "then.csv", as_of) == expected, as_of
