"""The supported range of report times and the history it takes (docs/semantics.md,
"Which report times the service answers")."""

from __future__ import annotations

import pytest

from storemon.aggregates.reach import (
    ReportRange,
    out_of_range_message,
    retention_us,
    store_cutoff_us,
    supported_range,
)
from storemon.aggregates.timebase import DAY_US, HOUR_US, WEEK_US, parse_as_of
from storemon.settings import Settings

NEWEST = parse_as_of("2023-01-25 18:13:22.47922")


def test_range_runs_from_the_reach_before_to_the_lead_after_the_newest_poll() -> None:
    allowed = supported_range(NEWEST, 168 * HOUR_US, 2 * HOUR_US)
    assert allowed == ReportRange(NEWEST - WEEK_US, NEWEST + 2 * HOUR_US)
    assert allowed.earliest_us in allowed
    assert allowed.latest_us in allowed
    assert allowed.earliest_us - 1 not in allowed
    assert allowed.latest_us + 1 not in allowed
    assert allowed.as_json() == {
        "earliest_as_of": "2023-01-18 18:13:22.479220 UTC",
        "latest_as_of": "2023-01-25 20:13:22.479220 UTC",
    }


def test_nothing_ingested_means_no_range() -> None:
    assert supported_range(None, 168 * HOUR_US, 2 * HOUR_US) is None
    assert "no poll" in out_of_range_message(NEWEST, None)


def test_a_past_cut_later_than_the_reach_implies_narrows_the_range() -> None:
    # The reach was smaller once: history before that cut is gone for good.
    cut = NEWEST - 9 * DAY_US
    allowed = supported_range(NEWEST, 168 * HOUR_US, 0, pruned_before_us=cut)
    assert allowed is not None
    assert allowed.earliest_us == cut + WEEK_US
    # an older cut changes nothing
    same = supported_range(NEWEST, 168 * HOUR_US, 0, pruned_before_us=NEWEST - 30 * DAY_US)
    assert same is not None
    assert same.earliest_us == NEWEST - WEEK_US


def test_history_kept_covers_the_week_window_of_the_earliest_report_time() -> None:
    for reach_hours in (0, 1, 24, 168, 720):
        reach = reach_hours * HOUR_US
        assert retention_us(reach) == reach + WEEK_US
        cut = store_cutoff_us(NEWEST, reach)
        allowed = supported_range(NEWEST, reach, 0)
        assert allowed is not None
        assert cut % DAY_US == 0
        assert cut <= allowed.earliest_us - WEEK_US < cut + DAY_US


def test_the_message_names_the_range() -> None:
    allowed = supported_range(NEWEST, 24 * HOUR_US, 2 * HOUR_US)
    text = out_of_range_message(parse_as_of("2030-01-01 00:00:00"), allowed)
    assert "2030-01-01 00:00:00.000000 UTC" in text
    assert "2023-01-24 18:13:22.479220" in text
    assert "2023-01-25 20:13:22.479220" in text


def test_reach_and_lead_settings() -> None:
    defaults = Settings.from_env({})
    assert (defaults.report_reach_hours, defaults.report_lead_hours) == (168, 2)
    assert defaults.retention_us == 336 * HOUR_US
    month = Settings.from_env(
        {"STOREMON_REPORT_REACH_HOURS": "720", "STOREMON_REPORT_LEAD_HOURS": "0"}
    )
    assert month.reach_us == 720 * HOUR_US
    assert month.lead_us == 0
    assert month.retention_us == (720 + 168) * HOUR_US
    for bad in ("-1", "2.5", "a week"):
        with pytest.raises(ValueError, match="STOREMON_REPORT_REACH_HOURS"):
            Settings.from_env({"STOREMON_REPORT_REACH_HOURS": bad})


def test_the_old_horizon_variable_is_refused_with_a_pointer() -> None:
    with pytest.raises(ValueError, match="STOREMON_REPORT_REACH_HOURS"):
        Settings.from_env({"STOREMON_HORIZON_HOURS": "192"})
