"""Reading the CSV files in every shape they come in: plain or gzipped, BOM, CRLF, no final
newline, blank lines, rows with the wrong number of fields, missing columns."""

from __future__ import annotations

import calendar
import gzip
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from storemon.aggregates.records import HoursRow, Poll, Rejection, ZoneRow
from storemon.sources import find_input, open_text, read_hours, read_polls, read_zones

US = 1_000_000


def epoch_us(text: str) -> int:
    """Independent reading of ``YYYY-MM-DD HH:MM:SS[.f] UTC`` (test data only)."""
    clock, fraction = text.removesuffix(" UTC"), ""
    if "." in clock:
        clock, fraction = clock.split(".")
    date_part, time_part = clock.split(" ")
    y, mo, d = (int(x) for x in date_part.split("-"))
    h, mi, s = (int(x) for x in time_part.split(":"))
    return calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0)) * US + int(fraction.ljust(6, "0") or 0)


@dataclass(frozen=True)
class Shape:
    """How a file is written: compression, byte-order mark, line ending, final newline, and
    blank lines sprinkled between the rows."""

    gz: bool
    bom: bool
    crlf: bool
    final_newline: bool
    blank_lines: bool

    @property
    def suffix(self) -> str:
        return ".csv.gz" if self.gz else ".csv"

    def __str__(self) -> str:
        flags = [
            "gz" if self.gz else "plain",
            "bom" if self.bom else "",
            "crlf" if self.crlf else "lf",
            "" if self.final_newline else "no-final-nl",
            "blanks" if self.blank_lines else "",
        ]
        return "-".join(f for f in flags if f)


SHAPES = [Shape(*flags) for flags in itertools.product([False, True], repeat=5)]


def write_csv(directory: Path, stem: str, lines: Iterable[str], shape: Shape) -> Path:
    lines = list(lines)
    if shape.blank_lines:
        spaced: list[str] = []
        for i, line in enumerate(lines):
            spaced.append(line)
            if i % 2 == 0:
                spaced.append("")
        lines = spaced
    newline = "\r\n" if shape.crlf else "\n"
    text = newline.join(lines) + (newline if shape.final_newline else "")
    data = ("\ufeff" if shape.bom else "").encode() + text.encode()
    path = directory / f"{stem}{shape.suffix}"
    path.write_bytes(gzip.compress(data) if shape.gz else data)
    return path


POLL_LINES = [
    "store_id,status,timestamp_utc",
    "9222367421889482050,active,2023-01-25 18:13:22.47922 UTC",
    "fd61b1a3-6bd1-4de2-9a4f-6c0e2c2c5a53,inactive,2024-10-14 23:55:18.727055 UTC",
    "1481966498820158979,active,2023-01-25 18:13:22 UTC,extra",  # wrong field count
    "2.57E+14,active,2023-01-18 13:31:00.5 UTC",  # Excel-mangled id
    "100,up,2023-01-18 13:31:00 UTC",  # bad status
    "100,active,2023-02-30 13:31:00 UTC",  # bad timestamp
    "100,active",  # wrong field count
    "100, INACTIVE ,2023-01-18 13:31:00.1 UTC",
    "0042,Active,2023-01-18T13:31:00+05:45",
]
GOOD_POLLS = [
    Poll("9222367421889482050", epoch_us("2023-01-25 18:13:22.47922 UTC"), True),
    Poll("fd61b1a3-6bd1-4de2-9a4f-6c0e2c2c5a53", epoch_us("2024-10-14 23:55:18.727055 UTC"), False),
    Poll("100", epoch_us("2023-01-18 13:31:00.1 UTC"), False),
    Poll("0042", epoch_us("2023-01-18 07:46:00 UTC"), True),
]
BAD_POLLS = [
    ("wrong field count", "1481966498820158979"),
    ("bad store_id", "2.57E+14"),
    ("bad status", "100"),
    ("bad timestamp", "100"),
    ("wrong field count", "100"),
]


def split(results: Iterable[object]) -> tuple[list[object], list[Rejection]]:
    good: list[object] = []
    bad: list[Rejection] = []
    for r in results:
        if isinstance(r, Rejection):
            bad.append(r)
        else:
            good.append(r)
    return good, bad


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_polls_in_every_shape(tmp_path: Path, shape: Shape) -> None:
    path = write_csv(tmp_path, "store_status", POLL_LINES, shape)
    good, bad = split(read_polls(path))
    assert good == GOOD_POLLS
    assert [(r.reason, r.record.get("store_id")) for r in bad] == BAD_POLLS
    assert all(r.source == "polls" and r.detail for r in bad)


def test_poll_rejections_keep_the_record_and_say_why(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "store_status", POLL_LINES, SHAPES[0])
    _, bad = split(read_polls(path))
    by_reason = {r.reason: r for r in bad}
    assert dict(by_reason["bad status"].record) == {
        "store_id": "100",
        "status": "up",
        "timestamp_utc": "2023-01-18 13:31:00 UTC",
    }
    short = bad[-1]
    assert short.reason == "wrong field count"
    assert dict(short.record) == {"store_id": "100", "status": "active"}
    assert "3" in short.detail
    assert "2" in short.detail


@pytest.mark.parametrize(
    ("reader", "header", "row"),
    [
        (read_polls, "store_id,status,timestamp_utc", "7,active,2023-01-25 10:00:00 UTC,EXTRA"),
        (read_hours, "store_id,day,start_time_local,end_time_local", "7,0,09:00,10:00,EXTRA"),
        (read_zones, "store_id,timezone_str", "7,America/Chicago,EXTRA"),
    ],
)
def test_rejection_of_a_long_row_keeps_every_field(
    tmp_path: Path, reader: Callable[[Path], Iterator[object]], header: str, row: str
) -> None:
    path = tmp_path / "f.csv"
    path.write_text(f"{header}\n{row}\n", encoding="utf-8")
    [rejection] = list(reader(path))
    assert isinstance(rejection, Rejection)
    assert rejection.reason == "wrong field count"
    assert "EXTRA" in rejection.record.values()


@pytest.mark.parametrize(
    "header",
    [
        "store_id,status,timestamp_utc",
        "timestamp_utc,store_id,status",
        " status , timestamp_utc , store_id ",
        "status,extra,store_id,timestamp_utc",
    ],
)
def test_poll_columns_in_any_order(tmp_path: Path, header: str) -> None:
    names = [n.strip() for n in header.split(",")]
    values = {
        "store_id": "77",
        "status": "inactive",
        "timestamp_utc": "2023-01-20 01:02:03.4 UTC",
        "extra": "x",
    }
    path = tmp_path / "store_status.csv"
    path.write_text(header + "\n" + ",".join(values[n] for n in names) + "\n", encoding="utf-8")
    assert list(read_polls(path)) == [Poll("77", epoch_us("2023-01-20 01:02:03.4 UTC"), False)]


@pytest.mark.parametrize(
    ("header", "missing"),
    [
        ("store_id,status", "timestamp_utc"),
        ("store_id,timestamp_utc", "status"),
        ("status,timestamp_utc", "store_id"),
        ("id,state,time", "store_id"),
        ("", "store_id"),
    ],
)
@pytest.mark.parametrize("gz", [False, True])
def test_polls_missing_column_is_a_clear_error(
    tmp_path: Path, header: str, missing: str, gz: bool
) -> None:
    shape = Shape(gz=gz, bom=True, crlf=False, final_newline=True, blank_lines=False)
    lines = [header, "1,active,2023-01-25 10:00:00 UTC"] if header else []
    path = write_csv(tmp_path, "store_status", lines, shape)
    with pytest.raises(ValueError, match="missing column") as info:
        list(read_polls(path))
    assert missing in str(info.value)
    assert str(path) in str(info.value)


def test_empty_poll_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "store_status.csv"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="missing column"):
        list(read_polls(path))


def test_header_only_poll_file_has_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "store_status.csv"
    path.write_text("store_id,status,timestamp_utc", encoding="utf-8")
    assert list(read_polls(path)) == []


HOURS_2023 = [
    "store_id,day,start_time_local,end_time_local",
    "1481966498820158979,0,00:00:00,00:10:00",
    "1481966498820158979,0,11:00:00,23:59:00",
    "9222367421889482050,6,09:00:00,23:59:59",
    "9222367421889482050,7,09:00:00,17:00:00",  # bad day
    "9222367421889482050,5,09:00:00,25:00:00",  # bad time
    "9222367421889482050,5,09:00:00",  # wrong field count
    "8.13992624246019E+018,1,09:00:00,17:00:00",  # bad store_id
    "5,3,9:30,24:00",
]
GOOD_HOURS_2023 = [
    HoursRow("1481966498820158979", 0, 0, 600),
    HoursRow("1481966498820158979", 0, 39600, 86340),
    HoursRow("9222367421889482050", 6, 32400, 86399),
    HoursRow("5", 3, 34200, 86400),
]
BAD_HOURS = ["bad day", "bad time", "wrong field count", "bad store_id"]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("day_column", ["day", "dayOfWeek"])
def test_hours_in_every_shape(tmp_path: Path, shape: Shape, day_column: str) -> None:
    lines = [HOURS_2023[0].replace(",day,", f",{day_column},"), *HOURS_2023[1:]]
    path = write_csv(tmp_path, "menu_hours", lines, shape)
    good, bad = split(read_hours(path))
    assert good == GOOD_HOURS_2023
    assert [r.reason for r in bad] == BAD_HOURS
    assert all(r.source == "hours" and r.detail for r in bad)
    assert bad[0].record == {
        "store_id": "9222367421889482050",
        day_column: "7",
        "start_time_local": "09:00:00",
        "end_time_local": "17:00:00",
    }


def test_hours_file_without_time_columns_rejects_every_row(tmp_path: Path) -> None:
    path = tmp_path / "menu_hours.csv"
    path.write_text("store_id,day\n1,0\n2,3\n", encoding="utf-8")
    good, bad = split(read_hours(path))
    assert good == []
    assert [r.reason for r in bad] == ["bad time", "bad time"]


ZONE_LINES = [
    "store_id,timezone_str",
    "9222367421889482050,America/New_York",
    "fd61b1a3-6bd1-4de2-9a4f-6c0e2c2c5a53,US/Eastern",
    "1,america/new_york",  # case matters
    "2,",  # empty
    "3,Asia/Beirut,x",  # wrong field count
    "4,Pacific/Honolulu",
]
GOOD_ZONES = [
    ZoneRow("9222367421889482050", "America/New_York"),
    ZoneRow("fd61b1a3-6bd1-4de2-9a4f-6c0e2c2c5a53", "US/Eastern"),
    ZoneRow("4", "Pacific/Honolulu"),
]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_zones_in_every_shape(tmp_path: Path, shape: Shape) -> None:
    path = write_csv(tmp_path, "timezones", ZONE_LINES, shape)
    good, bad = split(read_zones(path))
    assert good == GOOD_ZONES
    assert [(r.reason, r.record["store_id"]) for r in bad] == [
        ("unknown zone", "1"),
        ("unknown zone", "2"),
        ("wrong field count", "3"),
    ]
    assert all(r.source == "timezones" for r in bad)


def test_quoted_fields_with_commas_and_newlines(tmp_path: Path) -> None:
    path = tmp_path / "store_status.csv"
    path.write_text(
        'store_id,status,timestamp_utc\n"1",active,"2023-01-25 10:00:00 UTC"\n'
        '"a,b",active,2023-01-25 10:00:00 UTC\n"x\ny",inactive,2023-01-25 11:00:00 UTC\n',
        encoding="utf-8",
    )
    t10, t11 = epoch_us("2023-01-25 10:00:00 UTC"), epoch_us("2023-01-25 11:00:00 UTC")
    assert list(read_polls(path)) == [
        Poll("1", t10, True),
        Poll("a,b", t10, True),
        Poll("x\ny", t11, False),
    ]


@pytest.mark.parametrize("shape", [s for s in SHAPES if not s.blank_lines], ids=str)
def test_open_text_gives_the_same_text_in_every_shape(tmp_path: Path, shape: Shape) -> None:
    path = write_csv(tmp_path, "any", ["a,b", "1,2"], shape)
    with open_text(path) as handle:
        text = handle.read()
    assert not text.startswith("\ufeff")
    assert text.splitlines() == ["a,b", "1,2"]


# --------------------------------------------------------------------------- find_input


@pytest.mark.parametrize(
    ("present", "chosen"),
    [
        (["menu_hours.csv"], "menu_hours.csv"),
        (["menu_hours.csv.gz"], "menu_hours.csv.gz"),
        (["menu_hours.csv", "menu_hours.csv.gz"], "menu_hours.csv"),
        (["menu_hours.csv.gz", "menu_hours.csv", "menu_hours.txt"], "menu_hours.csv"),
        (["menu_hours.csv.gz", "other.csv"], "menu_hours.csv.gz"),
    ],
)
def test_find_input_prefers_plain_csv(tmp_path: Path, present: list[str], chosen: str) -> None:
    for name in present:
        (tmp_path / name).write_bytes(b"")
    assert find_input(tmp_path, "menu_hours") == tmp_path / chosen


@pytest.mark.parametrize(
    "present", [[], ["menu_hours.txt", "menu_hours.gz", "Menu_hours.csv", "timezones.csv"]]
)
def test_find_input_names_the_folder_when_nothing_is_there(
    tmp_path: Path, present: list[str]
) -> None:
    folder = tmp_path / "input folder"
    folder.mkdir()
    for name in present:
        (folder / name).write_bytes(b"")
    with pytest.raises(FileNotFoundError) as info:
        find_input(folder, "menu_hours")
    message = str(info.value)
    assert str(folder) in message
    assert "menu_hours.csv" in message
    assert "menu_hours.csv.gz" in message


def test_find_input_in_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        find_input(tmp_path / "nowhere", "store_status")
