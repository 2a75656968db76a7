"""``storemon api``: the HTTP API that triggers reports and serves them.

==========================  ==================================================================
``POST /trigger_report``    optional JSON body ``{"as_of": "YYYY-MM-DD HH:MM:SS[.ffffff]"}``
                            (UTC; ISO 8601 with an offset is accepted too). Stores a Pending
                            report, queues it on ``report-requests`` and answers **202**
                            ``{"report_id": ...}`` once Kafka has acknowledged the request;
                            **429** while ``STOREMON_MAX_OPEN_REPORTS`` reports are open;
                            **422** ``{"error", "earliest_as_of", "latest_as_of"}`` for an
                            ``as_of`` outside the supported range (docs/semantics.md).
``GET /get_report``         ``?report_id=<uuid>[&format=csv|json|parquet][&wait=S]``:
                            ``{"status": "Pending"|"Running", ...}``, ``{"status": "Failed",
                            "error": ...}``, or the report itself (with
                            ``Content-Disposition`` and ``X-Report-As-Of``) once Complete:
                            the CSV by default; gzip when the client accepts it (not for
                            Parquet, compressed inside). With ``wait`` (seconds, 0-30) an
                            unfinished report's answer waits until it finishes or the time
                            is up (:mod:`storemon.web.finished`), then answers as above.
``GET /healthz``            200 ``{"status": "ok"}`` when PostgreSQL answers, else 503.
``GET /metrics``            Prometheus metrics (:mod:`storemon.metrics`).
==========================  ==================================================================

Every error is JSON, ``{"error": "..."}``: 400 bad input, 401 missing or wrong bearer token
(when ``STOREMON_API_TOKEN`` is set; ``/healthz`` stays open), 404, 405, 413 (bodies over
64 KiB), 422 (``as_of`` outside the supported range), 429 (report queue full), 503 when PostgreSQL or Kafka cannot be reached, 500 for
anything else (the stack trace goes to the log, never to the client).

The handlers are thin: they parse the request, call :mod:`storemon.db.reports` or the
:class:`RequestPublisher`, and shape the answer. The database pool and the Kafka producer are
opened and closed by ``cleanup_ctx`` context managers and live in typed ``web.AppKey`` slots.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import orjson
from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from storemon import logs
from storemon.aggregates.coverage import Coverage, coverage, unpack_sums
from storemon.aggregates.reach import out_of_range_message
from storemon.aggregates.schedule import Schedule, WeeklyInterval
from storemon.aggregates.timebase import format_utc, parse_as_of
from storemon.compression import gzip_body
from storemon.db import reports as db_reports
from storemon.db.assemble import schedules_digest
from storemon.db.migrate import connect
from storemon.db.reports import ReportStatus
from storemon.db.retention import report_range
from storemon.metrics import ApiMetrics
from storemon.settings import Settings
from storemon.streams import messages
from storemon.streams.topics import TopicMismatch, ensure_topics
from storemon.web import dashboard, formats
from storemon.web.bodies import BodyCache
from storemon.web.finished import MAX_WAIT_S, UNFINISHED, FinishedReports
from storemon.web.keys import FINISHED, POOL, PUBLISHER, SETTINGS
from storemon.web.security import TOKEN_COOKIE, bearer_token_ok, token_matches

log = logging.getLogger(__name__)

CLIENT_MAX_SIZE = 64 * 1024
DB_TIMEOUT_S = 10.0
HEALTH_TIMEOUT_S = 3.0
PUBLISH_TIMEOUT_S = 30.0
POOL_MAX_SIZE = 10
PUBLIC_PATHS = frozenset({"/healthz"})
MEASURED_TABLES = ("stores", "store_days", "reports", "dead_letters")

# What "the database cannot be reached" looks like (TimeoutError and ConnectionError are
# OSErrors): answered with 503, not 500.
DB_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.InvalidCatalogNameError,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BadRequest(ValueError):
    """Input the client must fix: answered with 400 and this message."""


# ------------------------------------------------------------------------------ resources


class RequestPublisher:
    """Puts report requests on the ``report-requests`` topic, keyed by report id, and waits
    for the broker's acknowledgement (idempotent producer, ``acks=all``)."""

    def __init__(self, settings: Settings) -> None:
        self.topic = settings.topic(messages.REPORT_REQUESTS)
        self._producer: Any = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap,
            acks="all",
            enable_idempotence=True,
            request_timeout_ms=int(PUBLISH_TIMEOUT_S * 1000),
        )

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def publish(
        self, report_id: uuid.UUID, as_of: str | None, *, fleet_summary: bool = False
    ) -> None:
        request: dict[str, Any] = {"report_id": str(report_id), "as_of": as_of}
        if fleet_summary:
            request["fleet_summary"] = True
        value = messages.encode(request)
        async with asyncio.timeout(PUBLISH_TIMEOUT_S):
            await self._producer.send_and_wait(self.topic, value, key=str(report_id).encode())


REGISTRY = web.AppKey("registry", CollectorRegistry)
METRICS = web.AppKey("metrics", ApiMetrics)
BODIES = web.AppKey("bodies", BodyCache)
BODY_CACHE_BYTES = 64 * 1024 * 1024


async def _database(app: web.Application) -> AsyncIterator[None]:
    """The asyncpg pool (migrations are applied when it opens)."""
    pool = await connect(app[SETTINGS].database_url, max_size=POOL_MAX_SIZE)
    app[POOL] = pool
    try:
        yield
    finally:
        await pool.close()


async def _finished_reports(app: web.Application) -> AsyncIterator[None]:
    """The listener for finished reports (connected on the first ``wait``)."""
    app[FINISHED] = FinishedReports(app[SETTINGS].database_url)
    try:
        yield
    finally:
        await app[FINISHED].close()


async def _kafka(app: web.Application) -> AsyncIterator[None]:
    """The topics (created if missing) and the producer of report requests."""
    settings = app[SETTINGS]
    await ensure_topics(settings)
    publisher = RequestPublisher(settings)
    await publisher.start()
    app[PUBLISHER] = publisher
    try:
        yield
    finally:
        await publisher.stop()


# ------------------------------------------------------------------------------ responses


def json_response(body: dict[str, Any], status: int = 200, **kwargs: Any) -> web.Response:
    return web.json_response(
        body, status=status, dumps=lambda v: orjson.dumps(v).decode(), **kwargs
    )


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return json_response({"error": message}, status=status, headers=headers)


# ------------------------------------------------------------------------------ input parsing


def parse_trigger_body(raw: bytes) -> tuple[int | None, str | None]:
    """The body of ``POST /trigger_report`` -> (as_of in microseconds, as_of as UTC text);
    (None, None) when no ``as_of`` is given. Raises BadRequest."""
    if not raw.strip():
        return None, None
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"body is not valid JSON: {error}") from None
    if not isinstance(body, dict):
        raise BadRequest('body must be a JSON object such as {"as_of": "2023-01-25 18:13:22"}')
    unknown = sorted(set(body) - {"as_of"})
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(unknown)}; only 'as_of' is accepted")
    as_of = body.get("as_of")
    if as_of is None:
        return None, None
    if not isinstance(as_of, str):
        raise BadRequest("as_of must be a string 'YYYY-MM-DD HH:MM:SS[.ffffff]' (UTC)")
    try:
        as_of_us = parse_as_of(as_of)
    except ValueError as error:
        raise BadRequest(str(error)) from None
    return as_of_us, format_utc(as_of_us)


def parse_report_id(text: str | None) -> uuid.UUID:
    if not text:
        raise BadRequest("missing query parameter report_id")
    try:
        return uuid.UUID(text.strip())
    except ValueError:
        raise BadRequest(f"report_id {text[:100]!r} is not a UUID") from None


def accepts_gzip(header: str | None) -> bool:
    """Whether an ``Accept-Encoding`` header allows gzip (``gzip;q=0`` refuses it)."""
    for part in (header or "").lower().split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip() in {"gzip", "*"}:
            quality = params.strip().removeprefix("q=")
            try:
                return not params or float(quality) > 0
            except ValueError:
                return True
    return False


def parse_wait(text: str | None) -> float:
    """The ``wait`` query parameter: seconds, 0 to MAX_WAIT_S; 0 when absent."""
    if text is None or not text.strip():
        return 0.0
    try:
        seconds = float(text.strip())
    except ValueError:
        raise BadRequest(f"wait {text[:20]!r} is not a number of seconds") from None
    if not 0.0 <= seconds <= MAX_WAIT_S:  # also refuses nan
        raise BadRequest(f"wait must be between 0 and {MAX_WAIT_S:g} seconds")
    return seconds


def parse_format(text: str | None) -> str:
    if text is None or not text.strip():
        return "csv"
    if text.strip().lower() not in formats.FORMATS:
        raise BadRequest(f"format {text[:20]!r} is not one of {', '.join(formats.FORMATS)}")
    return text.strip().lower()


# ------------------------------------------------------------------------------ handlers


async def trigger_report(request: web.Request) -> web.Response:
    try:
        as_of_us, as_of_text = parse_trigger_body(await request.read())
    except BadRequest as error:
        return error_response(400, str(error))
    pool, publisher = request.app[POOL], request.app[PUBLISHER]
    settings = request.app[SETTINGS]
    if as_of_us is not None:
        async with asyncio.timeout(DB_TIMEOUT_S), pool.acquire() as conn:
            allowed = await report_range(conn, settings.reach_us, settings.lead_us)
        if as_of_us not in (allowed or ()):
            body: dict[str, Any] = {"error": out_of_range_message(as_of_us, allowed)}
            body.update(allowed.as_json() if allowed is not None else {})
            return json_response(body, status=422)
    report_id = uuid.uuid4()
    max_open = settings.max_open_reports
    async with asyncio.timeout(DB_TIMEOUT_S):
        stored = await db_reports.create_report(pool, report_id, as_of_us, max_open)
    if not stored:
        return error_response(
            429,
            f"{max_open} reports are already waiting or running; try again shortly",
            {"Retry-After": "2"},
        )
    try:
        await publisher.publish(report_id, as_of_text)
    except (KafkaError, TimeoutError) as error:
        log.error("report %s: request not queued: %r", report_id, error)
        async with asyncio.timeout(DB_TIMEOUT_S):
            await db_reports.fail_report(pool, report_id, "the request could not be queued")
        return error_response(503, "the report request could not be queued; try again")
    log.info("report %s requested (as_of %s)", report_id, as_of_text or "newest poll")
    return json_response({"report_id": str(report_id)}, status=202)


async def get_report(request: web.Request) -> web.Response:
    try:
        report_id = parse_report_id(request.query.get("report_id"))
        report_format = parse_format(request.query.get("format"))
        wait_s = parse_wait(request.query.get("wait"))
    except BadRequest as error:
        return error_response(400, str(error))
    pool = request.app[POOL]

    async def read() -> db_reports.ReportRecord | None:
        async with asyncio.timeout(DB_TIMEOUT_S):
            return await db_reports.get_report(pool, report_id)

    # The stored body when it came with a re-read after waiting (one round trip, not two).
    stored: db_reports.StoredCsv | None = None

    async def read_after_wait() -> db_reports.ReportRecord | None:
        nonlocal stored
        async with asyncio.timeout(DB_TIMEOUT_S):
            found, stored = await db_reports.get_report_with_body(pool, report_id)
        return found

    record = await read()
    if record is not None and record.status in UNFINISHED and wait_s > 0:
        record = await request.app[FINISHED].until_finished(report_id, wait_s, read_after_wait)
    if record is None:
        return error_response(404, f"no report {report_id}")
    if record.status != ReportStatus.COMPLETE:
        return _status_response(record)
    if record.as_of_us is None:
        raise RuntimeError(f"report {report_id} is Complete without an as_of")
    as_of_us = record.as_of_us
    as_of = format_utc(as_of_us)
    # Parquet is compressed inside; the text formats travel gzipped when the client says so.
    gzipped = report_format != "parquet" and accepts_gzip(request.headers.get("Accept-Encoding"))

    async def render() -> bytes:
        return await _report_body(pool, report_id, as_of_us, report_format, gzipped, stored)

    # Reports of one report time computed from one version of the aggregates have the same
    # CSV (see migration 0004): one body serves them all. The other formats name the report.
    same_answer = report_format == "csv" and record.data_version is not None
    body_id = f"{record.as_of_us}@{record.data_version}" if same_answer else str(report_id)
    body = await request.app[BODIES].body((body_id, report_format, gzipped), render)
    headers = {
        "Content-Disposition": f'attachment; filename="report-{report_id}.{report_format}"',
        "X-Report-As-Of": as_of,
        "Vary": "Accept-Encoding",
    }
    if record.row_count is not None:
        headers["X-Report-Rows"] = str(record.row_count)
    if gzipped:
        headers["Content-Encoding"] = "gzip"
    response = web.Response(body=body, headers=headers)
    response.content_type = formats.CONTENT_TYPES[report_format]
    if report_format != "parquet":
        response.charset = "utf-8"
    return response


async def _report_body(
    pool: asyncpg.Pool,
    report_id: uuid.UUID,
    as_of_us: int,
    report_format: str,
    gzipped: bool,
    stored: db_reports.StoredCsv | None = None,
) -> bytes:
    """A Complete report's bytes in ``report_format``, gzipped when ``gzipped``; from
    ``stored`` when the body was read already."""
    if stored is None:
        async with asyncio.timeout(DB_TIMEOUT_S):
            stored = await db_reports.get_report_body(pool, report_id)
    if stored is None:
        raise RuntimeError(f"report {report_id} is Complete without a CSV")
    if report_format == "csv":
        # Stored gzipped by the job (migration 0016): sent as it is where gzip is wanted.
        if stored.gzipped == gzipped:
            return stored.body
        return await (gzip_body(stored.body) if gzipped else asyncio.to_thread(stored.plain))
    csv_text = await asyncio.to_thread(stored.text)
    extra = await _coverage(pool, report_id, as_of_us, csv_text)
    convert = formats.report_json if report_format == "json" else formats.report_parquet
    body = await asyncio.to_thread(convert, report_id, format_utc(as_of_us), csv_text, extra)
    return await gzip_body(body) if gzipped else body


async def _coverage(
    pool: asyncpg.Pool, report_id: uuid.UUID, as_of_us: int, csv_text: str
) -> formats.Extra:
    """Business and unobserved time of every row, or why they are left out: they need the
    report's exact sums and the schedules it was computed with (same digest as then)."""
    async with asyncio.timeout(DB_TIMEOUT_S):
        packed, digest = await db_reports.get_report_exact(pool, report_id)
        if packed is None or digest is None:
            return "this report was stored without its exact sums"
        ids = formats.store_ids(csv_text)
        async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            if await schedules_digest(conn, ids) != digest:
                return "a store's business hours or time zone changed since the report was taken"
            stores = await conn.fetch(
                "SELECT store_id, schedule::text AS schedule, zone FROM stores"
                " WHERE store_id = ANY($1::text[])",
                ids,
            )
    hours = {r["store_id"]: (r["schedule"], r["zone"]) for r in stores}
    rows = unpack_sums(ids, packed)
    schedules: dict[str, Schedule] = {
        store_id: tuple(WeeklyInterval(*i) for i in orjson.loads(text))
        for store_id, (text, _) in hours.items()
    }

    def compute() -> list[Coverage]:
        return [
            coverage(row, schedules[row.store_id], hours[row.store_id][1], as_of_us) for row in rows
        ]

    return await asyncio.to_thread(compute)


def _status_response(record: db_reports.ReportRecord) -> web.Response:
    body: dict[str, Any] = {"status": record.status, "report_id": str(record.report_id)}
    if record.status == ReportStatus.FAILED:
        body["error"] = record.error or "unknown error"
    return json_response(body)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format; the gauges read from PostgreSQL are refreshed first."""
    api_metrics = request.app[METRICS]
    pool = request.app[POOL]
    async with asyncio.timeout(DB_TIMEOUT_S), pool.acquire() as conn:
        by_status = dict(await conn.fetch("SELECT status, count(*) FROM reports GROUP BY status"))
        store_count, newest = await conn.fetchrow(
            "SELECT count(*), max(newest_poll_us) FROM stores"
        ) or (0, None)
        sizes = await conn.fetch(
            "SELECT relname, pg_total_relation_size(oid) AS bytes FROM pg_class"
            " WHERE relkind = 'r' AND relname = ANY($1::text[])",
            list(MEASURED_TABLES),
        )
    for status in ReportStatus:
        api_metrics.reports.labels(status).set(by_status.get(status, 0))
    api_metrics.stores.set(store_count)
    if newest is not None:
        api_metrics.newest_poll.set(newest / 1e6)
    for row in sizes:
        api_metrics.table_bytes.labels(row["relname"]).set(row["bytes"])
    body = generate_latest(request.app[REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def healthz(request: web.Request) -> web.Response:
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT_S):
            await request.app[POOL].fetchval("SELECT 1")
    except DB_UNAVAILABLE as error:
        log.warning("health check: database unavailable: %r", error)
        return json_response({"status": "unavailable", "error": "database unavailable"}, status=503)
    return json_response({"status": "ok"})


# ------------------------------------------------------------------------------ middlewares


def _http_error_message(request: web.Request, error: web.HTTPException) -> str:
    if isinstance(error, web.HTTPNotFound):
        return f"not found: {request.path}"
    if isinstance(error, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(error.allowed_methods))
        return f"method {request.method} not allowed on {request.path}; allowed: {allowed}"
    if isinstance(error, web.HTTPRequestEntityTooLarge):
        return f"request body larger than {CLIENT_MAX_SIZE} bytes"
    return error.reason


@web.middleware
async def errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The outermost layer: every error becomes a JSON answer; no stack trace leaves."""
    try:
        return await handler(request)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        headers = {k: v for k, v in error.headers.items() if k.lower() in {"allow"}}
        return error_response(error.status, _http_error_message(request, error), headers)
    except DB_UNAVAILABLE as error:
        log.warning("%s %s: database unavailable: %r", request.method, request.path, error)
        return error_response(503, "database unavailable; try again later")
    except Exception:
        error_id = uuid.uuid4().hex[:12]
        log.exception("%s %s failed (error id %s)", request.method, request.path, error_id)
        return json_response({"error": "internal server error", "error_id": error_id}, 500)


@web.middleware
async def request_metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count and time every request by route (the route's pattern, never the raw path, so
    the label set stays small)."""
    began = time.monotonic()
    response = await handler(request)
    route = request.match_info.route.resource
    label = route.canonical if route is not None else "unmatched"
    request.app[METRICS].observe_request(
        label, request.method, response.status, time.monotonic() - began
    )
    return response


@web.middleware
async def bearer_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    token = request.app[SETTINGS].api_token
    if not token or request.path in PUBLIC_PATHS or dashboard.is_public(request.path):
        return await handler(request)
    if bearer_token_ok(request.headers.get("Authorization"), token):
        return await handler(request)
    # The dashboard's cookie counts for reading only: a report is triggered with the header.
    cookie = request.cookies.get(TOKEN_COOKIE)
    if request.method in {"GET", "HEAD"} and cookie and token_matches(cookie, token):
        return await handler(request)
    if request.path.startswith("/dashboard") and request.method == "GET":
        raise web.HTTPSeeOther("/dashboard/login")
    return error_response(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})


# ------------------------------------------------------------------------------ application


def build_app(settings: Settings) -> web.Application:
    app = web.Application(
        middlewares=[request_metrics, errors_as_json, bearer_auth],
        client_max_size=CLIENT_MAX_SIZE,
    )
    app[SETTINGS] = settings
    app[REGISTRY] = CollectorRegistry()
    app[METRICS] = ApiMetrics(app[REGISTRY])
    app[BODIES] = BodyCache(BODY_CACHE_BYTES)
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_finished_reports)
    app.cleanup_ctx.append(_kafka)
    app.router.add_post("/trigger_report", trigger_report)
    app.router.add_get("/get_report", get_report)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    dashboard.add_routes(app, settings.api_token)
    return app


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=None, help="listen address (default STOREMON_API_HOST)")
    parser.add_argument(
        "--port", type=int, default=None, help="listen port (default STOREMON_API_PORT)"
    )
    parser.add_argument("--loglevel", default="info")


def run(args: argparse.Namespace) -> int:
    from storemon import services

    settings = Settings.from_env()
    logs.configure(args.loglevel, settings.log_format)
    if args.host is not None:
        settings = dataclasses.replace(settings, api_host=args.host)
    if args.port is not None:
        settings = dataclasses.replace(settings, api_port=args.port)
    try:
        if not settings.kafka_bootstrap or not settings.database_url:
            settings = services.ensure_up(settings).apply_to(settings)
        web.run_app(
            build_app(settings),
            host=settings.api_host,
            port=settings.api_port,
            print=lambda text: print(text, file=sys.stderr),
        )
    except services.ServiceError as error:
        print(f"storemon api: {error}", file=sys.stderr)
        return 1
    except TopicMismatch as error:
        print(f"storemon api: {error}", file=sys.stderr)
        return 2
    except (*DB_UNAVAILABLE, KafkaError) as error:
        print(f"storemon api: cannot start: {error.__class__.__name__}: {error}", file=sys.stderr)
        return 1
    return 0
