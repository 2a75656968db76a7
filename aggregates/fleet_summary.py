"""What the dashboard's fleet page shows, as one value: the fleet's totals per window, its
business and unobserved time, the stores with most downtime and the week's hourly sums.

Two sources build it and must agree to the microsecond: the report's rows (the page's
PostgreSQL path, :func:`summary_of_rows`) and the worker's arrays of exact sums
(:func:`summary_of_sums`, computed in the same job as the report). The property tests hold
the two equal. :func:`summary_fields` and :func:`summary_from_fields` carry it through the
``fleet_summaries`` table (migration 0018) from the worker to the page.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from storemon.aggregates.coverage import SUMS_PER_ROW, Coverage
from storemon.aggregates.report import WINDOWS, StoreWindows

Int64s = npt.NDArray[np.int64]
Triple = tuple[int, int, int]

# Stores listed as the fleet's most down.
WORST_STORES = 15


@dataclass(frozen=True, slots=True)
class FleetSummary:
    """The fleet page's numbers at one report time (microseconds, windows hour/day/week)."""

    as_of_us: int
    store_count: int
    up_us: Triple
    down_us: Triple
    coverage: Coverage | None  # None: the schedules changed since the sums (not comparable)
    worst: tuple[StoreWindows, ...]  # most downtime over the week, then the day; ties by id
    hours: tuple[Triple, ...]  # (hour start, up, down) of the week's hours, oldest first


def fleet_totals(rows: Iterable[StoreWindows]) -> tuple[list[int], list[int]]:
    """Sums over the fleet of up and down per window (hour, day, week)."""
    up, down = [0, 0, 0], [0, 0, 0]
    for row in rows:
        for w in range(3):
            up[w] += row.up_us[w]
            down[w] += row.down_us[w]
    return up, down


def worst_stores(rows: Iterable[StoreWindows], count: int) -> list[StoreWindows]:
    """The stores with most downtime over the week (then the day), ties by id."""
    ranked = sorted(rows, key=lambda r: (-r.down_us[2], -r.down_us[1], r.store_id))
    return [r for r in ranked[:count] if r.down_us[2] > 0]


def fleet_coverage_of(
    business_us: Sequence[int], up_us: Sequence[int], down_us: Sequence[int]
) -> Coverage:
    """The fleet's business time and what of it neither up nor down covers, per window."""
    unobserved = [b - u - d for b, u, d in zip(business_us, up_us, down_us, strict=True)]
    if min(unobserved) < 0:
        raise ValueError("the fleet's up and down exceed its business time")
    return Coverage(_triple(business_us), _triple(unobserved))


def business_of_pairs(per_pair: Int64s, pair_of_store: Int64s) -> Triple:
    """The fleet's business microseconds per window: ``per_pair[p]`` is the business time of
    schedule-and-zone pair ``p``, ``pair_of_store[i]`` the pair of store ``i``."""
    stores_per_pair = np.bincount(pair_of_store, minlength=len(per_pair))
    total = (per_pair.astype(np.int64) * stores_per_pair[:, None]).sum(axis=0, dtype=np.int64)
    return _triple(int(v) for v in total)


def summary_of_rows(
    as_of_us: int,
    rows: Sequence[StoreWindows],
    hours: Iterable[Triple],
    found: Coverage | None,
    count: int = WORST_STORES,
) -> FleetSummary:
    """The summary from a report's rows and the fleet's coverage (already summed)."""
    up, down = fleet_totals(rows)
    return FleetSummary(
        as_of_us,
        len(rows),
        _triple(up),
        _triple(down),
        found,
        tuple(worst_stores(rows, count)),
        tuple(_triple(h) for h in hours),
    )


def summary_of_sums(
    as_of_us: int,
    store_ids: Sequence[str],
    sums: Int64s,
    hours: Iterable[Triple],
    business_us: Sequence[int] | None,
    count: int = WORST_STORES,
) -> FleetSummary:
    """The summary from a report's exact sums on arrays: row i of ``sums`` is store
    ``store_ids[i]``, up over the hour, day and week, then down over the same (the layout
    of :func:`~storemon.aggregates.coverage.pack_sums`). ``business_us``: the fleet's
    business time per window, None when unknown."""
    if sums.shape != (len(store_ids), SUMS_PER_ROW):
        raise ValueError("the sums do not match the stores")
    windows = len(WINDOWS)
    total = sums.sum(axis=0, dtype=np.int64)
    up = _triple(int(v) for v in total[:windows])
    down = _triple(int(v) for v in total[windows:])
    down_week, down_day = sums[:, windows + 2], sums[:, windows + 1]
    candidates = np.flatnonzero(down_week > 0)
    if len(candidates) > count > 0:
        # The first ``count`` in order all have at least the count-th largest week: keep
        # those (ties at the cut included); the exact order is settled below.
        weeks = down_week[candidates]
        cut = len(weeks) - count
        candidates = candidates[weeks >= np.partition(weeks, cut)[cut]]
    picked = sorted(
        (int(i) for i in candidates),
        key=lambda i: (-int(down_week[i]), -int(down_day[i]), store_ids[i]),
    )[: max(count, 0)]
    worst = tuple(
        StoreWindows(
            store_ids[i],
            _triple(int(v) for v in sums[i, :windows]),
            _triple(int(v) for v in sums[i, windows:]),
        )
        for i in picked
    )
    found = fleet_coverage_of(business_us, up, down) if business_us is not None else None
    return FleetSummary(
        as_of_us, len(store_ids), up, down, found, worst, tuple(_triple(h) for h in hours)
    )


def summary_fields(summary: FleetSummary) -> dict[str, Any]:
    """The summary as plain values, for the ``fleet_summaries`` table's JSON (integers exact)."""
    found = summary.coverage
    return {
        "as_of_us": summary.as_of_us,
        "store_count": summary.store_count,
        "up_us": summary.up_us,
        "down_us": summary.down_us,
        "business_us": found.business_us if found is not None else None,
        "unobserved_us": found.unobserved_us if found is not None else None,
        "worst": [[r.store_id, *r.up_us, *r.down_us] for r in summary.worst],
        "hours": summary.hours,
    }


def summary_from_fields(value: dict[str, Any]) -> FleetSummary:
    """The summary back from :func:`summary_fields`' values (as JSON gives them back)."""
    found = None
    if value["business_us"] is not None:
        found = Coverage(_triple(value["business_us"]), _triple(value["unobserved_us"]))
    return FleetSummary(
        value["as_of_us"],
        value["store_count"],
        _triple(value["up_us"]),
        _triple(value["down_us"]),
        found,
        tuple(StoreWindows(w[0], _triple(w[1:4]), _triple(w[4:7])) for w in value["worst"]),
        tuple(_triple(h) for h in value["hours"]),
    )


def _triple(values: Iterable[int]) -> Triple:
    a, b, c = values
    return (int(a), int(b), int(c))


__all__ = [
    "WORST_STORES",
    "FleetSummary",
    "business_of_pairs",
    "fleet_coverage_of",
    "fleet_totals",
    "summary_fields",
    "summary_from_fields",
    "summary_of_rows",
    "summary_of_sums",
    "worst_stores",
]
