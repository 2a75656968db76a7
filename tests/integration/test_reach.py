"""Every report time the API accepts is answered exactly; others are refused (422) or, when
history was pruned after the request was accepted, end Failed. Real broker, database,
worker and API (docs/semantics.md, "Which report times the service answers").

The data sets cover the US daylight-saving nights of 2023 (clocks forward on 12 March,
back on 5 November) with 12 days of polls; the reach is 48 h, so the worker and the
database prune history while the stream runs and the range's lower end is sharp."""

from __future__ import annotations

import dataclasses
import itertools
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from storemon.aggregates.coverage import Coverage, business_windows, coverage_values
from storemon.aggregates.reach import store_cutoff_us, supported_range
from storemon.aggregates.records import DEFAULT_ZONE
from storemon.aggregates.report import render_csv
from storemon.aggregates.schedule import sessions_between
from storemon.aggregates.timebase import (
    DAY_US,
    HOUR_US,
    MINUTE_US,
    floor_to,
    format_utc,
    parse_as_of,
)
from storemon.aggregates.timeline import dedupe_polls
from storemon.batch import Dataset, compute_report, load_dataset
from storemon.db import reports as db_reports
from storemon.db import retention as db_retention
from storemon.streams import messages
from storemon.waiting import poll_async
from storemon.web.app import build_app

from .pipeline import Pipeline, generate, poll_us, read_messages

pytestmark = [pytest.mark.services, pytest.mark.slow, pytest.mark.timeout(600)]

REACH_HOURS = 48
LEAD_HOURS = 2


@pytest.fixture(scope="module")
def spring(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Newest poll a day and a half after clocks went forward in the US.
    return generate(
        tmp_path_factory.mktemp("spring") / "set",
        stores=24,
        days=12,
        seed=12,
        end="2023-03-13 18:41:07.25",
    )


@pytest.fixture(scope="module")
def autumn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(
        tmp_path_factory.mktemp("autumn") / "set",
        stores=16,
        days=12,
        seed=13,
        end="2023-11-06 15:20:00",
    )


def reach_settings(pipeline: Pipeline) -> None:
    pipeline.settings = dataclasses.replace(
        pipeline.settings,
        report_reach_hours=REACH_HOURS,
        report_lead_hours=LEAD_HOURS,
        prune_interval_s=1.0,
    )


async def api_client(pipeline: Pipeline) -> TestClient[Any, Any]:
    client: TestClient[Any, Any] = TestClient(TestServer(build_app(pipeline.settings)))
    await client.start_server()
    return client


async def trigger(client: TestClient[Any, Any], as_of: str | None) -> tuple[int, dict[str, Any]]:
    response = await client.post("/trigger_report", json={"as_of": as_of} if as_of else None)
    return response.status, orjson.loads(await response.read())


async def fetch(
    client: TestClient[Any, Any], report_id: str, fmt: str = "csv", timeout_s: float = 60.0
) -> bytes:

    async def answer() -> bytes | None:
        response = await client.get("/get_report", params={"report_id": report_id, "format": fmt})
        assert response.status == 200
        body = await response.read()
        if response.content_type != "application/json" or (fmt == "json" and b'"rows"' in body):
            return body
        status = orjson.loads(body)
        assert status["status"] in ("Pending", "Running"), status
        return None

    return await poll_async(
        answer,
        timeout_s=timeout_s,
        on_timeout=lambda: AssertionError(f"report {report_id} not complete in {timeout_s} s"),
        cap_s=0.1,
    )


async def wait_pruned(pipeline: Pipeline) -> None:
    """Until the database's prune has run over everything ingested: no store keeps a day
    before its cutoff other than the day of its anchor."""
    pool = pipeline.pool
    assert pool is not None

    async def pruned() -> bool | None:
        # The mark alone is not enough: a prune that ran while the slower stores were
        # still arriving sets it, yet leaves their old days to the next run.
        async with pool.acquire() as conn:
            left = await db_retention.count_prunable(conn, pipeline.settings.retention_us)
            mark = await conn.fetchval("SELECT pruned_before_us FROM retention_mark")
            newest = await conn.fetchval("SELECT max(newest_poll_us) FROM stores")
        if left == 0 and mark == store_cutoff_us(newest, REACH_HOURS * HOUR_US):
            return True
        return None

    await poll_async(
        pruned,
        timeout_s=60,
        on_timeout=lambda: AssertionError("the prune timer did not run"),
        cap_s=0.3,
    )


def reference_csv(data: Dataset, as_of_us: int) -> str:
    return render_csv(compute_report(data, as_of_us))


def command_csv(data_dir: Path, as_of: str, out: Path) -> str:
    """``storemon report --as-of`` itself (the reference has every poll)."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "storemon",
            "report",
            "--data",
            str(data_dir),
            "--as-of",
            as_of,
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    return out.read_text()


def between_two_polls(data: Dataset, lo_us: int, hi_us: int) -> list[int]:
    """Report times strictly between two consecutive polls of one session, inside
    [lo_us, hi_us): just after the first, at the midpoint (where the status changes
    hands) and just after it, and just before the second; for two stores."""
    found: list[int] = []
    stores = 0
    polls_by_store = data.polls_by_store()
    for store_id in sorted(polls_by_store):
        poll_ts, _ = dedupe_polls(polls_by_store[store_id])
        sessions = sessions_between(
            data.schedules.get(store_id, ()),
            data.zones.get(store_id, DEFAULT_ZONE),
            lo_us - DAY_US,
            hi_us,
        )
        for a, b in itertools.pairwise(poll_ts):
            s = sessions.index_containing(a)
            if lo_us < a and b < hi_us and s >= 0 and b < sessions.ends[s] and b - a > MINUTE_US:
                found += [a + 1, (a + b) // 2, (a + b) // 2 + 1, b - 1]
                stores += 1
                break
        if stores == 2:
            return found
    raise AssertionError("no two polls in one session in the range")


def expected_json_rows(data: Dataset, as_of_us: int) -> dict[str, list[float]]:
    """Per store, the JSON's numbers from the core: the CSV's six, then business and
    unobserved time per window (unobserved = business - up - down, exactly)."""
    rows: dict[str, list[float]] = {}
    for row in compute_report(data, as_of_us):
        business = business_windows(
            data.schedules.get(row.store_id, ()),
            data.zones.get(row.store_id, DEFAULT_ZONE),
            as_of_us,
        )
        hour, day, week = (
            b - u - d for b, u, d in zip(business, row.up_us, row.down_us, strict=True)
        )
        assert min(hour, day, week) >= 0
        found = Coverage(business, (hour, day, week))
        line = render_csv([row]).splitlines()[1].split(",")[1:]
        rows[row.store_id] = [float(v) for v in line] + coverage_values(found)
    return rows


@pytest.fixture
async def live_api(pipeline: Pipeline) -> AsyncIterator[TestClient[Any, Any]]:
    reach_settings(pipeline)
    client = await api_client(pipeline)
    try:
        yield client
    finally:
        await client.close()


async def test_every_report_time_in_the_range_equals_the_batch_report(
    pipeline: Pipeline, live_api: TestClient[Any, Any], spring: Path, tmp_path: Path
) -> None:
    await pipeline.ingest_all(spring)
    await wait_pruned(pipeline)
    data = load_dataset(spring)
    newest = data.newest_poll_us
    assert newest is not None
    allowed = supported_range(newest, REACH_HOURS * HOUR_US, LEAD_HOURS * HOUR_US)
    assert allowed is not None
    assert pipeline.pool is not None
    # The worker and the database did cut history: old store-days are gone.
    kept = {
        (r["store_id"], r["day_start_us"])
        for r in await pipeline.pool.fetch("SELECT store_id, day_start_us FROM store_days")
    }
    polls_by_store = data.polls_by_store()
    poll_days = {
        (store, ts - ts % DAY_US) for store, polls in polls_by_store.items() for ts, _ in polls
    }
    assert len(poll_days - kept) >= len(polls_by_store)

    day = floor_to(newest, DAY_US)
    hour = floor_to(newest, HOUR_US)
    moments = [
        allowed.earliest_us,  # both ends, exactly
        allowed.latest_us,
        newest,
        newest - 1,
        newest + 1,
        hour,  # whole hours and days
        hour - 5 * HOUR_US,
        day,
        day - DAY_US,
        ((allowed.earliest_us // HOUR_US) + 1) * HOUR_US,
        # the night clocks went forward: 02:00 local in New York, Chicago, Denver, LA
        parse_as_of("2023-03-12 07:00:00"),
        parse_as_of("2023-03-12 07:30:00"),
        parse_as_of("2023-03-12 08:00:00"),
        parse_as_of("2023-03-12 09:00:00"),
        parse_as_of("2023-03-12 10:00:00"),
        parse_as_of("2023-03-12 10:59:59.999999"),
        *between_two_polls(data, allowed.earliest_us, newest),
    ]
    assert all(m in allowed for m in moments)
    triggered: list[tuple[int, str]] = []
    for moment in moments:
        status, body = await trigger(live_api, format_utc(moment))
        assert status == 202, body
        triggered.append((moment, body["report_id"]))
    for moment, report_id in triggered:
        got = (await fetch(live_api, report_id)).decode()
        assert got == reference_csv(data, moment), format_utc(moment)
    # the command itself, at both ends and on the DST night
    for moment in (allowed.earliest_us, allowed.latest_us, parse_as_of("2023-03-12 07:30:00")):
        report_id = next(r for m, r in triggered if m == moment)
        got = (await fetch(live_api, report_id)).decode()
        assert got == command_csv(spring, format_utc(moment), tmp_path / "batch.csv")

    # Just outside the range: refused, naming the range.
    for outside in (allowed.earliest_us - 1, allowed.latest_us + 1):
        status, body = await trigger(live_api, format_utc(outside))
        assert status == 422, body
        assert body["earliest_as_of"] == format_utc(allowed.earliest_us)
        assert body["latest_as_of"] == format_utc(allowed.latest_us)
        assert format_utc(allowed.earliest_us) in body["error"]
    for far in ("2030-01-01 00:00:00", "1999-01-01 00:00:00"):
        assert (await trigger(live_api, far))[0] == 422
    # The range names itself in a form the API takes back.
    status, _ = await trigger(live_api, body["earliest_as_of"])
    assert status == 202

    # JSON and Parquet: business and unobserved time per window, equal to the core's, and
    # up + down + unobserved = business for every row.
    for moment in (newest, allowed.earliest_us, parse_as_of("2023-03-12 07:30:00")):
        report_id = next(r for m, r in triggered if m == moment)
        body = orjson.loads(await fetch(live_api, report_id, "json"))
        assert "coverage_missing" not in body
        expected = expected_json_rows(data, moment)
        assert {row["store_id"] for row in body["rows"]} == set(expected)
        for row in body["rows"]:
            numbers = [row[name] for name in body["columns"][1:]]
            assert numbers == expected[row["store_id"]], row["store_id"]
        assert any(row["unobserved_last_week"] > 0 for row in body["rows"])

    import io

    import pyarrow.parquet as pq

    parquet = pq.read_table(io.BytesIO(await fetch(live_api, triggered[2][1], "parquet")))
    json_rows = orjson.loads(await fetch(live_api, triggered[2][1], "json"))["rows"]
    assert parquet.to_pylist() == json_rows


async def test_history_pruned_after_the_request_fails_the_report(
    pipeline: Pipeline, live_api: TestClient[Any, Any], autumn: Path
) -> None:
    """A report accepted while its time was in range, whose history is pruned before its
    job runs, ends Failed with the reason; never Complete from cut history. Reports in the
    range on the night clocks went back equal the batch report."""
    reference, polls = read_messages(autumn)
    data = load_dataset(autumn)
    newest = data.newest_poll_us
    assert newest is not None
    first_part_end = newest - 5 * DAY_US
    early = [p for p in polls if poll_us(p) <= first_part_end]
    later = [p for p in polls if poll_us(p) > first_part_end]
    pipeline.start_worker()
    await pipeline.publish(reference + early)
    await pipeline.wait_consumed()
    # Accepted now: within reach of the newest poll so far.
    as_of = first_part_end - 40 * HOUR_US
    status, body = await trigger(live_api, format_utc(as_of))
    assert status == 202, body
    answered = (await fetch(live_api, body["report_id"])).decode()
    # (Polls after the first part's end are not used before it, except that none exist yet.)
    assert answered == reference_csv(data, as_of)
    # The same request once more, but its job runs only after the rest of the stream has
    # moved the range on and the history it needed was pruned.
    assert pipeline.pool is not None
    late_id = uuid.uuid4()
    await db_reports.create_report(pipeline.pool, late_id, as_of)
    await pipeline.publish(later)
    await pipeline.wait_consumed()
    await wait_pruned(pipeline)
    await pipeline.publish(
        [
            (
                messages.REPORT_REQUESTS,
                str(late_id),
                messages.encode({"report_id": str(late_id), "as_of": format_utc(as_of)}),
            )
        ]
    )
    pool = pipeline.pool

    async def finished() -> db_reports.ReportRecord | None:
        found = await db_reports.get_report(pool, late_id)
        assert found is not None
        done = (db_reports.ReportStatus.COMPLETE, db_reports.ReportStatus.FAILED)
        return found if found.status in done else None

    record = await poll_async(finished, timeout_s=60, on_timeout=TimeoutError, cap_s=0.2)
    assert record.status == db_reports.ReportStatus.FAILED
    assert record.error is not None
    assert "outside the supported range" in record.error
    # The night clocks went back (02:00 local happens twice): in range, exact.
    for text in (
        "2023-11-05 06:00:00",
        "2023-11-05 06:30:00",
        "2023-11-05 07:00:00",
        "2023-11-05 08:00:00",
        "2023-11-05 09:00:00",
        "2023-11-05 10:00:00",
    ):
        status, body = await trigger(live_api, text)
        assert status == 202, body
        got = (await fetch(live_api, body["report_id"])).decode()
        assert got == reference_csv(data, parse_as_of(text)), text
