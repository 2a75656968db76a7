"""The one reader of the three input files: ``store_status``, ``menu_hours`` and
``timezones``, ``.csv`` or ``.csv.gz``, as they really come (byte-order mark or not, LF or
CRLF, blank lines, ``day`` or ``dayOfWeek``).

pyarrow reads the CSV (in C, on every core) and its columns are checked a whole column at
a time: timestamps of the real files' form are parsed from the bytes with numpy, store ids
and statuses are validated once per distinct value. Only a row that this cannot take goes
through the validators of :mod:`storemon.aggregates.records`, one row at a time, so each
rejection keeps its exact reason and the good rows around it go through. Rows pyarrow
itself refuses (a wrong number of fields) are rejected with the fields Python's ``csv``
finds in them; a file pyarrow cannot read at all is read again with ``csv`` alone.

Used by the batch command, the replay producer, the generator and the tests.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import re
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from storemon.aggregates.records import (
    BadField,
    HoursRow,
    Poll,
    Rejection,
    ZoneRow,
    parse_hours,
    parse_store_id,
    parse_time_of_day,
    parse_zone,
    poll_from_fields,
)
from storemon.aggregates.timebase import US_PER_SECOND, parse_poll_timestamp

POLL_COLUMNS = ("store_id", "status", "timestamp_utc")
_SURROGATE = re.compile("[\udc80-\udcff]")

Int64s = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]
_T = TypeVar("_T")


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


def _record(header: Sequence[str], row: Sequence[str]) -> dict[str, str]:
    record = dict(zip(header, row, strict=False))
    if len(row) > len(header):
        record["extra_fields"] = ",".join(row[len(header) :])
    return record


def _wrong_count(source: str, header: Sequence[str], row: Sequence[str]) -> Rejection:
    detail = f"expected {len(header)} fields, got {len(row)}"
    return Rejection(source, "wrong field count", detail, _record(header, row))


def _bad_encoding(source: str, header: Sequence[str], row: Sequence[str]) -> Rejection:
    return Rejection(source, "bad encoding", "bytes that are not UTF-8", _record(header, row))


# --------------------------------------------------------------------------- raw tables


def in_file_order(rejected: list[tuple[int, Rejection]]) -> list[Rejection]:
    """Rejections kept with their row's place in the file, back in the file's order."""
    return [rejection for _, rejection in sorted(rejected, key=lambda pair: pair[0])]


@dataclass
class RawTable:
    """The data rows of one file as text columns (one per header name, stripped), and the
    rows that could not be rows at all. ``ordinals[i]`` is the place of row ``i`` among the
    file's data rows (blank lines not counted), which puts rejections in file order."""

    path: Path
    source: str
    header: list[str]
    columns: list[pa.ChunkedArray]
    ordinals: Int64s
    rejected: list[tuple[int, Rejection]] = field(default_factory=list)

    @property
    def num_rows(self) -> int:
        return len(self.ordinals)

    def column(self, names: Sequence[str]) -> pa.ChunkedArray | None:
        """The first column with one of ``names`` (in the order given), or None."""
        for name in names:
            if name in self.header:
                return self.columns[self.header.index(name)]
        return None

    def rows(self, indexes: Sequence[int]) -> list[list[str]]:
        """The text fields of the given rows (a few: the ones Python has to look at)."""
        if not indexes:
            return []
        taken = [col.take(pa.array(indexes, pa.int64())).to_pylist() for col in self.columns]
        return [list(row) for row in zip(*taken, strict=True)]

    def rejections(self) -> list[Rejection]:
        return in_file_order(self.rejected)


def _read_header(path: Path) -> list[str]:
    """The first row as pyarrow will see it (names not stripped); [] for an empty file."""
    try:
        with open_text(path) as handle:
            return next(csv.reader(handle), [])
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise ValueError(f"{path}: damaged file ({error})") from error
    except csv.Error:
        return []  # the Python reader explains it


def _arrow_read(
    path: Path, raw_header: list[str], careful: bool, check_utf8: bool = False
) -> tuple[pa.Table, list[Any]]:
    """The file with every column as text. ``careful``: one thread (which numbers the rows
    pyarrow refuses) and newlines allowed in quoted values wherever blocks are cut.
    ``check_utf8``: pyarrow checks the text while it reads (on every core) and raises
    ArrowInvalid at the first byte that is not UTF-8."""
    invalid: list[Any] = []

    def keep(row: Any) -> str:
        invalid.append(row)
        return "skip"

    table = pa_csv.read_csv(
        path,
        read_options=pa_csv.ReadOptions(use_threads=not careful),
        parse_options=pa_csv.ParseOptions(newlines_in_values=careful, invalid_row_handler=keep),
        convert_options=pa_csv.ConvertOptions(
            column_types=dict.fromkeys(raw_header, pa.string()), check_utf8=check_utf8
        ),
    )
    return table, invalid


def read_raw(path: Path, source: str) -> RawTable:
    """Every data row of ``path`` as text. Raises ValueError for a damaged gzip file."""
    raw_header = _read_header(path)
    header = [name.strip() for name in raw_header]
    if not raw_header or _has_undecodable(raw_header):
        return _python_read(path, source)
    # The common case first: every row read and its text checked by pyarrow on every core.
    # Anything else (bad bytes, refused rows, a quoted newline where a block was cut) is
    # read again without the check, and its bad rows are found afterwards.
    checked = True
    try:
        try:
            table, invalid = _arrow_read(path, raw_header, careful=False, check_utf8=True)
        except pa.ArrowInvalid:
            invalid = [None]
        if invalid:
            checked = False
            try:
                table, invalid = _arrow_read(path, raw_header, careful=False)
            except pa.ArrowInvalid:
                invalid = [None]
            if invalid:
                table, invalid = _arrow_read(path, raw_header, careful=True)
    except (pa.ArrowException, OSError, EOFError, zlib.error):
        return _python_read(path, source)
    if table.column_names != raw_header or any(t != pa.string() for t in table.schema.types):
        return _python_read(path, source)
    columns = list(table.columns)
    refused: list[tuple[int, Rejection]] = []
    try:
        for row in invalid:
            fields = next(csv.reader(io.StringIO(row.text)), [])
            refused.append((row.number - 2, _wrong_count(source, header, fields)))
    except csv.Error:  # a row the csv module cannot read either: it says where and why
        return _python_read(path, source)
    ordinals = np.arange(table.num_rows, dtype=np.int64)
    if refused:
        # Row r of the table is the data row r + (rows refused before it).
        places = np.array(sorted(o for o, _ in refused), dtype=np.int64)
        before = places - np.arange(len(places), dtype=np.int64)
        ordinals += np.searchsorted(before, ordinals, side="right")
    raw = RawTable(path, source, header, columns, ordinals, refused)
    if not checked:
        _reject_undecodable(raw)
    return raw


def _reject_undecodable(raw: RawTable) -> None:
    """Rows with bytes that are not UTF-8 become rejections (the columns were read without
    checking, so one bad byte does not stop the file)."""
    bad: set[int] = set()
    for column in raw.columns:
        first = 0
        for chunk in column.chunks:
            try:
                chunk.validate(full=True)
            except pa.ArrowInvalid:
                for i, value in enumerate(chunk.view(pa.binary()).to_pylist()):
                    try:
                        value.decode("utf-8")
                    except UnicodeDecodeError:
                        bad.add(first + i)
            first += len(chunk)
    if not bad:
        return
    indexes = sorted(bad)
    taken = [
        pa.chunked_array([c.view(pa.binary()) for c in col.chunks], pa.binary())
        .take(pa.array(indexes, pa.int64()))
        .to_pylist()
        for col in raw.columns
    ]
    for i, row in zip(indexes, zip(*taken, strict=True), strict=True):
        fields = [value.decode("utf-8", "replace") for value in row]
        raw.rejected.append((int(raw.ordinals[i]), _bad_encoding(raw.source, raw.header, fields)))
    keep = np.ones(raw.num_rows, dtype=np.bool_)
    keep[indexes] = False
    mask = pa.array(keep)
    raw.columns = [column.filter(mask) for column in raw.columns]
    raw.ordinals = raw.ordinals[keep]


def _has_undecodable(row: list[str]) -> bool:
    return any(not value.isascii() and _SURROGATE.search(value) for value in row)


def _python_read(path: Path, source: str) -> RawTable:
    """The same table read with the ``csv`` module alone: for what pyarrow cannot read (a
    quote left open to the end of a big file, a row longer than its block). A CSV syntax
    error ends the file with one rejection that says so."""
    header: list[str] = []
    kept: list[list[str]] = []
    ordinals: list[int] = []
    rejected: list[tuple[int, Rejection]] = []
    ordinal = 0
    try:
        with open_text(path) as handle:
            reader = csv.reader(handle)
            header = [name.strip() for name in next(reader, [])]
            try:
                for row in reader:
                    if not row:
                        continue
                    if len(row) != len(header):
                        rejected.append((ordinal, _wrong_count(source, header, row)))
                    elif _has_undecodable(row):
                        fields = [
                            value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                            for value in row
                        ]
                        rejected.append((ordinal, _bad_encoding(source, header, fields)))
                    else:
                        kept.append(row)
                        ordinals.append(ordinal)
                    ordinal += 1
            except csv.Error as error:
                detail = f"{path.name} line {reader.line_num}: {error}; the rest of the file was not read"
                rejection = Rejection(source, "unreadable csv", detail, {"file": path.name})
                rejected.append((ordinal, rejection))
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise ValueError(f"{path}: damaged file ({error})") from error
    columns = [
        pa.chunked_array([pa.array([row[i] for row in kept], pa.string())])
        for i in range(len(header))
    ]
    return RawTable(path, source, header, columns, np.array(ordinals, dtype=np.int64), rejected)


def _in_file_order(
    items: Sequence[_T], item_ordinals: Int64s, rejected: list[tuple[int, Rejection]]
) -> Iterator[_T | Rejection]:
    order = np.argsort(item_ordinals, kind="stable")
    bad = sorted(rejected, key=lambda pair: pair[0])
    b = 0
    for i in order.tolist():
        while b < len(bad) and bad[b][0] < item_ordinals[i]:
            yield bad[b][1]
            b += 1
        yield items[i]
    for _, rejection in bad[b:]:
        yield rejection


# --------------------------------------------------------------------------- timestamps


_FIRST_DAY_US = -62_135_596_800 * US_PER_SECOND  # 0001-01-01, the first day Python knows


def utc_suffix_timestamps(column: pa.ChunkedArray) -> tuple[Bools, Int64s]:
    """(parsed?, epoch microseconds) of every value of the real files' form,
    ``YYYY-MM-DD HH:MM:SS[.f] UTC`` with 0-6 fraction digits and nothing around it. A value
    of any other form, or an impossible date or time, is not parsed here: it is for
    :func:`~storemon.aggregates.timebase.parse_poll_timestamp`, which also explains why."""
    ok = np.empty(len(column), dtype=np.bool_)
    ts_us = np.empty(len(column), dtype=np.int64)
    _utc_suffix_into(column, ok, ts_us)
    return ok, ts_us


def _utc_suffix_into(column: pa.ChunkedArray, ok: Bools, ts_us: Int64s) -> None:
    """:func:`utc_suffix_timestamps` written into ``ok`` and ``ts_us`` (one row each)."""
    first = 0
    for chunk in column.chunks:
        after = first + len(chunk)
        ok[first:after], ts_us[first:after] = _utc_suffix_chunk(chunk)
        first = after


def _utc_suffix_chunk(chunk: pa.Array) -> tuple[Bools, Int64s]:
    chunk = chunk.cast(pa.string())
    n = len(chunk)
    ok = np.zeros(n, dtype=np.bool_)
    ts_us = np.zeros(n, dtype=np.int64)
    _, offsets_buffer, data_buffer = chunk.buffers()
    if n == 0 or data_buffer is None or data_buffer.size == 0:
        return ok, ts_us
    offsets = np.frombuffer(offsets_buffer, dtype=np.int32)[chunk.offset : chunk.offset + n + 1]
    data = np.frombuffer(data_buffer, dtype=np.uint8)
    last = len(data) - 1
    starts = offsets[:-1]
    lengths = np.diff(offsets)
    # The shape: 19 characters of date and time, a fraction of 1-6 digits or none, " UTC".
    ok = (lengths == 23) | ((lengths >= 25) & (lengths <= 30))
    ok &= data[np.minimum(starts + 10, last)] == ord(" ")
    ok &= (lengths == 23) | (data[np.minimum(starts + 19, last)] == ord("."))
    ok &= pc.ends_with(chunk, " UTC").to_numpy(zero_copy_only=False)
    if not ok.any():
        return ok, ts_us
    # pyarrow's ISO 8601 parser checks the digits, the separators and that the date and
    # time exist; a value it refuses is left to Python.
    shaped = chunk if ok.all() else chunk.filter(pa.array(ok))
    # " UTC" is 4 bytes: cutting bytes is the same as cutting characters, and faster.
    clocks = pc.binary_slice(shaped.view(pa.binary()), 0, -4).view(pa.string())
    parsed, refused = _cast_each(clocks)
    good = np.flatnonzero(ok)
    ok[good[refused]] = False
    ts_us[good] = parsed
    ok &= ts_us >= _FIRST_DAY_US
    return ok, np.where(ok, ts_us, 0)


def poll_timestamps(column: pa.ChunkedArray) -> tuple[Bools, Int64s]:
    """(parsed?, epoch microseconds) of every timestamp in ``column``, in every form the
    contract accepts: the real files' form in arrays, any other through Python."""
    ok, ts_us = utc_suffix_timestamps(column)
    others = np.flatnonzero(~ok)
    if len(others):
        for i, text in zip(others.tolist(), column.take(pa.array(others)).to_pylist(), strict=True):
            try:
                ts_us[i] = parse_poll_timestamp(text)
                ok[i] = True
            except ValueError:
                pass
    return ok, ts_us


def _cast_each(clocks: pa.Array) -> tuple[Int64s, Int64s]:
    """(epoch microseconds, indexes pyarrow refused) of ``YYYY-MM-DD HH:MM:SS[.f]`` texts;
    a refused value is looked for by halves, so a bad one costs a few casts, not the chunk."""
    try:
        values = pc.cast(clocks, pa.timestamp("us")).cast(pa.int64())
        return values.to_numpy(zero_copy_only=False), np.zeros(0, dtype=np.int64)
    except pa.ArrowInvalid:
        if len(clocks) == 1:
            return np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64)
    half = len(clocks) // 2
    head, head_refused = _cast_each(clocks.slice(0, half))
    tail, tail_refused = _cast_each(clocks.slice(half))
    return np.concatenate([head, tail]), np.concatenate([head_refused, tail_refused + half])


# --------------------------------------------------------------------------- polls


@dataclass
class PollTable:
    """The polls of a file, a column each (not in file order), and its bad rows."""

    store_ids: list[str]  # distinct valid store ids; ``store`` indexes this list
    store: Int64s
    ts_us: Int64s
    active: Bools
    ordinals: Int64s  # each poll's place among the file's data rows
    rejected: list[tuple[int, Rejection]]

    def __len__(self) -> int:
        return len(self.ts_us)

    def rejections(self) -> list[Rejection]:
        return in_file_order(self.rejected)

    def polls(self) -> list[Poll]:
        """The polls in file order."""
        ids = self.store_ids
        order = np.argsort(self.ordinals, kind="stable")
        return [
            Poll(ids[s], t, a)
            for s, t, a in zip(
                self.store[order].tolist(),
                self.ts_us[order].tolist(),
                self.active[order].tolist(),
                strict=True,
            )
        ]


def _halves(column: pa.ChunkedArray) -> list[tuple[pa.ChunkedArray, int, int]]:
    """``column`` cut between chunks into two parts of about the same number of rows (one
    part when it has a single chunk), each with its first row and the row after its last."""
    chunks = column.chunks
    if len(chunks) < 2:
        return [(column, 0, len(column))]
    ends = np.cumsum([len(chunk) for chunk in chunks])
    cut = min(max(int(np.searchsorted(ends, ends[-1] / 2)), 1), len(chunks) - 1)
    middle = int(ends[cut - 1])
    return [
        (pa.chunked_array(chunks[:cut], column.type), 0, middle),
        (pa.chunked_array(chunks[cut:], column.type), middle, len(column)),
    ]


@dataclass
class _Codes:
    """Each row's index into a list of distinct values, kept a chunk at a time."""

    chunks: list[npt.NDArray[np.integer[Any]]]
    num_rows: int

    def take(self, table: Int64s) -> Int64s:
        """``table[index]`` of each row, written once into one array."""
        out = np.empty(self.num_rows, dtype=np.int64)
        first = 0
        for indexes in self.chunks:
            np.take(table, indexes, out=out[first : first + len(indexes)])
            first += len(indexes)
        return out


def _encode(column: pa.ChunkedArray) -> tuple[list[str], _Codes]:
    """The distinct values of ``column`` and, for each row, the index of its value."""
    encoded = pc.dictionary_encode(column)
    if encoded.num_chunks == 0:
        return [], _Codes([], 0)
    dictionaries = [chunk.dictionary for chunk in encoded.chunks]
    if not all(d.equals(dictionaries[-1]) for d in dictionaries):
        encoded = pa.table({"values": encoded}).unify_dictionaries().column("values")
    indexes = [chunk.indices.to_numpy(zero_copy_only=False) for chunk in encoded.chunks]
    return encoded.chunk(0).dictionary.to_pylist(), _Codes(indexes, len(column))


def _per_distinct(
    column: pa.ChunkedArray, check: Callable[[str], _T]
) -> tuple[list[_T | None], _Codes]:
    """``check`` of each distinct value (None where it raises BadField), and each row's
    index into that list: a column of few distinct values is checked at their number."""
    distinct, indexes = _encode(column)
    results: list[_T | None] = []
    for value in distinct:
        try:
            results.append(check(value))
        except BadField:
            results.append(None)
    return results, indexes


def read_poll_table(path: Path) -> PollTable:
    """The polls of a ``store_status`` file. Raises ValueError for a missing column or a
    damaged file."""
    raw = read_raw(path, "polls")
    missing = [name for name in POLL_COLUMNS if name not in raw.header]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
    id_column, status_column, ts_column = (raw.column((name,)) for name in POLL_COLUMNS)
    number_of: dict[str, int] = {}

    def store_number(value: str) -> int:
        store_id = parse_store_id(value)
        return number_of.setdefault(store_id, len(number_of))

    # The timestamps are parsed in two halves while the ids are encoded (all mostly in C,
    # without the GIL): the longest of the three jobs is split so that both cores stay busy.
    ts_ok = np.empty(raw.num_rows, dtype=np.bool_)
    ts_us = np.empty(raw.num_rows, dtype=np.int64)
    with ThreadPoolExecutor(max_workers=2) as pool:
        halves = [
            pool.submit(_utc_suffix_into, part, ts_ok[a:b], ts_us[a:b])
            for part, a, b in _halves(ts_column)
        ]
        numbers, id_rows = _per_distinct(id_column, store_number)
        store = id_rows.take(np.array([-1 if n is None else n for n in numbers], np.int64))
        # Other spellings of a status ("Active", " inactive ") are for parse_status.
        active = pc.equal(status_column, "active").to_numpy(zero_copy_only=False)
        inactive = pc.equal(status_column, "inactive").to_numpy(zero_copy_only=False)
        for half in halves:
            half.result()
    fast = ts_ok & (store >= 0) & (active | inactive)
    slow = np.flatnonzero(~fast)
    rejected = list(raw.rejected)
    slow_polls: list[Poll] = []
    slow_ordinals: list[int] = []
    for i, row in zip(slow.tolist(), raw.rows(slow.tolist()), strict=True):
        fields = dict(zip(raw.header, row, strict=True))
        try:
            poll = poll_from_fields(fields["store_id"], fields["timestamp_utc"], fields["status"])
        except BadField as error:
            rejected.append(
                (int(raw.ordinals[i]), Rejection("polls", error.reason, str(error), fields))
            )
            continue
        number_of.setdefault(poll.store_id, len(number_of))
        slow_polls.append(poll)
        slow_ordinals.append(int(raw.ordinals[i]))
    store_ids: list[str] = list(number_of)
    if not len(slow):  # the usual case: the columns as they are
        return PollTable(store_ids, store, ts_us, active, raw.ordinals, rejected)
    keep = fast
    return PollTable(
        store_ids,
        np.concatenate(
            [store[keep], np.array([number_of[p.store_id] for p in slow_polls], np.int64)]
        ),
        np.concatenate([ts_us[keep], np.array([p.ts_us for p in slow_polls], np.int64)]),
        np.concatenate([active[keep], np.array([p.active for p in slow_polls], np.bool_)]),
        np.concatenate([raw.ordinals[keep], np.array(slow_ordinals, np.int64)]),
        rejected,
    )


def read_polls(path: Path) -> Iterator[Poll | Rejection]:
    """Every poll of a ``store_status`` file or the rejection of its row, in file order."""
    table = read_poll_table(path)
    yield from _in_file_order(table.polls(), np.sort(table.ordinals), table.rejected)


# --------------------------------------------------------------------------- hours and zones


@dataclass
class HoursTable:
    """The good rows of a ``menu_hours`` file, a column each (not in file order), and its
    bad rows. ``store[i]`` indexes ``store_ids`` (distinct valid ids)."""

    store_ids: list[str]
    store: Int64s
    weekday: Int64s
    start_s: Int64s
    end_s: Int64s
    ordinals: Int64s  # each row's place among the file's data rows
    rejected: list[tuple[int, Rejection]]

    def __len__(self) -> int:
        return len(self.store)

    def rows(self) -> list[HoursRow]:
        ids = self.store_ids
        return [
            HoursRow(ids[s], w, a, b)
            for s, w, a, b in zip(
                self.store.tolist(),
                self.weekday.tolist(),
                self.start_s.tolist(),
                self.end_s.tolist(),
                strict=True,
            )
        ]


def _id_codes(parsed: list[str | None], number_of: dict[str, int]) -> Int64s:
    """Each distinct raw id's number among the distinct parsed ids (-1: not valid)."""
    codes = [-1 if p is None else number_of.setdefault(p, len(number_of)) for p in parsed]
    return np.array(codes, dtype=np.int64)


def _int_values(values: list[int | None]) -> Int64s:
    return np.array([-1 if v is None else v for v in values], dtype=np.int64)


def read_hours_table(path: Path) -> HoursTable:
    """The rows of a ``menu_hours`` file as columns, and the rejections of its bad rows."""
    raw = read_raw(path, "hours")
    day = "dayOfWeek" if "dayOfWeek" in raw.header else "day"
    names = ("store_id", day, "start_time_local", "end_time_local")
    number_of: dict[str, int] = {}
    columns: list[Int64s] = []
    fast = np.zeros(raw.num_rows, dtype=np.bool_)
    if all(name in raw.header for name in names):  # else parse_hours says what is missing
        id_column, day_column, start_column, end_column = (raw.column((n,)) for n in names)

        def weekday(text: str) -> int:
            # parse_hours' own rule for the day, on a row whose other fields are good
            parsed = parse_hours(
                {
                    "store_id": "x",
                    "day": text,
                    "start_time_local": "00:00",
                    "end_time_local": "01:00",
                }
            )
            if isinstance(parsed, Rejection):
                raise BadField(parsed.reason, parsed.detail)
            return parsed.weekday

        # Each column has few distinct values: each is parsed once, and a row whose four
        # fields all parse is a good row (parse_hours checks exactly these four).
        ids, id_rows = _per_distinct(id_column, parse_store_id)
        columns.append(id_rows.take(_id_codes(ids, number_of)))
        for column, check in (
            (day_column, weekday),
            (start_column, lambda t: parse_time_of_day(t, is_end=False)),
            (end_column, lambda t: parse_time_of_day(t, is_end=True)),
        ):
            values, rows = _per_distinct(column, check)
            columns.append(rows.take(_int_values(values)))
        fast = np.logical_and.reduce([c >= 0 for c in columns]) if raw.num_rows else fast
        columns = [c[fast] for c in columns]
    else:
        columns = [np.zeros(0, dtype=np.int64) for _ in names]
    rejected = list(raw.rejected)
    slow = np.flatnonzero(~fast)
    slow_rows: list[tuple[int, int, int, int]] = []
    slow_ordinals: list[int] = []
    for i, row in zip(slow.tolist(), raw.rows(slow.tolist()), strict=True):
        parsed = parse_hours(dict(zip(raw.header, row, strict=True)))
        if isinstance(parsed, Rejection):
            rejected.append((int(raw.ordinals[i]), parsed))
        else:
            code = number_of.setdefault(parsed.store_id, len(number_of))
            slow_rows.append((code, parsed.weekday, parsed.start_s, parsed.end_s))
            slow_ordinals.append(int(raw.ordinals[i]))
    extra = np.array(slow_rows, dtype=np.int64).reshape(-1, 4)
    store, weekday_, start_s, end_s = (
        np.concatenate([c, extra[:, k]]) for k, c in enumerate(columns)
    )
    ordinals = np.concatenate([raw.ordinals[fast], np.array(slow_ordinals, dtype=np.int64)])
    return HoursTable(list(number_of), store, weekday_, start_s, end_s, ordinals, rejected)


def read_hours(path: Path) -> Iterator[HoursRow | Rejection]:
    """Every row of a ``menu_hours`` file, parsed, or its rejection, in file order."""
    table = read_hours_table(path)
    return _in_file_order(table.rows(), table.ordinals, table.rejected)


@dataclass
class ZoneTable:
    """The good rows of a ``timezones`` file, a column each (not in file order), and its bad
    rows. ``store[i]`` indexes ``store_ids`` and ``zone[i]`` indexes ``zone_names``."""

    store_ids: list[str]
    zone_names: list[str]
    store: Int64s
    zone: Int64s
    ordinals: Int64s  # each row's place among the file's data rows
    rejected: list[tuple[int, Rejection]]

    def rows(self) -> list[ZoneRow]:
        ids, names = self.store_ids, self.zone_names
        return [
            ZoneRow(ids[s], names[z])
            for s, z in zip(self.store.tolist(), self.zone.tolist(), strict=True)
        ]


def read_zone_table(path: Path) -> ZoneTable:
    """The rows of a ``timezones`` file as columns, and the rejections of its bad rows."""
    raw = read_raw(path, "timezones")
    id_number: dict[str, int] = {}
    zone_number: dict[str, int] = {}
    fast = np.zeros(raw.num_rows, dtype=np.bool_)
    store = zone = np.zeros(0, dtype=np.int64)
    id_column = raw.column(("store_id",))
    name_column = raw.column(("timezone_str",))
    if id_column is not None and name_column is not None:  # else parse_zone says what is wrong

        def zone_name(text: str) -> str:
            # parse_zone's own rule for the name, on a row whose id is good
            parsed = parse_zone({"store_id": "x", "timezone_str": text})
            if isinstance(parsed, Rejection):
                raise BadField(parsed.reason, parsed.detail)
            return parsed.zone_name

        ids, id_rows = _per_distinct(id_column, parse_store_id)
        names, name_rows = _per_distinct(name_column, zone_name)
        store = id_rows.take(_id_codes(ids, id_number))
        zone = name_rows.take(_id_codes(names, zone_number))
        fast = (store >= 0) & (zone >= 0)
        store, zone = store[fast], zone[fast]
    rejected = list(raw.rejected)
    slow = np.flatnonzero(~fast)
    slow_rows: list[tuple[int, int]] = []
    slow_ordinals: list[int] = []
    for i, row in zip(slow.tolist(), raw.rows(slow.tolist()), strict=True):
        parsed = parse_zone(dict(zip(raw.header, row, strict=True)))
        if isinstance(parsed, Rejection):
            rejected.append((int(raw.ordinals[i]), parsed))
        else:
            slow_rows.append(
                (
                    id_number.setdefault(parsed.store_id, len(id_number)),
                    zone_number.setdefault(parsed.zone_name, len(zone_number)),
                )
            )
            slow_ordinals.append(int(raw.ordinals[i]))
    extra = np.array(slow_rows, dtype=np.int64).reshape(-1, 2)
    return ZoneTable(
        list(id_number),
        list(zone_number),
        np.concatenate([store, extra[:, 0]]),
        np.concatenate([zone, extra[:, 1]]),
        np.concatenate([raw.ordinals[fast], np.array(slow_ordinals, dtype=np.int64)]),
        rejected,
    )


def read_zones(path: Path) -> Iterator[ZoneRow | Rejection]:
    """Every row of a ``timezones`` file, parsed, or its rejection, in file order."""
    table = read_zone_table(path)
    return _in_file_order(table.rows(), table.ordinals, table.rejected)


def read_text_columns(
    path: Path, source: str, wanted: Sequence[Sequence[str]]
) -> tuple[list[list[str]], list[Rejection]]:
    """The text of the ``wanted`` columns (each a list of accepted names, the first present
    wins) row by row, unvalidated, and the rows that could not be rows. Raises ValueError
    naming the file when a wanted column is missing."""
    raw = read_raw(path, source)
    picked: list[pa.Array] = []
    for names in wanted:
        column = raw.column(names)
        if column is None:
            raise ValueError(f"{path}: no column {' or '.join(names)} in header {raw.header}")
        picked.append(column)
    rows = [list(row) for row in zip(*(c.to_pylist() for c in picked), strict=True)]
    return rows, raw.rejections()
