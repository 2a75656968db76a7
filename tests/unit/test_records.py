"""Parsing of single records: poll timestamps, statuses, store ids, business hours, zones.

Expected values are computed independently of the core (``calendar.timegm`` and ``datetime``
arithmetic), never by the parser under test.
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from storemon.aggregates.records import (
    HoursRow,
    Poll,
    Rejection,
    ZoneRow,
    parse_hours,
    parse_poll,
    parse_zone,
    poll_from_fields,
)
from storemon.aggregates.timebase import format_utc, parse_as_of, parse_poll_timestamp

US = 1_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_us(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0
) -> int:
    """Epoch microseconds of a UTC wall time, by ``calendar.timegm`` (not the core)."""
    return calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)) * US + micro


def poll_fields(
    store_id: str = "42", timestamp: str = "2023-01-25 18:13:22 UTC", status: str = "active"
) -> dict[str, str]:
    return {"store_id": store_id, "status": status, "timestamp_utc": timestamp}


def hours_fields(
    day: str = "0",
    start: str = "09:00:00",
    end: str = "17:00:00",
    *,
    column: str = "day",
    store_id: str = "42",
) -> dict[str, str]:
    return {"store_id": store_id, column: day, "start_time_local": start, "end_time_local": end}


def assert_rejected(result: object, source: str, reason: str, fields: dict[str, str]) -> None:
    assert isinstance(result, Rejection), result
    assert result.source == source
    assert result.reason == reason
    assert result.detail  # a human-readable explanation, not empty
    assert dict(result.record) == fields  # the raw record is kept as given


# --------------------------------------------------------------------------- timestamps


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # the real files' form, 0-6 fraction digits (trailing zeros dropped upstream)
        ("2023-01-25 18:13:22 UTC", epoch_us(2023, 1, 25, 18, 13, 22)),
        ("2023-01-25 18:13:22.4 UTC", epoch_us(2023, 1, 25, 18, 13, 22, 400_000)),
        ("2023-01-25 18:13:22.47 UTC", epoch_us(2023, 1, 25, 18, 13, 22, 470_000)),
        ("2023-01-25 18:13:22.479 UTC", epoch_us(2023, 1, 25, 18, 13, 22, 479_000)),
        ("2023-01-25 18:13:22.4792 UTC", epoch_us(2023, 1, 25, 18, 13, 22, 479_200)),
        ("2023-01-25 18:13:22.47922 UTC", epoch_us(2023, 1, 25, 18, 13, 22, 479_220)),
        ("2023-01-25 18:13:22.479220 UTC", epoch_us(2023, 1, 25, 18, 13, 22, 479_220)),
        ("2023-01-25 18:13:22.000001 UTC", epoch_us(2023, 1, 25, 18, 13, 22, 1)),
        ("2023-01-25 18:13:22.05244 UTC", epoch_us(2023, 1, 25, 18, 13, 22, 52_440)),
        ("2024-10-14 23:55:18.727055 UTC", epoch_us(2024, 10, 14, 23, 55, 18, 727_055)),
        ("2024-02-29 00:00:00 UTC", epoch_us(2024, 2, 29)),
        ("1970-01-01 00:00:00 UTC", 0),
        ("2023-12-31 23:59:59.999999 UTC", epoch_us(2024, 1, 1) - 1),
        # ISO 8601 with Z or an offset
        ("2023-01-25T18:13:22Z", epoch_us(2023, 1, 25, 18, 13, 22)),
        ("2023-01-25T18:13:22.47922Z", epoch_us(2023, 1, 25, 18, 13, 22, 479_220)),
        ("2023-01-25 18:13:22Z", epoch_us(2023, 1, 25, 18, 13, 22)),
        ("2023-01-25T18:13:22+00:00", epoch_us(2023, 1, 25, 18, 13, 22)),
        ("2023-01-25T18:13:22+05:45", epoch_us(2023, 1, 25, 12, 28, 22)),
        ("2023-01-25T18:13:22.5+05:45", epoch_us(2023, 1, 25, 12, 28, 22, 500_000)),
        ("2023-01-25T18:13:22-0700", epoch_us(2023, 1, 26, 1, 13, 22)),
        ("2023-01-25T18:13:22-07:00", epoch_us(2023, 1, 26, 1, 13, 22)),
        ("2023-01-01T02:00:00+05:45", epoch_us(2022, 12, 31, 20, 15)),
        # surrounding blanks are ignored
        ("  2023-01-25 18:13:22.47922 UTC  ", epoch_us(2023, 1, 25, 18, 13, 22, 479_220)),
        ("\t2023-01-25T18:13:22Z\n", epoch_us(2023, 1, 25, 18, 13, 22)),
    ],
)
def test_timestamp_accepted(text: str, expected: int) -> None:
    assert parse_poll_timestamp(text) == expected
    result = parse_poll(poll_fields(timestamp=text))
    assert result == Poll("42", expected, True)


@pytest.mark.parametrize(
    "text",
    [
        "2023-01-25T18:13:22",  # naive ISO: no zone
        "2023-01-25 18:13:22",  # naive, no UTC suffix
        "2023-01-25 18:13:22.1234567 UTC",  # 7 fraction digits
        "2023-01-25 18:13:22. UTC",  # a dot without digits
        "2023-01-25 25:00:00 UTC",
        "2023-01-25 24:00:00 UTC",
        "2023-01-25 18:60:00 UTC",
        "2023-01-25 18:13:60 UTC",
        "2023-02-30 10:00:00 UTC",
        "2023-02-29 10:00:00 UTC",  # not a leap year
        "2023-13-01 10:00:00 UTC",
        "2023-00-10 10:00:00 UTC",
        "0000-01-01 00:00:00 UTC",
        "2023-01-25 18:13 UTC",  # no seconds in the UTC-suffix form
        "2023-01-25 18:13:22 utc",
        "2023-01-25 18:13:22 GMT",
        "2023-01-25 18:13:22UTC",
        "2023-01-25  18:13:22 UTC",
        "23-01-25 18:13:22 UTC",
        "2023/01/25 18:13:22 UTC",
        "2023-1-25 18:13:22 UTC",
        "2023-01-25T18:13:22+5:45",
        "2023-01-25T18:13:22+25:00",
        "1674670402",  # epoch seconds
        "",
        "   ",
        "UTC",
        "garbage",
        "active",
        "2023-01-25 18:13:22 UTC trailing",
    ],
)
def test_timestamp_rejected(text: str) -> None:
    with pytest.raises(ValueError, match=r"\S"):
        parse_poll_timestamp(text)
    fields = poll_fields(timestamp=text)
    assert_rejected(parse_poll(fields), "polls", "bad timestamp", fields)


# The fast path of the UTC-suffix form parses the date digits with int(), which also takes a
# sign, blanks and underscores; the general (regex) path rejects all of these.
FAST_PATH_LEAKS = [
    "+023-01-25 18:13:22 UTC",
    "2023- 1-25 18:13:22 UTC",
    "2023-01-+5 18:13:22 UTC",
    "2_23-01-25 18:13:22 UTC",
]
# \d in the patterns matches any Unicode digit, so fullwidth or Arabic-Indic digits pass.
NON_ASCII_DIGITS = [
    "\uff12\uff10\uff12\uff13-01-25 18:13:22 UTC",  # fullwidth year
    "2023-01-25 18:13:22.\u0664\u0667 UTC",  # Arabic-Indic fraction
]


@pytest.mark.parametrize("text", FAST_PATH_LEAKS)
def test_timestamp_date_with_sign_blank_or_underscore_is_rejected(text: str) -> None:
    fields = poll_fields(timestamp=text)
    assert_rejected(parse_poll(fields), "polls", "bad timestamp", fields)


@pytest.mark.parametrize("text", NON_ASCII_DIGITS)
def test_timestamp_with_non_ascii_digits_is_rejected(text: str) -> None:
    fields = poll_fields(timestamp=text)
    assert_rejected(parse_poll(fields), "polls", "bad timestamp", fields)


def test_hours_time_with_non_ascii_digits_is_rejected() -> None:
    fields = hours_fields(start="\uff11\uff10:\uff10\uff10", end="12:00")  # fullwidth 10:00
    assert_rejected(parse_hours(fields), "hours", "bad time", fields)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2023-01-25 18:00:00", epoch_us(2023, 1, 25, 18)),  # plain: read as UTC
        ("2023-01-25 18:00:00.5", epoch_us(2023, 1, 25, 18, 0, 0, 500_000)),
        ("2023-01-25 18:00:00 UTC", epoch_us(2023, 1, 25, 18)),
        ("2023-01-25T18:00:00Z", epoch_us(2023, 1, 25, 18)),
        ("2023-01-25T13:00:00-05:00", epoch_us(2023, 1, 25, 18)),
        (" 2023-01-25 18:00:00 ", epoch_us(2023, 1, 25, 18)),
    ],
)
def test_as_of_forms(text: str, expected: int) -> None:
    assert parse_as_of(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "now", "2023-01-25", "2023-01-25 18:00", "2023-02-30 00:00:00", "2023-01-25T18:00:00"],
)
def test_as_of_rejected_with_a_clear_message(text: str) -> None:
    with pytest.raises(ValueError, match="as_of"):
        parse_as_of(text)


# Instants from 1971 to 2100, with whole microseconds.
instants = st.datetimes(
    min_value=datetime(1971, 1, 1),  # noqa: DTZ001 - hypothesis bounds are naive
    max_value=datetime(2100, 12, 31, 23, 59, 59, 999_999),  # noqa: DTZ001
)


@given(moment=instants, digits=st.integers(min_value=0, max_value=6))
@example(moment=datetime(2023, 1, 25, 18, 13, 22, 479_220), digits=5)  # noqa: DTZ001
def test_utc_suffix_rendering_parses_back_exactly(moment: datetime, digits: int) -> None:
    # keep only what `digits` fraction digits can say; the real files drop trailing zeros
    kept = moment.microsecond - moment.microsecond % 10 ** (6 - digits)
    fraction = f"{kept:06d}"[:digits]
    text = moment.strftime("%Y-%m-%d %H:%M:%S") + (f".{fraction}" if digits else "") + " UTC"
    expected = epoch_us(
        moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second, kept
    )
    assert parse_poll_timestamp(text) == expected
    # the same instant as the real files write it: trailing zeros (and a bare dot) dropped
    short = fraction.rstrip("0")
    real_form = moment.strftime("%Y-%m-%d %H:%M:%S") + (f".{short}" if short else "") + " UTC"
    assert parse_poll_timestamp(real_form) == expected


@given(
    moment=instants,
    offset_minutes=st.integers(min_value=-14 * 60, max_value=14 * 60),
    colon=st.booleans(),
)
def test_iso_with_offset_parses_to_the_same_instant(
    moment: datetime, offset_minutes: int, colon: bool
) -> None:
    local = moment.replace(tzinfo=timezone(timedelta(minutes=offset_minutes)))
    text = local.isoformat()
    if not colon:
        text = text[:-3] + text[-2:]  # +05:45 -> +0545
    expected = (local - EPOCH) // timedelta(microseconds=1)
    assert parse_poll_timestamp(text) == expected
    assert parse_poll_timestamp(local.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")) == expected


@given(ts=st.integers(min_value=epoch_us(1971, 1, 1), max_value=epoch_us(2101, 1, 1) - 1))
def test_format_utc_round_trips(ts: int) -> None:
    text = format_utc(ts)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6} UTC", text)
    assert parse_poll_timestamp(text) == ts
    assert format_utc(parse_poll_timestamp(text)) == text
    assert parse_as_of(text) == ts


def _mutations() -> st.SearchStrategy[str]:
    """Valid timestamps with one character replaced, inserted or dropped: text close to the
    accepted forms, where a parser's edge cases live."""
    base = st.sampled_from(
        [
            "2023-01-25 18:13:22.47922 UTC",
            "2023-01-25 18:13:22 UTC",
            "2023-01-25T18:13:22+05:45",
            "2023-01-25T18:13:22Z",
        ]
    )
    chars = st.sampled_from(list("0123456789 -+:._TZUCtz\t\u0663\uff12\u00e9\x00"))

    @st.composite
    def mutate(draw: st.DrawFn) -> str:
        text = draw(base)
        i = draw(st.integers(min_value=0, max_value=len(text)))
        op = draw(st.sampled_from(["replace", "insert", "drop"]))
        c = draw(chars)
        if op == "insert":
            return text[:i] + c + text[i:]
        if op == "drop":
            return text[:i] + text[i + 1 :]
        return text[:i] + c + text[i + 1 :]

    return mutate()


field_text = st.one_of(
    st.text(), _mutations(), st.sampled_from(["active", "inactive", " Active ", ""])
)


@settings(max_examples=500)
@given(store_id=field_text, timestamp=field_text, status=field_text)
def test_parse_poll_never_raises(store_id: str, timestamp: str, status: str) -> None:
    fields = {"store_id": store_id, "timestamp_utc": timestamp, "status": status}
    result = parse_poll(fields)
    assert isinstance(result, Poll | Rejection)
    if isinstance(result, Rejection):
        assert result.source == "polls"
        assert result.reason in {"bad store_id", "bad timestamp", "bad status"}
        assert dict(result.record) == fields
    else:
        assert result.store_id == store_id.strip()
        assert result.active == (status.strip().lower() == "active")


@given(
    fields=st.dictionaries(
        st.sampled_from(["store_id", "timestamp_utc", "status", "other"]), st.text()
    )
)
def test_parse_poll_never_raises_on_missing_columns(fields: dict[str, str]) -> None:
    result = parse_poll(fields)
    assert isinstance(result, Poll | Rejection)
    if any(key not in fields for key in ("store_id", "timestamp_utc", "status")):
        assert isinstance(result, Rejection)


# --------------------------------------------------------------------------- status


@pytest.mark.parametrize(
    ("text", "active"),
    [
        ("active", True),
        ("inactive", False),
        (" Active ", True),
        ("INACTIVE", False),
        ("Inactive", False),
        ("\tACTIVE\n", True),
    ],
)
def test_status_accepted(text: str, active: bool) -> None:
    assert parse_poll(poll_fields(status=text)) == Poll(
        "42", epoch_us(2023, 1, 25, 18, 13, 22), active
    )


@pytest.mark.parametrize(
    "text",
    ["up", "", "   ", "activ", "inactiv", "active1", "act ive", "true", "1", "down", "in active"],
)
def test_status_rejected(text: str) -> None:
    fields = poll_fields(status=text)
    assert_rejected(parse_poll(fields), "polls", "bad status", fields)


# --------------------------------------------------------------------------- store ids


@pytest.mark.parametrize(
    "store_id",
    [
        "9222367421889482050",  # the largest 2023 id: 19 digits, not exact as a float
        "8139926242460185114",
        "1481966498820158979",
        "257000000000000",
        "0001234",  # leading zeros are part of the id
        "1",
        "fd61b1a3-6bd1-4de2-9a4f-6c0e2c2c5a53",  # 2024 ids are UUIDs
        "FD61B1A3-6BD1-4DE2-9A4F-6C0E2C2C5A53",
        "store-1",
        "x" * 128,
    ],
)
def test_store_id_kept_exactly(store_id: str) -> None:
    result = parse_poll(poll_fields(store_id=store_id))
    assert isinstance(result, Poll)
    assert result.store_id == store_id
    assert type(result.store_id) is str
    assert poll_from_fields(store_id, "2023-01-25 18:13:22 UTC", "active").store_id == store_id


def test_nineteen_digit_id_is_not_float_mangled() -> None:
    store_id = "9222367421889482050"
    assert str(int(float(store_id))) != store_id  # a float would change it...
    result = parse_poll(poll_fields(store_id=store_id))
    assert isinstance(result, Poll)
    assert result.store_id == store_id  # ...the parser does not


@pytest.mark.parametrize(
    "store_id",
    ["2.57E+14", "8.13992624246019E+018", "1e5", "1.5e-3", "-2.5E+10", "", "   ", "x" * 129],
)
def test_store_id_rejected(store_id: str) -> None:
    fields = poll_fields(store_id=store_id)
    assert_rejected(parse_poll(fields), "polls", "bad store_id", fields)
    hours = hours_fields(store_id=store_id)
    assert_rejected(parse_hours(hours), "hours", "bad store_id", hours)
    zone = {"store_id": store_id, "timezone_str": "America/Chicago"}
    assert_rejected(parse_zone(zone), "timezones", "bad store_id", zone)


# --------------------------------------------------------------------------- business hours


@pytest.mark.parametrize("column", ["day", "dayOfWeek"])
@pytest.mark.parametrize(
    ("day", "start", "end", "expected"),
    [
        ("0", "09:00:00", "17:00:00", (0, 9 * 3600, 17 * 3600)),
        ("6", "09:00", "17:30", (6, 9 * 3600, 17 * 3600 + 1800)),
        ("3", "00:00:00", "23:59:59", (3, 0, 86399)),
        ("3", "00:00", "23:59", (3, 0, 86340)),
        ("2", "00:00", "24:00", (2, 0, 86400)),
        ("2", "10:00", "24:00:00", (2, 36000, 86400)),
        ("1", "20:00:00", "02:00:00", (1, 72000, 7200)),  # overnight: kept as written
        ("1", "9:05", "9:05:07", (1, 9 * 3600 + 300, 9 * 3600 + 307)),
        (" 4 ", " 11:00:00 ", " 12:00:00 ", (4, 39600, 43200)),
    ],
)
def test_hours_accepted(
    column: str, day: str, start: str, end: str, expected: tuple[int, int, int]
) -> None:
    result = parse_hours(hours_fields(day, start, end, column=column))
    assert result == HoursRow("42", *expected)


@pytest.mark.parametrize("day", ["7", "-1", "x", "", " ", "1.0", "0x1", "六", "٣", "10"])
def test_hours_bad_day(day: str) -> None:
    fields = hours_fields(day=day)
    assert_rejected(parse_hours(fields), "hours", "bad day", fields)


def test_hours_without_a_day_column_is_a_bad_day() -> None:
    fields = {"store_id": "42", "start_time_local": "09:00", "end_time_local": "10:00"}
    assert_rejected(parse_hours(fields), "hours", "bad day", fields)


def test_hours_day_of_week_column_is_preferred_over_day() -> None:
    fields = {
        "store_id": "42",
        "dayOfWeek": "5",
        "day": "1",
        "start_time_local": "09:00",
        "end_time_local": "10:00",
    }
    assert parse_hours(fields) == HoursRow("42", 5, 9 * 3600, 10 * 3600)


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("25:00", "26:00"),
        ("09:00", "25:00"),
        ("12:60", "13:00"),
        ("12:00", "12:60"),
        ("12:00:60", "13:00"),
        ("24:00", "24:00"),  # 24:00 is only an end
        ("24:00:00", "01:00"),
        ("09:00", "24:00:01"),
        ("09:00", "24:01"),
        ("noon", "13:00"),
        ("", "13:00"),
        ("09:00", ""),
        ("0900", "1300"),
        ("9", "13"),
        ("09:00:00.5", "13:00"),
        ("-1:00", "13:00"),
        ("09:00 AM", "01:00 PM"),
        ("123:00", "13:00"),
    ],
)
def test_hours_bad_time(start: str, end: str) -> None:
    fields = hours_fields(start=start, end=end)
    assert_rejected(parse_hours(fields), "hours", "bad time", fields)


# --------------------------------------------------------------------------- zones


@pytest.mark.parametrize(
    "name",
    [
        "America/New_York",
        "America/Los_Angeles",
        "America/Chicago",
        "America/Indiana/Indianapolis",
        "America/Boise",
        "Asia/Beirut",
        "Asia/Kathmandu",
        "Pacific/Honolulu",
        "US/Eastern",  # a link: valid
        "US/Pacific",
        "UTC",
        "Etc/GMT+5",
    ],
)
def test_zone_accepted(name: str) -> None:
    assert parse_zone({"store_id": "42", "timezone_str": name}) == ZoneRow("42", name)


def test_zone_surrounding_blanks_are_ignored() -> None:
    assert parse_zone({"store_id": "42", "timezone_str": "  America/Denver "}) == ZoneRow(
        "42", "America/Denver"
    )


@pytest.mark.parametrize(
    "name",
    [
        "america/new_york",
        "AMERICA/NEW_YORK",
        "us/eastern",
        "America/New York",
        "Mars/Olympus_Mons",
        "America",
        "EST-5",
        "../etc/passwd",
        "/etc/localtime",
    ],
)
def test_zone_unknown(name: str) -> None:
    fields = {"store_id": "42", "timezone_str": name}
    assert_rejected(parse_zone(fields), "timezones", "unknown zone", fields)


@pytest.mark.parametrize("name", ["", "   "])
def test_zone_empty_rejected(name: str) -> None:
    fields = {"store_id": "42", "timezone_str": name}
    assert_rejected(parse_zone(fields), "timezones", "unknown zone", fields)
