"""The contract's corner cases (docs/semantics.md section 1 and 2) through the live stream:
every accepted form of a timestamp, a status and a business-hours row, the zone rules
(unknown names, links, several rows per store, DST nights on both hemispheres, a quarter-hour
offset) and conflicting duplicates, each poll its own message. The API's report must equal
the batch command's at the newest poll and at report times on and around those nights."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from .pipeline import Pipeline, batch_csv, read_messages

pytestmark = [pytest.mark.services, pytest.mark.slow, pytest.mark.timeout(600)]

BIG_ID = "9222367421889482050"  # 19 digits: a float would round it

# store -> rows of (dayOfWeek, start, end); a store without rows is open 24x7
HOURS: dict[str, list[tuple[int, str, str]]] = {
    # overnight written the way the real files write it: up to 23:59:59, then from 00:00
    "night-split": [(d, "22:00:00", "23:59:59") for d in range(7)]
    + [(d, "00:00:00", "02:00:00") for d in range(7)],
    # the same hours written as one row whose end is before its start
    "night-wrap": [(d, "22:00", "02:00") for d in range(7)],
    "full-day": [(d, "09:00:00", "09:00:00") for d in range(7)],  # end = start: 24 hours
    "to-midnight": [(d, "06:30", "23:59") for d in range(5)],  # weekends closed
    "sundays": [(6, "09:00:00", "17:00:00")],
    BIG_ID: [(d, "01:30:00", "03:30:00") for d in range(7)],  # across the DST gap
    "zone-unknown": [(d, "08:00:00", "20:00:00") for d in range(7)],
    "hours-all-bad": [(7, "09:00:00", "17:00:00")],  # no valid row: open 24x7
    "hours-some-bad": [(d, "10:00", "16:00") for d in range(5)] + [(2, "09:00", "25:00")],
}
# store -> zone rows in file order; no row: America/Chicago
ZONES: dict[str, list[str]] = {
    "night-split": ["Europe/London"],
    "night-wrap": ["Europe/London"],
    "full-day": ["Australia/Sydney"],
    "to-midnight": ["Asia/Kolkata", "US/Eastern"],  # the last valid row wins (a link)
    "sundays": ["Asia/Kathmandu"],
    BIG_ID: ["Europe/Berlin", "Mars/Olympus_Mons"],  # an unknown name is a bad row
    "zone-unknown": ["Not/A_Zone"],
}
STORES = [*HOURS, "always-open"]
START = datetime(2023, 3, 24, 0, 7, 13, tzinfo=UTC)  # EU DST on 03-26, Sydney's end on 04-02
END = datetime(2023, 4, 2, 20, 0, 0, tzinfo=UTC)


def stamp(moment: datetime, rng: random.Random) -> str:
    """One of the accepted timestamp forms, picked at random."""
    form = rng.randrange(5)
    if form == 0:
        return moment.strftime("%Y-%m-%d %H:%M:%S UTC")
    if form == 1:  # fraction with its trailing zeros dropped, as the real files do
        fraction = f"{moment.microsecond:06d}".rstrip("0") or "0"
        return moment.strftime("%Y-%m-%d %H:%M:%S.") + fraction + " UTC"
    if form == 2:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    offset = timezone(timedelta(hours=5, minutes=30) if form == 3 else timedelta(hours=-7))
    return moment.astimezone(offset).isoformat()


def status(active: bool, rng: random.Random) -> str:
    word = "active" if active else "inactive"
    return rng.choice([word, word.upper(), f" {word.title()} "])


def write_corner_set(folder: Path, seed: int = 5) -> None:
    rng = random.Random(seed)
    folder.mkdir()
    with (folder / "menu_hours.csv").open("w") as handle:
        handle.write("store_id,dayOfWeek,start_time_local,end_time_local\n")
        for store, rows in HOURS.items():
            handle.writelines(f"{store},{day},{start},{end}\n" for day, start, end in rows)
    with (folder / "timezones.csv").open("w") as handle:
        handle.write("store_id,timezone_str\n")
        for store, zones in ZONES.items():
            handle.writelines(f"{store},{zone}\n" for zone in zones)
    with (folder / "store_status.csv").open("w") as handle:
        handle.write("store_id,status,timestamp_utc\n")
        for store in STORES:
            moment = START + timedelta(seconds=rng.randrange(3600))
            while moment < END:
                # whole microseconds, some on the second: both fraction forms occur
                moment = moment.replace(microsecond=rng.choice([0, rng.randrange(10**6)]))
                active = rng.random() < 0.8
                handle.write(f"{store},{status(active, rng)},{stamp(moment, rng)}\n")
                if rng.random() < 0.05:  # the same instant again, maybe the other way
                    handle.write(f"{store},{status(not active, rng)},{stamp(moment, rng)}\n")
                moment += timedelta(minutes=rng.randrange(40, 90), seconds=rng.randrange(60))
        # polls exactly at a closing time: outside the hours (half-open), so ignored
        handle.write("to-midnight,inactive,2023-03-31 04:00:00 UTC\n")  # Thu 24:00 EDT
        handle.write("zone-unknown,inactive,2023-03-31 01:00:00 UTC\n")  # 20:00 CDT


async def test_the_contracts_corner_cases_through_the_live_stream(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    folder = tmp_path / "corners"
    write_corner_set(folder)
    reference, polls = read_messages(folder)
    pipeline.start_worker()
    await pipeline.publish(reference + polls)
    await pipeline.wait_consumed()
    expected = batch_csv(folder)
    assert expected.count("\n") == len(STORES) + 1  # every store has polls
    report_id = await pipeline.request_report()
    assert await pipeline.wait_report(report_id) == expected
    for as_of in (
        # the first report times of the supported range: their week holds the
        # spring-forward night of London and Berlin
        "2023-03-27 01:30:00",
        "2023-03-27 02:00:00.5",
        "2023-04-01 16:00:00",  # Sydney's fall-back night (UTC)
        "2023-04-02 09:17:42.123456",
        "2023-04-02 15:59:59.999999",
    ):
        report_id = await pipeline.request_report(as_of)
        assert await pipeline.wait_report(report_id) == batch_csv(folder, as_of), as_of
    assert await pipeline.dead_letter_reasons() == [
        ("hours", "bad day"),
        ("hours", "bad time"),
        ("timezones", "unknown zone"),
        ("timezones", "unknown zone"),
    ]
