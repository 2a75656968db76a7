"""Consumer lag of a plain aiokafka consumer that commits by hand."""

from __future__ import annotations

from typing import Any

from aiokafka import TopicPartition


def consumer_lag(consumer: Any, committed: dict[TopicPartition, int]) -> dict[tuple[str, int], int]:
    """Records not yet done, per assigned partition: end offset minus what this process
    committed (or, before its first commit there, where fetching started)."""
    if consumer is None:
        return {}
    lag: dict[tuple[str, int], int] = {}
    for tp in consumer.assignment():
        end = consumer.highwater(tp)
        if end is None:
            continue  # nothing fetched from this partition yet
        done = committed.get(tp)
        if done is None:
            try:
                state = consumer._subscription.subscription.assignment.state_value(tp)
                done = state.position if state.has_valid_position else None
            except AttributeError:  # aiokafka's internals moved: report what is known
                done = None
        lag[(tp.topic, tp.partition)] = max(0, end - (done or 0))
    return lag
