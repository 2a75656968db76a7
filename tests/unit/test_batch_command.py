"""``storemon report`` on small hand-written data sets: the CSV it prints, what it says on
stderr, where rejected rows go, ``--as-of``, and its exit codes."""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from storemon.cli import main

HEADER = (
    "store_id,uptime_last_hour,uptime_last_day,uptime_last_week,"
    "downtime_last_hour,downtime_last_day,downtime_last_week"
)
VALUE = re.compile(r"\d+\.\d\d")

POLL_HEADER = "store_id,status,timestamp_utc"
HOURS_HEADER = "store_id,day,start_time_local,end_time_local"
ZONE_HEADER = "store_id,timezone_str"


def write_dataset(
    folder: Path,
    polls: Sequence[str],
    hours: Sequence[str] = (),
    zones: Sequence[str] = (),
    *,
    hours_header: str = HOURS_HEADER,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, header, lines in (
        ("store_status.csv", POLL_HEADER, polls),
        ("menu_hours.csv", hours_header, hours),
        ("timezones.csv", ZONE_HEADER, zones),
    ):
        (folder / name).write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    return folder


def run_report(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = main(["report", *(str(a) for a in args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def rows_of(report: str) -> list[list[str]]:
    lines = report.splitlines()
    assert lines[0] == HEADER
    return [line.split(",") for line in lines[1:]]


def by_store(report: str) -> dict[str, list[str]]:
    return {row[0]: row[1:] for row in rows_of(report)}


# Ids whose string order differs from their numeric order, plus a UUID and a 19-digit id.
IDS = [
    "9",
    "10",
    "100",
    "9222367421889482050",
    "1481966498820158979",
    "0fd61b1a-6bd1-4de2-9a4f-6c0e2c2c5a53",
]
AS_OF = "2023-01-25 18:00:00"


def mixed_dataset(folder: Path) -> Path:
    """Six stores open 24x7 (no hours rows), a store with hours, each polled a few times."""
    polls = []
    for i, store in enumerate(IDS):
        polls.append(f"{store},active,2023-01-25 17:{10 + i}:00 UTC")
        polls.append(f"{store},{'inactive' if i % 2 else 'active'},2023-01-25 12:{10 + i}:00.5 UTC")
        polls.append(f"{store},active,2023-01-20 08:00:00.123 UTC")
    polls.append("shop-hours,active,2023-01-25 15:30:00 UTC")
    hours = ["shop-hours,2,09:00:00,17:00:00"]  # Wednesday; 2023-01-25 is a Wednesday
    zones = ["shop-hours,America/New_York", "9,Asia/Kathmandu"]
    return write_dataset(folder, polls, hours, zones)


def test_header_sorting_and_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_report(capsys, "--data", mixed_dataset(tmp_path / "d"), "--as-of", AS_OF)
    assert code == 0
    assert out.splitlines()[0] == HEADER
    rows = rows_of(out)
    ids = [row[0] for row in rows]
    assert ids == sorted([*IDS, "shop-hours"])  # string order
    assert ids != sorted(ids, key=lambda s: int(s) if s.isdigit() else -1)  # not numeric order
    assert ids.index("10") < ids.index("100") < ids.index("9")
    for row in rows:
        assert len(row) == 7
        assert all(VALUE.fullmatch(v) for v in row[1:]), row
    # a 24x7 store polled at 17:1x only active in the last hour: 60 minutes up
    assert by_store(out)["100"][0] == "60.00"
    # the store with hours: Wednesday 09:00-17:00 New York = 14:00-22:00 UTC, as_of 18:00
    # UTC, one active poll at 15:30 UTC: up from 14:00 to 18:00, 4 hours in the day and week
    assert by_store(out)["shop-hours"] == ["60.00", "4.00", "4.00", "0.00", "0.00", "0.00"]


def test_report_is_exactly_what_the_contract_gives(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 24x7 store in UTC; polls at 00:00 (inactive) and 12:00 (active), as_of 18:00 that day:
    # down 00:00-06:00 (plus the week back to the first poll), up 06:00-18:00.
    folder = write_dataset(
        tmp_path / "d",
        ["s,inactive,2023-01-25 00:00:00 UTC", "s,active,2023-01-25 12:00:00 UTC"],
        zones=["s,UTC"],
    )
    code, out, _ = run_report(capsys, "--data", folder, "--as-of", AS_OF)
    assert code == 0
    # one endless session: the first poll holds back to the start of every window, so the
    # day [01-24 18:00, 01-25 18:00) is down 12 h (to the 06:00 midpoint) and up 12 h, and the
    # week [01-18 18:00, 01-25 18:00) is down 6.5 days = 156 h and up 12 h
    assert by_store(out)["s"] == ["60.00", "12.00", "12.00", "0.00", "12.00", "156.00"]


def test_two_decimals_round_half_up(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 24x7 UTC store, inactive at 17:00:00 and active at 17:00:36: the midpoint is 17:00:18,
    # so in the last hour [17:00, 18:00) down is 18 s = 0.30 min, up 59.70 min;
    # in the day the first poll holds back to 2023-01-24 18:00: down 23 h + 18 s = 23.005 h
    # -> 23.01 (half up), up 0.995 h -> 1.00
    folder = write_dataset(
        tmp_path / "d",
        ["s,inactive,2023-01-25 17:00:00 UTC", "s,active,2023-01-25 17:00:36 UTC"],
        zones=["s,UTC"],
    )
    _, out, _ = run_report(capsys, "--data", folder, "--as-of", AS_OF)
    assert by_store(out)["s"] == ["59.70", "1.00", "1.00", "0.30", "23.01", "167.01"]


def test_store_polled_only_after_as_of_is_absent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_dataset(
        tmp_path / "d",
        [
            "early,active,2023-01-25 17:00:00 UTC",
            "late,active,2023-01-25 18:00:00.000001 UTC",
            "late,inactive,2023-01-26 00:00:00 UTC",
            "edge,inactive,2023-01-25 18:00:00 UTC",  # exactly at T: in the report
        ],
    )
    code, out, err = run_report(capsys, "--data", folder, "--as-of", AS_OF)
    assert code == 0
    report = by_store(out)
    assert set(report) == {"early", "edge"}
    assert "2 stores" in err
    assert "4 polls" in err
    # without --as-of the newest poll is T and every store is in
    code, out, err = run_report(capsys, "--data", folder)
    assert set(by_store(out)) == {"early", "late", "edge"}
    assert "as_of 2023-01-26 00:00:00.000000 UTC" in err


def test_polls_after_as_of_are_not_used(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["s,active,2023-01-25 17:00:00 UTC"]
    later = ["s,inactive,2023-01-25 18:00:01 UTC", "s,inactive,2023-01-25 19:00:00 UTC"]
    a = write_dataset(tmp_path / "a", base, zones=["s,UTC"])
    b = write_dataset(tmp_path / "b", base + later, zones=["s,UTC"])
    _, out_a, _ = run_report(capsys, "--data", a, "--as-of", AS_OF)
    _, out_b, _ = run_report(capsys, "--data", b, "--as-of", AS_OF)
    assert out_a == out_b


def test_store_with_only_out_of_hours_polls_has_zeros(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_dataset(
        tmp_path / "d",
        [
            "closed,inactive,2023-01-25 08:00:00 UTC",  # Wednesday, before opening
            "closed,inactive,2023-01-24 23:30:00 UTC",  # Tuesday: no hours that day
            "closed,active,2023-01-25 12:00:00 UTC",  # exactly at closing: outside
        ],
        hours=["closed,2,09:00:00,12:00:00"],
        zones=["closed,UTC"],
    )
    code, out, _ = run_report(capsys, "--data", folder, "--as-of", AS_OF)
    assert code == 0
    assert by_store(out) == {"closed": ["0.00"] * 6}


@pytest.mark.parametrize(
    "as_of",
    [
        "2023-01-25 18:00:00",
        "2023-01-25 18:00:00 UTC",
        "2023-01-25 18:00:00.000000",
        "2023-01-25T18:00:00Z",
        "2023-01-25T13:00:00-05:00",
        "2023-01-25T23:45:00+05:45",
    ],
)
def test_as_of_forms_agree(tmp_path: Path, capsys: pytest.CaptureFixture[str], as_of: str) -> None:
    folder = mixed_dataset(tmp_path / "d")
    code, out, err = run_report(capsys, "--data", folder, "--as-of", as_of)
    assert code == 0
    assert "as_of 2023-01-25 18:00:00.000000 UTC" in err
    _, reference, _ = run_report(capsys, "--data", folder, "--as-of", AS_OF)
    assert out == reference


def test_stderr_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_dataset(
        tmp_path / "d",
        [
            "1,active,2023-01-25 17:00:00 UTC",
            "1,active,2023-01-25 16:00:00 UTC",
            "2,inactive,2023-01-25 17:00:00 UTC",
            "2,up,2023-01-25 17:00:00 UTC",
            "3,active,yesterday",
            "3,active,2023-01-25 25:00:00 UTC",
            "2.57E+14,active,2023-01-25 17:00:00 UTC",
        ],
        hours=["1,9,09:00,17:00", "2,0,09:00,17:00"],
        zones=["1,Mars/Olympus", "2,UTC"],
    )
    code, out, err = run_report(capsys, "--data", folder, "--as-of", AS_OF)
    assert code == 0
    assert set(by_store(out)) == {"1", "2"}
    assert re.search(
        r"^as_of 2023-01-25 18:00:00\.000000 UTC: 2 stores, 3 polls, 6 rows rejected", err, re.M
    )
    reasons = re.findall(r"^  rejected (\w+): ([^:]+): (\d+)$", err, re.M)
    assert sorted(reasons) == [
        ("hours", "bad day", "1"),
        ("polls", "bad status", "1"),
        ("polls", "bad store_id", "1"),
        ("polls", "bad timestamp", "2"),
        ("timezones", "unknown zone", "1"),
    ]


GOOD_POLLS = [
    "1,active,2023-01-25 17:00:00 UTC",
    "1,inactive,2023-01-25 11:00:00 UTC",
    "2,inactive,2023-01-25 17:30:00 UTC",
    "2,active,2023-01-24 17:30:00.25 UTC",
    "3,active,2023-01-21 10:00:00 UTC",
]
BAD_POLLS = [
    "1,up,2023-01-25 17:00:00 UTC",
    "2,active,2023-02-30 10:00:00 UTC",
    "4,active",
    "8.13992624246019E+018,active,2023-01-25 17:00:00 UTC",
]
GOOD_HOURS = ["1,2,09:00:00,17:00:00", "1,1,00:00:00,23:59:59", "2,2,12:00:00,18:00:00"]
BAD_HOURS = ["2,7,09:00:00,17:00:00", "3,2,09:00:00,25:00:00"]
GOOD_ZONES = ["1,America/New_York", "2,UTC"]
BAD_ZONES = ["3,america/new_york", "1,"]


def interleave(good: list[str], bad: list[str]) -> list[str]:
    out: list[str] = []
    for i in range(max(len(good), len(bad))):
        out += bad[i : i + 1] + good[i : i + 1]
    return out


@pytest.mark.parametrize("explicit_rejects", [False, True])
def test_bad_rows_go_to_the_rejects_file_and_good_rows_still_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], explicit_rejects: bool
) -> None:
    clean = write_dataset(tmp_path / "clean", GOOD_POLLS, GOOD_HOURS, GOOD_ZONES)
    dirty = write_dataset(
        tmp_path / "dirty",
        interleave(GOOD_POLLS, BAD_POLLS),
        interleave(GOOD_HOURS, BAD_HOURS),
        interleave(GOOD_ZONES, BAD_ZONES),
    )
    out_clean, out_dirty = tmp_path / "out" / "clean.csv", tmp_path / "out" / "dirty.csv"
    code, _, err_clean = run_report(capsys, "--data", clean, "--as-of", AS_OF, "--out", out_clean)
    assert code == 0
    assert "0 rows rejected" in err_clean
    assert not (tmp_path / "out" / "clean.csv.rejected.csv").exists()

    args: list[str | Path] = ["--data", dirty, "--as-of", AS_OF, "--out", out_dirty]
    rejects = tmp_path / "elsewhere" / "bad.csv"
    if explicit_rejects:
        rejects.parent.mkdir()
        args += ["--rejects", rejects]
    else:
        rejects = tmp_path / "out" / "dirty.csv.rejected.csv"
    code, stdout, err = run_report(capsys, *args)
    assert code == 0
    assert stdout == ""
    assert out_dirty.read_text(encoding="utf-8") == out_clean.read_text(encoding="utf-8")
    assert "5 polls" in err
    assert f"{len(BAD_POLLS) + len(BAD_HOURS) + len(BAD_ZONES)} rows rejected" in err
    assert str(rejects) in err

    with rejects.open(encoding="utf-8", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert list(table[0]) == ["source", "reason", "detail", "record"]
    assert all(row["detail"] for row in table)
    got = sorted(
        (row["source"], row["reason"], json.dumps(json.loads(row["record"]), sort_keys=True))
        for row in table
    )

    def record(header: str, line: str) -> str:
        return json.dumps(
            dict(zip(header.split(","), line.split(","), strict=False)), sort_keys=True
        )

    expected = sorted(
        [
            ("polls", "bad status", record(POLL_HEADER, BAD_POLLS[0])),
            ("polls", "bad timestamp", record(POLL_HEADER, BAD_POLLS[1])),
            ("polls", "wrong field count", record(POLL_HEADER, BAD_POLLS[2])),
            ("polls", "bad store_id", record(POLL_HEADER, BAD_POLLS[3])),
            ("hours", "bad day", record(HOURS_HEADER, BAD_HOURS[0])),
            ("hours", "bad time", record(HOURS_HEADER, BAD_HOURS[1])),
            ("timezones", "unknown zone", record(ZONE_HEADER, BAD_ZONES[0])),
            ("timezones", "unknown zone", record(ZONE_HEADER, BAD_ZONES[1])),
        ]
    )
    assert got == expected


def test_rejects_file_with_report_on_stdout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_dataset(tmp_path / "d", [*GOOD_POLLS, *BAD_POLLS])
    rejects = tmp_path / "rejects.csv"
    code, out, err = run_report(capsys, "--data", folder, "--as-of", AS_OF, "--rejects", rejects)
    assert code == 0
    assert out.startswith(HEADER + "\n")
    with rejects.open(encoding="utf-8", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == len(BAD_POLLS)
    assert "report written" not in err


def test_gzipped_inputs_with_bom_and_crlf_give_the_same_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = write_dataset(tmp_path / "plain", GOOD_POLLS, GOOD_HOURS, GOOD_ZONES)
    packed = tmp_path / "packed"
    packed.mkdir()
    for src in plain.iterdir():
        text = src.read_text(encoding="utf-8").replace("\n", "\r\n").rstrip("\r\n")
        if src.name == "menu_hours.csv":
            text = text.replace(",day,", ",dayOfWeek,", 1)
        (packed / (src.name + ".gz")).write_bytes(gzip.compress(("\ufeff" + text).encode()))
    _, a, _ = run_report(capsys, "--data", plain, "--as-of", AS_OF)
    _, b, _ = run_report(capsys, "--data", packed, "--as-of", AS_OF)
    assert a == b
    assert len(rows_of(a)) == 3


@pytest.mark.parametrize("missing", ["store_status", "menu_hours", "timezones"])
def test_missing_input_file_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], missing: str
) -> None:
    folder = write_dataset(tmp_path / "d", GOOD_POLLS)
    (folder / f"{missing}.csv").unlink()
    code, out, err = run_report(capsys, "--data", folder)
    assert code == 2
    assert out == ""
    assert err.startswith("storemon report: ")
    assert f"{missing}.csv" in err
    assert str(folder) in err


def test_missing_folder_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "no such folder"
    code, out, err = run_report(capsys, "--data", folder, "--out", tmp_path / "r.csv")
    assert code == 2
    assert out == ""
    assert str(folder) in err
    assert not (tmp_path / "r.csv").exists()


@pytest.mark.parametrize(
    "as_of", ["yesterday", "2023-01-25", "2023-02-30 10:00:00", "2023-01-25T18:00:00", "18:00"]
)
def test_bad_as_of_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], as_of: str) -> None:
    folder = write_dataset(tmp_path / "d", GOOD_POLLS)
    code, out, err = run_report(
        capsys, "--data", folder, "--as-of", as_of, "--out", tmp_path / "r.csv"
    )
    assert code == 2
    assert out == ""
    assert err.startswith("storemon report: as_of")
    assert repr(as_of) in err
    assert not (tmp_path / "r.csv").exists()


def test_no_valid_poll_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_dataset(tmp_path / "d", ["1,up,2023-01-25 10:00:00 UTC"])
    code, out, err = run_report(capsys, "--data", folder)
    assert code == 2
    assert out == ""
    assert "no valid poll" in err


def test_missing_poll_column_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_dataset(tmp_path / "d", [])
    (folder / "store_status.csv").write_text(
        "store_id,state,timestamp_utc\n1,active,2023-01-25 10:00:00 UTC\n", encoding="utf-8"
    )
    code, _, err = run_report(capsys, "--data", folder)
    assert code == 2
    assert "missing column" in err
    assert "status" in err


def test_worked_example_of_the_contract(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """docs/semantics.md section 8: open Monday 09:00-12:00 local; 10:14 active, 11:15 inactive."""
    # Monday 2023-01-23 in New York (UTC-5): 10:14 local = 15:14 UTC, 11:15 local = 16:15 UTC
    folder = write_dataset(
        tmp_path / "d",
        ["ex,active,2023-01-23 15:14:00 UTC", "ex,inactive,2023-01-23 16:15:00 UTC"],
        hours=["ex,0,09:00:00,12:00:00"],
        zones=["ex,America/New_York"],
    )
    # T later that day: 20:00 local
    code, out, _ = run_report(capsys, "--data", folder, "--as-of", "2023-01-23T20:00:00-05:00")
    assert code == 0
    assert out == f"{HEADER}\nex,0.00,1.74,1.74,0.00,1.26,1.26\n"


def test_subprocess_entry_point(tmp_path: Path) -> None:
    folder = write_dataset(tmp_path / "d", GOOD_POLLS, GOOD_HOURS, GOOD_ZONES)
    done = subprocess.run(
        [sys.executable, "-m", "storemon", "report", "--data", str(folder), "--as-of", AS_OF],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert [row[0] for row in csv.reader(io.StringIO(done.stdout))][1:] == ["1", "2", "3"]
    assert "3 stores, 5 polls, 0 rows rejected" in done.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "storemon", "report", "--data", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr
    assert "nope" in bad.stderr


# --------------------------------------------------------------------------- core bugs


def test_undecodable_row_is_a_rejection_not_the_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_dataset(tmp_path / "d", [])
    (folder / "store_status.csv").write_bytes(
        b"store_id,status,timestamp_utc\n"
        b"1,active,2023-01-25 10:00:00 UTC\n"
        b"2,act\xe9ve,2023-01-25 10:00:00 UTC\n"  # Latin-1 e-acute
        b"3,active,2023-01-25 11:00:00 UTC\n"
    )
    code, out, err = run_report(capsys, "--data", folder)
    assert code == 0, err
    assert set(by_store(out)) == {"1", "3"}
    assert "1 rows rejected" in err


def test_truncated_gzip_is_reported_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_dataset(tmp_path / "d", [])
    (folder / "store_status.csv").unlink()
    body = (
        POLL_HEADER + "\n" + "".join(f"{i},active,2023-01-25 10:00:00 UTC\n" for i in range(5000))
    )
    packed = gzip.compress(body.encode())
    (folder / "store_status.csv.gz").write_bytes(packed[: len(packed) // 2])
    code, _, err = run_report(capsys, "--data", folder)  # must not raise
    assert code in (0, 2)
    assert "store_status.csv.gz" in err or "rejected" in err


def test_stray_quote_in_a_big_file_is_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = ['"1,active,2023-01-25 10:00:00 UTC'] + [
        f"{i},active,2023-01-25 10:00:00 UTC" for i in range(10_000)
    ]
    folder = write_dataset(tmp_path / "d", ["0,active,2023-01-25 09:00:00 UTC", *lines])
    code, _, err = run_report(capsys, "--data", folder)  # must not raise
    assert code in (0, 2)
    assert "store_status.csv" in err or "rejected" in err


def test_a_store_whose_zone_rows_are_all_bad_keeps_the_default_zone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its id is in the zones file, but no row of it is valid: America/Chicago, as for a
    store without a row (not the file's first valid zone, as once happened)."""
    stores = ["tokyo", "unknown", "absent", "chicago", "valid-then-unknown"]
    hours = [f"{s},0,09:00:00,17:00:00" for s in stores]  # Mondays
    polls = [f"{s},inactive,2023-01-23 16:00:00 UTC" for s in stores]  # 10:00 in Chicago
    zones = [
        "tokyo,Asia/Tokyo",
        "unknown,Not/A_Zone",
        "chicago,America/Chicago",
        "valid-then-unknown,America/Chicago",
        "valid-then-unknown,Mars/Olympus_Mons",
    ]
    data = write_dataset(tmp_path / "set", polls, hours, zones)
    code, out, _ = run_report(capsys, "--data", data, "--as-of", "2023-01-24 00:00:00")
    assert code == 0
    values = {row[0]: row[1:] for row in rows_of(out)}
    chicago_day = ["0.00", "0.00", "0.00", "0.00", "8.00", "8.00"]  # 09:00-17:00 down
    for store in ("unknown", "absent", "chicago", "valid-then-unknown"):
        assert values[store] == chicago_day, store
    assert values["tokyo"] == [
        "0.00",
        "0.00",
        "0.00",
        "0.00",
        "0.00",
        "0.00",
    ]  # not polled in hours
