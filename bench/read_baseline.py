"""Baseline for the batch report: only read the three CSV files with the csv module.

    .venv/bin/python bench/read_baseline.py bench/work/full

Counts the data rows of store_status, menu_hours and timezones (plain or .csv.gz) and prints
the counts. Any report must at least do this, so "report time / this time" is how much the
report adds on top of reading its input, a ratio that holds when the machine's speed drifts.
"""

from __future__ import annotations

import csv
import gzip
import sys
from pathlib import Path


def count_rows(directory: Path, stem: str) -> int:
    for path in (directory / f"{stem}.csv", directory / f"{stem}.csv.gz"):
        if path.exists():
            opener = gzip.open if path.suffix == ".gz" else open
            with opener(path, "rt", encoding="utf-8-sig", newline="") as handle:
                reader = csv.reader(handle)
                next(reader, None)  # header
                return sum(1 for row in reader if row)
    raise FileNotFoundError(f"neither {stem}.csv nor {stem}.csv.gz in {directory}")


def main() -> None:
    directory = Path(sys.argv[1] if len(sys.argv) > 1 else "bench/work/full")
    for stem in ("store_status", "menu_hours", "timezones"):
        print(f"{stem}: {count_rows(directory, stem)} rows")


if __name__ == "__main__":
    main()
