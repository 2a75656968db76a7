"""The dashboard's pages from its templates, without a database: each page's context built
by the page's own code, rendered through the app's template set-up. Every text from data is
HTML-escaped, so a store id that is markup shows as text on every page that names it."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

import jinja2
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from storemon.aggregates.coverage import Coverage
from storemon.aggregates.fleet_summary import summary_of_rows
from storemon.aggregates.reach import ReportRange
from storemon.aggregates.report import StoreWindows
from storemon.aggregates.schedule import WeeklyInterval
from storemon.aggregates.timebase import DAY_US, HOUR_US, MINUTE_US, parse_as_of
from storemon.db.dashboard import ReportListing, StoreWeek
from storemon.web import dashboard

NASTY = '<script>alert("x")</script>&<b>'
ESCAPED = "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&amp;&lt;b&gt;"
AS_OF = parse_as_of("2023-01-20 12:00:00")


def render(template: str, context: dict[str, Any], *, token: str = "t") -> web.Response:
    app = web.Application()
    dashboard.add_routes(app, token)
    return dashboard.render(make_mocked_request("GET", "/dashboard/", app=app), template, context)


def text_of(response: web.Response) -> str:
    assert response.text is not None
    return response.text


def markup_outside_scripts(page: str) -> str:
    """The page without the contents of its script elements (the chart's JSON)."""
    return re.sub(r"(<script[^>]*>).*?(</script>)", r"\1\2", page, flags=re.S)


def chart_of(page: str) -> Any:
    found = re.search(r'id="chart-data">(.*?)</script>', page, re.S)
    assert found is not None
    return orjson.loads(found.group(1))


def fleet_page(store_ids: list[str]) -> str:
    rows = tuple(
        StoreWindows(
            s,
            (50 * MINUTE_US, 20 * HOUR_US, 100 * HOUR_US),
            (10 * MINUTE_US, HOUR_US, n * HOUR_US + 1),
        )
        for n, s in enumerate(store_ids, 1)
    )
    hours = [(AS_OF - h * HOUR_US, 3 * HOUR_US, HOUR_US) for h in range(168)]
    found = Coverage((HOUR_US, DAY_US, 7 * DAY_US), (0, HOUR_US, 2 * HOUR_US))
    allowed = ReportRange(AS_OF - 168 * HOUR_US, AS_OF + 2 * HOUR_US)
    summary = summary_of_rows(AS_OF, rows, hours, found)
    context = dashboard.fleet_context(summary, allowed, 168, 2)
    return text_of(render("fleet.html", context))


def store_week(store_id: str) -> StoreWeek:
    return StoreWeek(
        store_id,
        "Asia/Tokyo",
        (WeeklyInterval(0, 9 * 3600, 17 * 3600),),
        AS_OF - 30 * DAY_US,
        AS_OF,
        [(AS_OF - DAY_US, AS_OF - DAY_US + 8 * HOUR_US)],
        [(AS_OF - DAY_US, AS_OF - DAY_US + 5 * HOUR_US, True)],
        [(AS_OF - DAY_US + HOUR_US, True), (AS_OF - HOUR_US, False)],
    )


def store_page(store_id: str) -> str:
    row = StoreWindows(store_id, (60 * MINUTE_US, 5 * HOUR_US, 5 * HOUR_US), (0, 0, 3 * HOUR_US))
    found = Coverage((HOUR_US, 8 * HOUR_US, 8 * HOUR_US), (0, 3 * HOUR_US, 0))
    context = dashboard.store_context(store_week(store_id), AS_OF - 7 * DAY_US, AS_OF, row, found)
    return text_of(render("store.html", context))


def test_a_store_id_that_is_markup_is_text_on_every_page_that_names_it() -> None:
    pages = {
        "fleet": fleet_page(["ordinary", NASTY]),
        "store": store_page(NASTY),
        "no such store": text_of(
            render("store_missing.html", {"title": "Store", "store_id": NASTY})
        ),
    }
    for name, page in pages.items():
        assert ESCAPED in page, name
        assert NASTY not in page, name
        assert "<script>alert" not in page, name
        # the only script elements are the page's own
        scripts = re.findall(r"<script[^>]*>", page)
        assert all('src="/dashboard/assets/' in s or 'id="chart-data"' in s for s in scripts), name
    # The link to the store's page carries the id percent-encoded.
    assert (
        '<a href="/dashboard/stores/%3Cscript%3Ealert%28%22x%22%29%3C%2Fscript%3E%26%3Cb%3E">'
        in pages["fleet"]
    )
    assert f'<span id="store-id">{ESCAPED}</span>' in pages["store"]


def test_chart_json_cannot_close_its_script_element() -> None:
    page = store_page("</script><script>alert(1)</script>")
    assert "</script><script>alert" not in page
    inside = re.search(r'id="chart-data">(.*?)</script>', page, re.S)
    assert inside is not None
    assert "<" not in inside.group(1)
    chart = chart_of(page)
    assert chart["hi"] - chart["lo"] == 7 * 24 * 3600
    assert chart["polls"] == [
        [(AS_OF - DAY_US + HOUR_US) // 1_000_000, 1],
        [(AS_OF - HOUR_US) // 1_000_000, 0],
    ]


def test_report_errors_and_statuses_are_escaped() -> None:
    listed = [
        ReportListing(
            uuid.uuid4(),
            "Failed",
            None,
            AS_OF,
            datetime(2023, 1, 20, tzinfo=UTC),
            None,
            None,
            "<i>boom</i>",
        ),
        ReportListing(
            uuid.uuid4(), "Complete", AS_OF, None, datetime(2023, 1, 20, tzinfo=UTC), None, 3, None
        ),
    ]
    page = text_of(
        render("reports.html", {"title": "Reports", "reports": dashboard.report_lines(listed)})
    )
    assert "&lt;i&gt;boom&lt;/i&gt;" in page
    assert "<i>" not in page
    done = str(listed[1].report_id)
    for fmt in ("csv", "json", "parquet"):
        assert f'<a href="/get_report?report_id={done}&amp;format={fmt}">{fmt}</a>' in page
    assert f"report_id={listed[0].report_id}&amp;" not in page  # no downloads of a failure


def test_pages_keep_their_headers_numbers_and_frame() -> None:
    response = render("store_missing.html", {"title": "Store", "store_id": "x"})
    assert response.content_type == "text/html"
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["Cache-Control"] == "no-store"
    assert 'href="/dashboard/logout"' in text_of(response)  # a token is set
    app = web.Application()
    dashboard.add_routes(app, "")
    plain = dashboard.render(
        make_mocked_request("GET", "/", app=app),
        "login.html",
        {"title": "Log in", "failed": True, "logout": False},
    )
    assert "That token is not right." in text_of(plain)
    assert 'type="password"' in text_of(plain)
    assert "logout" not in text_of(plain)

    fleet = fleet_page(["a", "b", "c"])
    assert re.search(r'id="kpi-stores">(\d+)<', fleet).group(1) == "3"  # type: ignore[union-attr]
    assert re.search(r'id="kpi-week">([\d.]+) %<', fleet) is not None
    assert re.search(r'id="kpi-unobserved">([\d.]+) h<', fleet).group(1) == "2.00"  # type: ignore[union-attr]
    listed = re.findall(r'<a href="/dashboard/stores/[^"]+">([^<]+)</a>', fleet)
    assert listed == ["c", "b", "a"]
    heatmap = fleet[
        fleet.index('id="heatmap"') : fleet.index("</table>", fleet.index('id="heatmap"'))
    ]
    rows = heatmap.count("<tr>") - 1
    assert heatmap.count("<td") == 24 * rows
    assert heatmap.count(" up") == 168
    assert len(chart_of(fleet)["x"]) == 168

    store = store_page("s1")
    numbers = store[
        store.index('id="store-numbers"') : store.index(
            "</table>", store.index('id="store-numbers"')
        )
    ]
    assert re.findall(r"<td>([\d.]+) (?:min|h)</td>", numbers) == [
        "60.00", "0.00", "60.00", "0.00",
        "5.00", "0.00", "8.00", "3.00",
        "5.00", "3.00", "8.00", "0.00",
    ]  # fmt: skip
    assert "<li>Mon 09:00\u201317:00</li>" in store
    assert 'id="no-charts"' in store or "uPlot.iife.min.js" in store


@pytest.mark.parametrize("template", ["base.html", "fleet.html", "store.html", "reports.html"])
def test_a_missing_value_is_an_error_not_an_empty_string(template: str) -> None:
    with pytest.raises(jinja2.UndefinedError):
        render(template, {})
