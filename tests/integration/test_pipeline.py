"""The stream end to end: generated data -> Kafka -> Faust worker -> PostgreSQL -> report
job, compared byte for byte with the batch command on the same files."""

from __future__ import annotations

import contextlib
import random
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest

from storemon.aggregates.timebase import HOUR_US, format_utc, parse_as_of, parse_poll_timestamp
from storemon.db import assemble
from storemon.db.sink import SinkBatch
from storemon.producers.replay import DEFAULT_PACK_HOURS, replay
from storemon.streams import messages
from storemon.streams.report_index import ReportIndex
from storemon.waiting import poll_async

from .pipeline import Pipeline, batch_csv, generate, newest_poll_us, read_messages

pytestmark = [pytest.mark.services, pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 9 days: more than a week window, so the week column of every report time is full (pruning
    # while the stream runs is covered by test_reach.py, with a shorter reach).
    return generate(tmp_path_factory.mktemp("data") / "set", stores=60, days=9, seed=11)


async def test_stream_report_equals_batch_report(pipeline: Pipeline, dataset: Path) -> None:
    reference, polls = read_messages(dataset)
    pipeline.start_worker()
    await pipeline.publish(reference + polls)
    await pipeline.wait_consumed()
    await pipeline.wait_report_index()
    report_id = await pipeline.request_report()
    assert await pipeline.wait_report(report_id) == batch_csv(dataset)
    assert "index" in await pipeline.report_timings(report_id)  # answered from memory
    # and at explicit report times, before the newest poll and inside the hour (answered
    # from PostgreSQL: they need polls around T), and after it (from memory again)
    newest = newest_poll_us(polls)
    later = [format_utc(newest + HOUR_US // 2 + 1)[:26], format_utc(newest + 2 * HOUR_US)[:19]]
    for as_of in (
        "2023-01-24 10:30:00",
        "2023-01-21 03:17:45.5",
        "2023-01-25 18:00:00.000001",
        *later,
    ):
        report_id = await pipeline.request_report(as_of)
        assert await pipeline.wait_report(report_id) == batch_csv(dataset, as_of), as_of
        from_memory = "index" in await pipeline.report_timings(report_id)
        assert from_memory == (as_of in later), as_of


async def test_reports_from_memory_equal_reports_from_postgresql(
    pipeline: Pipeline, dataset: Path
) -> None:
    """The same moments answered by the in-memory index and, with it switched off, by the
    database: the same bytes, and the batch command's."""
    await pipeline.ingest_all(dataset)
    await pipeline.wait_report_index()
    _, polls = read_messages(dataset)
    newest = newest_poll_us(polls)
    moments = [None, format_utc(newest + 37 * 60_000_000 + 123)[:26]]
    from_memory = [await pipeline.wait_report(await pipeline.request_report(m)) for m in moments]
    # asked again with nothing ingested since: the first answer is copied, not recomputed
    again = await pipeline.request_report()
    assert await pipeline.wait_report(again) == from_memory[0]
    timings = await pipeline.report_timings(again)
    assert "index" in timings
    assert "finish_s" not in timings
    pipeline.stop_worker()
    pipeline.extra_env["STOREMON_REPORT_INDEX"] = "0"
    pipeline.start_worker()
    ids = [await pipeline.request_report(m) for m in moments]
    from_database = [await pipeline.wait_report(r) for r in ids]
    for report_id in ids:
        assert "index" not in await pipeline.report_timings(report_id)
    assert from_memory == from_database == [batch_csv(dataset, m) for m in moments]


class _VersionMovingPool:
    """The pipeline's real pool, except that every query first raises the index's version,
    as a chunk of polls written by the worker meanwhile does during a live run."""

    def __init__(self, pool: asyncpg.Pool, index: ReportIndex) -> None:
        self.pool, self.index, self.moves = pool, index, 0

    def _move(self) -> None:
        assert self.index.version is not None
        self.index.written(SinkBatch(), self.index.version + 1)
        self.moves += 1

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        async with self.pool.acquire() as conn:
            outer = self

            class Moving:
                async def fetchval(self, *args: Any) -> Any:
                    outer._move()
                    return await conn.fetchval(*args)

                async def fetch(self, *args: Any) -> Any:
                    outer._move()
                    return await conn.fetch(*args)

                async def fetchrow(self, *args: Any) -> Any:
                    outer._move()
                    return await conn.fetchrow(*args)

            yield Moving()

    def acquire(self) -> Any:
        return self._connection()


async def test_a_report_asked_while_the_version_moves_is_still_summed_from_memory(
    pipeline: Pipeline, dataset: Path
) -> None:
    """While polls stream in, the aggregates' version moves with every chunk the worker
    writes, also between a report's database reads. The report is still summed from the index
    (at the version it read, with no await in between), not sent to PostgreSQL."""
    await pipeline.ingest_all(dataset)
    assert pipeline.pool is not None
    settings = pipeline.settings
    report_index = ReportIndex(settings.reach_us, settings.lead_us)
    report_index.start_loading(pipeline.pool)

    async def loaded() -> bool | None:
        return True if report_index.ready else None

    await poll_async(loaded, timeout_s=60, on_timeout=lambda: AssertionError("index not loaded"))
    moving = _VersionMovingPool(pipeline.pool, report_index)
    before = report_index.version
    assert before is not None
    report = await report_index.try_report(moving, None)  # type: ignore[arg-type]
    # the version moved with the read before the sums (the look-ups are one statement)
    assert moving.moves >= 1
    assert report is not None
    # summed at a version it read after the database reads had moved it
    assert report.data_version is not None
    assert report_index.version is not None
    assert before < report.data_version <= report_index.version
    assert report.csv_text == batch_csv(dataset)


async def test_shuffled_polls_with_duplicates_give_the_same_report(
    pipeline: Pipeline, dataset: Path
) -> None:
    reference, polls = read_messages(dataset)
    rng = random.Random(5)
    delivered = polls + rng.sample(polls, k=len(polls) // 20)  # 5% delivered twice
    rng.shuffle(delivered)
    pipeline.start_worker()
    await pipeline.publish(delivered[: len(delivered) // 2])
    await pipeline.publish(reference)  # the schedules arrive after half of the polls
    await pipeline.publish(delivered[len(delivered) // 2 :])
    await pipeline.wait_consumed()
    report_id = await pipeline.request_report()
    assert await pipeline.wait_report(report_id) == batch_csv(dataset)


async def test_keyless_messages_give_the_batch_report(pipeline: Pipeline, dataset: Path) -> None:
    """A client that sends no key: Kafka spreads each store over the partitions, here owned
    by two workers. The batching stage sends every record on to its store's own partition,
    so one worker holds all of a store (applied where it landed, the two workers' rows of
    one store would overwrite each other)."""
    reference, polls = read_messages(dataset)
    pipeline.start_worker()
    _, other_port = pipeline.start_other_worker()

    async def both_own_partitions() -> bool | None:
        pipeline.check_worker_alive()
        try:
            mine = (await pipeline.worker_overview())["partitions"]
            theirs = (await pipeline.worker_overview(other_port))["partitions"]
        except (aiohttp.ClientError, TimeoutError, KeyError):
            return None
        return True if mine and theirs else None

    await poll_async(
        both_own_partitions,
        timeout_s=120,
        on_timeout=lambda: AssertionError(f"a worker owns nothing:\n{pipeline.worker_log()}"),
        cap_s=0.5,
    )
    await pipeline.publish(reference + polls, keyed=False)
    await pipeline.wait_consumed()
    report_id = await pipeline.request_report()
    assert await pipeline.wait_report(report_id) == batch_csv(dataset)
    assert await pipeline.dead_letter_reasons() == []


async def test_report_status_moves_pending_running_complete(
    pipeline: Pipeline, dataset: Path
) -> None:
    await pipeline.ingest_all(dataset)
    assert pipeline.pool is not None
    async with pipeline.pool.acquire() as blocker, blocker.transaction():
        # Hold the aggregates so the job, once started, has to wait: it is seen Running.
        await blocker.execute("LOCK TABLE store_days, stores IN ACCESS EXCLUSIVE MODE")
        # Stored first, requested after: the job (which starts within milliseconds of the
        # request) cannot run before the Pending row has been seen.
        report_id = await pipeline.store_report()
        pool = pipeline.pool
        statuses: list[str] = [
            await pool.fetchval("SELECT status FROM reports WHERE report_id = $1", report_id)
        ]
        await pipeline.send_report_request(report_id)

        async def running() -> bool | None:
            status = await pool.fetchval(
                "SELECT status FROM reports WHERE report_id = $1", report_id
            )
            if not statuses or statuses[-1] != status:
                statuses.append(status)
            return True if status == "Running" else None

        await poll_async(
            running, timeout_s=10, on_timeout=lambda: AssertionError(statuses), cap_s=0.1
        )
        assert statuses == ["Pending", "Running"]
    assert await pipeline.wait_report(report_id) == batch_csv(dataset)
    record = await pipeline.pool.fetchrow(
        "SELECT attempts, started_at, finished_at FROM reports WHERE report_id = $1", report_id
    )
    assert record is not None
    assert record["attempts"] == 1
    assert record["started_at"] <= record["finished_at"]


async def test_live_poll_after_a_report_changes_the_next_report(
    pipeline: Pipeline, dataset: Path, tmp_path: Path
) -> None:
    reference, polls = read_messages(dataset)
    pipeline.start_worker()
    await pipeline.publish(reference + polls)
    await pipeline.wait_consumed()
    first = await pipeline.wait_report(await pipeline.request_report())

    # One store reports `inactive` 20 minutes after the newest poll: the next report is taken
    # at that poll, and must be what the batch command says for the files plus this row.
    lines = (dataset / "store_status.csv").read_text().splitlines()
    newest = max(parse_poll_timestamp(line.split(",")[2]) for line in lines[1:])
    store_id = lines[1].split(",")[0]
    live_ts = format_utc(newest + HOUR_US // 3)
    await pipeline.publish(
        [(messages.POLLS, store_id, messages.poll_message(store_id, live_ts, "inactive"))]
    )
    await pipeline.wait_consumed()
    second = await pipeline.wait_report(await pipeline.request_report())

    extended = tmp_path / "extended"
    shutil.copytree(dataset, extended)
    with (extended / "store_status.csv").open("a") as handle:
        handle.write(f"{store_id},inactive,{live_ts}\n")
    assert second == batch_csv(extended)
    assert second != first


async def test_a_finished_report_is_reused_only_while_the_aggregates_are_unchanged(
    pipeline: Pipeline, dataset: Path, tmp_path: Path
) -> None:
    await pipeline.ingest_all(dataset)
    assert pipeline.pool is not None
    as_of = "2023-01-24 10:30:00"
    first_id = await pipeline.request_report(as_of)
    first = await pipeline.wait_report(first_id)
    assert first == batch_csv(dataset, as_of)
    second_id = await pipeline.request_report(as_of)
    assert await pipeline.wait_report(second_id) == first
    rows = {
        r["report_id"]: r
        for r in await pipeline.pool.fetch(
            "SELECT report_id, data_version, timings FROM reports WHERE report_id = ANY($1)",
            [first_id, second_id],
        )
    }
    assert rows[first_id]["data_version"] == rows[second_id]["data_version"] is not None
    assert "finish_s" in orjson.loads(rows[first_id]["timings"])  # computed
    assert "finish_s" not in orjson.loads(rows[second_id]["timings"])  # copied

    # A late poll before the report time changes the aggregates: the same report time is
    # computed again and must say what the batch command says for the files plus that row.
    lines = (dataset / "store_status.csv").read_text().splitlines()
    extended = tmp_path / "extended"
    late_ts = format_utc(parse_as_of(as_of) - 7 * 60 * 1_000_000)
    for line in lines[1:]:
        store_id, status = line.split(",")[0], line.split(",")[1]
        shutil.rmtree(extended, ignore_errors=True)
        shutil.copytree(dataset, extended)
        late = "inactive" if status == "active" else "active"
        with (extended / "store_status.csv").open("a") as handle:
            handle.write(f"{store_id},{late},{late_ts}\n")
        if batch_csv(extended, as_of) != first:
            break
    else:
        raise AssertionError("no late poll changes the report")
    await pipeline.publish(
        [(messages.POLLS, store_id, messages.poll_message(store_id, late_ts, late))]
    )
    await pipeline.wait_consumed()
    third_id = await pipeline.request_report(as_of)
    assert await pipeline.wait_report(third_id) == batch_csv(extended, as_of)
    version = await pipeline.pool.fetchval(
        "SELECT data_version FROM reports WHERE report_id = $1", third_id
    )
    assert version > rows[first_id]["data_version"]


async def test_as_of_fixes_read_in_one_pass_equal_the_per_store_probes(
    pipeline: Pipeline, dataset: Path
) -> None:
    """A report before the newest poll reads the polls of three days for every store at
    once; the per-store probe over the whole session (its fallback) must agree."""
    await pipeline.ingest_all(dataset)
    assert pipeline.pool is not None
    async with pipeline.pool.acquire() as conn:
        newest = await assemble.newest_poll_us(conn)
        assert newest is not None
        checked = 0
        for back_us in (7 * 60 * 1_000_000, 5 * HOUR_US + 123, 30 * HOUR_US, 100 * HOUR_US + 1):
            as_of_us = newest - back_us
            stores = await conn.fetch(
                "SELECT store_id, last_poll_us, schedule::text AS schedule, zone FROM stores"
                " WHERE first_poll_us <= $1",
                as_of_us,
            )
            fast = await assemble._as_of_fixes(conn, list(stores), as_of_us)
            sessions = assemble._sessions_holding(list(stores), as_of_us)
            probed = await assemble._probed_fixes(conn, sessions, as_of_us)
            assert fast == probed, format_utc(as_of_us)
            checked += len(probed)
    assert checked > 50  # the data set has stores to fix at these moments


async def test_bad_rows_go_to_dead_letters_and_the_rest_through(
    pipeline: Pipeline, dataset: Path, tmp_path: Path
) -> None:
    dirty = tmp_path / "dirty"
    shutil.copytree(dataset, dirty)
    some_store = (dataset / "menu_hours.csv").read_text().splitlines()[1].split(",")[0]
    with (dirty / "store_status.csv").open("a") as handle:
        handle.write("bad-ts,active,2023-13-01 00:00:00 UTC\n")
        handle.write("bad-status,sleeping,2023-01-20 10:00:00 UTC\n")
        handle.write("2.57E+14,active,2023-01-20 10:00:00 UTC\n")
    with (dirty / "menu_hours.csv").open("a") as handle:
        handle.write(f"{some_store},7,09:00:00,17:00:00\n")  # day 7: this row only is bad
    with (dirty / "timezones.csv").open("a") as handle:
        handle.write("bad-zone,Mars/Olympus_Mons\n")
    reference, polls = read_messages(dirty)
    pipeline.start_worker()
    await pipeline.publish(reference + polls)
    await pipeline.wait_consumed()
    report_id = await pipeline.request_report()
    assert await pipeline.wait_report(report_id) == batch_csv(dirty)
    assert await pipeline.dead_letter_reasons() == [
        ("hours", "bad day"),
        ("polls", "bad status"),
        ("polls", "bad store_id"),
        ("polls", "bad timestamp"),
        ("timezones", "unknown zone"),
    ]


async def test_a_report_that_cannot_finish_ends_failed_in_bounded_time(
    pipeline: Pipeline, dataset: Path
) -> None:
    import dataclasses

    pipeline.settings = dataclasses.replace(pipeline.settings, report_timeout_s=2.0)
    await pipeline.ingest_all(dataset)
    assert pipeline.pool is not None
    async with pipeline.pool.acquire() as blocker, blocker.transaction():
        await blocker.execute("LOCK TABLE store_days, stores IN ACCESS EXCLUSIVE MODE")
        report_id = await pipeline.request_report()
        pool = pipeline.pool

        async def failed() -> asyncpg.Record | None:
            row = await pool.fetchrow(
                "SELECT status, error FROM reports WHERE report_id = $1", report_id
            )
            assert row is not None
            return row if row["status"] == "Failed" else None

        row = await poll_async(failed, timeout_s=30, on_timeout=TimeoutError, cap_s=0.1)
        assert row["error"] == "did not finish within 2 s"
    # The worker carries on: the next report completes.
    assert await pipeline.wait_report(await pipeline.request_report()) == batch_csv(dataset)


async def test_packed_replay_gives_the_batch_report(
    pipeline: Pipeline, dataset: Path, tmp_path: Path
) -> None:
    """`storemon replay` as fast as possible sends a store's polls of a day as one message;
    a bad poll inside a pack is rejected alone, the pack's other polls are used."""
    dirty = tmp_path / "dirty"
    shutil.copytree(dataset, dirty)
    some_store = (dataset / "store_status.csv").read_text().splitlines()[1].split(",")[0]
    with (dirty / "store_status.csv").open("a") as handle:
        handle.write(f"{some_store},sleeping,2023-01-20 10:00:00 UTC\n")
    pipeline.start_worker()
    stats = await replay(
        pipeline.settings, dirty, speedup=None, progress=False, pack_hours=DEFAULT_PACK_HOURS
    )
    assert stats.poll_messages < stats.topics[messages.POLLS].sent / 5  # packs, not rows
    await pipeline.wait_consumed()
    report_id = await pipeline.request_report()
    assert await pipeline.wait_report(report_id) == batch_csv(dirty)
    assert pipeline.pool is not None
    rows = await pipeline.pool.fetch("SELECT source, reason, record FROM dead_letters")
    assert [(r["source"], r["reason"]) for r in rows] == [("polls", "bad status")]
    assert some_store in rows[0]["record"]


async def test_operator_pages_show_a_store_and_the_tables(
    pipeline: Pipeline, dataset: Path
) -> None:
    import aiohttp

    reference, polls = read_messages(dataset)
    pipeline.start_worker()
    await pipeline.publish(reference + polls)
    await pipeline.wait_consumed()
    store_id = polls[-1][1]
    base = f"http://127.0.0.1:{pipeline.settings.worker_web_port}"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        async with session.get(f"{base}/storemon/stores/{store_id}/") as response:
            assert response.status == 200
            page = await response.json()
        async with session.get(f"{base}/storemon/stores/no-such-store/") as response:
            assert response.status == 404
        async with session.get(f"{base}/storemon/tables/") as response:
            sizes = (await response.json())["local_keys"]
        async with session.get(f"{base}/storemon/") as response:
            overview = await response.json()
    assert page["store_id"] == store_id
    assert page["hours"], "a polled store has hourly buckets"
    assert sum(1 for _, key, _ in polls if key == store_id) >= page["polls_kept"] > 0
    assert sizes["stores"] >= len({key for _, key, _ in polls})
    assert overview["polls"] == len(polls)


async def test_worker_pages_need_the_token_when_one_is_set(pipeline: Pipeline) -> None:
    import dataclasses

    import aiohttp

    pipeline.settings = dataclasses.replace(pipeline.settings, api_token="s3cret-token")
    pipeline.loglevel = "debug"  # the chattiest log must still hold no secret
    pipeline.start_worker()
    base = f"http://127.0.0.1:{pipeline.settings.worker_web_port}"
    good = {"Authorization": "Bearer s3cret-token"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:

        async def serving() -> bool | None:
            try:
                async with session.get(f"{base}/storemon/", headers=good) as response:
                    if response.status == 200:
                        return True
            except (aiohttp.ClientError, TimeoutError):
                pass
            pipeline.check_worker_alive()
            return None

        await poll_async(serving, timeout_s=60, on_timeout=TimeoutError, cap_s=0.2)
        for path in ("/storemon/", "/storemon/tables/", "/router/", "/table/"):
            async with session.get(base + path) as response:
                assert response.status == 401, path
                assert response.headers["WWW-Authenticate"] == "Bearer"
            async with session.get(
                base + path, headers={"Authorization": "Bearer wrong"}
            ) as response:
                assert response.status == 401, path
        async with session.get(f"{base}/storemon/tables/", headers=good) as response:
            assert response.status == 200
    pipeline.stop_worker()
    assert pipeline.log_path is not None
    log_text = pipeline.log_path.read_text(errors="replace")
    assert "DEBUG" in log_text
    assert "s3cret-token" not in log_text


async def test_worker_logs_json_lines_when_asked(pipeline: Pipeline, dataset: Path) -> None:
    import dataclasses

    import orjson

    pipeline.settings = dataclasses.replace(pipeline.settings, log_format="json")
    pipeline.loglevel = "info"
    await pipeline.ingest_all(dataset)
    pipeline.stop_worker()
    assert pipeline.log_path is not None
    lines = [line for line in pipeline.log_path.read_text().splitlines() if line.strip()]
    assert len(lines) > 5
    entries = [orjson.loads(line) for line in lines]  # every line is one JSON object
    for entry in entries:
        assert {"ts", "level", "logger", "msg"} <= set(entry)
    assert any(entry["logger"].startswith("faust") for entry in entries)
