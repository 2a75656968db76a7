"""Reading the three CSV files as they really come: plain or gzipped, with or without a
byte-order mark, LF or CRLF, with or without a final newline, ``day`` or ``dayOfWeek``."""

from __future__ import annotations

import csv
import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from storemon.aggregates.records import (
    BadField,
    HoursRow,
    Poll,
    Rejection,
    ZoneRow,
    parse_hours,
    parse_zone,
    poll_from_fields,
)

POLL_COLUMNS = ("store_id", "status", "timestamp_utc")


def find_input(directory: Path, stem: str) -> Path:
    """``stem.csv`` or ``stem.csv.gz`` in ``directory``."""
    for candidate in (directory / f"{stem}.csv", directory / f"{stem}.csv.gz"):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"neither {stem}.csv nor {stem}.csv.gz in {directory}")


def open_text(path: Path) -> IO[str]:
    # utf-8-sig drops a leading byte-order mark; newline="" lets csv handle CRLF.
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return path.open(encoding="utf-8-sig", newline="")


def _rows(path: Path) -> Iterator[tuple[list[str], list[str]]]:
    """(header, row) for every data row; blank lines are skipped."""
    with open_text(path) as handle:
        reader = csv.reader(handle)
        header = [name.strip() for name in next(reader, [])]
        for row in reader:
            if row:
                yield header, row


def read_polls(path: Path) -> Iterator[Poll | Rejection]:
    with open_text(path) as handle:
        reader = csv.reader(handle)
        header = [name.strip() for name in next(reader, [])]
        missing = [c for c in POLL_COLUMNS if c not in header]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
        i_id, i_status, i_ts = (header.index(c) for c in POLL_COLUMNS)
        width = len(header)
        for row in reader:
            if not row:
                continue
            if len(row) != width:
                yield Rejection(
                    "polls",
                    "wrong field count",
                    f"expected {width} fields, got {len(row)}",
                    dict(zip(header, row, strict=False)),
                )
                continue
            try:
                yield poll_from_fields(row[i_id], row[i_ts], row[i_status])
            except BadField as error:
                yield Rejection(
                    "polls", error.reason, str(error), dict(zip(header, row, strict=True))
                )


def read_hours(path: Path) -> Iterator[HoursRow | Rejection]:
    for header, row in _rows(path):
        if len(row) != len(header):
            yield Rejection(
                "hours",
                "wrong field count",
                f"expected {len(header)} fields, got {len(row)}",
                dict(zip(header, row, strict=False)),
            )
            continue
        yield parse_hours(dict(zip(header, row, strict=True)))


def read_zones(path: Path) -> Iterator[ZoneRow | Rejection]:
    for header, row in _rows(path):
        if len(row) != len(header):
            yield Rejection(
                "timezones",
                "wrong field count",
                f"expected {len(header)} fields, got {len(row)}",
                dict(zip(header, row, strict=False)),
            )
            continue
        yield parse_zone(dict(zip(header, row, strict=True)))
