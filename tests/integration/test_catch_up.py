"""A report counts every input published before its job started (streams/catch_up.py):
asked while the worker still holds part of the input, it waits for it, or fails saying so.

The batching stage is given a long window here, so the tail of a replay (fewer polls than
an internal message holds) is certainly not applied when the report is asked for."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from storemon.db import reports as db_reports
from storemon.waiting import poll_async

from .pipeline import Pipeline, batch_csv, generate, read_messages

pytestmark = [pytest.mark.services, pytest.mark.slow, pytest.mark.timeout(300)]

HELD_S = 4.0  # the batching stage's window: how long the input's tail waits in the worker


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("data") / "set", stores=40, days=3, seed=5)


async def wait_status(
    pipeline: Pipeline, report_id: object, wanted: db_reports.ReportStatus
) -> db_reports.ReportRecord:
    assert pipeline.pool is not None
    pool = pipeline.pool

    async def reached() -> db_reports.ReportRecord | None:
        record = await db_reports.get_report(pool, report_id)  # type: ignore[arg-type]
        assert record is not None
        return record if record.status == wanted else None

    return await poll_async(
        reached,
        timeout_s=60,
        on_timeout=lambda: AssertionError(f"not {wanted}:\n{pipeline.worker_log()}"),
        cap_s=0.1,
    )


async def test_a_report_asked_while_input_waits_in_the_worker_counts_all_of_it(
    pipeline: Pipeline, dataset: Path
) -> None:
    reference, polls = read_messages(dataset)
    pipeline.extra_env["STOREMON_BATCH_WINDOW_S"] = str(HELD_S)
    pipeline.start_worker()
    await pipeline.publish(reference)
    await pipeline.wait_consumed()
    await pipeline.publish(polls)
    # Asked at once: the last polls of every partition are still gathered by the batching
    # stage, and the newest of them set the report time.
    first = await pipeline.request_report()
    await asyncio.sleep(0.5)
    # Stored while the first job waits for the input: a report asked after that job began
    # is not answered by it (input published before it may not be in), but by its own job.
    second = await pipeline.store_report()
    assert await pipeline.wait_report(first) == batch_csv(dataset)
    waited = (await pipeline.report_timings(first))["catch_up_s"]
    assert 0.5 < waited < HELD_S + 5
    assert pipeline.pool is not None
    record = await db_reports.get_report(pipeline.pool, second)
    assert record is not None
    assert record.status == db_reports.ReportStatus.PENDING
    await pipeline.send_report_request(second)
    assert await pipeline.wait_report(second) == batch_csv(dataset)
    # With nothing waiting, the check costs about one request to the broker.
    third = await pipeline.request_report()
    assert await pipeline.wait_report(third) == batch_csv(dataset)
    assert (await pipeline.report_timings(third)).get("catch_up_s", 0.0) < 0.5


async def test_a_report_that_cannot_wait_for_the_input_fails_and_says_why(
    pipeline: Pipeline, dataset: Path
) -> None:
    reference, polls = read_messages(dataset)
    pipeline.extra_env["STOREMON_BATCH_WINDOW_S"] = "8"
    pipeline.extra_env["STOREMON_REPORT_TIMEOUT_S"] = "1.5"
    pipeline.start_worker()
    await pipeline.publish(reference + polls)
    report_id = await pipeline.request_report()
    record = await wait_status(pipeline, report_id, db_reports.ReportStatus.FAILED)
    assert record.error is not None
    assert record.error.startswith("ingestion is behind:"), record.error
    assert "input records published before this report started" in record.error
    # Once the input is in, the same question is answered exactly.
    await pipeline.wait_consumed()
    again = await pipeline.request_report()
    assert await pipeline.wait_report(again) == batch_csv(dataset)
