"""One frozen settings object, read once from the environment.

Every knob of storemon is an environment variable named ``STOREMON_*``; this module is the
only place that reads them. Secrets (the database password, the API token) are masked in
``repr`` so a settings object can be logged safely.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from storemon.aggregates.reach import DEFAULT_LEAD_HOURS, DEFAULT_REACH_HOURS, retention_us
from storemon.aggregates.timebase import HOUR_US

DEFAULT_STATE_DIR = ".state"
_DEFAULT_HOURS = {
    "STOREMON_REPORT_REACH_HOURS": DEFAULT_REACH_HOURS,
    "STOREMON_REPORT_LEAD_HOURS": DEFAULT_LEAD_HOURS,
}


def _non_negative_int(env: Mapping[str, str], name: str) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return _DEFAULT_HOURS[name]
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number of hours, not {raw!r}") from None
    if value < 0:
        raise ValueError(f"{name} must not be negative, not {value}")
    return value


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the system tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def batching_child_by_default() -> bool:
    """The batching stage gets a process of its own where a second core can run it."""
    return usable_cores() >= 2


def _flag(env: Mapping[str, str], name: str, *, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be 1/0, true/false, yes/no or on/off, not {raw!r}")


def _mask_url_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


@dataclass(frozen=True)
class Settings:
    """Runtime configuration. Build it with :meth:`from_env`."""

    # Where local services keep their data and logs, and where reports are written.
    state_dir: Path = Path(DEFAULT_STATE_DIR)
    # Empty means "start a local broker / database with `storemon services up`".
    kafka_bootstrap: str = ""
    database_url: str = field(default="", repr=False)
    topic_prefix: str = "storemon"
    # Partition count of every topic and of every Faust table; the two must match.
    partitions: int = 4
    faust_app_id: str = "storemon"
    worker_web_host: str = "127.0.0.1"
    worker_web_port: int = 6066
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    api_token: str = field(default="", repr=False)
    reports_dir: Path = Path(DEFAULT_STATE_DIR) / "reports"
    # How far before / after the newest poll a report time may lie (the supported range);
    # the history kept is derived from the reach (storemon.aggregates.reach).
    report_reach_hours: int = DEFAULT_REACH_HOURS
    report_lead_hours: int = DEFAULT_LEAD_HOURS
    # The worker's batching stage (streams/batcher.py) writes what it read of a partition
    # as one internal message after this many polls or this many seconds, whichever first.
    # Small, so that the agent's batch is bounded in polls (worker_batch_polls) and yet
    # spans many messages when the live input gives only a few hundred polls per message.
    batch_size: int = 625
    batch_window_s: float = 0.1
    # On, the batching stage runs in a child process of the worker
    # (streams/batcher_process.py), on a core of its own; off, on the worker's event loop.
    # The default is on where the worker may use two cores or more: 1.25x the polls per
    # second on two cores (bench/RESULTS.md, issue 14, session 12); on one core the two
    # processes would only take turns.
    batcher_process: bool = field(default_factory=batching_child_by_default)
    # The ingest agent takes up to worker_batch_polls // batch_size internal messages at
    # once (worker_batch_messages), waiting at most batch_timeout_s to fill them, before it
    # writes aggregates. Under a backlog a batch grows towards this many polls, so a store
    # gets several polls per update: its cost is paid per store and batch (~0.24 ms: day
    # record, PostgreSQL rows, table entry) on top of ~0.03 ms per poll, so the bound sets
    # the most polls per second a worker can take (about 12,500 at 80,000 and 19,000 at
    # 240,000 over 14,000 stores, bench/RESULTS.md session 12).
    worker_batch_polls: int = 240_000
    batch_timeout_s: float = 0.5
    broker_session_timeout_s: float = 10.0
    # A report job that has not finished by then ends Failed (never Running for ever).
    report_timeout_s: float = 120.0
    # How often the worker deletes PostgreSQL rows older than the retention.
    prune_interval_s: float = 600.0
    # A table recovery partition with records left and none for this long is read again
    # (streams/recovery_watch.py); Faust itself warns after 30 s without a record.
    recovery_stall_s: float = 30.0
    # Finished reports (status and CSV) are deleted this long after they were requested.
    report_retention_hours: float = 168.0
    # The API refuses new reports (429) while this many are Pending or Running.
    max_open_reports: int = 100
    # "text" or "json" (one object per line) for every command's log.
    log_format: str = "text"
    # Reports from the worker's in-memory hour index when it owns every partition
    # (streams/report_index.py); off, every report is read from PostgreSQL.
    report_index: bool = True

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.worker_batch_polls < self.batch_size:
            raise ValueError(
                "STOREMON_BATCH_SIZE must be at least 1 and STOREMON_WORKER_BATCH_POLLS at "
                f"least STOREMON_BATCH_SIZE, not {self.batch_size} and {self.worker_batch_polls}"
            )

    @property
    def worker_batch_messages(self) -> int:
        """Internal messages per agent batch: as many full ones as fit worker_batch_polls."""
        return self.worker_batch_polls // self.batch_size

    @property
    def read_ahead_messages(self) -> int:
        """Internal messages Faust may hold for the ingest agent (its stream buffer): two
        agent batches, so what it holds is bounded by 2 x worker_batch_polls polls whatever
        the size of the messages."""
        return max(8, 2 * self.worker_batch_messages)

    def __repr__(self) -> str:
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "database_url":
                value = _mask_url_password(value)
            elif f.name == "api_token":
                value = "***" if value else ""
            shown.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(shown)})"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        if env.get("STOREMON_HORIZON_HOURS", "").strip():
            # Kept history is derived from the reach now; a silently ignored horizon would
            # leave the operator believing in a retention the worker does not apply.
            raise ValueError(
                "STOREMON_HORIZON_HOURS is no longer read: set STOREMON_REPORT_REACH_HOURS "
                "(history kept = reach + 168 h, see docs/semantics.md)"
            )
        if env.get("STOREMON_WORKER_BATCH_MESSAGES", "").strip():
            # The agent's batch is bounded in polls now; a count of messages of any size
            # let a packed backlog put 16 x 5,000 or a live one 16 x ~270 polls in a batch.
            raise ValueError(
                "STOREMON_WORKER_BATCH_MESSAGES is no longer read: set "
                "STOREMON_WORKER_BATCH_POLLS (polls per agent batch; messages = that / "
                "STOREMON_BATCH_SIZE)"
            )
        state_dir = Path(env.get("STOREMON_STATE_DIR", DEFAULT_STATE_DIR))
        return cls(
            state_dir=state_dir,
            kafka_bootstrap=env.get("STOREMON_KAFKA_BOOTSTRAP", ""),
            database_url=env.get("STOREMON_DATABASE_URL", ""),
            topic_prefix=env.get("STOREMON_TOPIC_PREFIX", "storemon"),
            partitions=int(env.get("STOREMON_PARTITIONS", "4")),
            faust_app_id=env.get("STOREMON_APP_ID", "storemon"),
            worker_web_host=env.get("STOREMON_WORKER_WEB_HOST", "127.0.0.1"),
            worker_web_port=int(env.get("STOREMON_WORKER_WEB_PORT", "6066")),
            api_host=env.get("STOREMON_API_HOST", "127.0.0.1"),
            api_port=int(env.get("STOREMON_API_PORT", "8080")),
            api_token=env.get("STOREMON_API_TOKEN", ""),
            reports_dir=Path(env.get("STOREMON_REPORTS_DIR", str(state_dir / "reports"))),
            report_reach_hours=_non_negative_int(env, "STOREMON_REPORT_REACH_HOURS"),
            report_lead_hours=_non_negative_int(env, "STOREMON_REPORT_LEAD_HOURS"),
            batch_size=int(env.get("STOREMON_BATCH_SIZE", "625")),
            batch_window_s=float(env.get("STOREMON_BATCH_WINDOW_S", "0.1")),
            batcher_process=_flag(
                env, "STOREMON_BATCHER_PROCESS", default=batching_child_by_default()
            ),
            worker_batch_polls=int(
                env.get("STOREMON_WORKER_BATCH_POLLS", str(cls.worker_batch_polls))
            ),
            batch_timeout_s=float(env.get("STOREMON_BATCH_TIMEOUT_S", "0.5")),
            broker_session_timeout_s=float(env.get("STOREMON_BROKER_SESSION_TIMEOUT_S", "10")),
            report_timeout_s=float(env.get("STOREMON_REPORT_TIMEOUT_S", "120")),
            prune_interval_s=float(env.get("STOREMON_PRUNE_INTERVAL_S", "600")),
            recovery_stall_s=float(env.get("STOREMON_RECOVERY_STALL_S", str(cls.recovery_stall_s))),
            report_retention_hours=float(env.get("STOREMON_REPORT_RETENTION_HOURS", "168")),
            max_open_reports=int(env.get("STOREMON_MAX_OPEN_REPORTS", "100")),
            log_format=env.get("STOREMON_LOG_FORMAT", "text").strip().lower(),
            report_index=_flag(env, "STOREMON_REPORT_INDEX", default=True),
        )

    @property
    def reach_us(self) -> int:
        return self.report_reach_hours * HOUR_US

    @property
    def lead_us(self) -> int:
        return self.report_lead_hours * HOUR_US

    @property
    def retention_us(self) -> int:
        """History each store keeps before its newest poll: the reach plus one week."""
        return retention_us(self.reach_us)

    def topic(self, name: str) -> str:
        """Full topic name for a logical name such as ``polls``."""
        return f"{self.topic_prefix}.{name}"
