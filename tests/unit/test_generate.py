"""Properties of the synthetic data generator (``storemon generate``)."""

from __future__ import annotations

import csv
import gzip
import itertools
import random
import re
from collections import Counter, defaultdict
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import NamedTuple

import pytest

from storemon.aggregates.records import HoursRow
from storemon.aggregates.timebase import DAY_US, HOUR_US, MINUTE_US, datetime_to_us, parse_as_of
from storemon.cli import main
from storemon.producers import generate as gen

END_TEXT = "2023-01-25 18:13:22.47922"
END_US = parse_as_of(END_TEXT)
DAYS = 8
STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{0,5}[1-9])? UTC$")
CLOCK = re.compile(r"^([01]\d|2[0-3]):[0-5]\d:[0-5]\d$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


@cache
def dataset(seed: int = 7, n_stores: int = 150) -> gen.Dataset:
    return gen.build_dataset(random.Random(seed), n_stores, DAYS, END_US)


@cache
def status_rows(seed: int = 7) -> tuple[tuple[str, str, str], ...]:
    return tuple(dataset(seed).polls.rows())


def parse_stamp(text: str) -> int:
    """Independent parser of the real files' timestamp text, to microseconds."""
    assert text.endswith(" UTC")
    moment = datetime.fromisoformat(text[:-4]).replace(tzinfo=UTC)
    return datetime_to_us(moment)


def clock_seconds(text: str) -> int:
    hours, minutes, seconds = (int(part) for part in text.split(":"))
    return hours * 3600 + minutes * 60 + seconds


# --------------------------------------------------------------------------- determinism


def test_same_seed_same_data_other_seed_other_data() -> None:
    first = gen.build_dataset(random.Random(11), 40, 3, END_US)
    again = gen.build_dataset(random.Random(11), 40, 3, END_US)
    other = gen.build_dataset(random.Random(12), 40, 3, END_US)
    assert list(first.polls.rows()) == list(again.polls.rows())
    assert first.stores == again.stores
    assert list(first.polls.rows()) != list(other.polls.rows())
    assert [s.store_id for s in first.stores] != [s.store_id for s in other.stores]


def test_written_files_are_byte_identical_for_a_seed(tmp_path: Path) -> None:
    for name in ("a", "b"):
        data = gen.build_dataset(random.Random(5), 30, 2, END_US)
        gen.write_dataset(data, tmp_path / name, compress=True)
    for file_name in (gen.STATUS_FILE, gen.HOURS_FILE, gen.TIMEZONES_FILE):
        first = (tmp_path / "a" / f"{file_name}.gz").read_bytes()
        assert first == (tmp_path / "b" / f"{file_name}.gz").read_bytes()
        assert gzip.decompress(first).startswith(b"store_id,")


def test_stores_do_not_depend_on_the_time_range() -> None:
    short = gen.build_dataset(random.Random(3), 20, 1, END_US)
    long = gen.build_dataset(random.Random(3), 20, 8, END_US - DAY_US)
    assert short.stores == long.stores


# --------------------------------------------------------------------------- formats


def test_headers_and_row_shapes(tmp_path: Path) -> None:
    summary = gen.write_dataset(dataset(), tmp_path)
    status_path, hours_path, zones_path = summary.paths
    with status_path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["store_id", "status", "timestamp_utc"]
    assert len(rows) - 1 == summary.polls == len(dataset().polls)
    assert {row[1] for row in rows[1:]} == {"active", "inactive"}
    with hours_path.open(newline="") as handle:
        hours = list(csv.reader(handle))
    assert hours[0] == ["store_id", "dayOfWeek", "start_time_local", "end_time_local"]
    assert len(hours) - 1 == summary.hours_rows > 0
    for _, day, start, end in hours[1:]:
        assert day in {"0", "1", "2", "3", "4", "5", "6"}
        assert CLOCK.match(start)
        assert CLOCK.match(end)
    with zones_path.open(newline="") as handle:
        zones = list(csv.reader(handle))
    assert zones[0] == ["store_id", "timezone_str"]
    assert len(zones) - 1 == summary.zone_rows > 0


def test_timestamp_text_strips_trailing_zeros_of_the_fraction() -> None:
    base = parse_as_of("2023-01-25 18:13:22")
    assert gen.format_timestamp(base) == "2023-01-25 18:13:22 UTC"
    assert gen.format_timestamp(base + 479_220) == "2023-01-25 18:13:22.47922 UTC"
    assert gen.format_timestamp(base + 100_000) == "2023-01-25 18:13:22.1 UTC"
    assert gen.format_timestamp(base + 5) == "2023-01-25 18:13:22.000005 UTC"
    assert gen.format_timestamp(base + 999_999) == "2023-01-25 18:13:22.999999 UTC"


def test_every_status_timestamp_has_the_real_format_and_round_trips() -> None:
    polls = list(dataset().polls)
    rows = status_rows()
    short = 0
    for poll, (store_id, status, stamp) in zip(polls, rows, strict=True):
        assert STAMP.match(stamp), stamp
        assert parse_stamp(stamp) == poll.ts_us
        assert store_id == poll.store_id
        assert status == ("active" if poll.active else "inactive")
        short += len(stamp) < len("2023-01-25 18:13:22.123456 UTC")
    # about one in ten fractions ends in a zero and prints fewer than six digits
    assert 0.05 < short / len(rows) < 0.15


def test_store_ids_uuid_and_numeric() -> None:
    uuids = gen.make_store_ids(random.Random(1), 500, "uuid")
    numeric = gen.make_store_ids(random.Random(1), 500, "numeric")
    assert len(set(uuids)) == len(set(numeric)) == 500
    assert all(UUID.match(store_id) for store_id in uuids)
    for store_id in numeric:
        assert len(store_id) == 19
        assert store_id.isdigit()
        assert int(store_id) < 2**63


# --------------------------------------------------------------------------- range and order


def test_timestamps_lie_in_the_range_and_the_newest_is_the_end() -> None:
    data = dataset()
    stamps = [parse_stamp(stamp) for _, _, stamp in status_rows()]
    assert data.start_us == END_US - DAYS * DAY_US
    assert all(data.start_us <= ts <= END_US for ts in stamps)
    assert max(stamps) == END_US
    assert status_rows()[-1][2] == "2023-01-25 18:13:22.47922 UTC"


def test_rows_sorted_by_timestamp_then_store_id() -> None:
    keys = [(parse_stamp(stamp), store_id) for store_id, _, stamp in status_rows()]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)
    # the text sorts the same way, since stripping zeros keeps the order
    texts = [(stamp, store_id) for store_id, _, stamp in status_rows()]
    assert texts == sorted(texts)


def test_ties_on_a_timestamp_are_ordered_by_store_id() -> None:
    stores = [gen.StoreSpec(store_id, None, (), True) for store_id in ("c", "a", "b")]
    polls = gen.generate_polls(random.Random(2), stores, END_US - 2 * HOUR_US, END_US)
    assert polls.store_ids == ("a", "b", "c")
    keys = [(p.ts_us, p.store_id) for p in polls]
    assert keys == sorted(keys)
    tied = gen.PollSet(0, 2, ("a", "b", "c"), sorted([(5 << 2 | r) << 1 for r in (2, 0, 1)]))
    assert [p.store_id for p in tied] == ["a", "b", "c"]


# --------------------------------------------------------------------------- cadence and status


def test_polls_per_store_per_day() -> None:
    per_store = Counter(store_id for store_id, _, _ in status_rows())
    rates = sorted(count / DAYS for count in per_store.values())
    mean = sum(rates) / len(rates)
    assert 14 <= mean <= 18
    assert 12 <= rates[len(rates) // 2] <= 20
    assert rates[len(rates) // 10] >= 9


def test_the_poller_runs_near_the_top_of_the_hour() -> None:
    minutes = Counter((poll.ts_us // MINUTE_US) % 60 // 10 for poll in dataset().polls)
    total = sum(minutes.values())
    assert 0.60 <= minutes[0] / total <= 0.85
    assert 0.08 <= minutes[1] / total <= 0.25
    assert all(minutes[decade] > 0 for decade in range(6))


def test_multi_hour_gaps_and_day_holes_occur() -> None:
    by_store: defaultdict[str, list[int]] = defaultdict(list)
    for poll in dataset().polls:
        by_store[poll.store_id].append(poll.ts_us)
    gaps = [
        (later - earlier) / HOUR_US
        for stamps in by_store.values()
        for earlier, later in itertools.pairwise(stamps)
    ]
    multi_hour = sum(1 for gap in gaps if 3 <= gap <= 12)
    per_store_week = multi_hour / len(by_store) / DAYS * 7
    assert 2 <= per_store_week <= 15
    assert any(gap >= 20 for gap in gaps)
    assert sorted(gaps)[len(gaps) // 2] == pytest.approx(1.0, abs=0.1)


def test_status_mix_and_outage_lengths() -> None:
    polls = list(dataset().polls)
    active_share = sum(poll.active for poll in polls) / len(polls)
    assert 0.80 <= active_share <= 0.95
    outages: list[int] = []
    run_by_store: dict[str, int] = {}
    for poll in polls:  # time order, so each store's polls come in order
        run = run_by_store.get(poll.store_id, 0)
        if not poll.active:
            run_by_store[poll.store_id] = run + 1
        elif run:
            outages.append(run)
            run_by_store[poll.store_id] = 0
    assert outages
    assert sum(1 for length in outages if length <= 6) / len(outages) >= 0.9
    assert 1.5 <= sum(outages) / len(outages) <= 3.5


# --------------------------------------------------------------------------- schedules and zones


class TextRow(NamedTuple):
    """A schedule row as the file writes it."""

    day: int
    start: str
    end: str


def _schedules(count: int) -> list[list[TextRow]]:
    rng = random.Random(42)
    return [
        [
            TextRow(row.weekday, gen.format_clock(row.start_s), gen.format_clock(row.end_s))
            for row in gen.make_schedule(rng, f"s{i}")
        ]
        for i in range(count)
    ]


def test_schedules_never_cross_midnight_and_never_overlap() -> None:
    for rows in _schedules(2000):
        assert rows
        by_day: defaultdict[int, list[tuple[int, int]]] = defaultdict(list)
        for row in rows:
            start, end = clock_seconds(row.start), clock_seconds(row.end)
            assert 0 <= row.day <= 6
            assert start < end
            by_day[row.day].append((start, end))
        for intervals in by_day.values():
            intervals.sort()
            # touching pieces (end == next start) occur in the real files too
            assert all(a[1] <= b[0] for a, b in itertools.pairwise(intervals))


def test_overnight_hours_are_split_at_midnight() -> None:
    overnight_stores = 0
    for rows in _schedules(2000):
        all_day = all(row.start == "00:00:00" and row.end.startswith("23:59") for row in rows)
        morning = [
            row for row in rows if row.start == "00:00:00" and clock_seconds(row.end) <= 6 * 3600
        ]
        if all_day or not morning:
            continue
        overnight_stores += 1
        for row in morning:  # [00:00:00, close] on d+1 goes with [open, 23:59:xx] on d
            previous = [r for r in rows if r.day == (row.day - 1) % 7]
            assert any(r.end.startswith("23:59") and r.start != "00:00:00" for r in previous)
    assert 0.10 <= overnight_stores / 2000 <= 0.25


def test_schedule_mix_looks_like_the_real_one() -> None:
    schedules = _schedules(3000)
    weekly = sorted(
        sum(clock_seconds(r.end) - clock_seconds(r.start) for r in rows) / 3600
        for rows in schedules
    )
    assert 76 <= weekly[len(weekly) // 2] <= 95
    all_week = sum(
        1
        for rows in schedules
        if len(rows) == 7 and all(r.start == "00:00:00" and r.end.startswith("23:59") for r in rows)
    )
    assert 0.08 <= all_week / len(schedules) <= 0.18
    split_days = Counter(
        count for rows in schedules for count in Counter(r.day for r in rows).values()
    )
    assert split_days[2] > 0
    assert split_days[3] > 0
    short_weeks = sum(1 for rows in schedules if len({r.day for r in rows}) < 7)
    assert 0.05 <= short_weeks / len(schedules) <= 0.3
    assert {r.end for rows in schedules for r in rows} >= {"23:59:59", "23:59:00"}


def test_zone_mix_and_rare_zones() -> None:
    zones = gen.assign_timezones(random.Random(9), 5000)
    counts = Counter(zones)
    assert 0.55 <= counts["America/New_York"] / 5000 <= 0.65
    assert 0.20 <= counts["America/Los_Angeles"] / 5000 <= 0.28
    assert 0.08 <= counts["America/Chicago"] / 5000 <= 0.14
    assert counts["Asia/Beirut"] == 1
    assert counts["Pacific/Honolulu"] == 1
    assert {"America/Phoenix", "America/Denver", "America/Boise"} <= set(counts)


def test_store_set_overlaps() -> None:
    stores = gen.make_stores(random.Random(4), 4000)
    polled = [s for s in stores if s.polled]
    ghosts = [s for s in stores if not s.polled]
    no_hours = sum(1 for s in polled if not s.hours) / len(polled)
    no_zone = sum(1 for s in polled if s.timezone is None) / len(polled)
    assert 0.17 <= no_hours <= 0.27
    assert 0.03 <= no_zone <= 0.06
    assert 0.01 <= len(ghosts) / len(stores) <= 0.03
    assert all(s.hours or s.timezone is not None for s in ghosts)


def test_unpolled_stores_appear_only_in_hours_or_zones() -> None:
    data = dataset(seed=8, n_stores=400)
    polled_ids = {store_id for store_id, _, _ in data.polls.rows()}
    listed = {sid for sid, *_ in gen.hours_rows(data.stores)} | {
        sid for sid, _ in gen.timezone_rows(data.stores)
    }
    ghosts = {s.store_id for s in data.stores if not s.polled}
    assert ghosts
    assert ghosts <= listed
    assert not ghosts & polled_ids
    assert polled_ids == {s.store_id for s in data.stores if s.polled}


# --------------------------------------------------------------------------- real input files


def test_stores_from_real_style_files(tmp_path: Path) -> None:
    hours_path = tmp_path / "hours.csv.gz"
    text = (
        "\ufeffstore_id,day,start_time_local,end_time_local\r\n"
        "111,0,10:00:00,22:00:00\r\n111,1,17:00:00,23:59:59\r\n111,2,00:00:00,01:00:00\r\n"
        "222,3,00:00:00,23:59:00"
    )
    hours_path.write_bytes(gzip.compress(text.encode()))
    zones_path = tmp_path / "tz.csv"
    zones_path.write_text(
        "store_id,timezone_str\n111,America/Denver\n333,Asia/Beirut\n333,America/Boise"
    )
    hours = gen.read_hours_file(hours_path)
    zones = gen.read_timezones_file(zones_path)
    assert hours["111"][1] == HoursRow("111", 1, 61_200, 86_399)
    assert zones == {"111": "America/Denver", "333": "America/Boise"}
    stores = gen.sample_stores(random.Random(1), 3, hours, zones)
    by_id = {s.store_id: s for s in stores}
    assert set(by_id) == {"111", "222", "333"}
    assert by_id["222"].timezone is None
    assert by_id["333"].hours == ()
    assert len(by_id["111"].hours) == 3
    with pytest.raises(ValueError, match="only 3"):
        gen.sample_stores(random.Random(1), 4, hours, zones)


# --------------------------------------------------------------------------- command line


def test_cli_writes_the_files_and_a_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    argv = ["generate", "--stores", "12", "--days", "2", "--seed", "3", "--out", str(out)]
    assert main([*argv, "--id-style", "numeric", "--end", "2024-10-14 23:55:18.727055"]) == 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("storemon generate: 12 stores")
    assert "\n" not in err
    lines = (out / "store_status.csv").read_text().splitlines()
    assert lines[0] == "store_id,status,timestamp_utc"
    assert lines[-1].endswith(",2024-10-14 23:55:18.727055 UTC")
    assert lines[1].split(",")[0].isdigit()
    assert main([*argv, "--hours", str(out / "menu_hours.csv")]) == 2
