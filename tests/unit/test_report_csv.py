"""The report CSV's fast line joining writes exactly what the csv module writes."""

from __future__ import annotations

import csv
import io

from hypothesis import example, given, settings
from hypothesis import strategies as st

from storemon.aggregates.report import REPORT_HEADER, StoreWindows, render_csv, report_fields

MICROS = st.integers(min_value=0, max_value=10**12)


def reference_csv(rows: list[StoreWindows]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(REPORT_HEADER)
    for row in sorted(rows, key=lambda r: r.store_id):
        writer.writerow(report_fields(row))
    return buffer.getvalue()


store_windows = st.builds(
    StoreWindows,
    st.text(max_size=12),
    st.tuples(MICROS, MICROS, MICROS),
    st.tuples(MICROS, MICROS, MICROS),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(store_windows, max_size=8, unique_by=lambda r: r.store_id))
@example([StoreWindows("", (1, 2, 3), (4, 5, 6))])
@example(
    [StoreWindows('a,"b"\r\n', (0, 0, 0), (0, 0, 0)), StoreWindows("plain", (1, 1, 1), (1, 1, 1))]
)
@example([StoreWindows(" spaced ", (59_999_999, 0, 0), (0, 0, 0))])
def test_render_csv_matches_the_csv_module(rows: list[StoreWindows]) -> None:
    assert render_csv(rows) == reference_csv(rows)
