"""Business and unobserved time per window (docs/semantics.md section 7), the exact sums a
report job stores for them, and the JSON and Parquet columns that carry them."""

from __future__ import annotations

import io
import uuid
from bisect import bisect_right

import orjson
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storemon.aggregates.coverage import (
    COVERAGE_HEADER,
    Coverage,
    business_of_sessions,
    business_windows,
    coverage,
    coverage_values,
    pack_sums,
    unpack_sums,
)
from storemon.aggregates.report import LONGEST_WINDOW_US, WINDOWS, StoreWindows, render_csv
from storemon.aggregates.schedule import ENDLESS, sessions_between
from storemon.aggregates.timebase import HOUR_US, MINUTE_US
from storemon.aggregates.timeline import dedupe_polls
from storemon.web import formats

from .corekit import at, schedule, scratch
from .test_core_properties import stores


@settings(max_examples=200, deadline=None)
@given(stores())
def test_unobserved_is_the_business_time_of_sessions_without_a_poll(store) -> None:  # type: ignore[no-untyped-def]
    """Computed as business - up - down, it equals the business time of the sessions (cut
    to the window and to T) that hold no poll at or before T."""
    sched, zone, polls, as_of = store
    row = scratch(sched, zone, polls, as_of)
    found = coverage(row, sched, zone, as_of)
    poll_ts, _ = dedupe_polls(polls)
    used = poll_ts[: bisect_right(poll_ts, as_of)]
    sessions = sessions_between(sched, zone, as_of - LONGEST_WINDOW_US, as_of)
    for i, (length, _) in enumerate(WINDOWS):
        lo = as_of - length
        unobserved = sum(
            max(0, min(end, as_of) - max(start, lo))
            for start, end in zip(sessions.starts, sessions.ends, strict=True)
            if not any(start <= ts < end for ts in used)
        )
        assert found.unobserved_us[i] == unobserved
        assert row.up_us[i] + row.down_us[i] + found.unobserved_us[i] == found.business_us[i]


@settings(max_examples=100, deadline=None)
@given(st.lists(stores(), min_size=1, max_size=5), st.integers(0, 3 * 24))
def test_business_of_many_stores_at_once_equals_one_at_a_time(fleet, hours_later) -> None:  # type: ignore[no-untyped-def]
    """The dashboard sums the fleet's business time on arrays, from sessions computed over a
    wider span than the week (kept for a while): the same microseconds as store by store."""
    as_of = fleet[0][3] + hours_later * HOUR_US
    sessions = [
        sessions_between(sched, zone, as_of - LONGEST_WINDOW_US - 86_400_000_000, as_of + HOUR_US)
        for sched, zone, _, _ in fleet
    ]
    found = business_of_sessions([*sessions, ENDLESS], as_of)
    expected = [business_windows(sched, zone, as_of) for sched, zone, _, _ in fleet]
    assert [tuple(int(v) for v in row) for row in found] == [
        *expected,
        tuple(length for length, _ in WINDOWS),
    ]


def test_worked_example_store_a_week_later_before_any_poll_of_that_monday() -> None:
    zone = "America/Chicago"
    sched = schedule((0, "09:00", "12:00"))
    polls = [(at(zone, 2024, 1, 8, 10, 14), True), (at(zone, 2024, 1, 8, 11, 15), False)]
    # The next Monday at 10:00, unpolled: its first hour is unobserved; of the Monday
    # before, [10:00, 12:00) is still in the week and observed.
    as_of = at(zone, 2024, 1, 15, 10, 0)
    found = coverage(scratch(sched, zone, polls, as_of), sched, zone, as_of)
    assert found.business_us == (HOUR_US, HOUR_US, 3 * HOUR_US)
    assert found.unobserved_us == (HOUR_US, HOUR_US, HOUR_US)
    assert coverage_values(found) == [60.0, 1.0, 3.0, 60.0, 1.0, 1.0]


def test_exact_sums_survive_packing_in_csv_order() -> None:
    rows = [
        StoreWindows("b", (1, 2, 3), (4, 5, 2**40)),
        StoreWindows("a", (0, 0, 7 * 24 * HOUR_US), (0, 0, 0)),
    ]
    packed = pack_sums(rows)
    assert unpack_sums(["a", "b"], packed) == sorted(rows, key=lambda r: r.store_id)
    with pytest.raises(ValueError, match="match"):
        unpack_sums(["a"], packed)


def test_json_and_parquet_add_business_and_unobserved_columns() -> None:
    rows = [StoreWindows("s1", (30 * MINUTE_US, HOUR_US, HOUR_US), (0, 0, 2 * HOUR_US))]
    found = [
        Coverage((HOUR_US, 5 * HOUR_US, 10 * HOUR_US), (30 * MINUTE_US, 4 * HOUR_US, 7 * HOUR_US))
    ]
    csv_text = render_csv(rows)
    body = orjson.loads(formats.report_json(uuid.uuid4(), "t", csv_text, found))
    assert body["columns"][7:] == list(COVERAGE_HEADER)
    row = body["rows"][0]
    assert row["business_last_hour"] == 60.0  # minutes, like the CSV's hour column
    assert row["unobserved_last_hour"] == 30.0
    assert row["business_last_week"] == 10.0  # hours
    assert row["unobserved_last_day"] == 4.0
    table = pq.read_table(io.BytesIO(formats.report_parquet(uuid.uuid4(), "t", csv_text, found)))
    assert table.to_pylist() == body["rows"]
    # without them, the reason instead
    why = "a store's business hours or time zone changed since the report was taken"
    body = orjson.loads(formats.report_json(uuid.uuid4(), "t", csv_text, why))
    assert body["coverage_missing"] == why
    assert "business_last_hour" not in body["rows"][0]
    table = pq.read_table(io.BytesIO(formats.report_parquet(uuid.uuid4(), "t", csv_text, why)))
    assert table.schema.metadata[b"storemon.coverage_missing"] == why.encode()
