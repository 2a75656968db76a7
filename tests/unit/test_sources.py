"""The pyarrow reader (``storemon.sources``) against the row-by-row validator: whatever
the arrays decide must be exactly what ``records.poll_from_fields`` decides for the same
fields, with the same reason, wherever the row sits in a file of any size."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from storemon.aggregates.records import BadField, Poll, Rejection, poll_from_fields
from storemon.aggregates.timebase import parse_poll_timestamp
from storemon.sources import poll_timestamps, read_poll_table, read_polls, utc_suffix_timestamps

HEADER = "store_id,status,timestamp_utc"
GOOD = "s{i},active,2023-01-25 10:{m:02d}:{s:02d}.{f} UTC"


def expected(fields: tuple[str, str, str]) -> Poll | tuple[str, str]:
    """What the row-by-row validator makes of (store_id, status, timestamp)."""
    try:
        return poll_from_fields(fields[0], fields[2], fields[1])
    except BadField as error:
        return (error.reason, str(error))


def good_lines(count: int, offset: int = 0) -> list[str]:
    return [
        GOOD.format(i=i, m=i // 60 % 60, s=i % 60, f=str(i % 999_999 + 1))
        for i in range(offset, offset + count)
    ]


def write(path: Path, lines: list[str], gz: bool = False) -> Path:
    data = ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def outcome(item: Poll | Rejection) -> Poll | tuple[str, str]:
    return item if isinstance(item, Poll) else (item.reason, item.detail)


# --------------------------------------------------------------------------- timestamps

TIMESTAMPS = [
    # every fraction length the contract allows
    "2023-01-25 18:13:22 UTC",
    "2023-01-25 18:13:22.4 UTC",
    "2023-01-25 18:13:22.47 UTC",
    "2023-01-25 18:13:22.479 UTC",
    "2023-01-25 18:13:22.4792 UTC",
    "2023-01-25 18:13:22.47922 UTC",
    "2023-01-25 18:13:22.479220 UTC",
    "2023-01-25 18:13:22.000001 UTC",
    # calendar edges
    "2024-02-29 23:59:59.999999 UTC",
    "2000-02-29 00:00:00 UTC",
    "1900-02-28 12:00:00 UTC",
    "0001-01-01 00:00:00 UTC",
    "9999-12-31 23:59:59.999999 UTC",
    "1969-12-31 23:59:59.5 UTC",
    # forms only Python takes
    " 2023-01-25 18:13:22 UTC ",
    "2023-01-25T18:13:22Z",
    "2023-01-25 18:13:22+05:45",
    "2023-01-25T18:13:22.123456-08:00",
    # not timestamps
    "2023-02-29 00:00:00 UTC",
    "1900-02-29 00:00:00 UTC",
    "2023-02-30 10:00:00 UTC",
    "2023-13-01 10:00:00 UTC",
    "2023-00-10 10:00:00 UTC",
    "2023-01-00 10:00:00 UTC",
    "0000-01-01 00:00:00 UTC",
    "2023-01-25 24:00:00 UTC",
    "2023-01-25 23:60:00 UTC",
    "2023-01-25 23:59:60 UTC",
    "2023-01-25 18:13:22.1234567 UTC",
    "2023-01-25 18:13:22. UTC",
    "2023-01-25 18:13:22,5 UTC",
    "2023-01-25T18:13:22 UTC",
    "2023-01-25 18:13:22 utc",
    "2023-01-25 18:13:22UTC",
    "2023-01-25 18:13:22",
    "2023-1-25 18:13:22 UTC",
    "+023-01-25 18:13:22 UTC",
    "2023-01-25 18:13:2x UTC",
    "2023-01-25 18:13:22.5x UTC",
    "2023-01-25 18:13:22.-5 UTC",
    "\uff12023-01-25 18:13:22 UTC",  # a fullwidth digit
    "",
    "yesterday",
]


def python_reading(text: str) -> int | None:
    try:
        return parse_poll_timestamp(text)
    except ValueError:
        return None


def test_arrays_parse_timestamps_exactly_as_python_does() -> None:
    column = pa.chunked_array([pa.array(TIMESTAMPS[:20]), pa.array(TIMESTAMPS[20:])])
    ok, ts_us = poll_timestamps(column)
    got = [int(t) if good else None for good, t in zip(ok, ts_us, strict=True)]
    assert got == [python_reading(text) for text in TIMESTAMPS]


def test_the_array_form_takes_only_the_real_files_form() -> None:
    ok, ts_us = utc_suffix_timestamps(pa.chunked_array([pa.array(TIMESTAMPS)]))
    for text, good, value in zip(TIMESTAMPS, ok.tolist(), ts_us.tolist(), strict=True):
        if good:  # anything the arrays take, Python reads to the same microsecond
            assert value == parse_poll_timestamp(text), text
    taken = {text for text, good in zip(TIMESTAMPS, ok.tolist(), strict=True) if good}
    assert "2023-01-25 18:13:22.000001 UTC" in taken
    assert "0001-01-01 00:00:00 UTC" in taken
    assert "2023-01-25T18:13:22Z" not in taken  # for Python, which takes it


stamp_texts = st.builds(
    "{:04d}-{:02d}-{:02d} {:02d}:{:02d}:{:02d}{}{}".format,
    st.integers(0, 9999),
    st.integers(0, 13),
    st.integers(0, 32),
    st.integers(0, 25),
    st.integers(0, 61),
    st.integers(0, 61),
    st.one_of(st.just(""), st.from_regex(r"\.[0-9]{0,7}", fullmatch=True)),
    st.sampled_from([" UTC", " UTC", "Z", "", " utc", "+01:00"]),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(stamp_texts, min_size=1, max_size=40))
@example(["2023-01-25 18:13:22.47922 UTC", "2023-02-29 00:00:00 UTC"])
def test_any_timestamp_text_gets_pythons_answer(texts: list[str]) -> None:
    ok, ts_us = poll_timestamps(pa.chunked_array([pa.array(texts)]))
    got = [int(t) if good else None for good, t in zip(ok, ts_us, strict=True)]
    assert got == [python_reading(text) for text in texts]


# --------------------------------------------------------------------------- rows in files

BAD_ROWS = [
    ("9222367421889482050,active,2023-02-30 10:00:00 UTC", "bad timestamp"),
    ("9222367421889482050,up,2023-01-25 10:00:00 UTC", "bad status"),
    ("2.57E+14,active,2023-01-25 10:00:00 UTC", "bad store_id"),
    (",active,2023-01-25 10:00:00 UTC", "bad store_id"),
    ("1,active,2023-01-25 10:00:00 UTC,extra", "wrong field count"),
    ("1,active", "wrong field count"),
    ("1,act\udce9ve,2023-01-25 10:00:00 UTC", "bad encoding"),
]


@pytest.mark.parametrize(("line", "reason"), BAD_ROWS, ids=[r for _, r in BAD_ROWS])
@pytest.mark.parametrize("where", ["first", "middle", "last"])
@pytest.mark.parametrize("gz", [False, True])
def test_a_bad_row_anywhere_in_a_big_file_is_rejected_alone(
    tmp_path: Path, line: str, reason: str, where: str, gz: bool
) -> None:
    # 60,000 rows: several pyarrow blocks, read on all cores.
    rows = good_lines(60_000)
    at = {"first": 0, "middle": 31_337, "last": len(rows)}[where]
    rows.insert(at, line)
    path = write(tmp_path / ("store_status.csv" + (".gz" if gz else "")), [HEADER, *rows], gz)
    results = list(read_polls(path))
    assert len(results) == len(rows)
    rejection = results[at]
    assert isinstance(rejection, Rejection)
    assert rejection.reason == reason
    assert rejection.source == "polls"
    assert rejection.record["store_id"] == line.split(",")[0]
    goods = results[:at] + results[at + 1 :]
    polls = [r for r in goods if isinstance(r, Poll)]
    assert len(polls) == len(goods)
    assert [p.store_id for p in polls] == [r.split(",")[0] for r in rows if r != line]


def test_every_row_gets_the_validators_answer(tmp_path: Path) -> None:
    """A file of odd rows among good ones: the reader answers each as poll_from_fields does
    (the same poll, or the same reason and detail), in file order."""
    odd = [
        "9222367421889482050,active,2023-01-25 18:13:22.47922 UTC",  # 19 digits, kept as text
        "0042,Active,2023-01-18T13:31:00+05:45",
        " 7 , INACTIVE ,  2023-01-25 10:00:00 UTC ",
        "fd61b1a3-6bd1-4de2-9a4f-6c0e2c2c5a53,inactive,2024-10-14 23:55:18.727055 UTC",
        "8.13992624246019E+018,active,2023-01-25 10:00:00 UTC",
        "9,ACTIVE,2023-01-25 10:00:00",
        "9,inactive,0000-01-01 00:00:00 UTC",
        "9,inactive,2024-02-29 10:00:00.5 UTC",
        "9,,2023-01-25 10:00:00 UTC",
        '"a,b",active,2023-01-25 10:00:00 UTC',
    ]
    rows: list[str] = []
    for i, line in enumerate(odd):
        rows += good_lines(7_000, offset=i * 7_000)
        rows.append(line)
    path = write(tmp_path / "store_status.csv", [HEADER, *rows])
    got = [outcome(r) for r in read_polls(path)]
    want = [expected(tuple(next(csv.reader([row])))) for row in rows]  # type: ignore[arg-type]
    assert got == want
    table = read_poll_table(path)
    assert "9222367421889482050" in table.store_ids
    assert "0042" in table.store_ids
    assert "7" in table.store_ids


def test_a_file_pyarrow_cannot_read_is_read_by_python(tmp_path: Path) -> None:
    # A quote left open: pyarrow gives up on the file; the csv module reads the rows before
    # it and says where it stopped.
    rows = [*good_lines(3), '"x,active,2023-01-25 10:00:00 UTC', *good_lines(3, offset=3)]
    path = write(tmp_path / "store_status.csv", [HEADER, *rows])
    results = list(read_polls(path))
    assert [r.store_id for r in results if isinstance(r, Poll)] == ["s0", "s1", "s2"]
    [last] = [r for r in results if isinstance(r, Rejection)]
    assert last.reason in ("unreadable csv", "wrong field count")


def test_poll_table_columns(tmp_path: Path) -> None:
    path = write(
        tmp_path / "store_status.csv",
        [
            HEADER,
            "b,active,2023-01-25 10:00:00 UTC",
            "a,inactive,2023-01-25 10:00:00.5 UTC",
            "b,Inactive,2023-01-25T10:00:01Z",
            "c,up,2023-01-25 10:00:00 UTC",
        ],
    )
    table = read_poll_table(path)
    polls = table.polls()
    assert polls == [
        Poll("b", parse_poll_timestamp("2023-01-25 10:00:00 UTC"), True),
        Poll("a", parse_poll_timestamp("2023-01-25 10:00:00.5 UTC"), False),
        Poll("b", parse_poll_timestamp("2023-01-25 10:00:01 UTC"), False),
    ]
    assert len(table) == 3
    assert sorted({table.store_ids[s] for s in table.store.tolist()}) == ["a", "b"]
    assert [r.reason for r in table.rejections()] == ["bad status"]


def test_quoted_newlines_and_commas_anywhere_in_a_big_file(tmp_path: Path) -> None:
    rows = good_lines(120_000)
    odd_ids = ['"x\ny"', '"a,b"', '"q""uote"', '"line\r\nbreak"']
    places = [5, 40_001, 77_777, 119_999]
    for at, store_id in zip(places, odd_ids, strict=True):
        rows[at] = f"{store_id},inactive,2023-01-25 11:00:00 UTC"
    path = write(tmp_path / "store_status.csv", [HEADER, *rows])
    results = list(read_polls(path))
    assert all(isinstance(r, Poll) for r in results)
    assert len(results) == len(rows)
    assert [results[at].store_id for at in places] == ["x\ny", "a,b", 'q"uote', "line\r\nbreak"]  # type: ignore[union-attr]
