"""The worker's batching process on the real broker and database: it never outlives a
SIGKILLed worker, a crash of its own is seen and repaired by the worker, and either way the
stream's report still equals the batch command's, byte for byte."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import time
from pathlib import Path

import aiohttp
import pytest

from storemon.waiting import poll_async

from .pipeline import Pipeline, batch_csv, generate, read_messages

pytestmark = [pytest.mark.services, pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("data") / "set", stores=150, days=9, seed=29)


def process_state(pid: int) -> str | None:
    """The kernel's one-letter state of ``pid`` (``Z`` for a zombie), None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])


def with_batching_process(pipeline: Pipeline) -> None:
    """Whatever the default, these tests are about the batching stage in its own process."""
    pipeline.settings = dataclasses.replace(pipeline.settings, batcher_process=True)


async def batching_process(pipeline: Pipeline) -> dict[str, object]:
    """The worker's description of its batching process, once it runs and has reported."""
    deadline = time.monotonic() + 60
    while True:
        pipeline.check_worker_alive()
        try:
            process = (await pipeline.worker_overview())["batcher"]["process"]
            if process["running"] and process["seconds_since_status"] is not None:
                return dict(process)
        except (aiohttp.ClientError, TimeoutError):
            pass  # the worker's web server is not up yet, or busy
        assert time.monotonic() < deadline, pipeline.worker_log()
        await asyncio.sleep(0.2)


async def test_batching_process_dies_with_a_sigkilled_worker(
    pipeline: Pipeline, dataset: Path
) -> None:
    with_batching_process(pipeline)
    reference, polls = read_messages(dataset)
    await pipeline.publish(reference + polls)
    pipeline.start_worker()
    assert pipeline.worker is not None
    worker_pid = pipeline.worker.pid
    child = int(str((await batching_process(pipeline))["pid"]))
    assert parent_of(child) == worker_pid  # a child of the worker, not a separate service
    await pipeline.wait_progress(0.3)
    pipeline.stop_worker(signal.SIGKILL)

    async def child_gone() -> bool | None:
        return True if process_state(child) in (None, "Z") else None

    await poll_async(
        child_gone,
        timeout_s=10,
        on_timeout=lambda: AssertionError("the batching process outlived its worker"),
        cap_s=0.1,
    )
    # A new worker (and batching process) picks up where the committed offsets are.
    pipeline.start_worker()
    await pipeline.wait_consumed()
    report_id = await pipeline.request_report()
    assert await pipeline.wait_report(report_id) == batch_csv(dataset)


async def test_a_crashed_batching_process_is_reported_and_started_again(
    pipeline: Pipeline, dataset: Path
) -> None:
    with_batching_process(pipeline)
    reference, polls = read_messages(dataset)
    pipeline.start_worker()
    first = int(str((await batching_process(pipeline))["pid"]))
    await pipeline.publish(reference + polls[: len(polls) // 2])
    await pipeline.wait_progress(0.2)
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while True:
        process = await batching_process(pipeline)
        if process["pid"] != first:
            break
        assert time.monotonic() < deadline, pipeline.worker_log()
        await asyncio.sleep(0.2)
    assert process["restarts"] == 1
    assert process["last_exit_code"] == -signal.SIGKILL
    await pipeline.publish(polls[len(polls) // 2 :])
    await pipeline.wait_consumed()
    overview = await pipeline.worker_overview()
    assert overview["batcher"]["polls"] > 0  # counters add up over both processes
    assert pipeline.log_path is not None
    assert f"batching process {first} exited with code -9" in pipeline.log_path.read_text()
    report_id = await pipeline.request_report()
    assert await pipeline.wait_report(report_id) == batch_csv(dataset)


async def test_with_the_batching_process_off_the_worker_batches_on_its_own_loop(
    pipeline: Pipeline, dataset: Path
) -> None:
    # The configuration of a one-core worker (the default there), or STOREMON_BATCHER_PROCESS=0.
    pipeline.settings = dataclasses.replace(pipeline.settings, batcher_process=False)
    reference, polls = read_messages(dataset)
    pipeline.start_worker()
    await pipeline.publish(reference + polls)
    await pipeline.wait_consumed()
    overview = await pipeline.worker_overview()
    assert overview["batcher"]["process"] is None
    assert overview["batcher"]["polls"] >= len(polls)  # read on the worker's loop (at least once)
    report_id = await pipeline.request_report()
    assert await pipeline.wait_report(report_id) == batch_csv(dataset)
