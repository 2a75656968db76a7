"""The Faust application: topics, tables, agents, timers and operator pages.

A batching stage (:mod:`storemon.streams.batcher`, a plain aiokafka consumer, run in a child
process of the worker by :mod:`storemon.streams.batcher_process`) reads the three input
topics and writes one internal message per partition and ~100 ms to ``input-batches``. One agent reads that topic, so a store's schedule, zone and polls are
applied by one coroutine in the order they arrive and never race; batches of events
(``take_events``) let it write each table key and each database row once per batch.
Report requests have a consumer of their own (:mod:`storemon.streams.report_jobs`).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from typing import Any

import faust
from aiokafka import TopicPartition
from faust.streams import _current_event
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from storemon.aggregates.records import Rejection
from storemon.aggregates.report import LONGEST_WINDOW_US
from storemon.aggregates.timebase import HOUR_US, format_utc
from storemon.db import reports as db_reports
from storemon.db import retention as db_retention
from storemon.db import sink as db_sink
from storemon.db.pool import DB_OUTAGE_ERRORS, Database
from storemon.metrics import ReportMetrics, WorkerCollector
from storemon.settings import Settings
from storemon.streams import messages
from storemon.streams.batcher import InputBatcher
from storemon.streams.batcher_process import BatcherProcess
from storemon.streams.catch_up import CatchUp
from storemon.streams.crash import stop_unless_done
from storemon.streams.fence import Fenced, Licence, WriteFence, disown
from storemon.streams.ingest import Ingestor
from storemon.streams.offsets import CommitWatchdog, commit_only_delivered, guard_offset_commits
from storemon.streams.recovery_watch import CHECK_INTERVAL_S, RecoveryWatchdog
from storemon.streams.report_index import ReportIndex
from storemon.streams.report_jobs import ReportRequestConsumer, run_report_job
from storemon.waiting import retry_forever
from storemon.web.security import bearer_token_ok

log = logging.getLogger(__name__)

COMMIT_CHECK_INTERVAL_S = 3.0
# Table writes waiting in Faust's producer buffer after a batch. A batch writes about one
# entry per store it touched (~14,000 at 14,000 stores), faster than the producer sends them
# one by one, so without a bound the buffer grew batch after batch towards its 200,000
# allowance: hundreds of MB of queued messages at 14,000 stores.
CHANGELOG_BACKLOG_MAX = 5_000
CHANGELOG_DRAIN_POLL_S = 0.005
# How long a revocation waits for the PostgreSQL write and the changelog messages already
# under way before the worker rejoins the group (the whole group waits with it). A write
# still running after it is the one case the fence cannot hold back: it is logged.
REVOKE_SETTLE_S = 30.0


def bind_event(event: Any) -> None:
    """Make ``event`` the current event of this task: Faust sends a table write to the
    changelog partition of the current event, and reads it from that partition's RocksDB.

    Only the task-local context variable is set. ``Stream._set_current_event`` would also
    overwrite ``stream.current_event``, which ``take_events`` reads from another task to
    record the event of each buffered value: events would be swapped and lost."""
    _current_event.set(weakref.ref(event))


async def drain_changelog(
    buffer: Any, keep_at_most: int, commit_waiting: Callable[[], bool] = lambda: False
) -> None:
    """Wait until no more than ``keep_at_most`` table writes wait for Faust's producer, or
    none while ``commit_waiting()``.

    The sending goes on meanwhile (the buffer's own task); this only holds the agent back
    from piling the next batch's writes on top, which bounds the memory they take. A commit
    flushes the producer first and that flush ends only once the buffer is empty (or sends
    nothing for 0.1 s): with a backlog, batch after batch kept thousands of writes queued and
    one commit waited for the whole of it (504 s, no offset committed, in a 100,000-store
    fill). Emptied while a commit waits, the buffer lets it through within a batch."""
    # Polled: the buffer's event fires once per message sent, a wake-up per message.
    while buffer.size > (0 if commit_waiting() else keep_at_most):  # noqa: ASYNC110
        await asyncio.sleep(CHANGELOG_DRAIN_POLL_S)


def commit_waiting(consumer: Any) -> bool:
    """Whether Faust's consumer is in the middle of a commit (it then waits for the producer
    buffer to empty; see drain_changelog)."""
    return consumer._commit_fut is not None


def _raw_topic(app: faust.App, *names: str) -> Any:
    return app.topic(
        *names, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )


def _raw_table(app: faust.App, name: str, settings: Settings, help_text: str) -> Any:
    # bytes as key and value type is what makes Faust use its "raw" codec for the store and
    # the changelog (a schema argument leaves them on "json", which decodes values to dicts).
    return app.Table(
        name,
        key_type=bytes,
        value_type=bytes,
        partitions=settings.partitions,
        help=help_text,
        # Faust opens one RocksDB per table and partition, each with 3 x 64 MiB memtables and
        # a 2 GiB block cache by default: with two tables that let a 14,000-store worker grow
        # past 2.5 GB. The entries are small and read only when a state is rebuilt.
        options={
            "write_buffer_size": 8 * 2**20,
            "max_write_buffer_number": 2,
            "block_cache_size": 32 * 2**20,
            "block_cache_compressed_size": 8 * 2**20,
        },
    )


def create_app(settings: Settings, loglevel: str = "info") -> faust.App:  # noqa: C901 (agents are closures over the app)
    datadir = settings.state_dir / "worker" / f"{settings.faust_app_id}-{settings.worker_web_port}"
    datadir.parent.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.faust_app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="rocksdb://",
        datadir=str(datadir),
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        table_standby_replicas=0,
        web_host=settings.worker_web_host,
        web_bind=settings.worker_web_host,
        web_port=settings.worker_web_port,
        broker_session_timeout=settings.broker_session_timeout_s,
        # Table writes become changelog messages: let them travel in large batches.
        producer_linger_ms=5,
        producer_max_batch_size=512 * 1024,
        broker_heartbeat_interval=min(3.0, settings.broker_session_timeout_s / 3),
        consumer_auto_offset_reset="earliest",
        # Each event of the internal topic is a batch of up to batch_size polls (~60 B
        # each), not one poll: Faust's default read-ahead of 4,096 events per stream let a
        # 14,000-store worker hold gigabytes of batches the agent had not reached. Two agent
        # batches (2 x worker_batch_messages, at most 2 x worker_batch_polls polls, ~30 MB
        # at the defaults whatever batch_size is) keep it busy; fetching pauses at 80 %.
        stream_buffer_maxsize=settings.read_ahead_messages,
        # What one fetch may bring per partition (Faust's default, stated as a bound): the
        # fetcher's records are handed to the stream even when its buffer is full.
        consumer_max_fetch_size=2**20,
        stream_wait_empty=False,
        autodiscover=False,
    )
    # Faust stops the stream whenever more than 100 table writes wait for the producer, then
    # drains them one by one; with a batch writing thousands of entries that throttles
    # ingestion. A larger allowance lets the producer drain while the next batch is built
    # (everything is still flushed before any offset is committed). A batch writes about
    # one entry per store and day it touched.
    app.producer.buffer.max_messages = 200_000
    guard_offset_commits(app.consumer, frozenset({settings.topic(messages.INPUT_BATCHES)}))
    undelivered = commit_only_delivered(app.consumer, app.producer)
    if settings.api_token:
        _require_token(app, settings.api_token)
    watchdog = CommitWatchdog(app.consumer)
    recovery_watch = RecoveryWatchdog(app, settings.recovery_stall_s)
    database = Database(settings.database_url)
    batches = _raw_topic(app, settings.topic(messages.INPUT_BATCHES))
    dead_letters = _raw_topic(app, settings.topic(messages.DEAD_LETTERS))
    stores = _raw_table(
        app, "stores", settings, "store -> schedule, zone, cutoff, anchor, days with polls"
    )
    store_polls = _raw_table(app, "store_polls", settings, "store@day -> that day's kept polls")

    report_index = ReportIndex(settings.reach_us, settings.lead_us, enabled=settings.report_index)
    app.storemon_report_index = report_index  # type: ignore[attr-defined]

    fence = WriteFence(lambda: app.consumer_generation_id)

    async def write_sink(batch: db_sink.SinkBatch, licence: Licence) -> None:
        async def attempt() -> int:
            licence.check()  # a batch retrying through an outage stops once revoked
            return await db_sink.write_batch(await database.pool(), batch)

        version = await retry_forever(attempt, DB_OUTAGE_ERRORS, "writing aggregates to PostgreSQL")
        report_index.written(batch, version)

    async def send_dead_letter(
        rejection: Rejection, partition: int | None, offset: int | None
    ) -> None:
        key = str(rejection.record.get("store_id", "")).encode() or None
        # Sent at once rather than through the buffer: tracked so that no commit passes it.
        undelivered.track(
            await dead_letters.send(
                key=key, value=messages.dead_letter(rejection, partition, offset)
            )
        )

    ingestor = Ingestor(
        stores=stores,
        store_polls=store_polls,
        write_sink=write_sink,
        send_dead_letter=send_dead_letter,
        horizon_us=settings.retention_us,
    )
    app.storemon_ingestor = ingestor  # type: ignore[attr-defined]  # for the operator pages
    registry = CollectorRegistry()
    report_metrics = ReportMetrics(registry)
    own_topics = {settings.topic(messages.INPUT_BATCHES)}

    async def answer(raw: bytes | None) -> None:
        await run_report_job(
            database,
            raw,
            settings.report_timeout_s,
            report_metrics,
            reach=(settings.reach_us, settings.lead_us),
            report_index=report_index,
            catch_up=catch_up,
        )

    report_requests = ReportRequestConsumer(settings, answer, stop_unless_done)
    batcher: InputBatcher | BatcherProcess = (
        BatcherProcess(settings, loglevel)
        if settings.batcher_process
        else InputBatcher(settings, stop_unless_done)
    )
    internal_topic = settings.topic(messages.INPUT_BATCHES)

    def agent_positions() -> dict[TopicPartition, int]:
        """How far the ingest agent has applied each internal partition it holds."""
        known = {TopicPartition(t, p): o for (t, p), o in ingestor.applied_offsets.items()}
        for tp in app.consumer.assignment():
            if tp.topic != internal_topic:
                continue
            committed = app.consumer._committed_offset.get(tp)  # type: ignore[attr-defined]
            key = TopicPartition(tp.topic, tp.partition)
            if committed is not None and committed > known.get(key, -1):
                known[key] = committed
        return known

    catch_up = CatchUp(settings, batcher.committed_positions, agent_positions)
    app.storemon_batcher = batcher  # type: ignore[attr-defined]

    def batcher_overview() -> dict[str, Any]:
        stats = batcher.stats
        return {
            "records": stats.records,
            "polls": stats.polls,
            "batches": stats.batches,
            "seconds": {k: round(v, 3) for k, v in stats.seconds.items()},
            "process": batcher.describe() if isinstance(batcher, BatcherProcess) else None,
        }

    def consumer_lag() -> dict[tuple[str, int], int]:
        lag: dict[tuple[str, int], int] = {}
        for tp in app.consumer.assignment():
            if tp.topic not in own_topics:
                continue  # table changelogs are read at recovery only
            end = app.consumer.highwater(tp)
            if end is None:
                continue  # nothing fetched from this partition yet
            # Faust's committed offset of a partition is the next offset to process.
            committed = app.consumer._committed_offset.get(tp)  # type: ignore[attr-defined]
            lag[(tp.topic, tp.partition)] = max(0, end - (committed or 0))
        lag.update(batcher.lag())
        lag.update(report_requests.lag())
        return lag

    def table_keys() -> dict[str, int]:
        return {table.name: sum(1 for _ in table) for table in (stores, store_polls)}

    registry.register(
        WorkerCollector(
            lambda: ingestor.stats,
            consumer_lag,
            table_keys,
            batcher_process=batcher if isinstance(batcher, BatcherProcess) else None,
            recovery_rereads=lambda: recovery_watch.rereads,
        )
    )

    @app.agent(batches)
    async def ingest(stream: Any) -> None:
        async for events in stream.take_events(
            settings.worker_batch_messages, settings.batch_timeout_s
        ):
            events, stale = fence.split(events)
            if stale:
                # Fetched before a rebalance: read again from the committed offset after it.
                disown(app.consumer, stale)
            if not events:
                continue
            async with stop_unless_done("ingesting a batch"):
                try:
                    await ingestor.process(events, bind_event, fence.licence())
                except Fenced as fenced:
                    disown(app.consumer, events)
                    ingestor.forget()  # states may hold polls this batch did not write
                    log.info("batch of %d messages stopped: %s", len(events), fenced)
                    continue
                await drain_changelog(
                    app.producer.buffer,
                    CHANGELOG_BACKLOG_MAX,
                    lambda: commit_waiting(app.consumer),
                )

    @app.task  # type: ignore[untyped-decorator]
    async def batch_inputs() -> None:
        await batcher.run()

    @app.task  # type: ignore[untyped-decorator]
    async def serve_report_requests() -> None:
        try:
            await report_requests.run()
        finally:
            await catch_up.close()

    async def forget_states(sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        # Before the worker rejoins the group: no batch of this generation writes from now
        # on, and what it already wrote reaches PostgreSQL and the broker before anyone
        # else can be given its partitions.
        fence.close()
        if ingestor.write_under_way:
            log.info("partitions revoked: waiting for the PostgreSQL write under way")
        if not await ingestor.settle(REVOKE_SETTLE_S):
            log.warning("a PostgreSQL write still running %.0f s after revocation", REVOKE_SETTLE_S)
        try:
            await asyncio.wait_for(undelivered.delivered(), REVOKE_SETTLE_S)
        except TimeoutError:
            log.warning("table writes still undelivered %.0f s after revocation", REVOKE_SETTLE_S)
        ingestor.forget()  # partitions moved: states are rebuilt from the tables on demand
        report_index.invalidate()

    async def watch_recovery() -> None:
        # Not a Faust timer: those start only once the first recovery has completed, and
        # the first one can stall too.
        interval = min(CHECK_INTERVAL_S, settings.recovery_stall_s / 2)
        while True:
            await asyncio.sleep(interval)
            try:
                actions = await recovery_watch.check()
            except Exception:
                log.exception("recovery watch failed; trying again")
                continue
            for tp, offset, facts in actions:
                log.warning(
                    "%s[%d]: table recovery got no record for %.0f s: reading again from %d (%s)",
                    tp.topic,
                    tp.partition,
                    recovery_watch.stall_s,
                    offset,
                    ", ".join(f"{name}={value}" for name, value in facts.items()),
                )

    watching: list[Any] = []

    async def track_ownership(sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        if not watching:  # the first assignment comes before the first recovery
            watching.append(app.add_future(watch_recovery()))
        ingestor.forget()
        # The in-memory report index mirrors what this worker writes: complete only when
        # it owns every input partition (see streams/report_index.py).
        input_topic = settings.topic(messages.INPUT_BATCHES)
        owned = {tp.partition for tp in app.consumer.assignment() if tp.topic == input_topic}
        if len(owned) < settings.partitions:
            report_index.invalidate()
            return
        try:
            report_index.start_loading(await database.pool())
        except DB_OUTAGE_ERRORS as error:
            log.warning("report index not loaded, database unavailable: %s", error)
            report_index.invalidate()

    app.on_partitions_revoked.connect(forget_states)  # type: ignore[arg-type]  # mode types a keyword-only signal
    app.on_partitions_assigned.connect(track_ownership)  # type: ignore[arg-type]

    @app.timer(interval=settings.prune_interval_s, on_leader=True)  # type: ignore[untyped-decorator]
    async def prune_database() -> None:
        try:
            pool = await database.pool()
            deleted = await db_retention.prune_history(pool, settings.retention_us)
            log.info("pruned history before each store's cutoff: %s", deleted)
            reports = await db_reports.prune_reports(pool, settings.report_retention_hours)
            if reports:
                log.info("pruned %d finished reports", reports)
        except DB_OUTAGE_ERRORS as error:
            log.warning("prune skipped, database unavailable: %s", error)

    @app.timer(interval=COMMIT_CHECK_INTERVAL_S)  # type: ignore[untyped-decorator]
    async def unstick_commits() -> None:
        if app.rebalancing:
            return
        for tp, offset, action in await watchdog.check():
            if action == "skipped":
                log.error(
                    "%s[%d]: offsets from %d never arrived after re-reading: skipped",
                    tp.topic,
                    tp.partition,
                    offset,
                )
            else:
                log.warning(
                    "%s[%d]: commit waits for offset %d, which was dropped: reading again",
                    tp.topic,
                    tp.partition,
                    offset,
                )

    @app.page("/storemon/")
    async def overview(web: Any, request: Any) -> Any:
        stats = ingestor.stats
        return web.json(
            {
                "stores_in_memory": len(ingestor.cache),
                "events": stats.events,
                "polls": stats.polls,
                "batches": stats.batches,
                "day_rows_written": stats.day_rows,
                "table_writes": stats.table_writes,
                "batcher": batcher_overview(),
                "seconds": {k: round(v, 3) for k, v in stats.seconds.items()},
                "rejected": {f"{s}: {r}": n for (s, r), n in stats.rejected.items()},
                "report_index": report_index.describe(),
                "recovery_rereads": recovery_watch.rereads,
                "partitions": sorted(
                    tp.partition for tp in app.consumer.assignment() if tp.topic == internal_topic
                ),
                # What this process runs with (a benchmark checks its variables got here).
                "agent_batch": {
                    "batch_size": settings.batch_size,
                    "worker_batch_polls": settings.worker_batch_polls,
                    "worker_batch_messages": settings.worker_batch_messages,
                    "stream_buffer_maxsize": app.conf.stream_buffer_maxsize,
                },
            }
        )

    @app.page("/storemon/stores/{store_id}/")
    async def store_page(web: Any, request: Any, store_id: str) -> Any:
        state = ingestor.cache.get(store_id)
        if state is None and stores.get(store_id.encode()) is not None:
            state = ingestor.state_for(store_id)  # rebuilt from the tables of this worker
        if state is None:
            return web.json(
                {"error": "no such store in this worker's partitions", "store_id": store_id},
                status=404,
            )
        summary = state.summary()
        hours = state.hours_with_time()
        return web.json(
            {
                "store_id": store_id,
                "zone": state.zone_name,
                "schedule": [list(i) for i in state.schedule],
                "polls_kept": len(state.poll_ts),
                "first_poll": format_utc(summary.first_poll_us)
                if summary.first_poll_us is not None
                else None,
                "last_poll_in_hours": format_utc(summary.last_poll_us)
                if summary.last_poll_us is not None
                else None,
                "last_active": summary.last_active,
                "cutoff": format_utc(state.cutoff_us) if state.cutoff_us > -(2**61) else None,
                "hours": [
                    {"hour": format_utc(h), "up_s": u / 1e6, "down_s": d / 1e6}
                    for h in hours
                    for u, d in [state.hour_totals(h)]
                ],
            }
        )

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        # aiohttp refuses a charset inside content_type: the full header goes in as is.
        return web.bytes(generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.page("/storemon/tables/")
    async def table_sizes(web: Any, request: Any) -> Any:
        return web.json(
            {"local_keys": table_keys(), "longest_window_hours": LONGEST_WINDOW_US // HOUR_US}
        )

    return app


def _require_token(app: faust.App, token: str) -> None:
    """Every web view of the worker, ours and Faust's own, answers 401 without the API's
    bearer token (the views bind to loopback unless configured otherwise)."""
    from aiohttp import web

    @web.middleware
    async def token_required(request: web.Request, handler: Any) -> web.StreamResponse:
        if not bearer_token_ok(request.headers.get("Authorization"), token):
            return web.json_response(
                {"error": "missing or wrong bearer token"},
                status=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        response: web.StreamResponse = await handler(request)
        return response

    app.web.web_app.middlewares.append(token_required)  # type: ignore[attr-defined]
