"""The operator's and owner's views against a live pipeline (real broker, real database, a
worker process, the API in this process): the dashboard pages, checked against the batch
command's report and opened in real headless Chromium (screenshots kept as CI artifacts),
both Prometheus endpoints parsed with the Prometheus client's parser, and `storemon status`.
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import io
import os
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from storemon.aggregates.coverage import coverage, coverage_values
from storemon.aggregates.fleet_summary import FleetSummary
from storemon.aggregates.reach import ReportRange, supported_range
from storemon.aggregates.records import DEFAULT_ZONE
from storemon.aggregates.report import format_hundredths
from storemon.aggregates.timebase import HOUR_US, format_utc, parse_poll_timestamp
from storemon.batch import compute_report, load_dataset
from storemon.db.assemble import assemble_report
from storemon.settings import Settings
from storemon.streams import messages
from storemon.web import assets, dashboard
from storemon.web.app import build_app
from storemon.web.keys import POOL

from .browser import chromium_binary, headless_chromium
from .pipeline import REPO, Pipeline, batch_csv, generate, newest_poll_us, read_messages

pytestmark = [pytest.mark.services, pytest.mark.slow, pytest.mark.timeout(300)]

TOKEN = "dash-board-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ARTIFACTS = Path(os.environ.get("STOREMON_TEST_ARTIFACTS", REPO / "out" / "test-artifacts"))
BAD_POLL = (
    b'{"store_id": "s-bad", "status": "sleeping", "timestamp_utc": "2023-01-20 10:00:00 UTC"}'
)


@dataclasses.dataclass
class Live:
    pipeline: Pipeline
    dataset: Path
    base: str  # the API's address
    report_id: str
    batch: dict[str, list[str]]  # store_id -> the batch report's fields
    polls: list[tuple[str, str, bytes]]
    app: web.Application


@pytest.fixture(scope="module")
async def live(
    service_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Live]:
    tmp = tmp_path_factory.mktemp("dashboard")
    dataset = generate(tmp / "set", stores=40, days=9, seed=41)
    pipeline = await Pipeline.create(service_settings, "dashboard", tmp)
    pipeline.settings = dataclasses.replace(pipeline.settings, api_token=TOKEN)
    server = TestServer(build_app(pipeline.settings), host="127.0.0.1")
    try:
        reference, polls = read_messages(dataset)
        pipeline.start_worker()
        await pipeline.publish([*reference, *polls, (messages.POLLS, "s-bad", BAD_POLL)])
        await pipeline.wait_consumed()
        await pipeline.wait_report_index()
        await server.start_server()
        base = str(server.make_url("")).rstrip("/")
        async with (
            aiohttp.ClientSession(headers=AUTH) as session,
            session.post(f"{base}/trigger_report") as response,
        ):
            assert response.status == 202
            report_id = (await response.json())["report_id"]
        await pipeline.wait_report(uuid.UUID(report_id))
        rows = list(csv.reader(io.StringIO(batch_csv(dataset))))[1:]
        batch = {r[0]: r for r in rows}
        yield Live(pipeline, dataset, base, report_id, batch, polls, server.app)
    finally:
        await server.close()
        await pipeline.close()


async def fetch(live: Live, path: str, **kwargs: Any) -> tuple[int, str, Any]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session,
        session.get(live.base + path, allow_redirects=False, **kwargs) as response,
    ):
        return response.status, (await response.read()).decode(errors="replace"), response.headers


def most_down(batch: dict[str, list[str]], count: int) -> list[str]:
    def key(row: list[str]) -> tuple[float, float, str]:
        return (-float(row[6]), -float(row[5]), row[0])

    return [r[0] for r in sorted(batch.values(), key=key) if float(r[6]) > 0][:count]


# ------------------------------------------------------------------------------ pages


async def test_dashboard_needs_the_token(live: Live) -> None:
    status, _, headers = await fetch(live, "/dashboard", headers=AUTH)
    assert (status, headers["Location"]) == (303, "/dashboard/")
    status, _, headers = await fetch(live, "/dashboard/")
    assert status == 303
    assert headers["Location"] == "/dashboard/login"
    status, body, _ = await fetch(live, "/dashboard/login")
    assert status == 200
    assert 'type="password"' in body
    assert (await fetch(live, "/dashboard/assets/dashboard.js"))[0] == 200  # public

    # unsafe=True: keep cookies of an IP address (the API listens on 127.0.0.1)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        async with browser.post(
            f"{live.base}/dashboard/login", data={"token": "wrong"}, allow_redirects=False
        ) as response:
            assert response.status == 303
            assert response.headers["Location"] == "/dashboard/login?failed=1"
        async with browser.post(
            f"{live.base}/dashboard/login", data={"token": TOKEN}, allow_redirects=False
        ) as response:
            assert response.status == 303
            cookie = response.cookies["storemon_token"]
            assert cookie["httponly"]
            assert cookie["samesite"] == "Strict"
        async with browser.get(f"{live.base}/dashboard/", allow_redirects=False) as response:
            assert response.status == 200  # the cookie opens the pages...
        async with browser.get(
            f"{live.base}/get_report", params={"report_id": live.report_id}
        ) as response:
            assert response.status == 200  # ...and the downloads,
        async with browser.post(f"{live.base}/trigger_report") as response:
            assert response.status == 401  # but cannot trigger a report


async def test_fleet_page_agrees_with_the_batch_report(live: Live) -> None:
    status, body, headers = await fetch(live, "/dashboard/", headers=AUTH)
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert re.search(r'id="kpi-stores">(\d+)<', body).group(1) == str(len(live.batch))  # type: ignore[union-attr]
    up = sum(float(r[3]) for r in live.batch.values())
    down = sum(float(r[6]) for r in live.batch.values())
    shown = float(re.search(r'id="kpi-week">([\d.]+) %<', body).group(1))  # type: ignore[union-attr]
    assert abs(shown - 100 * up / (up + down)) <= 0.1
    table = body[body.index('id="worst-stores"') :]
    listed = re.findall(r'<a href="/dashboard/stores/[^"]+">([^<]+)</a>', table)
    assert listed == most_down(live.batch, 15)
    # The heatmap: a row per UTC day of the week, 24 hours each, every hour labelled.
    heatmap = body[body.index('id="heatmap"') : body.index("</table>", body.index('id="heatmap"'))]
    rows = heatmap.count("<tr>") - 1
    assert 7 <= rows <= 8
    assert heatmap.count("<td") == 24 * rows
    assert heatmap.count(" up") == 168  # the week's hours; the rest lie outside it
    # The fleet's unobserved business time of the week, as the core sums it.
    data = load_dataset(live.dataset)
    assert data.newest_poll_us is not None
    unobserved = sum(
        coverage(
            row,
            data.schedules.get(row.store_id, ()),
            data.zones.get(row.store_id, DEFAULT_ZONE),
            data.newest_poll_us,
        ).unobserved_us[2]
        for row in compute_report(data, data.newest_poll_us)
    )
    shown_unobserved = re.search(r'id="kpi-unobserved">([\d.]+) h<', body).group(1)  # type: ignore[union-attr]
    assert shown_unobserved == format_hundredths(unobserved, HOUR_US)


async def fleet_from_the_worker(live: Live) -> tuple[FleetSummary, str]:
    """The page's numbers as a rebuild asks the worker for them (again while a restarted
    worker's report consumer joins its group)."""
    kept = dashboard.stored_pairs_sessions()
    for _ in range(12):
        found = await dashboard.fleet_from_the_worker(live.app, kept)
        if found is not None:
            summary, _, how = found
            if how == "worker":
                assert not kept.by_pair  # the page computed no business time itself
            return summary, how
    raise AssertionError("the worker never answered the fleet page's report")


async def test_fleet_page_from_the_worker_equals_the_database(live: Live) -> None:
    """The fleet page asks the worker for a report with everything the page shows, computed
    in the same job from its in-memory index (with the schedules and zones it mirrors from
    the sink's writes) and stored as one row. Every number equals what the page's PostgreSQL
    path computes from the same data (report rows assembled from PostgreSQL, the fleet's
    hours summed by it, business time from the stores table's schedules), and so does the
    page rendered from it. (After a restart too: see the last test of this module.)"""
    await fleet_page_from_the_worker_equals_the_database(live)
    _, page, _ = await fetch(live, "/dashboard/", headers=AUTH)
    assert "Summed by the worker&#39;s in-memory index" in page


async def fleet_page_from_the_worker_equals_the_database(live: Live) -> None:
    pool = live.app[POOL]
    data = load_dataset(live.dataset)
    allowed = ReportRange(0, 1)
    from_worker, how = await fleet_from_the_worker(live)
    assert how == "worker"
    assembled = await assemble_report(pool, from_worker.as_of_us, with_digest=True)
    kept = dashboard.stored_pairs_sessions()
    for _ in range(2):  # sessions computed, then kept
        from_database = await dashboard.summary_of_report(pool, assembled, kept)
        assert from_worker == from_database
    assert dashboard.fleet_context(from_worker, allowed, 168, 2) == dashboard.fleet_context(
        from_database, allowed, 168, 2
    )
    # Nothing trivially equal: a week of hours, stores down, business time known.
    assert from_worker.store_count == len(live.batch)
    assert len(from_worker.hours) == 168
    assert any(up for _, up, _ in from_worker.hours)
    assert [r.store_id for r in from_worker.worst] == most_down(live.batch, 15)
    # Business and unobserved time as the core computes them store by store.
    expected = [
        coverage(
            row,
            data.schedules.get(row.store_id, ()),
            data.zones.get(row.store_id, DEFAULT_ZONE),
            from_worker.as_of_us,
        )
        for row in assembled.rows
    ]
    assert from_worker.coverage is not None
    for w in range(3):
        assert from_worker.coverage.business_us[w] == sum(c.business_us[w] for c in expected)
        assert from_worker.coverage.unobserved_us[w] == sum(c.unobserved_us[w] for c in expected)
    assert from_worker.coverage.business_us[2] > 0


async def test_store_page_shows_its_report_row_and_its_week(live: Live) -> None:
    store_id = most_down(live.batch, 1)[0]
    status, body, _ = await fetch(live, f"/dashboard/stores/{store_id}", headers=AUTH)
    assert status == 200
    numbers = body[
        body.index('id="store-numbers"') : body.index("</table>", body.index('id="store-numbers"'))
    ]
    cells = re.findall(r"<td>([\d.]+) (?:min|h)</td>", numbers)
    row = live.batch[store_id]
    # report columns: up hour, day, week, down hour, day, week; the table: up, down,
    # business and unobserved time per window, the last two from the core's sessions
    data = load_dataset(live.dataset)
    assert data.newest_poll_us is not None
    core_row = next(r for r in compute_report(data, data.newest_poll_us) if r.store_id == store_id)
    found = coverage(
        core_row,
        data.schedules.get(store_id, ()),
        data.zones.get(store_id, DEFAULT_ZONE),
        data.newest_poll_us,
    )
    extra = [f"{v:.2f}" for v in coverage_values(found)]
    assert cells == [
        *(row[1], row[4], extra[0], extra[3]),
        *(row[2], row[5], extra[1], extra[4]),
        *(row[3], row[6], extra[2], extra[5]),
    ]
    # the range of report times the API answers is on the fleet page
    _, fleet, _ = await fetch(live, "/dashboard/", headers=AUTH)
    allowed = supported_range(data.newest_poll_us, 168 * HOUR_US, 2 * HOUR_US)
    assert allowed is not None
    assert f'id="range-earliest">{format_utc(allowed.earliest_us)}<' in fleet
    assert f'id="range-latest">{format_utc(allowed.latest_us)}<' in fleet

    chart = orjson.loads(re.search(r'id="chart-data">(.*?)</script>', body, re.S).group(1))  # type: ignore[union-attr]
    assert chart["hi"] - chart["lo"] == 7 * 24 * 3600
    # The bands are the report's week: the window is exactly the chart's span.
    up_s = sum(b - a for a, b, active in chart["runs"] if active)
    down_s = sum(b - a for a, b, active in chart["runs"] if not active)
    assert abs(up_s / 3600 - float(row[3])) <= 0.01 + len(chart["runs"]) / 3600
    assert abs(down_s / 3600 - float(row[6])) <= 0.01 + len(chart["runs"]) / 3600
    # Every poll of the week is a dot.
    lo_us, hi_us = chart["lo"] * 1_000_000, (chart["hi"] + 1) * 1_000_000
    stamps = [
        parse_poll_timestamp(orjson.loads(value)["timestamp_utc"])
        for _, key, value in live.polls
        if key == store_id
    ]
    expected = sorted(ts // 1_000_000 for ts in stamps if lo_us <= ts < hi_us)
    assert sorted(t for t, _ in chart["polls"]) == expected
    for a, b in chart["sessions"]:
        assert chart["lo"] <= a < b <= chart["hi"]

    status, body, _ = await fetch(live, "/dashboard/stores/no-such-store", headers=AUTH)
    assert status == 404
    assert 'id="not-found"' in body
    status, body, _ = await fetch(live, "/dashboard/stores/%3Cscript%3E", headers=AUTH)
    assert "<script>" not in body.split("</header>", 1)[1].split("<script", 1)[0]


async def test_reports_page_lists_reports_with_downloads(live: Live) -> None:
    status, body, _ = await fetch(live, "/dashboard/reports", headers=AUTH)
    assert status == 200
    assert live.report_id in body
    for fmt in ("csv", "json", "parquet"):
        link = f"/get_report?report_id={live.report_id}&amp;format={fmt}"
        assert link in body
        status, _, headers = await fetch(live, link.replace("&amp;", "&"), headers=AUTH)
        assert status == 200
        assert headers["Content-Disposition"].endswith(f'.{fmt}"')


async def test_assets_are_served_by_fixed_name_only(live: Live) -> None:
    assert assets.vendor_ready(), "run `storemon assets` (scripts/setup does)"
    status, body, headers = await fetch(live, "/dashboard/assets/vendor/uPlot.iife.min.js")
    assert status == 200
    assert headers["Content-Type"].startswith("text/javascript")
    assert "uPlot" in body
    for path in (
        "/dashboard/assets/vendor/package.json",
        "/dashboard/assets/vendor/..%2F..%2Fsettings.py",
        "/dashboard/assets/..%2Fapp.py",
    ):
        assert (await fetch(live, path))[0] == 404, path


# ------------------------------------------------------------------------------ browser


@pytest.mark.skipif(
    chromium_binary() is None and not os.environ.get("STOREMON_REQUIRE_BROWSER"),
    reason="no chromium (scripts/setup installs it; CI requires it)",
)
async def test_pages_render_in_headless_chromium(live: Live, tmp_path: Path) -> None:
    # A store with short business hours and some downtime shows every part of the chart.
    open_hours: dict[str, float] = {}
    with (live.dataset / "menu_hours.csv").open() as handle:
        for row in csv.DictReader(handle):
            start, end = (
                sum(int(p) * f for p, f in zip(row[k].split(":"), (3600, 60, 1), strict=True))
                for k in ("start_time_local", "end_time_local")
            )
            open_hours[row["store_id"]] = open_hours.get(row["store_id"], 0) + (end - start) / 3600
    store_id = min(most_down(live.batch, len(live.batch)), key=lambda s: open_hours.get(s, 168))
    async with headless_chromium(tmp_path / "profile") as page:
        await page.open(f"{live.base}/dashboard/stores/{store_id}", headers=AUTH)
        assert await page.wait_for("document.body.dataset.charts") == "drawn"
        assert await page.evaluate("document.querySelectorAll('#store-chart canvas').length") >= 1
        legend = await page.evaluate("document.querySelector('.legend').innerText")
        assert "business hours" in legend
        assert "poll: active" in legend
        assert await page.evaluate("document.querySelectorAll('.schedule li').length") >= 1
        text = await page.evaluate("document.querySelector('#store-numbers').innerText")
        batch_row = live.batch[store_id]
        assert f"{batch_row[6]} h" in text  # the week's downtime, as in the report
        assert await page.evaluate("document.getElementById('store-id').textContent") == store_id
        shot = await page.screenshot(ARTIFACTS / "store-page.png")
        assert shot.stat().st_size > 10_000

        await page.open(f"{live.base}/dashboard/", headers=AUTH)
        assert await page.wait_for("document.body.dataset.charts") == "drawn"
        cells = await page.evaluate("document.querySelectorAll('#heatmap td').length")
        assert cells >= 7 * 24
        stores = await page.evaluate("document.getElementById('kpi-stores').textContent")
        assert stores == str(len(live.batch))
        await page.screenshot(ARTIFACTS / "fleet-page.png")

        await page.open(f"{live.base}/dashboard/reports", headers=AUTH)
        assert live.report_id in await page.evaluate("document.getElementById('reports').innerText")
        await page.screenshot(ARTIFACTS / "reports-page.png")


# ------------------------------------------------------------------------------ metrics


def families(text: str) -> dict[str, Any]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def sample(family: Any, suffix: str = "", **labels: str) -> float:
    matching = [
        s.value
        for s in family.samples
        if s.name == family.name + suffix and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(matching) == 1, (family.name, labels, family.samples)
    return float(matching[0])


async def test_worker_metrics(live: Live) -> None:
    port = live.pipeline.settings.worker_web_port
    url = f"http://127.0.0.1:{port}/metrics"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        async with session.get(url) as response:
            assert response.status == 401  # the token guards the worker's views too
        for _ in range(100):  # the report request is committed on the next commit tick
            async with session.get(url, headers=AUTH) as response:
                assert response.status == 200
                found = families(await response.text())
            lag = found["storemon_consumer_lag"]
            if lag.samples and sum(s.value for s in lag.samples) == 0:
                break
            await asyncio.sleep(0.2)
    assert {s.labels["topic"] for s in lag.samples} >= {
        live.pipeline.settings.topic(name) for name in messages.INPUT_TOPICS
    }
    assert sum(s.value for s in lag.samples) == 0, lag.samples  # all consumed and committed
    assert sample(found["storemon_polls_consumed"], "_total") == len(live.polls)
    rejected = found["storemon_records_rejected"]
    assert sample(rejected, "_total", source="polls", reason="bad status") == 1
    assert sample(found["storemon_table_keys"], table="stores") == len(live.batch)
    assert sample(found["storemon_aggregate_rows_written"], "_total") > 0
    durations = found["storemon_report_duration_seconds"]
    assert sample(durations, "_count", status="Complete") >= 1
    assert sample(found["storemon_reports_finished"], "_total", status="Complete") >= 1


async def test_api_metrics(live: Live) -> None:
    status, text, headers = await fetch(live, "/metrics")
    assert status == 401
    status, text, headers = await fetch(live, "/metrics", headers=AUTH)
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    found = families(text)
    assert sample(found["storemon_stores"]) == len(live.batch)
    assert sample(found["storemon_reports"], status="Complete") >= 1
    newest = newest_poll_us(live.polls)
    assert sample(found["storemon_newest_poll_timestamp_seconds"]) == newest / 1e6
    assert sample(found["storemon_table_bytes"], table="store_days") > 0
    requests = found["storemon_http_requests"]
    assert sample(requests, "_total", route="/trigger_report", method="POST", status="202") >= 1


# ------------------------------------------------------------------------------ status command


async def test_status_command(live: Live) -> None:
    s = live.pipeline.settings
    env = {
        **os.environ,
        "STOREMON_KAFKA_BOOTSTRAP": s.kafka_bootstrap,
        "STOREMON_DATABASE_URL": s.database_url,
        "STOREMON_TOPIC_PREFIX": s.topic_prefix,
        "STOREMON_APP_ID": s.faust_app_id,
        "STOREMON_WORKER_WEB_PORT": str(s.worker_web_port),
        "STOREMON_API_PORT": live.base.rsplit(":", 1)[1],
        "STOREMON_API_TOKEN": TOKEN,
    }
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "storemon", "status", "--json"],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode()
    status = orjson.loads(done.stdout)
    assert status["kafka"] is True
    assert status["postgres"] is True
    assert status["api"] is True
    assert status["worker"] is True
    assert status["total_lag"] == 0
    assert set(status["lag"]) >= {s.topic(messages.POLLS), s.topic(messages.HOURS)}
    newest = newest_poll_us(live.polls)
    assert status["newest_poll"] == format_utc(newest)
    # the report times the API answers: a week before the newest poll to 2 h after it
    assert status["report_range"] == {
        "earliest_as_of": format_utc(newest - 168 * HOUR_US),
        "latest_as_of": format_utc(newest + 2 * HOUR_US),
        "reach_hours": 168,
        "lead_hours": 2,
    }
    assert status["stores"] == len(live.batch)
    assert status["last_report"]["report_id"] == live.report_id
    assert status["last_report"]["status"] == "Complete"
    # The plain form says the same to a person.
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "storemon", "status"], env=env,
        capture_output=True, timeout=60,
    )  # fmt: skip
    text = done.stdout.decode()
    assert re.search(r"^kafka\s+up", text, re.M)
    assert re.search(r"^lag\s+0 messages", text, re.M)
    assert f"as_of      {format_utc(newest - 168 * HOUR_US)} .. " in text
    assert live.report_id in text


# Last in the module: it restarts the worker, whose counters the metrics test reads.
async def test_fleet_page_after_a_worker_restart_equals_the_database(live: Live) -> None:
    """A restarted worker loads its index from PostgreSQL, schedules and zones included (the
    stores table's JSON): the page's numbers still equal the PostgreSQL path's."""
    live.pipeline.stop_worker()
    live.pipeline.start_worker()
    await live.pipeline.wait_report_index()
    await fleet_page_from_the_worker_equals_the_database(live)
