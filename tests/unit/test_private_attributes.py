"""Every private attribute of Faust or aiokafka that storemon reads, patches or calls exists
in the installed versions, so an upgrade that renames or removes one fails here, by name,
rather than at run time in a worker (or silently, where the code falls back).

Attributes a class defines are checked on the class; attributes its ``__init__`` sets on
the instance are checked in that ``__init__``'s source. (No mode internals are used.)"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass

import faust.streams
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.consumer.fetcher import Fetcher
from aiokafka.consumer.subscription_state import (
    Assignment,
    Subscription,
    SubscriptionState,
    TopicPartitionState,
)
from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery
from faust.transport.consumer import Consumer, ThreadDelegateConsumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaDriverConsumer
from faust.transport.producer import Producer


@dataclass(frozen=True)
class Relied:
    owner: type
    name: str
    used_in: str  # where storemon relies on it
    set_in_init: bool = False  # an instance attribute assigned in owner.__init__ ...
    init_method: str = "__init__"  # ... or in this method, which __init__ calls


RELIED_ON = [
    # streams/offsets.py: guard_offset_commits patches these on Faust's consumer.
    Relied(Consumer, "_read_offset", "streams/offsets.py guard_offset_commits", True),
    Relied(Consumer, "_new_offset", "streams/offsets.py guard_offset_commits (wrapped)"),
    Relied(Consumer, "_acked", "streams/offsets.py guard_offset_commits, CommitWatchdog", True),
    Relied(Consumer, "_gap", "streams/offsets.py guard_offset_commits", True),
    Relied(
        Consumer,
        "_committed_offset",
        "streams/offsets.py guard_offset_commits, CommitWatchdog.holes;"
        " streams/app.py consumer_lag",
        True,
    ),
    # streams/offsets.py: guard_offset_commits wraps perform_seek (Faust's seek back to the
    # committed offsets after a rebalance) and asks for the partitions' first offsets.
    Relied(Consumer, "perform_seek", "streams/offsets.py guard_offset_commits (wrapped)"),
    Relied(
        AIOKafkaDriverConsumer, "earliest_offsets", "streams/offsets.py seek_uncommitted_to_start"
    ),
    # streams/offsets.py: commit_only_delivered wraps the driver consumer's commit and the
    # producer's hand-over (Producer.send_soon is checked below, with its signature).
    Relied(AIOKafkaDriverConsumer, "_commit", "streams/offsets.py commit_only_delivered"),
    # streams/offsets.py: CommitWatchdog reads and seeks through these.
    Relied(
        Consumer,
        "_unacked_messages",
        "streams/offsets.py CommitWatchdog.holes; streams/fence.py disown",
        True,
    ),
    Relied(
        Consumer,
        "_commit_fut",
        "streams/offsets.py CommitWatchdog.check; streams/app.py commit_waiting",
    ),
    Relied(ThreadDelegateConsumer, "_thread", "streams/offsets.py CommitWatchdog.check", True),
    Relied(AIOKafkaConsumerThread, "seek_wait", "streams/offsets.py CommitWatchdog.check"),
    # streams/lag.py: where an aiokafka consumer fetches from before its first commit
    # (used by streams/batcher.py and streams/report_jobs.py).
    Relied(AIOKafkaConsumer, "_subscription", "streams/lag.py consumer_lag", True),
    Relied(SubscriptionState, "subscription", "streams/lag.py consumer_lag"),
    Relied(Subscription, "assignment", "streams/lag.py consumer_lag"),
    Relied(Assignment, "state_value", "streams/lag.py consumer_lag"),
    Relied(TopicPartitionState, "position", "streams/lag.py consumer_lag"),
    Relied(TopicPartitionState, "has_valid_position", "streams/lag.py consumer_lag"),
    # streams/recovery_watch.py: RecoveryWatchdog reads the recovery's progress, describes a
    # stalled partition from the consumer's state and reads it again.
    Relied(TableManager, "recovery", "streams/recovery_watch.py RecoveryWatchdog"),
    Relied(TableManager, "changelog_queue", "streams/recovery_watch.py describe"),
    Relied(Recovery, "in_recovery", "streams/recovery_watch.py progress"),
    Relied(Recovery, "_recovery_started_at", "streams/recovery_watch.py progress"),
    Relied(Recovery, "active_remaining", "streams/recovery_watch.py progress"),
    Relied(Recovery, "_active_events_received_at", "streams/recovery_watch.py progress", True),
    Relied(Recovery, "active_offsets", "streams/recovery_watch.py check", True),
    Relied(Recovery, "active_highwaters", "streams/recovery_watch.py describe", True),
    Relied(Consumer, "_reset_state", "Consumer.__init__ (sets the two below)"),
    *(
        Relied(Consumer, name, "streams/recovery_watch.py describe", True, "_reset_state")
        for name in ("_active_partitions", "_paused_partitions")
    ),
    Relied(Consumer, "flow_active", "streams/recovery_watch.py describe"),
    Relied(Consumer, "resume_partitions", "streams/recovery_watch.py check"),
    Relied(AIOKafkaConsumerThread, "_ensure_consumer", "streams/recovery_watch.py describe"),
    Relied(AIOKafkaConsumer, "_fetcher", "streams/recovery_watch.py describe", True),
    Relied(Fetcher, "_subscriptions", "streams/recovery_watch.py describe", True),
    Relied(Fetcher, "_records", "streams/recovery_watch.py describe", True),
    Relied(TopicPartitionState, "highwater", "streams/recovery_watch.py describe", True),
    Relied(TopicPartitionState, "paused", "streams/recovery_watch.py describe"),
]


def sets_in_init(owner: type, name: str, method: str = "__init__") -> bool:
    """Whether ``owner.<method>`` assigns ``self.<name>`` (annotated or not)."""
    source = inspect.getsource(vars(owner)[method])
    return re.search(rf"\bself\.{re.escape(name)}\s*(:[^=\n]*)?=(?!=)", source) is not None


@pytest.mark.parametrize("relied", RELIED_ON, ids=lambda r: f"{r.owner.__name__}.{r.name}")
def test_attribute_exists_in_the_installed_version(relied: Relied) -> None:
    if relied.set_in_init:
        assert sets_in_init(relied.owner, relied.name, relied.init_method), (
            f"{relied.owner.__module__}.{relied.owner.__qualname__}.{relied.init_method}"
            " no longer sets"
            f" {relied.name}, which {relied.used_in} relies on"
        )
    else:
        assert hasattr(relied.owner, relied.name), (
            f"{relied.owner.__module__}.{relied.owner.__qualname__} has no {relied.name},"
            f" which {relied.used_in} relies on"
        )


def test_current_event_is_faust_streams_context_variable() -> None:
    # streams/app.py bind_event sets it to make an event current for table writes.
    import contextvars

    assert isinstance(faust.streams._current_event, contextvars.ContextVar)


def test_the_patched_and_called_methods_keep_their_signatures() -> None:
    # guard_offset_commits replaces _new_offset with a function of the partition alone;
    # CommitWatchdog passes seek_wait one mapping of partition to offset.
    assert list(inspect.signature(Consumer._new_offset).parameters) == ["self", "tp"]
    # guard_offset_commits wraps perform_seek, which takes no argument.
    assert list(inspect.signature(Consumer.perform_seek).parameters) == ["self"]
    # commit_only_delivered wraps these two, passing their one argument through.
    assert list(inspect.signature(AIOKafkaDriverConsumer._commit).parameters) == [
        "self",
        "offsets",
    ]
    assert list(inspect.signature(Producer.send_soon).parameters) == ["self", "fut"]
    assert list(inspect.signature(AIOKafkaConsumerThread.seek_wait).parameters) == [
        "self",
        "partitions",
    ]


def test_the_driver_consumer_gets_the_thread_whose_seek_is_used() -> None:
    # The app's consumer is the aiokafka driver's; its _thread must be the thread class
    # whose seek_wait is checked above.
    assert issubclass(AIOKafkaDriverConsumer, ThreadDelegateConsumer)
    source = inspect.getsource(AIOKafkaDriverConsumer._new_consumer_thread)
    assert "AIOKafkaConsumerThread(" in source


def test_the_fence_reads_the_generation_faust_stamps_on_each_message() -> None:
    # streams/fence.py compares each message's generation with the app's, and disowns a
    # message by marking it acknowledged, which Message.ack must then leave alone.
    import faust
    from faust.types.tuples import Message

    assert {"generation_id", "acked"} <= set(Message.__slots__)
    assert isinstance(faust.App.consumer_generation_id, int)
    ack = inspect.getsource(Message.ack)
    assert "if not self.acked:" in ack
    assert "consumer_generation_id = generation" in inspect.getsource(
        faust.transport.drivers.aiokafka.ConsumerRebalanceListener.on_partitions_assigned
    )


def test_a_missing_attribute_is_reported() -> None:
    # The checks above can fail: a misspelt name is caught both ways.
    assert not sets_in_init(Consumer, "_acked_offsets")
    assert not hasattr(Consumer, "_new_offsets")
    assert sets_in_init(Consumer, "_acked")
