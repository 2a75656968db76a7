"""The worker's fast report path: CSV rendering and packing on arrays, and the hours kept."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from storemon.aggregates.coverage import pack_sums
from storemon.aggregates.hour_index import HourIndex, IndexSums, StoreTail
from storemon.aggregates.reach import supported_range
from storemon.aggregates.report import StoreWindows, render_csv
from storemon.aggregates.timebase import HOUR_US, WEEK_US
from storemon.report_csv import render_sums_csv
from storemon.streams.report_index import hours_to_keep, pack_index_sums

store_ids = st.one_of(
    st.text(min_size=0, max_size=12),
    st.sampled_from(["a,b", 'x"y', "line\nbreak", "", " lead", "12345678901234567890"]),
)
microseconds = st.integers(min_value=0, max_value=WEEK_US)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(store_ids, st.tuples(*[microseconds] * 6), max_size=30))
def test_rendering_on_arrays_gives_the_bytes_of_the_report_writer(rows) -> None:  # type: ignore[no-untyped-def]
    ordered = sorted(rows)
    windows = [StoreWindows(s, rows[s][:3], rows[s][3:]) for s in ordered]
    sums = np.array([rows[s] for s in ordered], np.int64).reshape(len(ordered), 6)
    assert render_sums_csv(ordered, sums) == render_csv(windows)
    found = IndexSums(0, sums, np.arange(len(ordered)), ordered)
    assert pack_index_sums(found) == pack_sums(windows)


def test_half_hundredths_round_up_on_arrays_too() -> None:
    # 30 s is exactly half a hundredth... of nothing; 0.3 s is half a hundredth of a minute
    half_minute_cent = 300_000
    half_hour_cent = 18_000_000
    sums = np.array([[half_minute_cent, half_hour_cent, half_hour_cent - 1, 0, 0, 0]], np.int64)
    line = render_sums_csv(["s"], sums).splitlines()[1]
    assert line == "s,0.01,0.01,0.00,0.00,0.00,0.00"


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=0, max_value=2**50),
    st.integers(min_value=0, max_value=24 * 60),
    st.integers(min_value=0, max_value=48),
    st.data(),
)
def test_the_index_keeps_every_hour_a_supported_report_reads(newest, reach_h, lead_h, data) -> None:  # type: ignore[no-untyped-def]
    index = HourIndex(hours_to_keep(reach_h * HOUR_US))
    index.apply_tails([StoreTail("s", newest, newest, newest, True, newest + 1)])
    allowed = supported_range(newest, reach_h * HOUR_US, lead_h * HOUR_US)
    assert allowed is not None
    as_of = data.draw(st.integers(allowed.earliest_us, allowed.latest_us))
    assert index.covers(as_of)
    assert index.covers(allowed.earliest_us)
    assert not index.covers(allowed.earliest_us - 2 * HOUR_US)


def test_numbers_from_the_table_and_past_it_read_the_same() -> None:
    from storemon.report_csv import TEXT_UP_TO

    cent_of_hour, cent_of_minute = 36_000_000, 600_000
    edges = [0, 1, 99, 100, TEXT_UP_TO - 1, TEXT_UP_TO, 10 * TEXT_UP_TO + 7]
    for column, cent in ((0, cent_of_minute), (2, cent_of_hour), (5, cent_of_hour)):
        ordered = [f"s{i}" for i in range(len(edges))]
        sums = np.zeros((len(edges), 6), np.int64)
        sums[:, column] = [h * cent for h in edges]
        windows = [
            StoreWindows(s, (r[0], r[1], r[2]), (r[3], r[4], r[5]))
            for s, r in zip(ordered, sums.tolist(), strict=True)
        ]
        assert render_sums_csv(ordered, sums) == render_csv(windows)
        # only the table: all values below its end
        assert render_sums_csv(ordered[:5], sums[:5]) == render_csv(windows[:5])
