"""The arithmetic of a report's wait for the input (streams/catch_up.py)."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import TopicPartition

from storemon.streams.catch_up import (
    IngestBehind,
    NotCaughtUp,
    Speculation,
    merged,
    records_behind,
)

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


async def test_a_speculative_answer_is_kept_only_if_its_positions_reached_the_ends() -> None:
    internal = TopicPartition("input-batches", 0)
    ends: asyncio.Future[dict[TopicPartition, int]] = asyncio.get_running_loop().create_future()
    ends.set_result({A: 10, internal: 4})
    kept = Speculation({A: 10}, {internal: 4}, ends, ("input-batches",))
    await kept.confirm()  # everything before the ends was applied when it began
    for input_done, internal_done in (({A: 9}, {internal: 4}), ({A: 10}, {internal: 3})):
        late = Speculation(input_done, internal_done, ends, ("input-batches",))
        with pytest.raises(NotCaughtUp):
            await late.confirm()
