"""Report requests are consumed apart from the input stream, by a plain aiokafka consumer
in its own group (``<app id>-reports``).

Faust feeds every topic of a worker through one consumer: when the ingest agent falls
behind a flood of polls, its full buffer holds back every other topic too, and report
requests waited behind polls (tens of seconds under the load benchmark). With a consumer of
their own they are fetched at once and a job runs between two slices of ingest work.

Guarantees are unchanged: a request's offset is committed only after its report is stored
as Complete or Failed, so a request whose worker dies is run again by the group member that
takes its partition over; a job that fails half-way ends the process without committing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from storemon.settings import Settings
from storemon.streams import messages
from storemon.streams.lag import consumer_lag

log = logging.getLogger(__name__)

FETCH_TIMEOUT_MS = 500
MAX_REQUESTS_PER_FETCH = 20


def report_group(settings: Settings) -> str:
    return f"{settings.faust_app_id}-reports"


class ReportRequestConsumer:
    """Fetch report requests and hand each to ``run_job``; commit once it returns."""

    def __init__(
        self,
        settings: Settings,
        run_job: Callable[[bytes | None], Awaitable[None]],
        guard: Callable[[str], contextlib.AbstractAsyncContextManager[None]],
    ) -> None:
        self.settings = settings
        self.topic = settings.topic(messages.REPORT_REQUESTS)
        self.run_job = run_job
        self.guard = guard  # ends the process if a job fails half-way (see streams.app)
        self._consumer: Any = None
        self._committed: dict[TopicPartition, int] = {}

    def lag(self) -> dict[tuple[str, int], int]:
        """Requests not yet answered, per assigned partition (end offset - committed)."""
        return consumer_lag(self._consumer, self._committed)

    async def run(self) -> None:
        """Until cancelled: fetch, run each job, commit after each."""
        session_ms = int(self.settings.broker_session_timeout_s * 1000)
        consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=self.settings.kafka_bootstrap,
            group_id=report_group(self.settings),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=session_ms,
            heartbeat_interval_ms=max(1000, session_ms // 3),
            # A job may run up to the report timeout between two fetches.
            max_poll_interval_ms=int((self.settings.report_timeout_s + 60) * 1000),
        )
        while True:
            try:
                await consumer.start()
                break
            except KafkaError as error:
                log.warning("report requests: broker not reachable (%s); retrying", error)
                await asyncio.sleep(2)
        self._consumer = consumer
        try:
            while True:
                batches = await consumer.getmany(
                    timeout_ms=FETCH_TIMEOUT_MS, max_records=MAX_REQUESTS_PER_FETCH
                )
                for tp, records in batches.items():
                    for record in records:
                        async with self.guard("running a report job"):
                            await self.run_job(record.value)
                        await self._commit(consumer, tp, record.offset + 1)
        finally:
            self._consumer = None
            with contextlib.suppress(Exception):
                await consumer.stop()

    async def _commit(self, consumer: Any, tp: TopicPartition, next_offset: int) -> None:
        while True:
            try:
                await consumer.commit({tp: next_offset})
                self._committed[tp] = next_offset
                return
            except KafkaError as error:  # a rebalance or a broker restart: the job is done,
                log.warning("report requests: commit of %s failed (%s)", tp, error)
                if not consumer.assignment() or tp not in consumer.assignment():
                    return  # the partition moved: its new owner re-runs the job (idempotent)
                await asyncio.sleep(1)
