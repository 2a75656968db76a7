"""The batching stage in a process of its own, started and watched by the worker.

The worker is one Python process, so one core: the batching stage (validating every input
record, producing the internal batches, waiting for their acknowledgements, committing) took
about 11.5 % of its samples at one message per poll, on the same event loop as the agent.
Run as a child process it gets the machine's other core. Nothing else changes: the child
runs the same :class:`~storemon.streams.batcher.InputBatcher` in the same consumer group,
with the same at-least-once and ordering rules; the agent reads what it writes from
``input-batches`` as before.

Parent and child talk over the child's standard streams:

* stdin: the worker's settings (pickled), then nothing; its end of file means the worker is
  gone. With ``PR_SET_PDEATHSIG`` (Linux) the kernel also signals the child when the worker
  dies, SIGKILL included; the child checks right after asking that its parent is still the
  worker (it may have died before the request took effect).
* stdout: one JSON line about every second, the batcher's counters and its consumer lag.
  The worker shows them on its pages and metrics as if the batcher ran inside it.
* stderr: inherited, so the child's log lines land in the worker's log.

A child that exits on its own (a failed flush ends it, as it ended the worker before) is
logged and started again after a pause that grows up to ``RESTART_PAUSE_MAX_S``; the
worker's page and metrics show whether it runs and how often it was restarted. Records it
read but had not committed are read again by the next child (at-least-once).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import logging.config
import os
import pickle
import signal
import sys
import threading
import time
from collections import Counter
from typing import Any

import orjson
from aiokafka import TopicPartition

from storemon.settings import Settings
from storemon.streams.batcher import BatcherStats, InputBatcher
from storemon.streams.crash import exit_now, stop_unless_done

log = logging.getLogger(__name__)

STATUS_INTERVAL_S = 1.0
# A status line waiting unread beyond this many bytes is dropped, not queued (the worker's
# loop may be busy with a long batch; the next line carries the same counters, updated).
STATUS_BACKLOG_MAX = 64 * 1024
STATUS_LINE_MAX = 1024 * 1024
STOP_GRACE_S = 10.0
RESTART_PAUSE_S = 1.0
RESTART_PAUSE_MAX_S = 30.0
# A child that ran this long before exiting is restarted after the shortest pause again.
STABLE_RUN_S = 60.0
# After the worker's end of stdin, how long the child may take to stop cleanly.
ORPHAN_GRACE_S = 5.0
PR_SET_PDEATHSIG = 1


# -- the worker's side -------------------------------------------------------------------


class BatcherProcess:
    """Starts the batching child, restarts it when it exits, and mirrors its counters.

    ``stats`` and ``lag()`` answer like :class:`~storemon.streams.batcher.InputBatcher`'s:
    counters add up over every child this worker started; the lag is the last one the
    child reported (kept while a child is restarted: nothing is read meanwhile, so the real
    lag is at least that)."""

    def __init__(self, settings: Settings, loglevel: str) -> None:
        self.settings = settings
        self.loglevel = loglevel
        self.restarts = 0
        self.last_exit_code: int | None = None
        self.pid: int | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._earlier = BatcherStats()  # the counters of children that have exited
        self._current = BatcherStats()  # the running child's last snapshot
        self._lag: dict[tuple[str, int], int] = {}
        self.status_lines = 0
        self._last_status = 0.0

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    @property
    def stats(self) -> BatcherStats:
        total = BatcherStats()
        for part in (self._earlier, self._current):
            total.records += part.records
            total.batches += part.batches
            total.polls += part.polls
            total.rejected.update(part.rejected)
            for activity, spent in part.seconds.items():
                total.seconds[activity] += spent
        return total

    def lag(self) -> dict[tuple[str, int], int]:
        return dict(self._lag)

    def committed_positions(self) -> dict[TopicPartition, int]:
        """Nothing known here: the child commits (the broker's offsets tell, see
        streams/catch_up.py)."""
        return {}

    def describe(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "running": self.running,
            "restarts": self.restarts,
            "last_exit_code": self.last_exit_code,
            "seconds_since_status": round(time.monotonic() - self._last_status, 1)
            if self.status_lines
            else None,
        }

    async def run(self) -> None:
        """Keep a child running until cancelled; then stop it (SIGTERM, then SIGKILL).

        Anything unexpected here ends the worker (crash-only, as a failed flush did when
        the stage ran inside it) rather than leave it running without its input."""
        try:
            await self._supervise()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.critical("supervising the batching process failed; exiting", exc_info=True)
            if self._process is not None and self._process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    self._process.kill()
            exit_now(70)

    async def _supervise(self) -> None:
        pause = RESTART_PAUSE_S
        while True:
            started = time.monotonic()
            try:
                process = await self._start()
            except OSError as error:
                log.error("batching process not started (%s); trying again in %.0f s", error, pause)
            else:
                try:
                    await self._follow(process)
                    code = await process.wait()
                except BaseException:
                    await self._stop(process)
                    raise
                self._child_ended(code)
                log.error(
                    "batching process %d exited with code %d; starting it again in %.0f s "
                    "(records it had not committed are read again)",
                    process.pid,
                    code,
                    pause if time.monotonic() - started < STABLE_RUN_S else RESTART_PAUSE_S,
                )
            if time.monotonic() - started >= STABLE_RUN_S:
                pause = RESTART_PAUSE_S
            self.restarts += 1
            await asyncio.sleep(pause)
            pause = min(2 * pause, RESTART_PAUSE_MAX_S)

    async def _start(self) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "storemon.streams.batcher_process",
            str(os.getpid()),
            self.loglevel,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            # Its own session: a Ctrl-C at the terminal reaches the worker, which stops the
            # child in order, instead of both at once.
            start_new_session=True,
            limit=STATUS_LINE_MAX,
        )
        self._process, self.pid = process, process.pid
        log.info("batching process %d started", process.pid)
        assert process.stdin is not None
        settings = pickle.dumps(self.settings)
        # A child that died at once closed its stdin: its exit is seen by the caller.
        with contextlib.suppress(OSError):
            process.stdin.write(len(settings).to_bytes(8, "big") + settings)
            await process.stdin.drain()
        # stdin stays open: its end of file tells the child the worker is gone.
        return process

    async def _follow(self, process: asyncio.subprocess.Process) -> None:
        """Read the child's status lines until it closes its stdout (it exited)."""
        assert process.stdout is not None
        while line := await process.stdout.readline():
            try:
                self._take_snapshot(orjson.loads(line))
            except (ValueError, KeyError, TypeError) as error:
                log.warning("batching process: unreadable status line (%s)", error)

    def _take_snapshot(self, snapshot: dict[str, Any]) -> None:
        self._current = stats_from_snapshot(snapshot)
        self._lag = {(topic, partition): behind for topic, partition, behind in snapshot["lag"]}
        self.status_lines += 1
        self._last_status = time.monotonic()

    def _child_ended(self, code: int) -> None:
        self.last_exit_code = code
        # Fold the exited child's counters into the totals and start the next from zero.
        self._earlier = self.stats
        self._current = BatcherStats()

    async def _stop(self, process: asyncio.subprocess.Process) -> None:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                await asyncio.wait_for(asyncio.shield(process.wait()), STOP_GRACE_S)
            except (TimeoutError, asyncio.CancelledError):
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
        if process.stdin is not None:
            process.stdin.close()
        self._child_ended(process.returncode if process.returncode is not None else -9)


def snapshot_of(stats: BatcherStats, lag: dict[tuple[str, int], int]) -> dict[str, Any]:
    return {
        "records": stats.records,
        "polls": stats.polls,
        "batches": stats.batches,
        "rejected": [[source, reason, n] for (source, reason), n in stats.rejected.items()],
        "seconds": dict(stats.seconds),
        "lag": [[topic, partition, behind] for (topic, partition), behind in lag.items()],
    }


def stats_from_snapshot(snapshot: dict[str, Any]) -> BatcherStats:
    stats = BatcherStats(
        records=int(snapshot["records"]),
        batches=int(snapshot["batches"]),
        polls=int(snapshot["polls"]),
        rejected=Counter({(s, r): int(n) for s, r, n in snapshot["rejected"]}),
    )
    for activity, spent in snapshot["seconds"].items():
        stats.seconds[activity] = float(spent)
    return stats


# -- the child's side --------------------------------------------------------------------


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel kill this process when the worker dies (Linux), and end now if it
    already has (then this process was handed to another parent)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(0)


def stop_when_stdin_ends(stop: Any) -> None:
    """Watch stdin from a thread: at its end (the worker closed it or died) ask the loop
    to stop, and end the process outright if it has not stopped in ``ORPHAN_GRACE_S``."""

    def watch() -> None:
        with contextlib.suppress(OSError):
            while os.read(0, 4096):
                pass
        log.warning("batching process: the worker is gone; stopping")
        stop()
        time.sleep(ORPHAN_GRACE_S)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def read_exactly(fd: int, size: int) -> bytes:
    """``size`` bytes from ``fd``, unbuffered (the rest of the stream is watched for its
    end by another thread)."""
    data = b""
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        if not chunk:
            raise SystemExit("batching process: the worker closed stdin before its settings")
        data += chunk
    return data


async def run_child(settings: Settings) -> None:
    loop = asyncio.get_running_loop()
    batcher = InputBatcher(settings, stop_unless_done)
    batching = asyncio.ensure_future(batcher.run())
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, batching.cancel)
    stop_when_stdin_ends(lambda: loop.call_soon_threadsafe(batching.cancel))
    transport, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(os.dup(1), "wb"))
    # Anything else printed to stdout goes to the log instead of into the status lines.
    os.dup2(2, 1)
    try:
        while not batching.done():
            await asyncio.wait([batching], timeout=STATUS_INTERVAL_S)
            if transport.get_write_buffer_size() < STATUS_BACKLOG_MAX:
                snapshot = snapshot_of(batcher.stats, batcher.lag())
                transport.write(orjson.dumps(snapshot) + b"\n")
        with contextlib.suppress(asyncio.CancelledError):
            batching.result()
    finally:
        transport.close()


def main(argv: list[str]) -> int:
    from storemon import logs

    parent_pid, loglevel = int(argv[0]), argv[1]
    die_with_parent(parent_pid)
    settings = pickle.loads(read_exactly(0, int.from_bytes(read_exactly(0, 8), "big")))
    if not isinstance(settings, Settings):
        raise SystemExit("batching process: expected the worker's settings on stdin")
    logging.config.dictConfig(logs.logging_config(loglevel, settings.log_format))
    asyncio.run(run_child(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
