"""Report windows, units and the CSV of the contract.

The report at ``as_of`` = T looks back over three rolling windows, ``[T - 1 h, T)``,
``[T - 24 h, T)`` and ``[T - 168 h, T)``. Sums stay in integer microseconds until the one
place that converts them to report units: :func:`format_hundredths`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass

from storemon.aggregates.timebase import DAY_US, HOUR_US, MINUTE_US, WEEK_US

# (window length, unit it is reported in)
WINDOWS: tuple[tuple[int, int], ...] = ((HOUR_US, MINUTE_US), (DAY_US, HOUR_US), (WEEK_US, HOUR_US))
LONGEST_WINDOW_US = WEEK_US

REPORT_HEADER = (
    "store_id",
    "uptime_last_hour",
    "uptime_last_day",
    "uptime_last_week",
    "downtime_last_hour",
    "downtime_last_day",
    "downtime_last_week",
)


@dataclass(frozen=True, slots=True)
class StoreWindows:
    """Uptime and downtime of one store in the hour, day and week windows, in microseconds."""

    store_id: str
    up_us: tuple[int, int, int]
    down_us: tuple[int, int, int]


def format_hundredths(value_us: int, unit_us: int) -> str:
    """``value_us`` in ``unit_us`` with two decimals, rounded half up from the exact value."""
    hundredths = (value_us * 200 + unit_us) // (2 * unit_us)
    return f"{hundredths // 100}.{hundredths % 100:02d}"


def report_fields(row: StoreWindows) -> list[str]:
    units = [unit for _, unit in WINDOWS]
    ups = [format_hundredths(v, u) for v, u in zip(row.up_us, units, strict=True)]
    downs = [format_hundredths(v, u) for v, u in zip(row.down_us, units, strict=True)]
    return [row.store_id, *ups, *downs]


# A store id with none of these characters is written as is; others are quoted by csv.
NEEDS_QUOTING = frozenset(',"\r\n')


def render_csv(rows: Iterable[StoreWindows]) -> str:
    """The report CSV: header, then one line per store sorted by ``store_id``.

    Lines are joined directly (the numbers never need quoting); a store id that the csv
    module would quote, or an empty one, goes through it, so the bytes are the same."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(REPORT_HEADER)
    lines = [buffer.getvalue()]
    (_, hour_unit), (_, day_unit), (_, week_unit) = WINDOWS
    # format_hundredths written out: (value * 200 + unit) // (2 * unit) hundredths.
    hour_2, day_2, week_2 = 2 * hour_unit, 2 * day_unit, 2 * week_unit
    for row in sorted(rows, key=lambda r: r.store_id):
        store_id = row.store_id
        if not store_id or not NEEDS_QUOTING.isdisjoint(store_id):
            buffer.seek(0)
            buffer.truncate()
            writer.writerow(report_fields(row))
            lines.append(buffer.getvalue())
            continue
        up, down = row.up_us, row.down_us
        a = (up[0] * 200 + hour_unit) // hour_2
        b = (up[1] * 200 + day_unit) // day_2
        c = (up[2] * 200 + week_unit) // week_2
        d = (down[0] * 200 + hour_unit) // hour_2
        e = (down[1] * 200 + day_unit) // day_2
        f = (down[2] * 200 + week_unit) // week_2
        lines.append(
            f"{store_id},{a // 100}.{a % 100:02d},{b // 100}.{b % 100:02d},"
            f"{c // 100}.{c % 100:02d},{d // 100}.{d % 100:02d},{e // 100}.{e % 100:02d},"
            f"{f // 100}.{f % 100:02d}\n"
        )
    return "".join(lines)
