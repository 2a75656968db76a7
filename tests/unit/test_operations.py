"""Operations pieces without services: JSON logs, the report formats, the charting library's
download check, and the worker's metrics collector."""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import tarfile
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from storemon import logs
from storemon.metrics import ReportMetrics, WorkerCollector
from storemon.web import assets, formats

CSV_TEXT = (
    "store_id,uptime_last_hour,uptime_last_day,uptime_last_week,"
    "downtime_last_hour,downtime_last_day,downtime_last_week\n"
    "s1,60.00,1.25,100.50,0.00,0.75,10.01\n"
    's "2",0.00,0.00,0.00,0.00,0.00,0.00\n'
)


# ------------------------------------------------------------------------------ logs


def test_json_log_lines_carry_fields_and_tracebacks() -> None:
    formatter = logs.JsonFormatter()
    record = logging.LogRecord("storemon.x", logging.WARNING, __file__, 1, "took %d s", (3,), None)
    record.report_id = "r-1"  # as logging's extra= would set it
    line = orjson.loads(formatter.format(record))
    assert line["level"] == "WARNING"
    assert line["logger"] == "storemon.x"
    assert line["msg"] == "took 3 s"
    assert line["report_id"] == "r-1"
    assert line["ts"].endswith("+00:00")
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        failed = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    assert "ValueError: boom" in orjson.loads(formatter.format(failed))["exc"]


def test_logging_config_rejects_unknown_formats() -> None:
    assert logs.logging_config("info", "json")["formatters"]["storemon"] == {
        "()": logs.JsonFormatter
    }
    assert logs.logging_config("debug", "text")["root"]["level"] == "DEBUG"
    with pytest.raises(ValueError, match="expected one of text, json"):
        logs.logging_config("info", "xml")


# ------------------------------------------------------------------------------ formats


def test_json_and_parquet_carry_the_csv_numbers() -> None:
    report_id = uuid.uuid4()
    body = orjson.loads(formats.report_json(report_id, "2023-01-25 18:13:22.000000 UTC", CSV_TEXT))
    assert body["report_id"] == str(report_id)
    assert [r["store_id"] for r in body["rows"]] == ["s1", 's "2"']
    assert body["rows"][0]["uptime_last_week"] == 100.5
    assert body["rows"][0]["downtime_last_week"] == 10.01
    table = pq.read_table(io.BytesIO(formats.report_parquet(report_id, "t", CSV_TEXT)))
    assert table.to_pylist() == body["rows"]
    assert str(table.schema.field("store_id").type) == "string"
    assert str(table.schema.field("uptime_last_hour").type) == "double"


def test_a_stored_report_without_the_header_is_refused() -> None:
    with pytest.raises(ValueError, match="header"):
        formats.report_json(uuid.uuid4(), "t", "a,b\n1,2\n")


# ------------------------------------------------------------------------------ assets


def tarball(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_integrity_check() -> None:
    data = b"some tarball"
    good = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    assets.check_integrity(data, good)
    with pytest.raises(assets.AssetError, match="mismatch"):
        assets.check_integrity(data + b"!", good)
    with pytest.raises(assets.AssetError, match="unsupported"):
        assets.check_integrity(data, "sha1-abc")


def test_unpack_writes_only_the_wanted_files(tmp_path: Path) -> None:
    wanted = {name: f"content of {name}".encode() for name in assets.VENDOR_FILES}
    data = tarball({**wanted, "package/../../evil.txt": b"no", "package/README.md": b"no"})
    assets.unpack(data, tmp_path / "vendor")
    assert sorted(p.name for p in (tmp_path / "vendor").iterdir()) == sorted(
        assets.VENDOR_FILES.values()
    )
    assert assets.vendor_ready(tmp_path / "vendor")
    assert not (tmp_path / "evil.txt").exists()
    incomplete = tarball({"package/dist/uPlot.min.css": b"x"})
    with pytest.raises(assets.AssetError, match="missing"):
        assets.unpack(incomplete, tmp_path / "other")


def test_pinned_integrity_is_a_sha512() -> None:
    algorithm, _, digest = assets.UPLOT_INTEGRITY.partition("-")
    assert algorithm == "sha512"
    assert len(base64.b64decode(digest)) == 64


# ------------------------------------------------------------------------------ metrics


@dataclass
class FakeStats:
    events: int = 12
    polls: int = 30
    day_rows: int = 7
    batches: int = 2
    rejected: Counter[tuple[str, str]] = field(
        default_factory=lambda: Counter({("polls", "bad status"): 2, ("hours", "bad day"): 1})
    )
    seconds: dict[str, float] = field(default_factory=lambda: {"computing": 1.5})


def test_worker_collector_reads_its_sources_at_each_scrape() -> None:
    registry = CollectorRegistry()
    stats = FakeStats()
    lag = {("p.polls", 0): 5, ("p.polls", 1): 0}
    registry.register(
        WorkerCollector(
            lambda: stats, lambda: lag, lambda: {"stores": 40}, recovery_rereads=lambda: 3
        )
    )
    reports = ReportMetrics(registry)
    reports.observe("Complete", 0.3)
    reports.observe("Failed", 130.0)

    def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = generate_latest(registry).decode()
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    found = scrape()
    assert found[("storemon_polls_consumed_total", ())] == 30
    assert (
        found[("storemon_records_rejected_total", (("reason", "bad status"), ("source", "polls")))]
        == 2
    )
    assert found[("storemon_consumer_lag", (("partition", "0"), ("topic", "p.polls")))] == 5
    assert found[("storemon_table_keys", (("table", "stores"),))] == 40
    assert found[("storemon_recovery_rereads_total", ())] == 3
    assert found[("storemon_worker_seconds_total", (("activity", "computing"),))] == 1.5
    assert found[("storemon_report_duration_seconds_count", (("status", "Complete"),))] == 1
    assert (
        found[("storemon_report_duration_seconds_bucket", (("le", "0.5"), ("status", "Complete")))]
        == 1
    )
    assert (
        found[("storemon_report_duration_seconds_bucket", (("le", "120.0"), ("status", "Failed")))]
        == 0
    )
    assert found[("storemon_reports_finished_total", (("status", "Failed"),))] == 1
    stats.polls = 45
    lag[("p.polls", 0)] = 0
    again = scrape()
    assert again[("storemon_polls_consumed_total", ())] == 45
    assert again[("storemon_consumer_lag", (("partition", "0"), ("topic", "p.polls")))] == 0


# ------------------------------------------------------------------------------ body cache


async def test_body_cache_renders_once_and_stays_within_its_size() -> None:
    from storemon.web.bodies import BodyCache

    cache = BodyCache(max_bytes=100)
    calls: list[str] = []

    def renderer(text: str) -> Callable[[], Awaitable[bytes]]:
        async def render() -> bytes:
            calls.append(text)
            return text.encode()

        return render

    assert await cache.body(("r1", "csv", False), renderer("a" * 40)) == b"a" * 40
    assert await cache.body(("r1", "csv", False), renderer("other")) == b"a" * 40  # kept
    assert calls == ["a" * 40]
    # another encoding of the same report is another entry
    assert await cache.body(("r1", "csv", True), renderer("b" * 40)) == b"b" * 40
    assert (cache.hits, cache.misses) == (1, 2)
    await cache.body(("r2", "csv", False), renderer("c" * 60))  # evicts the oldest
    assert cache.size_bytes <= 100
    assert cache.get(("r1", "csv", False)) is None
    assert cache.get(("r2", "csv", False)) == b"c" * 60
    await cache.body(("r3", "csv", False), renderer("d" * 500))  # too big to keep
    assert cache.get(("r3", "csv", False)) is None
    assert cache.size_bytes <= 100


def test_accept_encoding_parsing() -> None:
    from storemon.web.app import accepts_gzip

    assert accepts_gzip("gzip, deflate")
    assert accepts_gzip("br;q=1.0, GZIP;q=0.5")
    assert accepts_gzip("*")
    assert not accepts_gzip("gzip;q=0")
    assert not accepts_gzip("deflate, br")
    assert not accepts_gzip("")
    assert not accepts_gzip(None)
