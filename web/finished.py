"""``GET /get_report?wait=S``: answer as soon as the report finishes, within S seconds.

A client that polls every few milliseconds learns of a finished report half a period late
on average, and each poll is a request and a query. Instead, PostgreSQL announces every
report that reaches Complete or Failed on the channel ``report_finished`` (a trigger of
migration 0016, whatever statement finished it, once its transaction commits); the API
listens on one connection of its own and wakes the requests waiting for that report.

A notification is a hint, never the answer: on waking, and at least every
:data:`RECHECK_S` seconds, the report's row is read again, so a notification lost while the
listening connection was down (it is reopened by the next wait) costs at most that delay,
and a report that is still running after the wait is answered as Running, as without one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import asyncpg

from storemon.db.reports import ReportRecord, ReportStatus

log = logging.getLogger(__name__)

CHANNEL = "report_finished"
MAX_WAIT_S = 30.0
RECHECK_S = 1.0
CONNECT_TIMEOUT_S = 3.0
UNFINISHED = frozenset({ReportStatus.PENDING, ReportStatus.RUNNING})


class FinishedReports:
    """Wakes the requests waiting for a report when PostgreSQL announces it finished."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._conn: asyncpg.Connection | None = None
        self._connecting = asyncio.Lock()
        self._waiting: defaultdict[uuid.UUID, set[asyncio.Event]] = defaultdict(set)
        self.notified = 0

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close(timeout=CONNECT_TIMEOUT_S)

    async def until_finished(
        self,
        report_id: uuid.UUID,
        wait_s: float,
        read: Callable[[], Awaitable[ReportRecord | None]],
    ) -> ReportRecord | None:
        """``read()``'s record once the report is finished (or gone), or after ``wait_s``
        seconds, whichever comes first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        with self._watching(report_id) as woken:
            # Listening, then reading: a report finished in between is seen by the read.
            await self._listen()
            while True:
                record = await read()
                remaining = deadline - loop.time()
                if record is None or record.status not in UNFINISHED or remaining <= 0:
                    return record
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), min(remaining, RECHECK_S))
                woken.clear()

    @contextlib.contextmanager
    def _watching(self, report_id: uuid.UUID) -> Iterator[asyncio.Event]:
        woken = asyncio.Event()
        self._waiting[report_id].add(woken)
        try:
            yield woken
        finally:
            events = self._waiting.get(report_id)
            if events is not None:
                events.discard(woken)
                if not events:
                    del self._waiting[report_id]

    def _on_notification(self, conn: Any, pid: int, channel: str, payload: object) -> None:
        try:
            report_id = uuid.UUID(str(payload))
        except ValueError:
            return
        self.notified += 1
        for woken in self._waiting.get(report_id, ()):
            woken.set()

    def _on_termination(self, conn: Any) -> None:
        if self._conn is conn:
            self._conn = None  # the next wait opens a new one

    async def _listen(self) -> None:
        """Open the listening connection if it is not open; on failure the waits go on with
        their periodic re-reads."""
        if self._conn is not None and not self._conn.is_closed():
            return
        async with self._connecting:
            if self._conn is not None and not self._conn.is_closed():
                return
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self.database_url, timeout=CONNECT_TIMEOUT_S)
                conn.add_termination_listener(self._on_termination)
                await conn.add_listener(CHANNEL, self._on_notification)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                log.warning("cannot listen for finished reports (%r); re-reading instead", error)
                if conn is not None:
                    conn.terminate()
                return
            self._conn = conn
