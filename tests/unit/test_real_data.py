"""``storemon report`` on the real (partial) Loop data sets in ``shared/data``.

The data is read where it lies (never copied into the repo); the whole module is skipped
when ``shared/data`` is absent. Every expectation is computed from the files themselves.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import re
import shutil
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest

from storemon.cli import main

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"

pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"real data not present at {DATA}")

HEADER = [
    "store_id",
    "uptime_last_hour",
    "uptime_last_day",
    "uptime_last_week",
    "downtime_last_hour",
    "downtime_last_day",
    "downtime_last_week",
]
VALUE = re.compile(r"\d+\.\d\d")
STAMP = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(?:\.(\d{1,6}))? UTC")
ROUNDING = Decimal("0.01")  # two values, each rounded to the nearest 0.01 (half up)

# name -> (folder, status file in it): the folder's files are given the standard names
CASES = {
    "loop-2023-union": ("loop-2023", "store_status_union_partials.csv.gz"),
    "loop-2023": ("loop-2023", "store_status.csv.gz"),
    "loop-2024": ("loop-2024", "store_status.csv.gz"),
}


@dataclass(frozen=True)
class Run:
    status_file: Path
    code: int
    report: list[list[str]]
    stderr: str
    out: Path


def standard_folder(tmp: Path, folder: Path, status_name: str) -> Path:
    """The folder as the command expects it; a copy only when the status file is renamed."""
    if status_name == "store_status.csv.gz":
        return folder
    target = tmp / folder.name
    target.mkdir()
    shutil.copyfile(folder / status_name, target / "store_status.csv.gz")
    for name in ("menu_hours.csv.gz", "timezones.csv.gz"):
        shutil.copyfile(folder / name, target / name)
    return target


@pytest.fixture(scope="module", params=list(CASES))
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Run:
    folder_name, status_name = CASES[request.param]
    folder = DATA / folder_name
    needed = [status_name, "menu_hours.csv.gz", "timezones.csv.gz"]
    if not all((folder / name).is_file() for name in needed):
        pytest.skip(f"{folder} lacks one of {needed}")
    tmp = tmp_path_factory.mktemp(request.param)
    data = standard_folder(tmp, folder, status_name)
    out = tmp / "report.csv"
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        code = main(["report", "--data", str(data), "--out", str(out)])
    report: list[list[str]] = []
    if out.exists():
        with out.open(encoding="utf-8", newline="") as handle:
            report = list(csv.reader(handle))
    return Run(folder / status_name, code, report, stderr.getvalue(), out)


def status_rows(path: Path) -> list[dict[str, str]]:
    with gzip.open(path, "rt", encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def independent_max_timestamp(rows: list[dict[str, str]]) -> str:
    """The newest timestamp of the file, read without the core, in ``format_utc``'s form."""
    newest: datetime | None = None
    for row in rows:
        match = STAMP.fullmatch(row["timestamp_utc"])
        assert match is not None, row
        moment = datetime.strptime(  # noqa: DTZ007 - all of them UTC, compared as such
            f"{match[1]}.{(match[2] or '').ljust(6, '0')}", "%Y-%m-%d %H:%M:%S.%f"
        )
        newest = moment if newest is None or moment > newest else newest
    assert newest is not None
    return newest.strftime("%Y-%m-%d %H:%M:%S.%f UTC")


def test_runs_without_rejections(run: Run) -> None:
    assert run.code == 0, run.stderr
    rows = status_rows(run.status_file)
    assert re.search(rf" \d+ stores, {len(rows)} polls, 0 rows rejected,", run.stderr), run.stderr
    assert "rejected polls" not in run.stderr
    assert not run.out.with_name(run.out.name + ".rejected.csv").exists()


def test_one_row_per_store_with_the_exact_ids(run: Run) -> None:
    rows = status_rows(run.status_file)
    file_ids = {row["store_id"] for row in rows}
    assert run.report[0] == HEADER
    report_ids = [row[0] for row in run.report[1:]]
    assert len(report_ids) == len(file_ids)
    assert set(report_ids) == file_ids  # the very strings of the file: no float mangling
    assert report_ids == sorted(report_ids)
    assert f" {len(file_ids)} stores," in run.stderr
    assert not any("E+" in i or "e+" in i for i in report_ids)


def test_values_are_two_decimals_within_the_window_lengths(run: Run) -> None:
    limits = (Decimal(60), Decimal(24), Decimal(168))  # minutes, hours, hours
    for row in run.report[1:]:
        assert len(row) == 7, row
        assert all(VALUE.fullmatch(v) for v in row[1:]), row
        up = [Decimal(v) for v in row[1:4]]
        down = [Decimal(v) for v in row[4:7]]
        for u, d, limit in zip(up, down, limits, strict=True):
            assert u + d <= limit + ROUNDING, row
        # a shorter window never holds more than the longer one that contains it (in hours)
        assert up[0] / 60 <= up[1] + ROUNDING, row
        assert up[1] <= up[2] + ROUNDING, row
        assert down[0] / 60 <= down[1] + ROUNDING, row
        assert down[1] <= down[2] + ROUNDING, row


def test_as_of_is_the_newest_timestamp_of_the_file(run: Run) -> None:
    expected = independent_max_timestamp(status_rows(run.status_file))
    match = re.search(r"^as_of (.+? UTC): ", run.stderr, re.M)
    assert match is not None, run.stderr
    assert match[1] == expected


def test_some_store_has_uptime(run: Run) -> None:
    # the samples are almost all `active`: a report of only zeros would mean nothing counted
    assert any(Decimal(row[3]) > 0 for row in run.report[1:])
