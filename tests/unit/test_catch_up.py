"""The arithmetic of a report's wait for the input (streams/catch_up.py)."""

from __future__ import annotations

from aiokafka import TopicPartition

from storemon.streams.catch_up import IngestBehind, merged, records_behind

A, B = TopicPartition("polls", 0), TopicPartition("polls", 1)


def test_records_behind_counts_what_is_not_done_before_each_end() -> None:
    assert records_behind({A: 10, B: 5}, {A: 10, B: 5}) == 0
    assert records_behind({A: 10, B: 5}, {A: 7}) == 3 + 5  # B: nothing known done
    assert records_behind({A: 10}, {A: 12, B: 3}) == 0  # done past the end: read later


def test_the_furthest_known_position_wins() -> None:
    # this process applied more than Faust committed; the broker knows another partition
    assert merged({A: 7}, {A: 5, B: 2}) == {A: 7, B: 2}
    assert merged({}, {}) == {}


def test_the_failure_says_how_much_input_was_waiting() -> None:
    error = IngestBehind(1234, 1.6)
    assert error.records == 1234
    assert str(error).startswith("ingestion is behind: 1234 input records")
    assert "after 2 s" in str(error)
