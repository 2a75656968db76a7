"""The HTTP API against the real Kafka broker and PostgreSQL: status codes, JSON error
shapes, the request on the report-requests topic, the report states, the bearer token and a
database outage (a TCP proxy in front of PostgreSQL that the test cuts).

The module gets its own database and topic prefix, so it neither sees nor disturbs others."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped,unused-ignore]
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaConsumer  # type: ignore[import-untyped,unused-ignore]
from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped,unused-ignore]

from storemon.aggregates.timebase import format_utc, parse_as_of
from storemon.db import reports as db_reports
from storemon.db.migrate import connect
from storemon.settings import Settings
from storemon.streams import messages
from storemon.streams.topics import ensure_topics
from storemon.web.app import CLIENT_MAX_SIZE, build_app

from .pipeline import TcpProxy

pytestmark = [pytest.mark.services, pytest.mark.timeout(120)]

CSV_TEXT = "store_id,uptime_last_hour\nabc,60.00\n"


# ------------------------------------------------------------------------------ helpers


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


async def find_request(settings: Settings, report_id: str) -> tuple[bytes | None, bytes | None]:
    """(key, value) of the report-requests message keyed by ``report_id``."""
    topic = settings.topic(messages.REPORT_REQUESTS)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        async with asyncio.timeout(30):
            while True:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    for record in records:
                        if record.key == report_id.encode():
                            return record.key, record.value
    finally:
        await consumer.stop()


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
async def api_settings(service_settings: Settings) -> AsyncIterator[Settings]:
    tag = f"test_api_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(service_settings.database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{tag}"')
    finally:
        await admin.close()
    settings = dataclasses.replace(
        service_settings,
        database_url=with_database(service_settings.database_url, tag),
        topic_prefix=tag.replace("_", "-"),
        api_token="",
    )
    await ensure_topics(settings)
    try:
        yield settings
    finally:
        admin = await asyncpg.connect(service_settings.database_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{tag}" WITH (FORCE)')
        finally:
            await admin.close()
        kafka = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        await kafka.start()
        try:
            await kafka.delete_topics([settings.topic(name) for name in messages.ALL_TOPICS])
        finally:
            await kafka.close()


@pytest.fixture(scope="module")
async def pool(api_settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    created = await connect(api_settings.database_url)
    try:
        yield created
    finally:
        await created.close()


@contextlib.asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    client: TestClient[Any, Any] = TestClient(TestServer(build_app(settings)))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture(scope="module")
async def client(api_settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    async with serve(api_settings) as started:
        yield started


async def json_of(response: Any) -> dict[str, Any]:
    assert response.content_type == "application/json"
    body: dict[str, Any] = orjson.loads(await response.read())
    return body


async def assert_error(response: Any, status: int) -> dict[str, Any]:
    assert response.status == status
    body = await json_of(response)
    assert isinstance(body.get("error"), str)
    assert body["error"]
    assert "Traceback" not in body["error"]
    return body


# ------------------------------------------------------------------------------ tests


async def test_healthz(client: TestClient[Any, Any]) -> None:
    response = await client.get("/healthz")
    assert response.status == 200
    assert await json_of(response) == {"status": "ok"}


async def test_trigger_stores_a_pending_report_and_queues_the_request(
    client: TestClient[Any, Any], api_settings: Settings, pool: asyncpg.Pool
) -> None:
    response = await client.post("/trigger_report")
    assert response.status == 202
    body = await json_of(response)
    report_id = body["report_id"]
    record = await db_reports.get_report(pool, uuid.UUID(report_id))
    assert record is not None
    assert record.status == db_reports.ReportStatus.PENDING
    assert record.requested_as_of_us is None
    key, value = await find_request(api_settings, report_id)
    assert key == report_id.encode()
    assert messages.decode_object(value) == {"report_id": report_id, "as_of": None}


async def test_trigger_with_as_of(
    client: TestClient[Any, Any], api_settings: Settings, pool: asyncpg.Pool
) -> None:
    # Nothing ingested yet: no report time can be answered.
    before = await pool.fetchval("SELECT count(*) FROM reports")
    response = await client.post("/trigger_report", json={"as_of": "2023-01-25 18:13:22.47922"})
    body = await assert_error(response, 422)
    assert "no poll" in body["error"]
    assert await pool.fetchval("SELECT count(*) FROM reports") == before
    newest = parse_as_of("2023-01-25 18:13:22.47922")
    await pool.execute(
        "INSERT INTO stores (store_id, first_poll_us, newest_poll_us) VALUES ('s-1', $1, $1)",
        newest,
    )
    # Outside the range (7 days before the newest poll to 2 hours after it by default).
    for outside in (
        "2023-01-18 18:13:22.479219",
        "2023-01-25 20:13:22.479221",
        "2030-01-01 00:00:00",
    ):
        response = await client.post("/trigger_report", json={"as_of": outside})
        body = await assert_error(response, 422)
        assert body["earliest_as_of"] == "2023-01-18 18:13:22.479220 UTC"
        assert body["latest_as_of"] == "2023-01-25 20:13:22.479220 UTC"
        assert "2023-01-18 18:13:22.479220 UTC" in body["error"]
    assert await pool.fetchval("SELECT count(*) FROM reports") == before
    for inside in ("2023-01-18 18:13:22.47922", "2023-01-25 20:13:22.47922"):
        response = await client.post("/trigger_report", json={"as_of": inside})
        assert response.status == 202
    response = await client.post("/trigger_report", json={"as_of": "2023-01-25 18:13:22.47922"})
    assert response.status == 202
    report_id = (await json_of(response))["report_id"]
    as_of_us = parse_as_of("2023-01-25 18:13:22.47922")
    record = await db_reports.get_report(pool, uuid.UUID(report_id))
    assert record is not None
    assert record.status == db_reports.ReportStatus.PENDING
    assert record.requested_as_of_us == as_of_us
    _, value = await find_request(api_settings, report_id)
    assert messages.decode_object(value) == {"report_id": report_id, "as_of": format_utc(as_of_us)}
    # pending, as long as no worker picks it up (this topic prefix has none)
    response = await client.get("/get_report", params={"report_id": report_id})
    assert response.status == 200
    assert await json_of(response) == {"status": "Pending", "report_id": report_id}


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b"not json",
        b"[1, 2]",
        b'"2023-01-25 18:13:22"',
        b'{"as_of": 5}',
        b'{"as_of": "yesterday"}',
        b'{"as_of": "2023-02-30 00:00:00"}',
        b'{"as_of": "2023-01-25 18:13:22", "store": "x"}',
        b"\xff\xfe",
    ],
)
async def test_trigger_rejects_bad_bodies(
    client: TestClient[Any, Any], pool: asyncpg.Pool, body: bytes
) -> None:
    before = await pool.fetchval("SELECT count(*) FROM reports")
    response = await client.post(
        "/trigger_report", data=body, headers={"Content-Type": "application/json"}
    )
    await assert_error(response, 400)
    assert await pool.fetchval("SELECT count(*) FROM reports") == before


async def test_oversized_body_is_413(client: TestClient[Any, Any]) -> None:
    body = b'{"as_of": "' + b" " * (CLIENT_MAX_SIZE + 10) + b'"}'
    response = await client.post("/trigger_report", data=body)
    error = await assert_error(response, 413)
    assert str(CLIENT_MAX_SIZE) in error["error"]


@pytest.mark.parametrize(
    "query", ["", "?report_id=", "?report_id=nope", "?report_id=123e4567-e89b-12d3-a456"]
)
async def test_get_report_bad_id_is_400(client: TestClient[Any, Any], query: str) -> None:
    await assert_error(await client.get(f"/get_report{query}"), 400)


async def test_get_report_unknown_id_is_404(client: TestClient[Any, Any]) -> None:
    response = await client.get("/get_report", params={"report_id": str(uuid.uuid4())})
    await assert_error(response, 404)


async def test_wrong_method_is_405(client: TestClient[Any, Any]) -> None:
    response = await client.get("/trigger_report")
    await assert_error(response, 405)
    assert "POST" in response.headers["Allow"]
    response = await client.post("/get_report")
    await assert_error(response, 405)
    await assert_error(await client.delete("/healthz"), 405)


async def test_unknown_path_is_404(client: TestClient[Any, Any]) -> None:
    await assert_error(await client.get("/reports/latest"), 404)


async def test_report_states(client: TestClient[Any, Any], pool: asyncpg.Pool) -> None:
    running, complete, failed = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    as_of_us = parse_as_of("2023-01-25 18:13:22.47922")
    for report_id in (running, complete, failed):
        await db_reports.create_report(pool, report_id, None)
        started = await db_reports.start_report(pool, report_id)
        assert started is not None
        assert started.requested_as_of_us is None
        record = await db_reports.get_report(pool, report_id)
        assert record is not None
        assert started.started_at == record.started_at  # the mark's own time, read back

    response = await client.get("/get_report", params={"report_id": str(running)})
    assert response.status == 200
    assert await json_of(response) == {"status": "Running", "report_id": str(running)}

    await db_reports.complete_report(pool, complete, as_of_us, CSV_TEXT, 1)
    response = await client.get("/get_report", params={"report_id": str(complete)})
    assert response.status == 200
    assert response.content_type == "text/csv"
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="report-{complete}.csv"'
    )
    assert response.headers["X-Report-As-Of"] == "2023-01-25 18:13:22.479220 UTC"
    assert await response.text() == CSV_TEXT

    await db_reports.fail_report(pool, failed, "no poll ingested yet")
    response = await client.get("/get_report", params={"report_id": str(failed)})
    assert response.status == 200
    body = await json_of(response)
    assert body["status"] == "Failed"
    assert body["error"] == "no poll ingested yet"

    # A finished or unknown report is not started again; a requested time comes back typed.
    for finished in (complete, failed, uuid.uuid4()):
        assert await db_reports.start_report(pool, finished) is None
    asked = uuid.uuid4()
    await db_reports.create_report(pool, asked, as_of_us)
    started = await db_reports.start_report(pool, asked)
    assert started is not None
    assert started.requested_as_of_us == as_of_us
    record = await db_reports.get_report(pool, asked)
    assert record is not None
    assert record.status is db_reports.ReportStatus.RUNNING


async def test_internal_error_is_500_json_without_details(
    client: TestClient[Any, Any], pool: asyncpg.Pool
) -> None:
    broken = uuid.uuid4()  # Complete, but its CSV is missing: the handler refuses it
    await pool.execute(
        "INSERT INTO reports (report_id, status, as_of_us) VALUES ($1, 'Complete', 1)", broken
    )
    response = await client.get("/get_report", params={"report_id": str(broken)})
    body = await assert_error(response, 500)
    assert body["error"] == "internal server error"
    assert "RuntimeError" not in (await response.text())


async def test_bearer_token(api_settings: Settings) -> None:
    token = "s3cret-token"
    async with serve(dataclasses.replace(api_settings, api_token=token)) as secured:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": token}):
            response = await secured.post("/trigger_report", headers=headers)
            await assert_error(response, 401)
            assert response.headers["WWW-Authenticate"] == "Bearer"
            response = await secured.get(
                "/get_report", params={"report_id": str(uuid.uuid4())}, headers=headers
            )
            await assert_error(response, 401)
        assert (await secured.get("/healthz")).status == 200  # open to probes
        good = {"Authorization": f"Bearer {token}"}
        response = await secured.post("/trigger_report", headers=good)
        assert response.status == 202
        report_id = (await json_of(response))["report_id"]
        response = await secured.get("/get_report", params={"report_id": report_id}, headers=good)
        assert response.status == 200


async def test_database_outage_is_503(api_settings: Settings) -> None:
    parts = urlsplit(api_settings.database_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    settings = dataclasses.replace(
        api_settings,
        database_url=proxy.url(api_settings.database_url),
    )
    async with serve(settings) as proxied:
        assert (await proxied.get("/healthz")).status == 200
        await proxy.cut()
        response = await proxied.get("/healthz")
        assert response.status == 503
        assert (await json_of(response))["status"] == "unavailable"
        response = await proxied.get("/get_report", params={"report_id": str(uuid.uuid4())})
        await assert_error(response, 503)
        await assert_error(await proxied.post("/trigger_report"), 503)


async def test_triggers_are_refused_while_the_queue_is_full(
    api_settings: Settings, pool: asyncpg.Pool
) -> None:
    # No worker runs in this module: every report triggered here stays Pending.
    already_open = await pool.fetchval(
        "SELECT count(*) FROM reports WHERE status IN ('Pending', 'Running')"
    )
    limit = already_open + 2
    async with serve(dataclasses.replace(api_settings, max_open_reports=limit)) as bounded:
        accepted = [await bounded.post("/trigger_report") for _ in range(2)]
        assert [response.status for response in accepted] == [202, 202]
        refused = await bounded.post("/trigger_report")
        body = await assert_error(refused, 429)
        assert str(limit) in body["error"]
        assert refused.headers["Retry-After"] == "2"
        assert (
            await pool.fetchval(
                "SELECT count(*) FROM reports WHERE status IN ('Pending', 'Running')"
            )
            == limit
        )
        # One report finishes: there is room for exactly one more.
        finished = uuid.UUID((await json_of(accepted[0]))["report_id"])
        await db_reports.fail_report(pool, finished, "done for the test")
        assert (await bounded.post("/trigger_report")).status == 202
        await assert_error(await bounded.post("/trigger_report"), 429)


REPORT_CSV = (
    "store_id,uptime_last_hour,uptime_last_day,uptime_last_week,"
    "downtime_last_hour,downtime_last_day,downtime_last_week\n"
    "a-store,60.00,12.50,80.25,0.00,3.50,19.75\n"
    "b-store,0.00,0.00,1.01,60.00,24.00,100.99\n"
)


async def complete_report(pool: asyncpg.Pool, csv_text: str) -> uuid.UUID:
    report_id = uuid.uuid4()
    await db_reports.create_report(pool, report_id, None)
    await db_reports.start_report(pool, report_id)
    await db_reports.complete_report(
        pool, report_id, parse_as_of("2023-01-25 18:13:22"), csv_text, csv_text.count("\n") - 1
    )
    return report_id


async def test_report_formats(client: TestClient[Any, Any], pool: asyncpg.Pool) -> None:
    import io

    import pyarrow.parquet as pq

    report_id = await complete_report(pool, REPORT_CSV)
    query = {"report_id": str(report_id)}

    response = await client.get("/get_report", params={**query, "format": "json"})
    assert response.status == 200
    assert response.headers["Content-Disposition"].endswith(f'report-{report_id}.json"')
    body = await json_of(response)
    assert body["as_of"] == "2023-01-25 18:13:22.000000 UTC"
    assert body["columns"][0] == "store_id"
    # stored without its exact sums: business and unobserved time are left out, with why
    assert "exact sums" in body["coverage_missing"]
    assert body["rows"] == [
        {
            "store_id": "a-store",
            "uptime_last_hour": 60.0,
            "uptime_last_day": 12.5,
            "uptime_last_week": 80.25,
            "downtime_last_hour": 0.0,
            "downtime_last_day": 3.5,
            "downtime_last_week": 19.75,
        },
        {
            "store_id": "b-store",
            "uptime_last_hour": 0.0,
            "uptime_last_day": 0.0,
            "uptime_last_week": 1.01,
            "downtime_last_hour": 60.0,
            "downtime_last_day": 24.0,
            "downtime_last_week": 100.99,
        },
    ]

    response = await client.get("/get_report", params={**query, "format": "parquet"})
    assert response.status == 200
    assert response.content_type == "application/vnd.apache.parquet"
    table = pq.read_table(io.BytesIO(await response.read()))
    assert table.column_names == body["columns"]
    assert table.to_pylist() == body["rows"]
    assert table.schema.metadata[b"storemon.report_id"] == str(report_id).encode()

    # gzip when asked for (the client decompresses; the header shows what travelled)
    for fmt, expected in (("csv", REPORT_CSV), ("json", None)):
        response = await client.get(
            "/get_report", params={**query, "format": fmt}, headers={"Accept-Encoding": "gzip"}
        )
        assert response.headers["Content-Encoding"] == "gzip"
        if expected is not None:
            assert await response.text() == expected
    response = await client.get("/get_report", params=query, headers={"Accept-Encoding": ""})
    assert "Content-Encoding" not in response.headers
    assert response.content_type == "text/csv"
    assert await response.text() == REPORT_CSV

    body = await assert_error(
        await client.get("/get_report", params={**query, "format": "xlsx"}), 400
    )
    assert "csv, json, parquet" in body["error"]


async def test_csv_is_served_as_stored_gzip_or_plain(
    client: TestClient[Any, Any], pool: asyncpg.Pool
) -> None:
    import gzip

    import aiohttp

    report_id = await complete_report(pool, REPORT_CSV)
    stored = await pool.fetchval("SELECT csv_gzip FROM reports WHERE report_id = $1", report_id)
    assert stored is not None
    assert gzip.decompress(stored) == REPORT_CSV.encode()
    url = str(client.make_url("/get_report"))
    query = {"report_id": str(report_id)}
    async with aiohttp.ClientSession(auto_decompress=False) as raw:
        # a client that accepts gzip gets the stored bytes themselves
        async with raw.get(url, params=query, headers={"Accept-Encoding": "gzip"}) as response:
            assert response.status == 200
            assert response.headers["Content-Encoding"] == "gzip"
            assert await response.read() == stored
        # one that does not gets the CSV in plain text
        async with raw.get(url, params=query, headers={"Accept-Encoding": "identity"}) as response:
            assert "Content-Encoding" not in response.headers
            assert await response.read() == REPORT_CSV.encode()

        # A report stored as text before migration 0016 is still served, both ways.
        old = await complete_report(pool, REPORT_CSV.replace("a-store", "old-store"))
        await pool.execute(
            "UPDATE reports SET csv = $2, csv_gzip = NULL WHERE report_id = $1",
            old,
            REPORT_CSV.replace("a-store", "old-store"),
        )
        old_query = {"report_id": str(old), "format": "json"}
        async with raw.get(url, params=old_query, headers={"Accept-Encoding": "gzip"}) as response:
            assert response.headers["Content-Encoding"] == "gzip"
            rows = orjson.loads(gzip.decompress(await response.read()))["rows"]
            assert rows[0]["store_id"] == "old-store"
        old_query["format"] = "csv"
        async with raw.get(url, params=old_query, headers={"Accept-Encoding": "gzip"}) as response:
            assert gzip.decompress(await response.read()).decode().startswith("store_id,")
        async with raw.get(url, params=old_query, headers={"Accept-Encoding": ""}) as response:
            assert "Content-Encoding" not in response.headers
            assert "old-store,60.00" in await response.text()


async def test_wait_answers_when_the_report_finishes(
    client: TestClient[Any, Any], pool: asyncpg.Pool
) -> None:
    from storemon.web.keys import FINISHED

    finished = client.app[FINISHED]  # the application the test server runs
    report_id = uuid.uuid4()
    await db_reports.create_report(pool, report_id, None)
    await db_reports.start_report(pool, report_id)
    query = {"report_id": str(report_id), "wait": "20"}
    waiting = asyncio.ensure_future(client.get("/get_report", params=query))
    await asyncio.sleep(0.5)
    assert not waiting.done()  # still Running: the request waits
    notified = finished.notified
    await db_reports.complete_report(
        pool, report_id, parse_as_of("2023-01-25 18:13:22"), REPORT_CSV, 2
    )
    async with asyncio.timeout(10):
        response = await waiting
    assert response.status == 200
    assert response.content_type == "text/csv"
    assert await response.text() == REPORT_CSV
    assert finished.notified > notified  # woken by PostgreSQL's notification

    # Failing while waited for: the Failed answer.
    failing = uuid.uuid4()
    await db_reports.create_report(pool, failing, None)
    waiting = asyncio.ensure_future(
        client.get("/get_report", params={"report_id": str(failing), "wait": "20"})
    )
    await asyncio.sleep(0.3)
    await db_reports.fail_report(pool, failing, "no poll ingested yet")
    async with asyncio.timeout(10):
        body = await json_of(await waiting)
    assert body == {"status": "Failed", "report_id": str(failing), "error": "no poll ingested yet"}


async def test_wait_still_answers_running_after_the_wait(
    client: TestClient[Any, Any], pool: asyncpg.Pool
) -> None:
    report_id = uuid.uuid4()
    await db_reports.create_report(pool, report_id, None)
    loop = asyncio.get_running_loop()
    began = loop.time()
    response = await client.get("/get_report", params={"report_id": str(report_id), "wait": "1.5"})
    assert loop.time() - began >= 1.5
    assert await json_of(response) == {"status": "Pending", "report_id": str(report_id)}
    await db_reports.fail_report(pool, report_id, "left by the test")  # not left open
    # A finished report does not wait at all; unknown ones are 404 as without a wait.
    done = await complete_report(pool, REPORT_CSV)
    response = await client.get("/get_report", params={"report_id": str(done), "wait": "30"})
    assert await response.text() == REPORT_CSV
    missing = {"report_id": str(uuid.uuid4()), "wait": "30"}
    await assert_error(await client.get("/get_report", params=missing), 404)


@pytest.mark.parametrize("wait", ["soon", "-1", "30.5", "nan", "inf"])
async def test_bad_wait_is_400(client: TestClient[Any, Any], wait: str) -> None:
    query = {"report_id": str(uuid.uuid4()), "wait": wait}
    body = await assert_error(await client.get("/get_report", params=query), 400)
    assert "wait" in body["error"]


async def test_metrics_endpoint_parses_and_counts(
    client: TestClient[Any, Any], pool: asyncpg.Pool
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    await client.get("/get_report", params={"report_id": str(uuid.uuid4())})  # a 404
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.content_type == "text/plain"
    families = {f.name: f for f in text_string_to_metric_families(await response.text())}

    counts = {
        row["status"]: row["count"]
        for row in await pool.fetch("SELECT status, count(*) FROM reports GROUP BY status")
    }
    reports = {s.labels["status"]: s.value for s in families["storemon_reports"].samples}
    assert reports == {status: counts.get(status, 0) for status in db_reports.ReportStatus}

    requests = {
        (s.labels["route"], s.labels["status"]): s.value
        for s in families["storemon_http_requests"].samples
        if s.name == "storemon_http_requests_total"
    }
    assert requests[("/get_report", "404")] >= 1
    latency = families["storemon_http_request_duration_seconds"]
    assert any(s.labels.get("route") == "/get_report" for s in latency.samples)
    sizes = {s.labels["table"]: s.value for s in families["storemon_table_bytes"].samples}
    assert set(sizes) == {"stores", "store_days", "reports", "dead_letters"}
    assert sizes["reports"] > 0


async def test_report_writes_that_skip_the_flush_wait_leave_the_connection_as_it_was(
    api_settings: Settings,
) -> None:
    """The trigger's insert, the job's start and its completing write commit without
    waiting for the WAL flush (docs/design.md, "Durability of a report's life"); that
    setting is their transaction's alone: the pooled connection's next statements (here,
    all on one connection) still commit synchronously, and every write took effect."""
    single = await connect(api_settings.database_url, max_size=1)
    try:
        report_id = uuid.uuid4()
        assert await db_reports.create_report(single, report_id, None)
        assert await single.fetchval("SHOW synchronous_commit") == "on"
        assert await db_reports.start_report(single, report_id) is not None
        assert await single.fetchval("SHOW synchronous_commit") == "on"
        await db_reports.complete_report(
            single, report_id, parse_as_of("2023-01-25 18:13:22"), CSV_TEXT, 1, wait_flush=False
        )
        assert await single.fetchval("SHOW synchronous_commit") == "on"
        record, stored = await db_reports.get_report_with_body(single, report_id)
        assert record is not None
        assert record.status == db_reports.ReportStatus.COMPLETE
        assert record.attempts == 1
        assert stored is not None
        assert stored.text() == CSV_TEXT
        # Inside a transaction of the caller's, too: only that transaction is affected.
        async with single.acquire() as conn, conn.transaction():
            other = uuid.uuid4()
            await db_reports.create_report(conn, other, None)  # type: ignore[arg-type]
            assert await conn.fetchval("SHOW synchronous_commit") == "off"
        assert await single.fetchval("SHOW synchronous_commit") == "on"
        # Not finished: the body does not come along.
        record, stored = await db_reports.get_report_with_body(single, other)
        assert record is not None
        assert record.status == db_reports.ReportStatus.PENDING
        assert stored is None
        await db_reports.fail_report(single, other, "left by the test")
    finally:
        await single.close()


async def test_the_newest_poll_kept_in_one_row_equals_the_scan_of_the_stores(
    pool: asyncpg.Pool,
) -> None:
    """Migration 0019: the triggers keep ``aggregates_version.newest_poll_us`` equal to
    ``max(newest_poll_us)`` over ``stores`` through inserts, the sink's upserts, a newest
    poll that goes back, deletes and a truncate (all rolled back at the end)."""

    async def agree(conn: Any) -> int | None:
        kept = await conn.fetchval("SELECT newest_poll_us FROM aggregates_version")
        assert kept == await conn.fetchval("SELECT max(newest_poll_us) FROM stores")
        return kept  # type: ignore[no-any-return]

    async def upsert(conn: Any, rows: list[tuple[str, int | None]]) -> None:
        await conn.executemany(
            "INSERT INTO stores (store_id, newest_poll_us) VALUES ($1, $2) ON CONFLICT"
            " (store_id) DO UPDATE SET newest_poll_us = EXCLUDED.newest_poll_us",
            rows,
        )
        await conn.execute(
            "INSERT INTO stores (store_id, newest_poll_us) SELECT * FROM unnest($1::text[],"
            " $2::bigint[]) ON CONFLICT (store_id) DO UPDATE SET"
            " newest_poll_us = EXCLUDED.newest_poll_us",
            [r[0] for r in rows],
            [r[1] for r in rows],
        )

    async with pool.acquire() as conn:
        tr = conn.transaction()
        await tr.start()
        try:
            base = (await agree(conn)) or 1_000_000
            await upsert(conn, [("nt-a", base + 10), ("nt-b", base + 5), ("nt-c", None)])
            assert await agree(conn) == base + 10
            await upsert(conn, [("nt-b", base + 20)])  # a newer poll raises it
            assert await agree(conn) == base + 20
            await upsert(conn, [("nt-a", base + 15)])  # not the top: unchanged
            assert await agree(conn) == base + 20
            await conn.execute(  # the top goes back: counted again
                "UPDATE stores SET newest_poll_us = $1 WHERE store_id = 'nt-b'", base + 12
            )
            assert await agree(conn) == base + 15
            await conn.execute("DELETE FROM stores WHERE store_id = 'nt-a'")
            assert await agree(conn) == max(base + 12, base)
            await conn.execute("TRUNCATE stores CASCADE")
            assert await agree(conn) is None
        finally:
            await tr.rollback()
