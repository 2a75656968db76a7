"""The life of a report request: Pending -> Running -> Complete | Failed."""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import asyncpg
import orjson

from storemon.aggregates.fleet_summary import FleetSummary, summary_fields, summary_from_fields
from storemon.compression import gunzip, gzip_body


class ReportStatus(StrEnum):
    """A report's state; the value is what the database column and the API say."""

    PENDING = "Pending"
    RUNNING = "Running"
    COMPLETE = "Complete"
    FAILED = "Failed"


@dataclass(frozen=True, slots=True)
class StartedReport:
    """A report a job has just marked Running: the time it was asked for, or None for
    the newest poll, and when it was marked (the database's clock: Pending reports stored
    before it are answered along with it, see streams/catch_up.py)."""

    requested_as_of_us: int | None
    started_at: datetime


@dataclass(frozen=True, slots=True)
class ReportRecord:
    report_id: uuid.UUID
    status: ReportStatus
    requested_as_of_us: int | None
    as_of_us: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int
    error: str | None
    row_count: int | None
    data_version: int | None = None  # the aggregates' version a Complete report was read at


# A CTE for one statement (its own implicit transaction) whose commit need not wait for the
# WAL to reach the disk (``synchronous_commit = off`` for that transaction alone; the
# statement must name ``no_flush_wait`` in a FROM so that it runs). The commit is visible at
# once and reaches the disk within a few hundred milliseconds, or earlier with the next
# synchronous commit of any session (WAL is flushed in order). Used only where losing the
# write in a crash of PostgreSQL cannot make any number wrong; see docs/design.md,
# "Durability of a report's life".
NO_FLUSH_WAIT = "no_flush_wait AS (SELECT set_config('synchronous_commit', 'off', true))"


async def create_report(
    pool: asyncpg.Pool,
    report_id: uuid.UUID,
    requested_as_of_us: int | None,
    max_open: int | None = None,
    *,
    for_dashboard: bool = False,
) -> bool:
    """Store a Pending report. With ``max_open``, only while fewer than that many reports
    are Pending or Running; returns False (nothing stored) when the queue is full. The
    count and the insert are one statement, so concurrent triggers overshoot by at most the
    number of API connections. ``for_dashboard``: asked by the fleet page, so kept out of
    the lists of reports (the reports page, ``storemon status``).

    The insert does not wait for its flush (:data:`NO_FLUSH_WAIT`): a crash of PostgreSQL
    in the few milliseconds before it reaches the disk loses the report, and then it is
    unknown everywhere: ``GET /get_report`` answers 404, and the job that receives its
    request finds no row and skips it (:func:`start_report`). Nothing was computed for it,
    so nothing wrong can be served."""
    row = await pool.fetchval(
        f"WITH {NO_FLUSH_WAIT} INSERT INTO reports"
        " (report_id, status, requested_as_of_us, for_dashboard)"
        " SELECT $1, $2, $3, $6 FROM no_flush_wait WHERE $4::integer IS NULL OR"
        " (SELECT count(*) FROM reports WHERE status IN ($2, $5)) < $4::integer"
        " RETURNING 1",
        report_id,
        ReportStatus.PENDING,
        requested_as_of_us,
        max_open,
        ReportStatus.RUNNING,
        for_dashboard,
    )
    return row is not None


async def start_report(pool: asyncpg.Pool, report_id: uuid.UUID) -> StartedReport | None:
    """Mark Running (again, after a crash) and count the attempt. None when the report is
    unknown or already finished (nothing to do).

    Without waiting for the flush: losing this write in a crash leaves the report Pending,
    and its request, not yet acknowledged to Kafka, is run again. The write that completes
    the report waits for its flush, which carries this one (and the report's insert) to
    the disk with it."""
    row = await pool.fetchrow(
        f"WITH {NO_FLUSH_WAIT} UPDATE reports SET status = $2, started_at = now(),"
        " attempts = attempts + 1 FROM no_flush_wait"
        " WHERE report_id = $1 AND status IN ($3, $2) RETURNING requested_as_of_us, started_at",
        report_id,
        ReportStatus.RUNNING,
        ReportStatus.PENDING,
    )
    if row is None:
        return None
    return StartedReport(row["requested_as_of_us"], row["started_at"])


async def complete_report(
    pool: asyncpg.Pool,
    report_id: uuid.UUID,
    as_of_us: int,
    csv_text: str,
    row_count: int,
    also_pending: tuple[uuid.UUID, ...] = (),
    *,
    data_version: int | None = None,
    timings: dict[str, float] | None = None,
    exact: tuple[bytes, int | None] | None = None,
    csv_gzip: bytes | None = None,
    wait_flush: bool = True,
) -> int:
    """Store the report as Complete, and the same answer for ``also_pending`` reports that
    are still Pending (their own jobs then find them finished). Returns how many of those.
    ``exact``: the packed exact sums and the schedules' digest (see aggregates.coverage).
    The CSV is stored gzip-compressed (migration 0016): ``csv_gzip`` when the caller has
    compressed ``csv_text`` already, else it is compressed here.

    ``wait_flush=False``: the commit (and with it the ``report_finished`` notification)
    does not wait for the WAL to reach the disk, 6-10 ms of a report on this machine. The
    caller must then make a synchronous commit (:func:`record_store_time`) before it
    acknowledges the request, so that a report is durable before its request is let go;
    in between, a crash of PostgreSQL loses the completion and the job, still holding the
    request, computes the report again (docs/design.md, "Durability of a report's life")."""
    timings_json = orjson.dumps(timings).decode() if timings is not None else None
    window_us, digest = exact if exact is not None else (None, None)
    if csv_gzip is None:
        csv_gzip = await gzip_body(csv_text.encode())
    # One statement when no other report shares the answer: its own transaction, one round
    # trip (an explicit transaction costs two more).
    others = [r for r in also_pending if r != report_id]
    prefix = "" if wait_flush else f"WITH {NO_FLUSH_WAIT} "
    async with pool.acquire() as conn, _transaction_if(conn, bool(others)):
        await conn.execute(
            prefix + "UPDATE reports SET status = $2, as_of_us = $3, csv = NULL, csv_gzip = $4,"
            " row_count = $5, finished_at = now(), error = NULL, data_version = $6,"
            " timings = $7::jsonb, window_us = $8, schedules_digest = $9"
            + (" FROM no_flush_wait" if prefix else "")
            + " WHERE report_id = $1",
            report_id,
            ReportStatus.COMPLETE,
            as_of_us,
            csv_gzip,
            row_count,
            data_version,
            timings_json,
            window_us,
            digest,
        )
        if not others:
            return 0
        status: str = await conn.execute(
            "UPDATE reports SET status = $2, as_of_us = $3, csv = NULL, csv_gzip = $4,"
            " row_count = $5, started_at = now(), finished_at = now(), error = NULL,"
            " data_version = $7, window_us = $8, schedules_digest = $9"
            " WHERE report_id = ANY($1::uuid[]) AND status = $6",
            others,
            ReportStatus.COMPLETE,
            as_of_us,
            csv_gzip,
            row_count,
            ReportStatus.PENDING,
            data_version,
            window_us,
            digest,
        )
        return int(status.split()[-1])


def _transaction_if(conn: Any, wanted: bool) -> contextlib.AbstractAsyncContextManager[object]:
    """A transaction on ``conn`` when ``wanted``, else nothing (each statement its own)."""
    return conn.transaction() if wanted else contextlib.nullcontext()


async def complete_as(
    pool: asyncpg.Pool,
    report_id: uuid.UUID,
    source_id: uuid.UUID,
    also_pending: tuple[uuid.UUID, ...] = (),
    *,
    timings: dict[str, float] | None = None,
) -> int | None:
    """Complete the report (and ``also_pending`` ones still Pending) with the answer of the
    Complete report ``source_id``, copied inside the database. Returns how many of the
    others, or None when the source is no longer there (pruned): nothing was changed."""
    timings_json = orjson.dumps(timings).decode() if timings is not None else None
    async with pool.acquire() as conn, conn.transaction():
        status: str = await conn.execute(
            "UPDATE reports r SET status = $3, as_of_us = s.as_of_us, csv = s.csv,"
            " csv_gzip = s.csv_gzip, row_count = s.row_count, data_version = s.data_version,"
            " window_us = s.window_us, schedules_digest = s.schedules_digest,"
            " started_at = coalesce(r.started_at, now()), finished_at = now(), error = NULL,"
            " timings = CASE WHEN r.report_id = $1 THEN $5::jsonb END"
            " FROM reports s WHERE s.report_id = $2 AND s.status = $3"
            " AND (r.report_id = $1 OR (r.report_id = ANY($4::uuid[]) AND r.status = $6))",
            report_id,
            source_id,
            ReportStatus.COMPLETE,
            [r for r in also_pending if r != report_id],
            timings_json,
            ReportStatus.PENDING,
        )
        changed = int(status.split()[-1])
        if changed == 0:
            return None
        return changed - 1


async def record_store_time(pool: asyncpg.Pool, report_id: uuid.UUID, store_s: float) -> None:
    """Add the time the completing write took to the report's timings (for benchmarks).
    A synchronous commit: it flushes every earlier write of the report with it (see
    :func:`complete_report`'s ``wait_flush``)."""
    await pool.execute(
        "UPDATE reports SET timings = coalesce(timings, '{}'::jsonb)"
        " || jsonb_build_object('store_s', $2::float8) WHERE report_id = $1",
        report_id,
        store_s,
    )


async def fail_report(pool: asyncpg.Pool, report_id: uuid.UUID, error: str) -> None:
    await pool.execute(
        "UPDATE reports SET status = $2, error = $3, finished_at = now() WHERE report_id = $1",
        report_id,
        ReportStatus.FAILED,
        error[:2000],
    )


async def get_report(pool: asyncpg.Pool, report_id: uuid.UUID) -> ReportRecord | None:
    row = await pool.fetchrow(
        "SELECT report_id, status, requested_as_of_us, as_of_us, created_at, started_at,"
        " finished_at, attempts, error, row_count, data_version FROM reports"
        " WHERE report_id = $1",
        report_id,
    )
    if row is None:
        return None
    fields: dict[str, Any] = dict(row)
    return ReportRecord(**{**fields, "status": ReportStatus(fields["status"])})


@dataclass(frozen=True, slots=True)
class StoredCsv:
    """A Complete report's CSV as stored: gzip-compressed (``gzipped``), or text encoded as
    UTF-8 for reports stored before migration 0016."""

    body: bytes
    gzipped: bool

    def plain(self) -> bytes:
        return gunzip(self.body) if self.gzipped else self.body

    def text(self) -> str:
        return self.plain().decode()


async def get_report_body(pool: asyncpg.Pool, report_id: uuid.UUID) -> StoredCsv | None:
    """The CSV of a Complete report as stored (None when there is none)."""
    row = await pool.fetchrow(
        "SELECT csv_gzip, csv FROM reports WHERE report_id = $1 AND status = $2",
        report_id,
        ReportStatus.COMPLETE,
    )
    if row is None:
        return None
    if row["csv_gzip"] is not None:
        return StoredCsv(row["csv_gzip"], gzipped=True)
    if row["csv"] is not None:
        return StoredCsv(row["csv"].encode(), gzipped=False)
    return None


async def get_report_with_body(
    pool: asyncpg.Pool, report_id: uuid.UUID
) -> tuple[ReportRecord | None, StoredCsv | None]:
    """:func:`get_report` and, once Complete, :func:`get_report_body` in one round trip
    (for a request that waited for the report to finish: it wants both at once)."""
    row = await pool.fetchrow(
        "SELECT report_id, status, requested_as_of_us, as_of_us, created_at, started_at,"
        " finished_at, attempts, error, row_count, data_version,"
        " CASE WHEN status = $2 THEN csv_gzip END AS csv_gzip,"
        " CASE WHEN status = $2 AND csv_gzip IS NULL THEN csv END AS csv"
        " FROM reports WHERE report_id = $1",
        report_id,
        ReportStatus.COMPLETE,
    )
    if row is None:
        return None, None
    fields: dict[str, Any] = dict(row)
    csv_gzip, csv = fields.pop("csv_gzip"), fields.pop("csv")
    record = ReportRecord(**{**fields, "status": ReportStatus(fields["status"])})
    if csv_gzip is not None:
        return record, StoredCsv(csv_gzip, gzipped=True)
    if csv is not None:
        return record, StoredCsv(csv.encode(), gzipped=False)
    return record, None


async def get_report_csv(pool: asyncpg.Pool, report_id: uuid.UUID) -> str | None:
    stored = await get_report_body(pool, report_id)
    return stored.text() if stored is not None else None


async def get_report_exact(
    pool: asyncpg.Pool, report_id: uuid.UUID
) -> tuple[bytes | None, int | None]:
    """The packed exact sums and schedules' digest of a Complete report (None if absent)."""
    row = await pool.fetchrow(
        "SELECT window_us, schedules_digest FROM reports WHERE report_id = $1 AND status = $2",
        report_id,
        ReportStatus.COMPLETE,
    )
    if row is None:
        return None, None
    return row["window_us"], row["schedules_digest"]


async def store_fleet_summary(
    pool: asyncpg.Pool, as_of_us: int, data_version: int, summary: FleetSummary
) -> None:
    """Keep what the fleet page shows at a report time and version (see migration 0018); a
    second write of the same key is the same value and changes nothing."""
    await pool.execute(
        "INSERT INTO fleet_summaries (as_of_us, data_version, summary) VALUES ($1, $2, $3)"
        " ON CONFLICT DO NOTHING",
        as_of_us,
        data_version,
        orjson.dumps(summary_fields(summary)).decode(),
    )


async def get_fleet_summary(
    pool: asyncpg.Pool, as_of_us: int, data_version: int
) -> FleetSummary | None:
    value: str | None = await pool.fetchval(
        "SELECT summary FROM fleet_summaries WHERE as_of_us = $1 AND data_version = $2",
        as_of_us,
        data_version,
    )
    return summary_from_fields(orjson.loads(value)) if value is not None else None


async def prune_reports(pool: asyncpg.Pool, keep_hours: float) -> int:
    """Delete finished reports (and their CSVs) created more than ``keep_hours`` ago;
    returns how many. Pending and Running ones stay: their jobs still answer for them."""
    status: str = await pool.execute(
        "DELETE FROM reports WHERE status IN ($1, $2)"
        " AND created_at < now() - make_interval(secs => $3)",
        ReportStatus.COMPLETE,
        ReportStatus.FAILED,
        keep_hours * 3600.0,
    )
    await pool.execute(
        "DELETE FROM fleet_summaries WHERE created_at < now() - make_interval(secs => $1)",
        keep_hours * 3600.0,
    )
    return int(status.split()[-1])
