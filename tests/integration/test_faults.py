"""Crashes and redelivery, on the real broker and database: the final report must still be
the batch command's, byte for byte (nothing lost, nothing counted twice)."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import signal
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest

from storemon import services
from storemon.aggregates.timebase import HOUR_US, format_utc
from storemon.db import reports as db_reports
from storemon.services import ServiceEndpoints
from storemon.settings import Settings
from storemon.waiting import poll_async

from .pipeline import (
    Pipeline,
    TcpProxy,
    batch_csv,
    generate,
    newest_poll_us,
    poll_us,
    read_messages,
)

pytestmark = [pytest.mark.services, pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("data") / "set", stores=150, days=9, seed=23)


@pytest.mark.timeout(300)
async def test_worker_killed_three_times_mid_stream(pipeline: Pipeline, dataset: Path) -> None:
    reference, polls = read_messages(dataset)
    await pipeline.publish(reference + polls)
    for target in (0.15, 0.45, 0.75):
        pipeline.start_worker()
        await pipeline.wait_progress(target)
        pipeline.stop_worker(signal.SIGKILL)
    pipeline.start_worker()
    await pipeline.wait_consumed()
    # the restarted worker rebuilt its report index from PostgreSQL and answers from it
    await pipeline.wait_report_index()
    report_id = await pipeline.request_report()
    assert await pipeline.wait_report(report_id) == batch_csv(dataset)
    assert "index" in await pipeline.report_timings(report_id)


@pytest.mark.timeout(300)
async def test_worker_restarted_without_its_rocksdb(pipeline: Pipeline, dataset: Path) -> None:
    reference, polls = read_messages(dataset)
    await pipeline.publish(reference + polls[: len(polls) // 2])
    pipeline.start_worker()
    await pipeline.wait_consumed()
    pipeline.stop_worker(signal.SIGKILL)
    # Local state gone: the tables must come back from their changelog topics alone.
    shutil.rmtree(pipeline.settings.state_dir / "worker")
    await pipeline.publish(polls[len(polls) // 2 :])
    pipeline.start_worker()
    await pipeline.wait_consumed()
    report_id = await pipeline.request_report()
    assert await pipeline.wait_report(report_id) == batch_csv(dataset)


@pytest.mark.timeout(420)
async def test_a_table_recovery_that_lost_records_reads_them_again(
    pipeline: Pipeline, dataset: Path
) -> None:
    """Changelog records the consumer fetched and dropped during a recovery are never
    fetched again: the recovery waits for them for ever. A worker without its RocksDB, whose
    first recovery loses what is left of its ``stores`` changelog partitions that way
    (``lossy_recovery_worker.py``), must read them again (streams/recovery_watch.py) and go on
    from them: without them its stores would get the default schedule and zone."""
    pipeline.settings = dataclasses.replace(pipeline.settings, recovery_stall_s=3.0)
    reference, polls = read_messages(dataset)
    polls.sort(key=poll_us)
    half = len(polls) // 2
    await pipeline.publish(reference + polls[:half])
    pipeline.start_worker()
    await pipeline.wait_consumed()
    pipeline.stop_worker(signal.SIGKILL)
    shutil.rmtree(pipeline.settings.state_dir / "worker")
    await pipeline.publish(polls[half:])
    pipeline.start_worker(module="tests.integration.lossy_recovery_worker")
    await pipeline.wait_consumed(timeout_s=240)
    assert pipeline.log_path is not None
    log = pipeline.log_path.read_text(errors="replace")
    assert "lossy recovery: skipped the records of" in log
    assert "table recovery got no record for 3 s: reading again from" in log
    report_id = await pipeline.request_report()
    assert await pipeline.wait_report(report_id) == batch_csv(dataset)


@pytest.mark.timeout(480)  # above the sum of the waits below, so a stall reports its log
async def test_second_worker_takes_over_when_one_dies(pipeline: Pipeline, dataset: Path) -> None:
    import aiohttp

    reference, polls = read_messages(dataset)
    pipeline.start_worker()
    other, port = pipeline.start_other_worker()
    await pipeline.publish(reference + polls)
    # Wait until the second worker has ingested part of the stream (so it owned partitions).
    # A short timeout per request: a worker busy recovering its tables may leave a request
    # unanswered for a while, and the default (five minutes) would outlast the test.
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as session:

        async def second_worker_ingesting() -> bool | None:
            try:
                async with session.get(f"http://127.0.0.1:{port}/storemon/") as response:
                    if response.status == 200 and (await response.json())["events"] > 0:
                        return True
            except (aiohttp.ClientError, TimeoutError):
                pass
            assert other.poll() is None
            return None

        await poll_async(
            second_worker_ingesting,
            timeout_s=120,
            on_timeout=lambda: AssertionError("the second worker never got a partition"),
            cap_s=0.1,
        )
    other.send_signal(signal.SIGKILL)
    other.wait()
    # The survivor takes the dead worker's partitions over.
    await pipeline.wait_consumed(timeout_s=180)
    # Owning every partition again, it loads the report index (while two workers shared
    # them, neither had all the aggregates in memory, and reports came from PostgreSQL).
    await pipeline.wait_report_index()
    report_id = await pipeline.request_report()
    assert await pipeline.wait_report(report_id) == batch_csv(dataset)
    assert "index" in await pipeline.report_timings(report_id)


@pytest.mark.timeout(600)
async def test_a_survivor_goes_on_from_the_table_writes_of_its_dead_peer(
    pipeline: Pipeline, dataset: Path
) -> None:
    """The takeover above often finds nothing to recover (the second worker dies before it
    wrote anything). Here it must: the polls go in three slices of time, so every store has
    polls in each. The first worker alone takes the first slice; the second joins and takes
    its partitions' share of the second; once it is killed, the survivor must read that
    share back from the changelog and go on from it with the third slice. A day record
    built without the second slice's polls would make the report differ."""
    import aiohttp

    reference, polls = read_messages(dataset)
    polls.sort(key=poll_us)
    third = len(polls) // 3
    pipeline.start_worker()
    await pipeline.publish(reference + polls[:third])
    await pipeline.wait_consumed(timeout_s=180)
    other, port = pipeline.start_other_worker()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as session:

        async def second_worker(field: str) -> Any:
            try:
                async with session.get(f"http://127.0.0.1:{port}/storemon/") as response:
                    if response.status == 200:
                        return (await response.json())[field] or None
            except (aiohttp.ClientError, TimeoutError):
                pass
            assert other.poll() is None
            return None

        # The second slice goes in once the second worker owns partitions.
        await poll_async(
            lambda: second_worker("partitions"),
            timeout_s=120,
            on_timeout=lambda: AssertionError("the second worker never got a partition"),
        )
        await pipeline.publish(polls[third : 2 * third])
        await pipeline.wait_consumed(timeout_s=180)

        await poll_async(
            lambda: second_worker("table_writes"),
            timeout_s=60,
            on_timeout=lambda: AssertionError("the second worker wrote no table entry"),
        )
    other.send_signal(signal.SIGKILL)
    other.wait()
    await pipeline.publish(polls[2 * third :])
    await pipeline.wait_consumed(timeout_s=240)
    report_id = await pipeline.request_report()
    assert await pipeline.wait_report(report_id) == batch_csv(dataset)


@pytest.mark.timeout(420)
async def test_a_batch_held_up_in_the_database_when_its_partitions_move_writes_nothing_more(
    pipeline: Pipeline, dataset: Path
) -> None:
    """A second worker joins while the first one's batch waits for PostgreSQL. The first
    worker's revocation waits for that write, then its batch writes nothing more (no later
    row, no table entry): the partitions' new owners do it again from the committed offset,
    and no row of the old batch lands after theirs."""
    assert pipeline.pool is not None
    reference, polls = read_messages(dataset)
    pipeline.loglevel = "info"  # the fence's messages are logged at INFO
    pipeline.start_worker()
    half = len(polls) // 2
    await pipeline.publish(reference + polls[:half])
    await pipeline.wait_consumed()
    first_log = pipeline.log_path
    assert first_log is not None
    async with pipeline.pool.acquire() as blocker:
        holding = blocker.transaction()
        await holding.start()
        # Writes of store-days wait; reads go on.
        await blocker.execute("LOCK TABLE store_days IN EXCLUSIVE MODE")
        await pipeline.publish(polls[half:])

        async def worker_waits_on_the_lock() -> bool | None:
            pipeline.check_worker_alive()
            waiting = await pipeline.pool.fetchval(  # type: ignore[union-attr]
                "SELECT count(*) FROM pg_locks"
                " WHERE NOT granted AND relation = 'store_days'::regclass"
            )
            return True if waiting else None

        await poll_async(
            worker_waits_on_the_lock,
            timeout_s=60,
            on_timeout=lambda: AssertionError("no batch ever waited for the database"),
        )
        pipeline.start_other_worker()

        async def revocation_waits_for_the_write() -> bool | None:
            pipeline.check_worker_alive()
            log = first_log.read_text(errors="replace")
            return True if "waiting for the PostgreSQL write under way" in log else None

        await poll_async(
            revocation_waits_for_the_write,
            timeout_s=120,
            on_timeout=lambda: AssertionError(f"no revocation:\n{pipeline.worker_log()}"),
            cap_s=0.2,
        )
        await holding.rollback()
    await pipeline.wait_consumed(timeout_s=180)
    log = first_log.read_text(errors="replace")
    assert "stopped: partitions revoked" in log, pipeline.worker_log()
    report_id = await pipeline.request_report()
    assert await pipeline.wait_report(report_id) == batch_csv(dataset)


async def test_whole_replay_delivered_twice(pipeline: Pipeline, dataset: Path) -> None:
    reference, polls = read_messages(dataset)
    pipeline.start_worker()
    await pipeline.publish(reference + polls)
    await pipeline.wait_consumed()
    first = await pipeline.wait_report(await pipeline.request_report())
    assert pipeline.pool is not None
    rows_before = await pipeline.pool.fetch(
        "SELECT * FROM store_days ORDER BY store_id, day_start_us"
    )
    await pipeline.publish(reference + polls)  # a producer retry storm
    await pipeline.wait_consumed()
    rows_after = await pipeline.pool.fetch(
        "SELECT * FROM store_days ORDER BY store_id, day_start_us"
    )
    assert rows_after == rows_before
    second = await pipeline.wait_report(await pipeline.request_report())
    assert second == first == batch_csv(dataset)


@pytest.mark.timeout(400)
async def test_broker_restarted_mid_replay(
    pipeline: Pipeline,
    dataset: Path,
    services_base_settings: Settings,
    service_endpoints: ServiceEndpoints,
) -> None:
    """The broker goes down (a clean shutdown) while the worker is ingesting and comes back
    on the same port with the same data: the worker reconnects by itself and catches up."""
    if service_endpoints.kafka_backend == services.EXTERNAL:
        pytest.skip("the broker is not ours to restart (STOREMON_KAFKA_BOOTSTRAP)")
    reference, polls = read_messages(dataset)
    pipeline.start_worker()
    await pipeline.publish(reference + polls[: len(polls) // 2])
    await pipeline.wait_progress(0.3)
    await asyncio.to_thread(services.down, services_base_settings, kafka=True, postgres=False)
    await asyncio.sleep(3)
    pipeline.check_worker_alive()
    restarted = await services.ensure_up_async(services_base_settings)
    assert restarted.kafka_bootstrap == pipeline.settings.kafka_bootstrap
    await pipeline.publish(polls[len(polls) // 2 :])
    await pipeline.wait_consumed()
    pipeline.check_worker_alive()  # the same process all along
    report_id = await pipeline.request_report()
    assert await pipeline.wait_report(report_id) == batch_csv(dataset)


async def test_report_job_whose_worker_dies_is_run_again(pipeline: Pipeline, dataset: Path) -> None:
    """A request is acknowledged only once its report is stored: the worker is killed while
    the job runs (held up by a lock), and the restarted worker runs the job again."""
    await pipeline.ingest_all(dataset)
    assert pipeline.pool is not None
    async with pipeline.pool.acquire() as blocker:
        async with blocker.transaction():
            await blocker.execute("LOCK TABLE store_days, stores IN ACCESS EXCLUSIVE MODE")
            report_id = await pipeline.request_report()
            pool = pipeline.pool

            async def running() -> bool | None:
                record = await db_reports.get_report(pool, report_id)
                assert record is not None
                return True if record.status == db_reports.ReportStatus.RUNNING else None

            await poll_async(running, timeout_s=30, on_timeout=TimeoutError, cap_s=0.1)
            pipeline.stop_worker(signal.SIGKILL)
        # The lock is gone with the transaction; the job is still Running, its worker dead.
        record = await db_reports.get_report(pipeline.pool, report_id)
        assert record is not None
        assert record.status == db_reports.ReportStatus.RUNNING
    pipeline.start_worker()
    assert await pipeline.wait_report(report_id) == batch_csv(dataset)
    record = await db_reports.get_report(pipeline.pool, report_id)
    assert record is not None
    assert record.attempts == 2


async def test_a_report_lost_in_a_database_crash_is_not_found_and_blocks_nothing(
    pipeline: Pipeline, dataset: Path
) -> None:
    """The trigger's insert does not wait for its flush (docs/design.md, "Durability of a
    report's life"): a crash of PostgreSQL right after the API answered 202 can lose the
    row while the request is on Kafka. The state after such a crash is made here as it
    is, a request with no row: the job skips it, the API answers 404 for it (also to a
    client that waits), and the report asked after it is answered as usual."""
    from aiohttp.test_utils import TestClient, TestServer

    from storemon.web.app import build_app

    await pipeline.ingest_all(dataset)
    lost = uuid.uuid4()
    await pipeline.send_report_request(lost)
    report_id = await pipeline.request_report()
    assert await pipeline.wait_report(report_id) == batch_csv(dataset)
    assert pipeline.pool is not None
    assert await db_reports.get_report(pipeline.pool, lost) is None
    settings = dataclasses.replace(pipeline.settings, api_token="")
    client = TestClient(TestServer(build_app(settings)))
    await client.start_server()
    try:
        for query in ({"report_id": str(lost)}, {"report_id": str(lost), "wait": "2"}):
            response = await client.get("/get_report", params=query)
            assert response.status == 404
            assert orjson.loads(await response.read()) == {"error": f"no report {lost}"}
        response = await client.get("/get_report", params={"report_id": str(report_id)})
        assert response.status == 200
        assert await response.text() == batch_csv(dataset)
    finally:
        await client.close()


async def test_concurrent_reports_each_get_their_own_answer(
    pipeline: Pipeline, dataset: Path
) -> None:
    """Several reports triggered at once, each as of a different moment: every one equals the
    batch command's report as of that moment (no job sees another's window or snapshot)."""
    await pipeline.ingest_all(dataset)
    _, polls = read_messages(dataset)
    newest = newest_poll_us(polls)
    moments = [format_utc(newest - k * 29 * HOUR_US - k * 60_000_000)[:19] for k in range(5)]
    report_ids = await asyncio.gather(*(pipeline.request_report(m) for m in moments))
    answers = await asyncio.gather(*(pipeline.wait_report(r) for r in report_ids))
    expected = [batch_csv(dataset, moment) for moment in moments]
    assert len(set(expected)) == len(moments)  # the moments really differ
    assert answers == expected


async def test_a_burst_of_alike_requests_is_answered_by_one_job(
    pipeline: Pipeline, dataset: Path
) -> None:
    """Requests waiting for the same report time share the first job's answer (it reads a
    snapshot taken after all of them were stored); another report time gets its own."""
    await pipeline.ingest_all(dataset)
    pipeline.stop_worker()
    _, polls = read_messages(dataset)
    newest = newest_poll_us(polls)
    earlier = format_utc(newest - 5 * HOUR_US)[:19]
    burst = [await pipeline.request_report() for _ in range(6)]
    other = await pipeline.request_report(earlier)
    pipeline.start_worker()
    answers = [await pipeline.wait_report(report_id) for report_id in burst]
    assert answers == [batch_csv(dataset)] * len(burst)
    assert await pipeline.wait_report(other) == batch_csv(dataset, earlier)
    assert pipeline.pool is not None
    attempts = {
        row["report_id"]: row["attempts"]
        for row in await pipeline.pool.fetch(
            "SELECT report_id, attempts FROM reports WHERE report_id = ANY($1::uuid[])",
            [*burst, other],
        )
    }
    assert sum(attempts[r] for r in burst) == 1  # one job ran; its answer served all six
    assert attempts[other] == 1


async def test_database_away_mid_replay_is_waited_out(pipeline: Pipeline, dataset: Path) -> None:
    """The worker reaches PostgreSQL through a proxy that the test cuts for some seconds in
    the middle of the replay: it retries with backoff and catches up; nothing is lost."""
    parts = urlsplit(pipeline.settings.database_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    direct = pipeline.settings
    pipeline.settings = dataclasses.replace(direct, database_url=proxy.url(direct.database_url))
    reference, polls = read_messages(dataset)
    pipeline.start_worker()
    await pipeline.publish(reference + polls[: len(polls) // 2])
    await pipeline.wait_progress(0.2)
    await proxy.cut()
    await pipeline.publish(polls[len(polls) // 2 :])
    # The batching stage keeps acknowledging polls (they are safe in the internal topic); the
    # agent, which writes PostgreSQL, must not. Acknowledgements made before the cut may
    # still be committed for a few seconds (Faust commits on a timer), then nothing moves.
    await asyncio.sleep(4)
    stalled_at = await pipeline.agent_committed()
    await asyncio.sleep(6)
    pipeline.check_worker_alive()  # waiting, not crashed
    assert await pipeline.consumed_fraction() < 1.0
    assert await pipeline.agent_committed() == stalled_at  # nothing acknowledged blind
    await proxy.resume()
    await pipeline.wait_consumed()
    report_id = await pipeline.request_report()
    assert await pipeline.wait_report(report_id) == batch_csv(dataset)
    assert "retrying" in pipeline.worker_log()
    await proxy.cut()


async def test_rows_past_the_retention_are_pruned_across_a_restart(
    pipeline: Pipeline, dataset: Path
) -> None:
    """Each store keeps its days from reach + 1 week before its own newest poll (whole
    days), plus the day of its anchor (its newest poll before that cut)."""

    from storemon.aggregates.reach import store_cutoff_us
    from storemon.aggregates.timebase import DAY_US

    # 9 days of data and no reach (reports at the newest poll and after it only): a week
    # kept, so the oldest day goes and the next one holds the anchors.
    pipeline.settings = dataclasses.replace(
        pipeline.settings, prune_interval_s=1.0, report_reach_hours=0
    )
    reach_us = 0
    reference, polls = read_messages(dataset)
    stamps = [poll_us(message) for message in polls]
    by_store: dict[str, list[int]] = {}
    for (_, key, _), ts in zip(polls, stamps, strict=True):
        by_store.setdefault(key, []).append(ts)
    cutoffs = {store: store_cutoff_us(max(ts), reach_us) for store, ts in by_store.items()}
    # the days that must go: before the store's cutoff, and not the anchor's day
    anchor_days = {
        store: max((t for t in ts if t < cutoffs[store]), default=None)
        for store, ts in by_store.items()
    }
    doomed = {
        (store, t - t % DAY_US)
        for store, ts in by_store.items()
        for t in ts
        if t - t % DAY_US + DAY_US <= cutoffs[store]
        and ((anchor := anchor_days[store]) is None or t - t % DAY_US != anchor - anchor % DAY_US)
    }
    assert doomed, "the data set must reach past the retention"
    old_report, new_report = uuid.uuid4(), uuid.uuid4()
    assert pipeline.pool is not None
    for report_id, age_days in ((old_report, 30), (new_report, 0)):
        await pipeline.pool.execute(
            "INSERT INTO reports (report_id, status, created_at, csv)"
            " VALUES ($1, 'Complete', now() - make_interval(days => $2), 'x')",
            report_id,
            age_days,
        )
    pipeline.start_worker()
    await pipeline.publish(reference + polls[: len(polls) // 2])
    await pipeline.wait_consumed()
    pipeline.stop_worker()  # a clean restart in the middle
    pipeline.start_worker()
    await pipeline.publish(polls[len(polls) // 2 :])
    await pipeline.wait_consumed()
    pool = pipeline.pool
    assert pool is not None
    kept: set[tuple[str, int]] = set()
    remaining: set[uuid.UUID] = set()

    async def pruned() -> bool | None:  # the timer deletes the old days, then the old reports
        kept.clear()
        kept.update(
            (r["store_id"], r["day_start_us"])
            for r in await pool.fetch("SELECT store_id, day_start_us FROM store_days")
        )
        remaining.clear()
        remaining.update(r["report_id"] for r in await pool.fetch("SELECT report_id FROM reports"))
        return True if not doomed & kept and old_report not in remaining else None

    await poll_async(
        pruned,
        timeout_s=60,
        on_timeout=lambda: AssertionError(f"not pruned: {sorted(doomed & kept)[:5]}"),
        cap_s=0.5,
    )
    # nothing else went: every kept day of a store starts at its cutoff or holds its anchor
    for store, day in kept:
        anchor = anchor_days[store]
        assert day + DAY_US > cutoffs[store] or (
            anchor is not None and day == anchor - anchor % DAY_US
        )
    assert any(day + DAY_US <= cutoffs[store] for store, day in kept)  # anchors' days stay
    # Finished reports older than their retention (a week by default) went too.
    assert old_report not in remaining
    assert new_report in remaining
    report_id = await pipeline.request_report()
    assert await pipeline.wait_report(report_id) == batch_csv(dataset)
