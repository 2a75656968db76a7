"""Prometheus metrics of the worker and the API (``GET /metrics`` on both).

Each process keeps its own :class:`~prometheus_client.CollectorRegistry` (not the library's
global one), so two apps in one test process never share counters. What the worker already
counts for its operator page (:class:`~storemon.streams.ingest.IngestStats`) is read at scrape
time by a collector instead of being counted twice; consumer lag and table sizes are also
read at scrape time, so they are never stale.

Worker: ``storemon_events_consumed_total``, ``storemon_polls_consumed_total`` (rate() of it is
polls per second), ``storemon_records_rejected_total{source,reason}``,
``storemon_aggregate_rows_written_total``, ``storemon_batches_total``,
``storemon_worker_seconds_total{activity}``, ``storemon_consumer_lag{topic,partition}``,
``storemon_table_keys{table}``, ``storemon_recovery_rereads_total`` (changelog partitions a
stalled table recovery read again, streams/recovery_watch.py),
``storemon_report_duration_seconds{status}`` (histogram) and
``storemon_reports_finished_total{status}``, ``storemon_reports_answered_alike_total``; with
the batching stage in its own process, ``storemon_batcher_process_up`` (1 while it runs) and
``storemon_batcher_process_restarts_total``.

API: ``storemon_http_requests_total{route,method,status}``,
``storemon_http_request_duration_seconds{route}``, and, read from PostgreSQL at scrape time,
``storemon_reports{status}``, ``storemon_stores``, ``storemon_newest_poll_timestamp_seconds``
and ``storemon_table_bytes{table}``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

REPORT_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0)
HTTP_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class IngestCounts(Protocol):
    """What the collector reads of the ingestor's statistics."""

    events: int
    polls: int
    day_rows: int
    batches: int

    @property
    def rejected(self) -> Mapping[tuple[str, str], int]: ...

    @property
    def seconds(self) -> Mapping[str, float]: ...


class ChildProcess(Protocol):
    """What the collector reads of a child process the worker watches."""

    restarts: int

    @property
    def running(self) -> bool: ...


class WorkerCollector(Collector):
    """The worker's counters and gauges, read from their sources at each scrape."""

    def __init__(
        self,
        stats: Callable[[], IngestCounts],
        lag: Callable[[], Mapping[tuple[str, int], int]],
        table_keys: Callable[[], Mapping[str, int]],
        batcher_process: ChildProcess | None = None,
        recovery_rereads: Callable[[], int] = lambda: 0,
    ) -> None:
        self._stats = stats
        self._lag = lag
        self._table_keys = table_keys
        self._batcher_process = batcher_process
        self._recovery_rereads = recovery_rereads

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        for name, help_text, value in (
            ("storemon_events_consumed", "Input messages consumed", stats.events),
            ("storemon_polls_consumed", "Polls consumed (a pack counts its polls)", stats.polls),
            ("storemon_aggregate_rows_written", "Store-day rows written", stats.day_rows),
            ("storemon_batches", "Batches of input messages processed", stats.batches),
        ):
            yield CounterMetricFamily(name, help_text, value=value)
        rejected = CounterMetricFamily(
            "storemon_records_rejected", "Records sent to dead letters", labels=["source", "reason"]
        )
        for (source, reason), count in sorted(stats.rejected.items()):
            rejected.add_metric([source, reason], count)
        yield rejected
        seconds = CounterMetricFamily(
            "storemon_worker_seconds", "Where the ingesting agent's time went", labels=["activity"]
        )
        for activity, spent in sorted(stats.seconds.items()):
            seconds.add_metric([activity], spent)
        yield seconds
        lag = GaugeMetricFamily(
            "storemon_consumer_lag",
            "Messages not yet committed per assigned input partition",
            labels=["topic", "partition"],
        )
        for (topic, partition), behind in sorted(self._lag().items()):
            lag.add_metric([topic, str(partition)], behind)
        yield lag
        keys = GaugeMetricFamily(
            "storemon_table_keys", "Keys of each Faust table held by this worker", labels=["table"]
        )
        for table, count in sorted(self._table_keys().items()):
            keys.add_metric([table], count)
        yield keys
        yield CounterMetricFamily(
            "storemon_recovery_rereads",
            "Changelog partitions a stalled table recovery read again",
            value=self._recovery_rereads(),
        )
        child = self._batcher_process
        if child is not None:
            yield GaugeMetricFamily(
                "storemon_batcher_process_up",
                "1 while the worker's batching process runs, 0 while it is restarted",
                value=1 if child.running else 0,
            )
            yield CounterMetricFamily(
                "storemon_batcher_process_restarts",
                "Times the batching process exited and was started again",
                value=child.restarts,
            )


class ReportMetrics:
    """Durations and outcomes of the report jobs a worker ran."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.duration = Histogram(
            "storemon_report_duration_seconds",
            "Report job duration, from start to stored",
            ["status"],
            buckets=REPORT_BUCKETS_S,
            registry=registry,
        )
        self.finished = Counter(
            "storemon_reports_finished", "Report jobs finished", ["status"], registry=registry
        )
        self.shared = Counter(
            "storemon_reports_answered_alike",
            "Pending reports for the same report time answered by another report's job",
            registry=registry,
        )

    def observe(self, status: str, seconds: float) -> None:
        self.duration.labels(status).observe(seconds)
        self.finished.labels(status).inc()


class ApiMetrics:
    """The API's request metrics, and the gauges it refreshes from PostgreSQL per scrape."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "storemon_http_requests",
            "HTTP requests answered",
            ["route", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "storemon_http_request_duration_seconds",
            "HTTP request duration",
            ["route"],
            buckets=HTTP_BUCKETS_S,
            registry=registry,
        )
        self.reports = Gauge(
            "storemon_reports", "Reports kept, by status", ["status"], registry=registry
        )
        self.stores = Gauge(
            "storemon_stores", "Stores with a schedule, zone or poll", registry=registry
        )
        self.newest_poll = Gauge(
            "storemon_newest_poll_timestamp_seconds",
            "Time of the newest poll ingested (Unix seconds)",
            registry=registry,
        )
        self.table_bytes = Gauge(
            "storemon_table_bytes",
            "PostgreSQL table size with indexes and TOAST",
            ["table"],
            registry=registry,
        )

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)
