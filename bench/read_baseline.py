"""Baselines for the batch report: only read the three CSV files, and count their rows.

    .venv/bin/python bench/read_baseline.py bench/work/full            # pyarrow
    .venv/bin/python bench/read_baseline.py bench/work/full --csv      # the csv module

With pyarrow (the default) every column is read as text, as the batch command's reader
does, on every core; nothing is parsed or checked. Any report must at least do this, so
"report time / this time" is how much the report adds on top of reading its input, a ratio
that holds when the machine's speed drifts. ``--csv`` is the earlier baseline (the standard
library's reader, one core), kept to compare with the figures measured against it.
"""

from __future__ import annotations

import csv
import gzip
import sys
from pathlib import Path

STEMS = ("store_status", "menu_hours", "timezones")


def find(directory: Path, stem: str) -> Path:
    for path in (directory / f"{stem}.csv", directory / f"{stem}.csv.gz"):
        if path.exists():
            return path
    raise FileNotFoundError(f"neither {stem}.csv nor {stem}.csv.gz in {directory}")


def count_rows_csv(path: Path) -> int:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        next(reader, None)  # header
        return sum(1 for row in reader if row)


def count_rows_arrow(path: Path) -> int:
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    with (
        gzip.open(path, "rt", encoding="utf-8-sig", newline="")
        if path.suffix == ".gz"
        else path.open(encoding="utf-8-sig", newline="")
    ) as handle:
        names = next(csv.reader(handle), [])
    table = pa_csv.read_csv(
        path, convert_options=pa_csv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()))
    )
    return int(table.num_rows)


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    directory = Path(args[0] if args else "bench/work/full")
    count = count_rows_csv if "--csv" in sys.argv else count_rows_arrow
    for stem in STEMS:
        print(f"{stem}: {count(find(directory, stem))} rows")


if __name__ == "__main__":
    main()
