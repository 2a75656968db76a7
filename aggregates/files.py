"""Reading the three CSV files as they really come: plain or gzipped, with or without a
byte-order mark, LF or CRLF, with or without a final newline, ``day`` or ``dayOfWeek``."""

from __future__ import annotations

import argparse
import csv
import gzip
import itertools
import re
import zlib
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
_SURROGATE = re.compile("[\udc80-\udcff]")


def add_data_argument(parser: argparse.ArgumentParser) -> None:
    """The ``--data DIR`` option of the commands that read the three files."""
    parser.add_argument(
        "--data",
        type=Path,
        required=True,
        help="folder with store_status, menu_hours and timezones (.csv or .csv.gz)",
    )


def find_input(directory: Path, stem: str) -> Path:
    """``stem.csv`` or ``stem.csv.gz`` in ``directory``."""
    for candidate in (directory / f"{stem}.csv", directory / f"{stem}.csv.gz"):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"neither {stem}.csv nor {stem}.csv.gz in {directory}")


def open_text(path: Path) -> IO[str]:
    # utf-8-sig drops a leading byte-order mark; newline="" lets csv handle CRLF; bytes that
    # are not UTF-8 survive as surrogates, so that only their row is rejected.
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8-sig", errors="surrogateescape", newline="")
    return path.open(encoding="utf-8-sig", errors="surrogateescape", newline="")


def _has_undecodable(row: list[str]) -> bool:
    return any(not field.isascii() and _SURROGATE.search(field) for field in row)


def _record(header: list[str], row: list[str]) -> dict[str, str]:
    record = dict(zip(header, row, strict=False))
    if len(row) > len(header):
        record["extra_fields"] = ",".join(row[len(header) :])
    return record


def _checked_rows(path: Path, source: str) -> Iterator[tuple[list[str], list[str] | Rejection]]:
    """First (header, []), then (header, row) for every data row, or (header, Rejection)
    for a row that cannot be a record at all. Blank lines are skipped. A damaged file (truncated gzip) raises
    ValueError naming it; a CSV syntax error ends the file with a rejection."""
    try:
        with open_text(path) as handle:
            reader = csv.reader(handle)
            header = [name.strip() for name in next(reader, [])]
            width = len(header)
            yield header, []
            try:
                for row in reader:
                    if not row:
                        continue
                    if len(row) != width:
                        detail = f"expected {width} fields, got {len(row)}"
                        yield (
                            header,
                            Rejection(source, "wrong field count", detail, _record(header, row)),
                        )
                    elif _has_undecodable(row):
                        yield (
                            header,
                            Rejection(
                                source,
                                "bad encoding",
                                "bytes that are not UTF-8",
                                _record(
                                    header,
                                    [
                                        f.encode("utf-8", "surrogateescape").decode(
                                            "utf-8", "replace"
                                        )
                                        for f in row
                                    ],
                                ),
                            ),
                        )
                    else:
                        yield header, row
            except csv.Error as error:
                detail = f"{path.name} line {reader.line_num}: {error}; the rest of the file was not read"
                yield header, Rejection(source, "unreadable csv", detail, {"file": path.name})
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise ValueError(f"{path}: damaged file ({error})") from error


def read_polls(path: Path) -> Iterator[Poll | Rejection]:
    rows = _checked_rows(path, "polls")
    header, _ = next(rows)
    missing = [c for c in POLL_COLUMNS if c not in header]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
    i_id, i_status, i_ts = (header.index(c) for c in POLL_COLUMNS)
    for _, row in rows:
        if isinstance(row, Rejection):
            yield row
            continue
        try:
            yield poll_from_fields(row[i_id], row[i_ts], row[i_status])
        except BadField as error:
            yield Rejection("polls", error.reason, str(error), dict(zip(header, row, strict=True)))


def read_hours(path: Path) -> Iterator[HoursRow | Rejection]:
    for header, row in itertools.islice(_checked_rows(path, "hours"), 1, None):
        yield (
            row if isinstance(row, Rejection) else parse_hours(dict(zip(header, row, strict=True)))
        )


def read_zones(path: Path) -> Iterator[ZoneRow | Rejection]:
    for header, row in itertools.islice(_checked_rows(path, "timezones"), 1, None):
        yield row if isinstance(row, Rejection) else parse_zone(dict(zip(header, row, strict=True)))
