"""The life of a report request: Pending -> Running -> Complete | Failed."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import asyncpg


class ReportStatus(StrEnum):
    """A report's state; the value is what the database column and the API say."""

    PENDING = "Pending"
    RUNNING = "Running"
    COMPLETE = "Complete"
    FAILED = "Failed"


@dataclass(frozen=True, slots=True)
class StartedReport:
    """A report a job has just marked Running: the time it was asked for, or None for
    the newest poll."""

    requested_as_of_us: int | None


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


async def create_report(
    pool: asyncpg.Pool,
    report_id: uuid.UUID,
    requested_as_of_us: int | None,
    max_open: int | None = None,
) -> bool:
    """Store a Pending report. With ``max_open``, only while fewer than that many reports
    are Pending or Running; returns False (nothing stored) when the queue is full. The
    count and the insert are one statement, so concurrent triggers overshoot by at most the
    number of API connections."""
    row = await pool.fetchval(
        "INSERT INTO reports (report_id, status, requested_as_of_us)"
        " SELECT $1, $2, $3 WHERE $4::integer IS NULL OR"
        " (SELECT count(*) FROM reports WHERE status IN ($2, $5)) < $4::integer"
        " RETURNING 1",
        report_id,
        ReportStatus.PENDING,
        requested_as_of_us,
        max_open,
        ReportStatus.RUNNING,
    )
    return row is not None


async def start_report(pool: asyncpg.Pool, report_id: uuid.UUID) -> StartedReport | None:
    """Mark Running (again, after a crash) and count the attempt. None when the report is
    unknown or already finished (nothing to do)."""
    row = await pool.fetchrow(
        "UPDATE reports SET status = $2, started_at = now(), attempts = attempts + 1"
        " WHERE report_id = $1 AND status IN ($3, $2) RETURNING requested_as_of_us",
        report_id,
        ReportStatus.RUNNING,
        ReportStatus.PENDING,
    )
    if row is None:
        return None
    return StartedReport(row["requested_as_of_us"])


async def complete_report(
    pool: asyncpg.Pool,
    report_id: uuid.UUID,
    as_of_us: int,
    csv_text: str,
    row_count: int,
    also_pending: tuple[uuid.UUID, ...] = (),
    exact: tuple[bytes, int | None] | None = None,
) -> int:
    """Store the report as Complete, and the same answer for ``also_pending`` reports that
    are still Pending (their own jobs then find them finished). Returns how many of those.
    ``exact``: the packed exact sums and the schedules' digest (see aggregates.coverage)."""
    window_us, digest = exact if exact is not None else (None, None)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "UPDATE reports SET status = $2, as_of_us = $3, csv = $4, row_count = $5,"
            " finished_at = now(), error = NULL, window_us = $6, schedules_digest = $7"
            " WHERE report_id = $1",
            report_id,
            ReportStatus.COMPLETE,
            as_of_us,
            csv_text,
            row_count,
            window_us,
            digest,
        )
        others = [r for r in also_pending if r != report_id]
        if not others:
            return 0
        status: str = await conn.execute(
            "UPDATE reports SET status = $2, as_of_us = $3, csv = $4, row_count = $5,"
            " started_at = now(), finished_at = now(), error = NULL, window_us = $7,"
            " schedules_digest = $8 WHERE report_id = ANY($1::uuid[]) AND status = $6",
            others,
            ReportStatus.COMPLETE,
            as_of_us,
            csv_text,
            row_count,
            ReportStatus.PENDING,
            window_us,
            digest,
        )
        return int(status.split()[-1])


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
        " finished_at, attempts, error, row_count FROM reports WHERE report_id = $1",
        report_id,
    )
    if row is None:
        return None
    fields: dict[str, Any] = dict(row)
    return ReportRecord(**{**fields, "status": ReportStatus(fields["status"])})


async def get_report_csv(pool: asyncpg.Pool, report_id: uuid.UUID) -> str | None:
    value: str | None = await pool.fetchval(
        "SELECT csv FROM reports WHERE report_id = $1 AND status = $2",
        report_id,
        ReportStatus.COMPLETE,
    )
    return value


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
    return int(status.split()[-1])
