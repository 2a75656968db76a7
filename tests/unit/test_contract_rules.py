"""Hand-computed cases, one per rule of the contract (docs/semantics.md)."""

from __future__ import annotations

from storemon.aggregates.report import render_csv
from storemon.aggregates.schedule import ALWAYS_OPEN
from storemon.aggregates.timebase import HOUR_US, MINUTE_US, US_PER_SECOND

from .corekit import at, report, schedule, utc

CHI = "America/Chicago"
NY = "America/New_York"
MON, TUE, SAT, SUN = 0, 1, 5, 6


def test_worked_example_of_the_contract() -> None:
    sched = schedule((MON, "09:00", "12:00"))
    polls = [(at(CHI, 2024, 1, 15, 10, 14), True), (at(CHI, 2024, 1, 15, 11, 15), False)]
    row = report(sched, CHI, polls, at(CHI, 2024, 1, 15, 18, 0))
    # midpoint 10:44:30: up 09:00-10:44:30, down 10:44:30-12:00
    assert row.up_us[1] == (HOUR_US + 44 * MINUTE_US + 30 * US_PER_SECOND)
    assert row.down_us[1] == (HOUR_US + 15 * MINUTE_US + 30 * US_PER_SECOND)
    assert row.up_us[2] == row.up_us[1]
    assert row.down_us[2] == row.down_us[1]
    assert row.up_us[0] == row.down_us[0] == 0  # the last hour is after closing
    csv_line = render_csv([row]).splitlines()[1]
    assert csv_line == "store-1,0.00,1.74,1.74,0.00,1.26,1.26"


def test_store_without_hours_is_open_around_the_clock() -> None:
    polls = [(utc(2024, 1, 10, 0), True), (utc(2024, 1, 17, 12), False)]
    row = report(ALWAYS_OPEN, CHI, polls, utc(2024, 1, 17, 12))
    # midpoint 2024-01-13 18:00: the week window starts 2024-01-10 12:00
    assert row.up_us[2] == (3 * 24 + 6) * HOUR_US
    assert row.down_us[2] == (3 * 24 + 18) * HOUR_US
    assert row.down_us[1] == 24 * HOUR_US
    assert row.down_us[0] == HOUR_US


def test_overnight_hours_written_either_way_agree() -> None:
    split = schedule((SAT, "20:00", "23:59:59"), (SUN, "00:00", "02:00"))
    wrapped = schedule((SAT, "20:00", "02:00"))
    polls = [(at(NY, 2024, 1, 20, 21, 5), True), (at(NY, 2024, 1, 21, 1, 5), False)]
    as_of = at(NY, 2024, 1, 21, 3, 0)
    a = report(split, NY, polls, as_of)
    b = report(wrapped, NY, polls, as_of)
    assert a == b
    # one 6 h session, split at 23:05 local
    assert a.up_us[1] == 3 * HOUR_US + 5 * MINUTE_US
    assert a.down_us[1] == 2 * HOUR_US + 55 * MINUTE_US


def test_end_at_23_59_00_means_midnight_so_no_hole() -> None:
    sched = schedule((MON, "18:00", "23:59:00"), (TUE, "00:00", "01:00"))
    polls = [(at(CHI, 2024, 1, 15, 18, 30), True), (at(CHI, 2024, 1, 16, 0, 30), False)]
    row = report(sched, CHI, polls, at(CHI, 2024, 1, 16, 2, 0))
    # one 7 h session; midpoint 21:30
    assert row.up_us[1] == 3 * HOUR_US + 30 * MINUTE_US
    assert row.down_us[1] == 3 * HOUR_US + 30 * MINUTE_US


def test_end_equal_to_start_means_a_full_day() -> None:
    sched = schedule((MON, "10:00", "10:00"))
    polls = [(at(CHI, 2024, 1, 15, 11, 0), False)]
    row = report(sched, CHI, polls, at(CHI, 2024, 1, 16, 12, 0))
    assert row.down_us[2] == 24 * HOUR_US


def test_shift_without_a_poll_is_unobserved() -> None:
    sched = schedule((MON, "08:00", "11:00"), (MON, "14:00", "17:00"))
    polls = [(at(CHI, 2024, 1, 15, 9, 0), False)]
    row = report(sched, CHI, polls, at(CHI, 2024, 1, 15, 18, 0))
    assert row.down_us[1] == 3 * HOUR_US  # the morning only
    assert row.up_us[1] == 0


def test_polls_outside_business_hours_are_ignored() -> None:
    sched = schedule((MON, "09:00", "12:00"))
    polls = [
        (at(CHI, 2024, 1, 15, 8, 59), False),
        (at(CHI, 2024, 1, 15, 10, 0), True),
        (at(CHI, 2024, 1, 15, 12, 0), False),  # exactly at closing: outside
    ]
    row = report(sched, CHI, polls, at(CHI, 2024, 1, 15, 13, 0))
    assert row.up_us[1] == 3 * HOUR_US
    assert row.down_us[1] == 0


def test_conflicting_duplicates_count_once_and_inactive_wins() -> None:
    sched = schedule((MON, "09:00", "12:00"))
    t = at(CHI, 2024, 1, 15, 10, 0)
    for polls in ([(t, True), (t, False)], [(t, False), (t, True)], [(t, False)] * 3):
        row = report(sched, CHI, polls, at(CHI, 2024, 1, 15, 13, 0))
        assert row.down_us[1] == 3 * HOUR_US
        assert row.up_us[1] == 0


def test_as_of_leaves_later_polls_out() -> None:
    sched = schedule((MON, "09:00", "17:00"))
    polls = [(at(CHI, 2024, 1, 15, 10, 0), True), (at(CHI, 2024, 1, 15, 14, 0), False)]
    row = report(sched, CHI, polls, at(CHI, 2024, 1, 15, 13, 0))
    # as of 13:00 only the 10:00 poll exists: up 09:00-13:00
    assert row.up_us[1] == 4 * HOUR_US
    assert row.down_us[1] == 0
    assert row.up_us[0] == HOUR_US
    later = report(sched, CHI, polls, at(CHI, 2024, 1, 15, 17, 0))
    assert later.up_us[1] == 3 * HOUR_US
    assert later.down_us[1] == 5 * HOUR_US


def test_last_hour_window_cuts_a_session() -> None:
    sched = schedule((MON, "09:00", "12:30"))
    polls = [(at(CHI, 2024, 1, 15, 9, 5), True), (at(CHI, 2024, 1, 15, 12, 5), False)]
    row = report(sched, CHI, polls, at(CHI, 2024, 1, 15, 12, 45))
    # last hour [11:45, 12:45) meets business time [11:45, 12:30); midpoint 10:35
    assert row.down_us[0] == 45 * MINUTE_US
    assert row.up_us[0] == 0
    assert row.up_us[1] == 95 * MINUTE_US
    assert row.down_us[1] == 115 * MINUTE_US


def test_tail_after_last_poll_stops_at_report_time() -> None:
    polls = [(utc(2024, 1, 15, 10, 0), True)]
    row = report(ALWAYS_OPEN, "UTC", polls, utc(2024, 1, 15, 10, 40))
    # 24x7: the first poll reaches back to the start of every window
    assert row.up_us == (HOUR_US, 24 * HOUR_US, 168 * HOUR_US)


def test_spring_forward_night_shift() -> None:
    # 2024-03-10, New York: 02:00 EST jumps to 03:00 EDT. 01:00 EST = 06:00 UTC, 04:00 EDT = 08:00 UTC.
    sched = schedule((SUN, "01:00", "04:00"))
    polls = [(utc(2024, 3, 10, 6, 30), True)]
    row = report(sched, NY, polls, utc(2024, 3, 10, 12))
    assert row.up_us[1] == 2 * HOUR_US


def test_spring_forward_start_in_the_gap_moves_forward() -> None:
    # 02:30 does not exist: it moves forward to 03:30 EDT = 07:30 UTC; 03:30-04:00 is 30 min.
    sched = schedule((SUN, "02:30", "04:00"))
    polls = [(utc(2024, 3, 10, 7, 45), False)]
    row = report(sched, NY, polls, utc(2024, 3, 10, 12))
    assert row.down_us[1] == 30 * MINUTE_US


def test_span_empty_after_the_gap_is_empty() -> None:
    sched = schedule((SUN, "02:15", "03:15"))  # both ends map to 07:15 UTC
    polls = [(utc(2024, 3, 10, 7, 15), True)]
    row = report(sched, NY, polls, utc(2024, 3, 10, 12))
    assert row.up_us == row.down_us == (0, 0, 0)


def test_fall_back_night_shift_is_four_hours() -> None:
    # 2024-11-03, New York: 01:00 EDT (05:00 UTC, first occurrence) to 04:00 EST (09:00 UTC).
    sched = schedule((SUN, "01:00", "04:00"))
    polls = [(utc(2024, 11, 3, 5, 10), True), (utc(2024, 11, 3, 8, 50), False)]
    row = report(sched, NY, polls, utc(2024, 11, 3, 12))
    assert row.up_us[1] + row.down_us[1] == 4 * HOUR_US
    assert row.up_us[1] == 2 * HOUR_US  # midpoint 07:00 UTC


def test_whole_day_on_dst_days_is_23_and_25_hours() -> None:
    sched = schedule((SUN, "00:00", "23:59:59"))
    spring = report(sched, NY, [(utc(2024, 3, 10, 12), True)], utc(2024, 3, 11, 12))
    fall = report(sched, NY, [(utc(2024, 11, 3, 12), True)], utc(2024, 11, 4, 12))
    assert spring.up_us[2] == 23 * HOUR_US
    assert fall.up_us[2] == 25 * HOUR_US


def test_nine_to_five_is_eight_hours_on_a_dst_day() -> None:
    sched = schedule((SUN, "09:00", "17:00"))
    row = report(sched, NY, [(at(NY, 2024, 3, 10, 12), False)], utc(2024, 3, 11, 12))
    assert row.down_us[2] == 8 * HOUR_US


def test_sydney_dst_end() -> None:
    # 2024-04-07: 03:00 AEDT falls back to 02:00 AEST. 01:00 AEDT = 14:00 UTC (6th), 04:00 AEST = 18:00 UTC.
    zone = "Australia/Sydney"
    sched = schedule((SUN, "01:00", "04:00"))
    row = report(sched, zone, [(utc(2024, 4, 6, 14, 30), True)], utc(2024, 4, 7, 0))
    assert row.up_us[1] == 4 * HOUR_US


def test_kathmandu_quarter_hour_offset() -> None:
    zone = "Asia/Kathmandu"  # UTC+05:45: 09:00-12:00 local is 03:15-06:15 UTC
    sched = schedule((MON, "09:00", "12:00"))
    row = report(sched, zone, [(utc(2024, 1, 15, 3, 20), False)], utc(2024, 1, 15, 6, 45))
    assert row.down_us[1] == 3 * HOUR_US
    assert row.down_us[0] == 30 * MINUTE_US  # [05:45, 06:45) meets [03:15, 06:15)


def test_rounding_is_half_up_to_hundredths() -> None:
    from storemon.aggregates.report import format_hundredths

    assert format_hundredths(30 * US_PER_SECOND, MINUTE_US) == "0.50"
    assert format_hundredths(int(0.005 * MINUTE_US), MINUTE_US) == "0.01"  # exactly half
    assert format_hundredths(int(0.005 * MINUTE_US) - 1, MINUTE_US) == "0.00"
    assert format_hundredths(168 * HOUR_US, HOUR_US) == "168.00"


def test_the_readme_picture() -> None:
    sched = schedule((MON, "09:00", "12:00"))
    polls = [(at(CHI, 2024, 1, 15, 10, 14), True), (at(CHI, 2024, 1, 15, 11, 15), False)]
    row = report(sched, CHI, polls, utc(2024, 1, 15, 17, 30))
    assert row.up_us[0] == 14 * MINUTE_US + 30 * US_PER_SECOND
    assert row.down_us[0] == 45 * MINUTE_US + 30 * US_PER_SECOND
