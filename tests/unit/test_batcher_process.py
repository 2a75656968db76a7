"""The batching process's supervision, with a real child process but no broker: the child
starts, reports, is restarted after a crash and never outlives whoever started it.

Its Kafka address leads nowhere (the batcher retries to connect for as long as it runs),
which is enough to see the process machinery; tests/integration/test_batcher_process.py
runs it against the real broker inside a worker."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from storemon.settings import Settings
from storemon.streams.batcher import BatcherStats
from storemon.streams.batcher_process import (
    BatcherProcess,
    snapshot_of,
    stats_from_snapshot,
)

pytestmark = pytest.mark.timeout(60)

T = TypeVar("T")


async def eventually(check: Callable[[], T | None], timeout_s: float) -> T:
    deadline = time.monotonic() + timeout_s
    while (found := check()) is None:
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)
    return found


def nowhere_settings(tmp_path: Path) -> Settings:
    return dataclasses.replace(
        Settings(), kafka_bootstrap="127.0.0.1:9", state_dir=tmp_path, log_format="text"
    )


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie (exited, not yet reaped) counts as gone


def test_a_snapshot_carries_every_counter_and_the_lag() -> None:
    stats = BatcherStats(records=10, batches=2, polls=8, rejected=Counter({("polls", "bad"): 2}))
    stats.seconds["validating"] = 0.25
    snapshot = snapshot_of(stats, {("p.polls", 3): 17})
    again = stats_from_snapshot(snapshot)
    assert again == stats
    assert snapshot["lag"] == [["p.polls", 3, 17]]


async def test_child_reports_is_restarted_after_a_crash_and_stopped_on_cancel(
    tmp_path: Path,
) -> None:
    supervisor = BatcherProcess(nowhere_settings(tmp_path), "warning")
    supervising = asyncio.ensure_future(supervisor.run())
    try:
        first = await eventually(
            lambda: supervisor.pid if supervisor.running else None, timeout_s=20
        )
        # its status lines arrive, about one a second
        await eventually(lambda: True if supervisor.status_lines >= 2 else None, timeout_s=10)
        assert supervisor.lag() == {}  # nothing is assigned without a broker
        assert supervisor.describe()["seconds_since_status"] < 2.5
        os.kill(first, signal.SIGKILL)
        second = await eventually(
            lambda: supervisor.pid if supervisor.running and supervisor.pid != first else None,
            timeout_s=20,
        )
        assert supervisor.restarts == 1
        assert supervisor.last_exit_code == -signal.SIGKILL
        assert supervisor.describe()["running"] is True
    finally:
        supervising.cancel()
        with pytest.raises(asyncio.CancelledError):
            await supervising
    assert not alive(second)
    assert not supervisor.running


def test_child_dies_with_a_sigkilled_parent(tmp_path: Path) -> None:
    """A stand-in for the worker starts the child and is SIGKILLed: the child goes too."""
    script = textwrap.dedent(
        f"""
        import asyncio, dataclasses, sys
        from pathlib import Path
        from storemon.settings import Settings
        from storemon.streams.batcher_process import BatcherProcess

        async def main():
            settings = dataclasses.replace(
                Settings(), kafka_bootstrap="127.0.0.1:9", state_dir=Path({str(tmp_path)!r})
            )
            supervisor = BatcherProcess(settings, "warning")
            task = asyncio.ensure_future(supervisor.run())
            while not supervisor.running:
                await asyncio.sleep(0.05)
            print(supervisor.pid, flush=True)
            await task

        asyncio.run(main())
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert alive(child)
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 10
        while alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(child)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def test_child_stops_when_its_stdin_ends(tmp_path: Path) -> None:
    """Where the kernel's parent-death signal is not available, the end of stdin (the
    worker's end of the pipe closed, which its death does too) stops the child."""
    child = subprocess.Popen(
        [sys.executable, "-m", "storemon.streams.batcher_process", str(os.getpid()), "warning"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert child.stdin is not None
        settings = pickle.dumps(nowhere_settings(tmp_path))
        child.stdin.write(len(settings).to_bytes(8, "big") + settings)
        child.stdin.flush()
        time.sleep(1.0)
        assert child.poll() is None  # running while its stdin is open
        child.stdin.close()
        child.wait(timeout=10)
        assert child.stderr is not None
        assert b"the worker is gone; stopping" in child.stderr.read()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
