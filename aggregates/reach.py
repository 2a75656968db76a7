"""Which report times the stream answers exactly, and how much history that takes.

The stream keeps a bounded history, so it can answer a report time T exactly only when
every store still holds the data that T's week window looks at. Two settings fix the
*supported range* of T, around the newest poll ingested (N, over all stores):

* the **reach** (``STOREMON_REPORT_REACH_HOURS``): T may lie this far before N;
* the **lead** (``STOREMON_REPORT_LEAD_HOURS``): T may lie this far after N. Past the newest
  poll the report only extends each store's last status; a little of that is what live use
  wants (a report "now", between two hourly polls), much of it is a guess.

What is kept follows from the reach: a report at T reads ``[T - 1 week, T)``, and the
interpolation inside that window needs, besides the polls in it, only the newest poll
before it (the *anchor*: it is the nearest poll of its session for every instant up to the
next poll, and no older poll can be nearer). So each store keeps its polls and buckets from
``reach + 1 week`` before *its own* newest poll, plus the anchor. A store's newest poll is
never later than N, so its cutoff is never later than what the range needs; and a poll of
one store, even one far in the future, never makes another store lose data.

Pure: no I/O, every time is a parameter (integer microseconds, UTC).
"""

from __future__ import annotations

from dataclasses import dataclass

from storemon.aggregates.report import LONGEST_WINDOW_US
from storemon.aggregates.timebase import DAY_US, floor_to, format_utc

DEFAULT_REACH_HOURS = 168
DEFAULT_LEAD_HOURS = 2


def retention_us(reach_us: int) -> int:
    """How far before a store's newest poll its history is kept (the anchor aside)."""
    return reach_us + LONGEST_WINDOW_US


def store_cutoff_us(newest_poll_us: int, reach_us: int) -> int:
    """Where a store's history may be cut: whole UTC days, so the cut moves once a day."""
    return floor_to(newest_poll_us - retention_us(reach_us), DAY_US)


@dataclass(frozen=True, slots=True)
class ReportRange:
    """The report times ``[earliest_us, latest_us]`` the stream answers exactly."""

    earliest_us: int
    latest_us: int

    def __contains__(self, as_of_us: object) -> bool:
        return isinstance(as_of_us, int) and self.earliest_us <= as_of_us <= self.latest_us

    def describe(self) -> str:
        return f"from {format_utc(self.earliest_us)} to {format_utc(self.latest_us)}"

    def as_json(self) -> dict[str, str]:
        return {
            "earliest_as_of": format_utc(self.earliest_us),
            "latest_as_of": format_utc(self.latest_us),
        }


def supported_range(
    newest_poll_us: int | None,
    reach_us: int,
    lead_us: int,
    pruned_before_us: int | None = None,
) -> ReportRange | None:
    """The supported range given the newest poll ingested (None: nothing yet, so no range).

    ``pruned_before_us`` is the latest cut ever applied to stored history (it can be later
    than the reach implies if the reach was once smaller): a week window must not reach
    before it."""
    if newest_poll_us is None:
        return None
    earliest = newest_poll_us - reach_us
    if pruned_before_us is not None:
        earliest = max(earliest, pruned_before_us + LONGEST_WINDOW_US)
    return ReportRange(earliest, newest_poll_us + lead_us)


def out_of_range_message(as_of_us: int, allowed: ReportRange | None) -> str:
    """Why a report time cannot be answered, naming what can."""
    if allowed is None:
        return "no poll has been ingested yet, so no report time can be answered"
    return (
        f"as_of {format_utc(as_of_us)} is outside the supported range: report times "
        f"{allowed.describe()} are answered exactly"
    )


__all__ = [
    "DEFAULT_LEAD_HOURS",
    "DEFAULT_REACH_HOURS",
    "ReportRange",
    "out_of_range_message",
    "retention_us",
    "store_cutoff_us",
    "supported_range",
]
