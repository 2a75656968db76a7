"""Watches Faust's table recovery for a changelog partition that stops receiving records.

After a rebalance Faust reads each newly owned table partition's changelog, from the offset
its RocksDB holds up to the partition's end, before the worker's streams go on. A record
the consumer has fetched but that never reaches the recovery (dropped on the way, as Faust
drops stream records around a rebalance, see streams/offsets.py) is never fetched again:
the consumer's position has passed it, and recovery waits for it for ever. Seen once in
the fault tests: a worker taking over its dead peer's partitions waited more than three
minutes on two ``stores`` changelog partitions without a single record arriving.

Every few seconds the watchdog looks at the recovery under way. A partition still short of
its end, with no record for ``stall_s`` (counted from its last record, the start of the
recovery, or the last time the watchdog read it again), is logged with what the consumer
knows about it (position, end, records waiting in the fetcher, whether it is being
fetched), and read again from the last offset the recovery applied. Recovery skips offsets
it has already applied, so reading one again changes nothing in the table.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from time import monotonic
from typing import Any

log = logging.getLogger(__name__)

CHECK_INTERVAL_S = 5.0


@dataclass(frozen=True)
class RecoveryProgress:
    """What a recovery under way has done, as of one moment (monotonic seconds)."""

    remaining: Mapping[Any, int]  # records left per changelog partition being read
    last_record_at: Mapping[Any, float]  # when its last record arrived; absent if none yet
    started_at: float


def stalled_partitions(
    progress: RecoveryProgress,
    now: float,
    stall_s: float,
    reread_at: Mapping[Any, float] | None = None,
) -> list[Any]:
    """The partitions with records left and none arrived for ``stall_s`` seconds, counting
    from the latest of: their last record, the recovery's start, their last re-read."""
    stalled = []
    for tp, left in progress.remaining.items():
        if left <= 0:
            continue
        since = max(
            progress.started_at,
            progress.last_record_at.get(tp, progress.started_at),
            (reread_at or {}).get(tp, progress.started_at),
        )
        if now - since >= stall_s:
            stalled.append(tp)
    return sorted(stalled)


class RecoveryWatchdog:
    """Reads stalled changelog partitions of a Faust app's recovery again (see above)."""

    def __init__(self, app: Any, stall_s: float) -> None:
        self.app = app
        self.stall_s = stall_s
        self.rereads = 0  # partitions read again since the worker started
        self._reread_at: dict[Any, float] = {}
        self._recovery_started_at: float | None = None

    def progress(self) -> RecoveryProgress | None:
        recovery = self.app.tables.recovery
        started = recovery._recovery_started_at
        if not recovery.in_recovery or started is None:
            return None
        return RecoveryProgress(
            remaining=dict(recovery.active_remaining()),
            last_record_at=dict(recovery._active_events_received_at),
            started_at=started,
        )

    def describe(self, tp: Any) -> dict[str, Any]:
        """What the consumer knows about a partition (read from its thread's objects
        without locking: a snapshot for the log, not for decisions)."""
        consumer = self.app.consumer
        recovery = self.app.tables.recovery
        facts: dict[str, Any] = {
            "applied": recovery.active_offsets.get(tp),
            "end": recovery.active_highwaters.get(tp),
            "fetched_by_faust": tp in (consumer._active_partitions or ()),
            "paused_by_faust": tp in consumer._paused_partitions,
            "consumer_flow": consumer.flow_active,
            "app_flow": self.app.flow_control.is_active(),
            "changelog_queue": self.app.tables.changelog_queue.qsize(),
        }
        try:
            fetcher = consumer._thread._ensure_consumer()._fetcher
            state = fetcher._subscriptions.subscription.assignment.state_value(tp)
            facts["position"] = state.position if state.has_valid_position else None
            facts["broker_end"] = state.highwater
            facts["paused_in_client"] = state.paused
            facts["records_waiting_in_client"] = tp in fetcher._records
        except Exception as error:  # a description must not end the watch
            facts["client"] = f"unavailable ({type(error).__name__})"
        return facts

    async def check(self, now: float | None = None) -> list[tuple[Any, int, dict[str, Any]]]:
        """One look; returns (partition, offset read again from, facts) for each re-read."""
        progress = self.progress()
        if progress is None:
            self._reread_at.clear()
            return []
        if progress.started_at != self._recovery_started_at:
            self._recovery_started_at = progress.started_at
            self._reread_at.clear()
        now = monotonic() if now is None else now
        recovery = self.app.tables.recovery
        consumer = self.app.consumer
        actions = []
        for tp in stalled_partitions(progress, now, self.stall_s, self._reread_at):
            facts = self.describe(tp)
            applied = recovery.active_offsets.get(tp)
            # Recovery itself starts reading at the last applied offset (0 when none).
            offset = max(applied if applied is not None else 0, 0)
            # On the consumer's own thread: a seek from here raced its fetch loop.
            await consumer._thread.seek_wait({tp: offset})
            consumer.resume_partitions({tp})
            self._reread_at[tp] = now
            self.rereads += 1
            actions.append((tp, offset, facts))
        return actions
