"""The dashboard, served by the API under ``/dashboard/``: plain HTML pages rendered here,
charts drawn in the browser by uPlot (fetched once by ``storemon assets``) and a small script
of ours, ``static/dashboard.js``. No build step.

===============================  ============================================================
``/dashboard/``                  the fleet: stores, business-hours uptime over the last day
                                 and week, a heatmap of uptime by UTC hour over the last
                                 week, a chart of the same, the stores with most downtime
``/dashboard/stores/{id}``       one store's week: business hours shaded, up and down bands,
                                 each poll a dot, its report numbers beside the chart
``/dashboard/reports``           the newest reports, their status and download links
``/dashboard/login``             a form for the API token; it is kept in an HttpOnly,
                                 SameSite=Strict cookie that GET requests accept
===============================  ============================================================

The pages are Jinja2 templates (``templates/``, rendered by aiohttp-jinja2 with autoescape
on: every text that came from data is HTML-escaped); each carries its chart data as JSON in a
``<script type="application/json">`` element (Jinja's ``tojson``, safe inside a script). The fleet page's numbers (a
:class:`~storemon.aggregates.fleet_summary.FleetSummary`) are computed by the worker in the
same job as a report it is asked for, or where it cannot, from the same assembly as a report
job; kept while the aggregates' version is unchanged (else for ``FLEET_CACHE_S``) and
rebuilt by one request at a time (a 100,000-store fleet takes seconds to assemble).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any
from urllib.parse import quote

import aiohttp_jinja2
import asyncpg
import jinja2
import numpy as np
import orjson
from aiohttp import web
from aiokafka.errors import KafkaError

from storemon.aggregates.coverage import Coverage, SessionsKept, coverage, unpack_sums
from storemon.aggregates.fleet_summary import (
    FleetSummary,
    business_of_pairs,
    fleet_coverage_of,
    fleet_totals,
    summary_of_rows,
)
from storemon.aggregates.reach import ReportRange, supported_range
from storemon.aggregates.report import WINDOWS, StoreWindows, format_hundredths
from storemon.aggregates.schedule import Schedule, WeeklyInterval
from storemon.aggregates.timebase import (
    DAY_US,
    HOUR_US,
    MINUTE_US,
    floor_to,
    format_utc,
    us_to_datetime,
)
from storemon.db import dashboard as queries
from storemon.db import reports as db_reports
from storemon.db.assemble import (
    AssembledReport,
    assemble_report,
    newest_poll_us,
    schedules_digest,
)
from storemon.db.dashboard import ReportListing, StoreWeek
from storemon.db.reports import ReportStatus
from storemon.web import assets, formats
from storemon.web.keys import FINISHED, POOL, PUBLISHER, SETTINGS
from storemon.web.security import TOKEN_COOKIE, token_matches

FLEET_CACHE_S = 60.0
# How long a rebuild waits for the worker's report before assembling the page itself, and
# how often it looks.
FLEET_REPORT_WAIT_S = 5.0
REPORTS_LISTED = 50
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
OWN_ASSETS = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}
VENDOR_TYPES = {".js": "text/javascript", ".css": "text/css", ".txt": "text/plain"}


# ------------------------------------------------------------------------------ formatting


def when(ts_us: int | None) -> str:
    if ts_us is None:
        return "\u2013"
    return us_to_datetime(ts_us).strftime("%Y-%m-%d %H:%M UTC")


def percent(up_us: int, down_us: int) -> str:
    total = up_us + down_us
    return f"{100 * up_us / total:.1f} %" if total else "\u2013"


def heat_colour(up_us: int, down_us: int) -> str:
    """Red (half the time down or worse) through yellow to green (all up); grey without
    business time. The scale starts at 50 % so the hours that matter stand apart."""
    total = up_us + down_us
    if not total:
        return "#e5e7eb"
    share = max(0.0, (up_us / total - 0.5) * 2)
    return f"hsl({round(120 * share)}, 70%, 45%)"


def schedule_text(schedule: Schedule) -> list[str]:
    if not schedule:
        return ["open around the clock (no business hours given)"]
    lines = []
    for interval in schedule:
        start, end = interval.start_s, interval.end_s
        if end - start >= 24 * 3600:
            lines.append(f"{WEEKDAYS[interval.weekday]} all day")
            continue
        next_day = " (next day)" if end > 24 * 3600 else ""
        end_text = "24:00" if end == 24 * 3600 else f"{end // 3600 % 24:02d}:{end % 3600 // 60:02d}"
        lines.append(
            f"{WEEKDAYS[interval.weekday]} {start // 3600:02d}:{start % 3600 // 60:02d}"
            f"\u2013{end_text}{next_day}"
        )
    return lines


# Sent with every page.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline';"
    " img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}


def setup_templates(app: web.Application) -> jinja2.Environment:
    """The pages' templates, HTML-escaping every value; a name missing from a page's
    context is an error, not an empty string."""
    return aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("storemon.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(
    request: web.Request, template: str, context: dict[str, Any], *, status: int = 200
) -> web.Response:
    """A page: ``context`` plus what the frame needs (the log-out link, the chart library)."""
    frame = {"logout": request.app[TOKEN_WANTED], "charts": False}
    frame["vendor_ready"] = assets.vendor_ready()
    response = aiohttp_jinja2.render_template(
        template, request, {**frame, **context}, status=status
    )
    response.headers.update(PAGE_HEADERS)
    return response


# ------------------------------------------------------------------------------ fleet cache


def parse_stored_pair(pair: tuple[str, str]) -> tuple[Schedule, str]:
    """A (schedule as the stores table's JSON text, zone) pair -> schedule and zone."""
    text, zone = pair
    return tuple(WeeklyInterval(*i) for i in orjson.loads(text)), zone


def stored_pairs_sessions() -> SessionsKept[tuple[str, str]]:
    """Sessions kept per pair as the stores table spells it (the PostgreSQL path)."""
    return SessionsKept(parse_stored_pair)


@dataclass
class FleetCache:
    """The fleet page's last numbers. Kept as long as the aggregates' version is unchanged
    (the same inputs give the same page); while they change, rebuilt when older than
    FLEET_CACHE_S or when a newer poll has arrived, by one request at a time.

    A rebuild asks the worker for a report at the newest poll with the page's numbers, which
    it computes from its in-memory index in the same job (about as fast as any report) and
    stores as one row; where that path cannot answer soon (no worker, the index still
    loading), the page is assembled here from PostgreSQL, which takes seconds for a large
    fleet. Both give the same numbers (the tests compare them)."""

    built_at: float = float("-inf")
    key: tuple[int, int] | None = None  # (newest poll, aggregates' version) it was built at
    summary: FleetSummary | None = None
    # "worker" (its index computed the page), "worker report" (the worker answered from
    # PostgreSQL; the page summed its report) or "database" (assembled here)
    built_from: str = ""
    build_s: float = 0.0
    sessions: SessionsKept[tuple[str, str]] = field(default_factory=stored_pairs_sessions)
    lock: asyncio.Lock | None = None

    async def get(self, app: web.Application, newest_us: int, version: int) -> FleetSummary:
        """The page's numbers for the newest poll and the aggregates' version the request
        read (one statement with the newest poll: see ``queries.fleet_marks``)."""
        pool = app[POOL]
        if self.lock is None:
            self.lock = asyncio.Lock()
        async with self.lock:
            fresh = time.monotonic() - self.built_at < FLEET_CACHE_S
            unchanged = self.key == (newest_us, version)
            same_poll = self.key is not None and self.key[0] == newest_us
            if self.summary is None or not (unchanged or (fresh and same_poll)):
                began = time.perf_counter()
                from_worker = await fleet_from_the_worker(app, self.sessions)
                if from_worker is not None:
                    summary, data_version, self.built_from = from_worker
                else:
                    report = await assemble_report(pool, newest_us, with_digest=True)
                    summary = await summary_of_report(pool, report, self.sessions)
                    data_version, self.built_from = report.data_version, "database"
                self.summary = summary
                # The version the report's snapshot saw: a write in between rebuilds next time.
                self.key = (newest_us, data_version or version)
                self.built_at = time.monotonic()
                self.build_s = time.perf_counter() - began
            return self.summary


async def fleet_from_the_worker(
    app: web.Application, sessions: SessionsKept[tuple[str, str]]
) -> tuple[FleetSummary, int | None, str] | None:
    """The page's numbers at the newest poll, asked of the worker with a report like any
    other: (summary, the aggregates' version it was computed from, how). Where the worker
    answered from PostgreSQL it stored no summary, and the page sums the report's rows as
    the PostgreSQL path does. None when no answer came within FLEET_REPORT_WAIT_S or the
    queue of reports is full."""
    pool, settings = app[POOL], app[SETTINGS]
    publisher = app.get(PUBLISHER)
    if publisher is None:
        return None
    report_id = uuid.uuid4()
    if not await db_reports.create_report(
        pool, report_id, None, settings.max_open_reports, for_dashboard=True
    ):
        return None
    try:
        await publisher.publish(report_id, None, fleet_summary=True)
    except (KafkaError, TimeoutError) as error:
        await db_reports.fail_report(pool, report_id, f"the request could not be queued: {error}")
        return None
    # Woken when PostgreSQL announces the report finished (as GET /get_report?wait= is).
    record = await app[FINISHED].until_finished(
        report_id, FLEET_REPORT_WAIT_S, lambda: db_reports.get_report(pool, report_id)
    )
    if record is None or record.status != ReportStatus.COMPLETE or record.as_of_us is None:
        return None  # failed, or the worker answers later: this page is built from PostgreSQL
    if record.data_version is not None:
        # Stored by the job before it completed the report (see migration 0018).
        summary = await db_reports.get_fleet_summary(pool, record.as_of_us, record.data_version)
        if summary is not None:
            return summary, record.data_version, "worker"
    csv_text = await db_reports.get_report_csv(pool, report_id)
    packed, digest = await db_reports.get_report_exact(pool, report_id)
    if csv_text is None or packed is None:
        return None
    rows = await asyncio.to_thread(unpack_sums, formats.store_ids(csv_text), packed)
    report = AssembledReport(
        record.as_of_us,
        "",
        len(rows),
        rows=tuple(rows),
        data_version=record.data_version,
        schedules_digest=digest,
    )
    return await summary_of_report(pool, report, sessions), record.data_version, "worker report"


async def summary_of_report(
    pool: asyncpg.Pool, report: AssembledReport, sessions: SessionsKept[tuple[str, str]]
) -> FleetSummary:
    """The page's numbers from a report's rows: the fleet's hours summed by PostgreSQL, its
    business time from the schedules in the stores table."""
    top = floor_to(report.as_of_us, HOUR_US)
    async with pool.acquire() as conn:
        hours = await queries.fleet_hours(conn, top - 167 * HOUR_US, top + HOUR_US)
    found = await fleet_coverage(pool, report, sessions)
    return summary_of_rows(report.as_of_us, report.rows, hours, found)


async def fleet_coverage(
    pool: asyncpg.Pool, report: AssembledReport, sessions: SessionsKept[tuple[str, str]]
) -> Coverage | None:
    """Business and unobserved time of the whole fleet per window, from the schedules the
    report was assembled with (None if one changed since: the sums would not match)."""
    ids = [r.store_id for r in report.rows]
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        if await schedules_digest(conn, ids) != report.schedules_digest:
            return None
        stores = await conn.fetch(
            "SELECT store_id, schedule::text AS schedule, zone FROM stores"
            " WHERE store_id = ANY($1::text[])",
            ids,
        )
    pair_of = {r["store_id"]: (r["schedule"], r["zone"]) for r in stores}

    def add_up() -> Coverage:
        number: dict[tuple[str, str], int] = {}
        store_pair = [number.setdefault(pair_of[i], len(number)) for i in ids]
        business_per_pair = sessions.business(list(number), report.as_of_us)
        business = business_of_pairs(business_per_pair, np.array(store_pair, np.int64))
        up, down = fleet_totals(report.rows)
        return fleet_coverage_of(business, up, down)

    return await asyncio.to_thread(add_up)


FLEET = web.AppKey("fleet_cache", FleetCache)
TOKEN_WANTED = web.AppKey("dashboard_token_wanted", bool)


def _pool(request: web.Request) -> asyncpg.Pool:
    return request.app[POOL]


# ------------------------------------------------------------------------------ fleet page


@dataclass(frozen=True, slots=True)
class HeatCell:
    colour: str
    label: str


def heatmap_rows(hours: Iterable[tuple[int, int, int]]) -> list[tuple[str, list[HeatCell | None]]]:
    """A row per UTC day: its 24 hours, ``None`` for an hour outside the week."""
    by_day: dict[int, dict[int, tuple[int, int]]] = {}
    for hour, up, down in hours:
        day = floor_to(hour, DAY_US)
        by_day.setdefault(day, {})[(hour - day) // HOUR_US] = (up, down)
    rows: list[tuple[str, list[HeatCell | None]]] = []
    for day in sorted(by_day):
        cells: list[HeatCell | None] = []
        for h in range(24):
            if h not in by_day[day]:
                cells.append(None)
                continue
            up, down = by_day[day][h]
            label = f"{when(day + h * HOUR_US)}: {percent(up, down)} up"
            if up + down:
                label += f" ({(up + down) / HOUR_US:.1f} store-hours open)"
            cells.append(HeatCell(heat_colour(up, down), label))
        rows.append((us_to_datetime(day).strftime("%a %d %b"), cells))
    return rows


def worst_store_lines(rows: Iterable[StoreWindows]) -> list[dict[str, str]]:
    return [
        {
            "store_id": r.store_id,
            "path": quote(r.store_id, safe=""),
            "down_week": format_hundredths(r.down_us[2], HOUR_US),
            "up_week": format_hundredths(r.up_us[2], HOUR_US),
            "down_day": format_hundredths(r.down_us[1], HOUR_US),
            "down_hour": format_hundredths(r.down_us[0], MINUTE_US),
        }
        for r in rows
    ]


BUILT_FROM = {
    "worker": "the worker's in-memory index",
    "worker report": "the worker's report from PostgreSQL",
    "database": "PostgreSQL",
}


def fleet_context(
    summary: FleetSummary,
    allowed: ReportRange,
    reach_hours: int,
    lead_hours: int,
    *,
    built_from: str = "database",
    build_s: float = 0.0,
) -> dict[str, Any]:
    up, down, found, hours = summary.up_us, summary.down_us, summary.coverage, summary.hours
    unobserved = business = "\u2013"
    if found is not None:
        unobserved = f"{format_hundredths(found.unobserved_us[2], HOUR_US)} h"
        business = format_hundredths(found.business_us[2], HOUR_US)
    return {
        "title": "Fleet",
        "charts": True,
        "built_from": BUILT_FROM.get(built_from, "PostgreSQL"),
        "build_ms": round(1000 * build_s),
        "as_of": when(summary.as_of_us),
        "range_earliest": format_utc(allowed.earliest_us),
        "range_latest": format_utc(allowed.latest_us),
        "reach_hours": reach_hours,
        "lead_hours": lead_hours,
        "store_count": summary.store_count,
        "uptime_day": percent(up[1], down[1]),
        "uptime_week": percent(up[2], down[2]),
        "downtime_week": format_hundredths(down[2], HOUR_US),
        "unobserved": unobserved,
        "business": business,
        "heatmap": heatmap_rows(hours),
        "chart": {
            "x": [h // 1_000_000 for h, _, _ in hours],
            "uptime": [round(100 * u / (u + d), 2) if u + d else None for _, u, d in hours],
        },
        "worst": worst_store_lines(summary.worst),
    }


async def fleet_page(request: web.Request) -> web.Response:
    pool = _pool(request)
    settings = request.app[SETTINGS]
    async with pool.acquire() as conn:
        marks = await queries.fleet_marks(conn)
    allowed = supported_range(
        marks.newest_poll_us, settings.reach_us, settings.lead_us, marks.pruned_before_us
    )
    if marks.newest_poll_us is None or allowed is None:
        return render(request, "fleet_empty.html", {"title": "Fleet"})
    fleet = request.app[FLEET]
    summary = await fleet.get(request.app, marks.newest_poll_us, marks.version)
    context = fleet_context(
        summary,
        allowed,
        settings.report_reach_hours,
        settings.report_lead_hours,
        built_from=fleet.built_from,
        build_s=fleet.build_s,
    )
    return render(request, "fleet.html", context)


# ------------------------------------------------------------------------------ store page


def window_numbers(row: StoreWindows, found: Coverage | None = None) -> list[tuple[str, list[str]]]:
    """Up and down per window; with ``found``, the window's business time and its
    unobserved part too (time no poll of its session saw: neither up nor down)."""
    names = ("last hour", "last day", "last week")
    lines = []
    for w, (name, (_, unit)) in enumerate(zip(names, WINDOWS, strict=True)):
        unit_name = "min" if unit == MINUTE_US else "h"
        values = [row.up_us[w], row.down_us[w]]
        if found is not None:
            values += [found.business_us[w], found.unobserved_us[w]]
        lines.append((name, [f"{format_hundredths(v, unit)} {unit_name}" for v in values]))
    return lines


def store_context(
    week: StoreWeek, lo_us: int, hi_us: int, row: StoreWindows | None, found: Coverage | None
) -> dict[str, Any]:
    return {
        "title": f"Store {week.store_id}",
        "charts": True,
        "store_id": week.store_id,
        "week_end": when(hi_us),
        "zone": week.zone,
        "poll_count": len(week.polls),
        "active_polls": sum(1 for _, active in week.polls if active),
        "numbers": window_numbers(row, found) if row is not None else None,
        "with_coverage": found is not None,
        "schedule": schedule_text(week.schedule),
        "chart": {
            "lo": lo_us // 1_000_000,
            "hi": hi_us // 1_000_000,
            "sessions": [[a // 1_000_000, b // 1_000_000] for a, b in week.sessions],
            "runs": [[a // 1_000_000, b // 1_000_000, int(up)] for a, b, up in week.runs],
            "polls": [[ts // 1_000_000, int(active)] for ts, active in week.polls],
        },
    }


async def store_page(request: web.Request) -> web.Response:
    store_id = request.match_info["store_id"]
    pool = _pool(request)
    async with pool.acquire() as conn:
        newest = await newest_poll_us(conn)
        hi = newest if newest is not None else 0
        lo = hi - 7 * DAY_US
        week = await queries.store_week(conn, store_id, lo, hi) if newest is not None else None
    if week is None:
        context = {"title": "Store", "store_id": store_id}
        return render(request, "store_missing.html", context, status=404)
    report = await assemble_report(pool, newest, only_store=store_id)
    row = report.rows[0] if report.rows else None
    found = None
    if row is not None:
        with contextlib.suppress(ValueError):  # hours changed between the two reads
            found = coverage(row, week.schedule, week.zone, report.as_of_us)
    return render(request, "store.html", store_context(week, lo, hi, row, found))


async def store_lookup(request: web.Request) -> web.Response:
    store_id = request.query.get("store_id", "").strip()
    target = f"/dashboard/stores/{quote(store_id, safe='')}" if store_id else "/dashboard/"
    raise web.HTTPSeeOther(target)


# ------------------------------------------------------------------------------ reports page


def report_lines(listed: Iterable[ReportListing]) -> list[dict[str, Any]]:
    return [
        {
            "report_id": str(r.report_id),
            "status": r.status,
            "complete": r.status == "Complete",
            "as_of": when(r.as_of_us or r.requested_as_of_us),
            "requested": r.created_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
            "row_count": r.row_count if r.row_count is not None else "",
            "error": r.error or "",
        }
        for r in listed
    ]


async def reports_page(request: web.Request) -> web.Response:
    async with _pool(request).acquire() as conn:
        listed = await queries.recent_reports(conn, REPORTS_LISTED)
    return render(request, "reports.html", {"title": "Reports", "reports": report_lines(listed)})


# ------------------------------------------------------------------------------ login, assets


async def login_form(request: web.Request) -> web.Response:
    failed = request.query.get("failed") == "1"
    return render(request, "login.html", {"title": "Log in", "failed": failed, "logout": False})


async def login_submit(request: web.Request) -> web.Response:
    form = await request.post()
    given = form.get("token")
    if not isinstance(given, str) or not token_matches(given, request.app[SETTINGS].api_token):
        raise web.HTTPSeeOther("/dashboard/login?failed=1")
    response = web.HTTPSeeOther("/dashboard/")
    response.set_cookie(
        TOKEN_COOKIE, given, httponly=True, samesite="Strict", path="/", max_age=12 * 3600
    )
    raise response


async def logout(request: web.Request) -> web.Response:
    response = web.HTTPSeeOther("/dashboard/login")
    response.del_cookie(TOKEN_COOKIE, path="/")
    raise response


async def own_asset(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in OWN_ASSETS:
        raise web.HTTPNotFound()
    data = (resources.files("storemon.web") / "static" / name).read_bytes()
    return web.Response(body=data, content_type=OWN_ASSETS[name])


async def vendor_asset(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in assets.VENDOR_FILES.values():  # fixed names: no path from the client
        raise web.HTTPNotFound()
    path = assets.vendor_dir() / name
    if not path.is_file():
        raise web.HTTPNotFound()
    suffix = name[name.rfind(".") :]
    return web.Response(
        body=path.read_bytes(),
        content_type=VENDOR_TYPES[suffix],
        headers={"Cache-Control": "max-age=86400"},
    )


PUBLIC_PATHS = frozenset({"/dashboard/login"})
PUBLIC_PREFIXES = ("/dashboard/assets/",)


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def add_routes(app: web.Application, token: str) -> None:
    setup_templates(app)
    app[FLEET] = FleetCache()
    app[TOKEN_WANTED] = bool(token)
    app.router.add_get("/dashboard/", fleet_page)
    app.router.add_get("/dashboard", to_fleet_page)
    app.router.add_get("/dashboard/store", store_lookup)
    app.router.add_get("/dashboard/stores/{store_id}", store_page)
    app.router.add_get("/dashboard/reports", reports_page)
    app.router.add_get("/dashboard/login", login_form)
    app.router.add_post("/dashboard/login", login_submit)
    app.router.add_get("/dashboard/logout", logout)
    app.router.add_get("/dashboard/assets/vendor/{name}", vendor_asset)
    app.router.add_get("/dashboard/assets/{name}", own_asset)


async def to_fleet_page(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther("/dashboard/")
