"""Starting, stopping and inspecting the services of one state dir: the package's API."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from storemon.services.kafka import (
    KAFKA_START_TIMEOUT_S,
    KafkaBackendChoice,
    always,
    begin_kafka,
    kafka_logs,
    kafka_running,
    stop_kafka,
    wait_kafka,
)
from storemon.services.postgres import (
    POSTGRES_START_TIMEOUT_S,
    cluster_of,
    ensure_postgres,
    postmaster,
    purge_cluster,
    stop_postgres,
    stop_unrecorded,
)
from storemon.services.processes import ServiceError, say, split_hostport, tcp_open
from storemon.services.state import EXTERNAL, Paths, load_state, locked, save_state
from storemon.settings import Settings


@dataclass(frozen=True)
class ServiceEndpoints:
    """Where the services answer, and which of them this call started."""

    kafka_bootstrap: str  # "127.0.0.1:19092"
    database_url: str  # "postgresql://storemon@127.0.0.1:15432/storemon"
    kafka_backend: str  # "kafka-4.1.1", "noida-db" or "external"
    postgres_backend: str  # "postgresql-15" or "external"
    started_kafka: bool = False
    started_postgres: bool = False

    @property
    def started_any(self) -> bool:
        return self.started_kafka or self.started_postgres

    def apply_to(self, settings: Settings) -> Settings:
        """A copy of ``settings`` that points at these endpoints."""
        return dataclasses.replace(
            settings, kafka_bootstrap=self.kafka_bootstrap, database_url=self.database_url
        )


@dataclass(frozen=True)
class ServiceStatus:
    name: str  # "kafka" or "postgres"
    backend: str  # as in ServiceEndpoints, or "none" when never started here
    running: bool
    address: str  # bootstrap servers or database URL; "" when never started
    pid: int | None
    log_files: tuple[Path, ...]


@dataclass(frozen=True)
class ServicesStatus:
    state_dir: Path
    kafka: ServiceStatus
    postgres: ServiceStatus

    @property
    def all_running(self) -> bool:
        return self.kafka.running and self.postgres.running


def ensure_up(
    settings: Settings,
    *,
    kafka_backend: KafkaBackendChoice = "auto",
    timeout_s: float | None = None,
) -> ServiceEndpoints:
    """Start (or reuse) the local Kafka and PostgreSQL of ``settings.state_dir``.

    A service configured in ``settings`` (``kafka_bootstrap`` / ``database_url``) is only
    checked, never started. Raises :class:`ServiceError` with the log tail when a start fails.
    """
    paths = Paths.of(settings)
    external_kafka = settings.kafka_bootstrap
    external_db = settings.database_url
    with locked(paths):
        state = load_state(paths)
        taken: set[int] = set()
        wait_for_kafka: Callable[[], None]
        # Ports of the other service stay reserved for it even while it is down.
        if state.kafka is not None and not external_kafka:
            taken.update(p for p in (state.kafka.port, state.kafka.controller_port) if p)
        if state.postgres is not None and not external_db:
            taken.add(state.postgres.port)
        if external_kafka:
            say(f"kafka: using {external_kafka} (STOREMON_KAFKA_BOOTSTRAP), starting none")
            started_kafka = False
            wait_for_kafka = functools.partial(
                wait_kafka, external_kafka, timeout_s or 30.0, always, ()
            )
        else:
            started_kafka, wait_for_kafka = begin_kafka(
                paths, state, kafka_backend, taken, settings.partitions,
                timeout_s or KAFKA_START_TIMEOUT_S,
            )  # fmt: skip
        started_pg = False
        try:
            if external_db:
                say("postgres: using STOREMON_DATABASE_URL, starting none")
            else:
                pg_timeout = timeout_s or POSTGRES_START_TIMEOUT_S
                started_pg = ensure_postgres(paths, state, taken, pg_timeout)
            wait_for_kafka()
        except BaseException:
            # Leave nothing half-started behind: stop what this call started.
            if started_kafka and state.kafka is not None:
                stop_kafka(paths, state.kafka)
            if started_pg and state.postgres is not None:
                stop_postgres(paths, state.postgres)
            save_state(paths, state)
            raise
    kafka_state, pg_state = state.kafka, state.postgres
    return ServiceEndpoints(
        kafka_bootstrap=external_kafka or (kafka_state.bootstrap if kafka_state else ""),
        database_url=external_db or (pg_state.url if pg_state else ""),
        kafka_backend=EXTERNAL if external_kafka else (kafka_state.label if kafka_state else ""),
        postgres_backend=EXTERNAL if external_db else (pg_state.label if pg_state else ""),
        started_kafka=started_kafka,
        started_postgres=started_pg,
    )


async def ensure_up_async(
    settings: Settings, *, kafka_backend: KafkaBackendChoice = "auto"
) -> ServiceEndpoints:
    """:func:`ensure_up` for async code (runs in a worker thread, the loop keeps going)."""
    return await asyncio.to_thread(ensure_up, settings, kafka_backend=kafka_backend)


def down(
    settings: Settings, *, purge: bool = False, kafka: bool = True, postgres: bool = True
) -> None:
    """Stop the services of ``settings.state_dir`` (``purge``: and delete their data).

    Kafka gets SIGTERM, then SIGKILL after 30 s (noida-db: its own ``down``); PostgreSQL gets
    ``pg_ctl stop -m fast``. Services given by the environment are never touched. The Kafka
    jar cache and the logs in the state dir are kept.
    """
    paths = Paths.of(settings)
    if not paths.root.exists():
        return
    with locked(paths):
        state = load_state(paths)
        if kafka and not settings.kafka_bootstrap:
            if state.kafka is not None:
                stop_kafka(paths, state.kafka)
            if purge:
                shutil.rmtree(paths.kafka_dir, ignore_errors=True)
                state.kafka = None
        if postgres and not settings.database_url:
            if state.postgres is not None:
                stop_postgres(paths, state.postgres)
            else:
                stop_unrecorded(paths)
            if purge:
                purge_cluster(paths, state.postgres)
                state.postgres = None
        save_state(paths, state)
        if purge:
            say(f"purged data under {paths.root} (logs kept in {paths.logs})")


def status(settings: Settings) -> ServicesStatus:
    """What runs for ``settings.state_dir`` (environment-given services: reachability only)."""
    paths = Paths.of(settings)
    state = load_state(paths)
    if settings.kafka_bootstrap:
        host, port = split_hostport(settings.kafka_bootstrap)
        kafka = ServiceStatus("kafka", EXTERNAL, tcp_open(host, port),
                              settings.kafka_bootstrap, None, ())  # fmt: skip
    elif state.kafka is not None:
        ks = state.kafka
        up = kafka_running(paths, ks) and tcp_open("127.0.0.1", ks.port)
        kafka = ServiceStatus("kafka", ks.label, up, ks.bootstrap, ks.pid if up else None,
                              kafka_logs(paths, ks))  # fmt: skip
    else:
        kafka = ServiceStatus("kafka", "none", False, "", None, ())
    if settings.database_url:
        parts = settings.database_url.split("@")[-1].split("/")[0]
        host, port = split_hostport(parts if ":" in parts else parts + ":5432")
        pg = ServiceStatus("postgres", EXTERNAL, tcp_open(host, port),
                           mask(settings.database_url), None, ())  # fmt: skip
    elif state.postgres is not None:
        cluster = cluster_of(paths, state.postgres)
        running = postmaster(cluster)
        ps = state.postgres
        pg = ServiceStatus("postgres", ps.label, running is not None,
                           ps.url, running[0] if running else None, (cluster.log,))  # fmt: skip
    else:
        pg = ServiceStatus("postgres", "none", False, "", None, ())
    return ServicesStatus(paths.root, kafka, pg)


def mask(url: str) -> str:
    """``url`` with its password replaced by ``***``."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def resolve_endpoints(settings: Settings) -> ServiceEndpoints:
    """Endpoints to connect to without starting anything: the environment's, else the running
    local services of ``settings.state_dir``. Raises :class:`ServiceError` when neither."""
    paths = Paths.of(settings)
    state = load_state(paths)
    kafka = settings.kafka_bootstrap
    kafka_backend = EXTERNAL
    if not kafka:
        if state.kafka is None or not kafka_running(paths, state.kafka):
            raise ServiceError(
                "no Kafka: run `storemon services up` or set STOREMON_KAFKA_BOOTSTRAP"
            )
        kafka, kafka_backend = state.kafka.bootstrap, state.kafka.label
    db = settings.database_url
    db_backend = EXTERNAL
    if not db:
        if state.postgres is None or postmaster(cluster_of(paths, state.postgres)) is None:
            raise ServiceError(
                "no PostgreSQL: run `storemon services up` or set STOREMON_DATABASE_URL"
            )
        db, db_backend = state.postgres.url, state.postgres.label
    return ServiceEndpoints(kafka, db, kafka_backend, db_backend)
