"""Report requests are consumed apart from the input stream, by a plain aiokafka consumer
in its own group (``<app id>-reports``).

Faust feeds every topic of a worker through one consumer: when the ingest agent falls
behind a flood of polls, its full buffer holds back every other topic too, and report
requests waited behind polls (tens of seconds under the load benchmark). With a consumer of
their own they are fetched at once and a job runs between two slices of ingest work.

Guarantees are unchanged: a request's offset is committed only after its report is stored
as Complete or Failed, so a request whose worker dies is run again by the group member that
takes its partition over; a job that fails half-way ends the process without committing.

The job itself (:func:`run_report_job`) answers from the worker's in-memory index where it
can answer exactly (:mod:`storemon.streams.report_index`), and otherwise from PostgreSQL
(:mod:`storemon.db.assemble`, reusing a finished answer of the same report time and data).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from storemon.aggregates.coverage import pack_sums
from storemon.aggregates.timebase import format_utc
from storemon.compression import gzip_bytes
from storemon.db import reports as db_reports
from storemon.db.assemble import AssembledReport, NoData, OutOfRange, assemble_report
from storemon.db.pool import DB_OUTAGE_ERRORS, Database
from storemon.db.reports import ReportStatus
from storemon.metrics import ReportMetrics
from storemon.settings import Settings
from storemon.streams import messages
from storemon.streams.catch_up import CatchUp, IngestBehind, NotCaughtUp
from storemon.streams.lag import consumer_lag
from storemon.streams.report_index import ReportIndex
from storemon.waiting import retry_forever

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


async def run_report_job(
    database: Database,
    raw: bytes | None,
    timeout_s: float,
    metrics: ReportMetrics | None = None,
    *,
    reach: tuple[int, int] | None = None,
    report_index: ReportIndex | None = None,
    catch_up: CatchUp | None = None,
) -> None:
    """Answer one report request. The request is acknowledged (by returning) only once the
    report is stored as Complete or Failed; a database outage is waited out, so a request
    whose worker dies is picked up again by the next owner of its partition.

    With ``catch_up``, the input published before the job started is applied first (at
    most ``timeout_s``, else the report fails saying how much was waiting), and only the
    Pending reports stored before the job started are answered with it."""
    try:
        request = messages.decode_object(raw)
        report_id = uuid.UUID(str(request.get("report_id")))
    except ValueError as error:
        log.warning("ignoring a malformed report request: %s", error)
        return
    # The dashboard's fleet page asks for what it shows along with the report.
    with_fleet_summary = request.get("fleet_summary") is True

    async def attempt() -> None:
        pool = await database.pool()
        started = await db_reports.start_report(pool, report_id)
        if started is None:
            return  # unknown, or already finished: a redelivery
        requested = started.requested_as_of_us
        began = time.monotonic()

        def finished(status: ReportStatus) -> None:
            if metrics is not None:
                metrics.observe(status, time.monotonic() - began)

        job = _Job(pool, report_id, requested, reach, report_index, with_fleet_summary)
        try:
            built, shared = await job.run(catch_up, started.started_at, timeout_s)
        except (NoData, OutOfRange, IngestBehind) as error:
            await db_reports.fail_report(pool, report_id, str(error))
            finished(ReportStatus.FAILED)
            return
        except TimeoutError:
            await db_reports.fail_report(pool, report_id, f"did not finish within {timeout_s:g} s")
            finished(ReportStatus.FAILED)
            return
        except DB_OUTAGE_ERRORS:
            raise
        except Exception as error:  # a bug must fail the report, not the worker
            log.exception("report %s failed", report_id)
            await db_reports.fail_report(pool, report_id, f"{error.__class__.__name__}: {error}")
            finished(ReportStatus.FAILED)
            return
        if shared is None:
            compressing = time.perf_counter()
            # Compressed once here, served as it is by the API (migration 0016). On the
            # event loop, as the sums and the render are: handed to a thread, 0.25 ms of
            # work took 6 ms in the worker, whose other threads hold the GIL meanwhile.
            csv_gzip = gzip_bytes(built.csv_text.encode())
            stored = time.perf_counter()
            timings = {**built.timings, "compress_s": stored - compressing}
            shared = await db_reports.complete_report(
                pool,
                report_id,
                built.as_of_us,
                built.csv_text,
                built.row_count,
                built.alike_pending,
                data_version=built.data_version,
                timings=timings,
                csv_gzip=csv_gzip,
                wait_flush=False,  # the store time's write below waits for both
                exact=(
                    built.packed_sums if built.packed_sums is not None else pack_sums(built.rows),
                    built.schedules_digest,
                ),
            )
            # A synchronous commit: the completion is on disk before the request is
            # acknowledged (returning lets the consumer commit its offset).
            await db_reports.record_store_time(pool, report_id, time.perf_counter() - stored)
        finished(ReportStatus.COMPLETE)
        if metrics is not None and shared:
            metrics.shared.inc(shared)
        log.info(
            "report %s complete: %s as of %s",
            report_id,
            f"the answer of report {built.reused_from}"
            if built.reused_from is not None
            else f"{built.row_count} stores",
            format_utc(built.as_of_us),
        )

    await retry_forever(attempt, (*DB_OUTAGE_ERRORS, KafkaError), f"report {report_id}")


@dataclasses.dataclass(slots=True)
class _Job:
    """One report's answer: from the in-memory index where it can answer exactly, else from
    PostgreSQL; with :meth:`answer_after_input`, only once the input published before the
    job started is applied (streams/catch_up.py)."""

    pool: asyncpg.Pool
    report_id: uuid.UUID
    requested: int | None
    reach: tuple[int, int] | None
    report_index: ReportIndex | None
    with_fleet_summary: bool = False
    created_before: datetime | None = None
    # Awaited before any write that completes the report: raises NotCaughtUp when the
    # answer was computed before all that input was applied.
    confirm: Callable[[], Awaitable[None]] | None = None

    async def run(
        self, catch_up: CatchUp | None, started_at: datetime, timeout_s: float
    ) -> tuple[AssembledReport, int | None]:
        if catch_up is None:
            return await asyncio.wait_for(self.answer(), timeout_s)
        # A job that waits for the input answers no Pending report stored after it began
        # (input published before their trigger may not be in).
        self.created_before = started_at
        return await self.answer_after_input(catch_up, timeout_s)

    async def answer_after_input(
        self, catch_up: CatchUp, timeout_s: float
    ) -> tuple[AssembledReport, int | None]:
        """Computed at once while the input's end offsets are read, and kept when this
        process had applied everything before them when the computation began (the usual
        case: nothing waiting, and the check costs no time of its own); otherwise the job
        waits for that input (at most ``timeout_s``: IngestBehind) and computes again."""
        speculation = catch_up.speculate()
        self.confirm = speculation.confirm
        try:
            try:
                built, shared = await asyncio.wait_for(self.answer(), timeout_s)
            except (NoData, OutOfRange):
                await speculation.confirm()  # perhaps only for want of that input
                raise
            confirming = time.perf_counter()
            await speculation.confirm()  # before the caller's completing write
            built.timings["catch_up_s"] = time.perf_counter() - confirming
            return built, shared
        except NotCaughtUp:
            pass
        finally:
            speculation.cancel()
            self.confirm = None
        waited_s = await catch_up.wait(timeout_s)
        built, shared = await asyncio.wait_for(self.answer(), timeout_s)
        built.timings["catch_up_s"] = waited_s
        return built, shared

    async def answer(self) -> tuple[AssembledReport, int | None]:
        pool, report_index = self.pool, self.report_index
        if report_index is not None and report_index.ready:
            fast = await report_index.try_report(
                pool,
                self.requested,
                with_fleet_summary=self.with_fleet_summary,
                created_before=self.created_before,
            )
            if (
                fast is not None
                and fast.fleet_summary is not None
                and fast.data_version is not None
            ):
                # Stored before the report completes, so whoever sees it Complete finds it
                # (true of that report time and version whatever this job keeps).
                await db_reports.store_fleet_summary(
                    pool, fast.as_of_us, fast.data_version, fast.fleet_summary
                )
            if fast is not None and fast.reused_from is None:
                return fast, None
            if fast is not None:
                shared = await self._complete_as(fast)
                if shared is not None:
                    return fast, shared
        return await self._reuse_or_assemble()

    async def _complete_as(self, built: AssembledReport) -> int | None:
        """Store the finished answer ``built`` names as this report's (None: it was pruned)."""
        assert built.reused_from is not None
        if self.confirm is not None:
            await self.confirm()
        stored = time.perf_counter()
        shared = await db_reports.complete_as(
            self.pool, self.report_id, built.reused_from, built.alike_pending, timings=built.timings
        )
        if shared is not None:
            await db_reports.record_store_time(
                self.pool, self.report_id, time.perf_counter() - stored
            )
        return shared

    async def _reuse_or_assemble(self) -> tuple[AssembledReport, int | None]:
        """The report's answer. When a Complete report of the same report time was computed
        from the same version of the aggregates, its CSV is copied and the report is stored
        here (returns how many alike Pending reports were answered too); otherwise the
        report is assembled and returned with None, still to be stored."""
        built = await assemble_report(
            self.pool,
            self.requested,
            find_alike=True,
            reuse=True,
            reach=self.reach,
            with_digest=True,
            created_before=self.created_before,
        )
        if built.reused_from is None:
            return built, None
        shared = await self._complete_as(built)
        if shared is None:  # the earlier report was pruned meanwhile: compute this one
            fresh = await assemble_report(
                self.pool,
                self.requested,
                find_alike=True,
                reach=self.reach,
                with_digest=True,
                created_before=self.created_before,
            )
            return fresh, None
        return built, shared
