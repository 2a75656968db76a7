"""Local Kafka and PostgreSQL for development and tests: ``storemon services up|down|status``.

Everything but the PostgreSQL cluster lives under ``settings.state_dir`` (default
``.state/``)::

    services.json          backends, ports, pids and the cluster's folder (see ``state``)
    kafka/server.properties, kafka/log4j2.properties, kafka/data/   (JVM broker)
    kafka/noida/           (data of the noida-db fallback)
    logs/kafka.log         broker log (log4j2), logs/kafka.stdout.log JVM stdout/stderr,
    logs/noida-db.log
    postgres/              the cluster (data/, run/, postgres.log) when not run by root

As root the cluster lives in ``/var/lib/storemon/postgres/<hash of the state dir>/``, where
the ``postgres`` server user can reach it whatever the state dir's parents allow (see
:mod:`storemon.services.postgres`).

The modules: ``processes`` (ports, child processes, log tails), ``state`` (the state dir's
layout, state file and lock), ``kafka`` (the broker and its jars, fetched with the POM shipped
as package data), ``postgres`` (the cluster), ``lifecycle`` (the API below) and ``command``
(the command line).

``STOREMON_KAFKA_BOOTSTRAP`` / ``STOREMON_DATABASE_URL`` (non-empty ``settings.kafka_bootstrap``
/ ``settings.database_url``) mean: use that server, start none.

Python API: :func:`ensure_up`, :func:`down`, :func:`status`, :func:`resolve_endpoints`,
:func:`fetch_kafka_jars`. Each is safe to call from inside a running event loop (the Kafka
readiness probe runs its own loop in a worker thread), and each holds a file lock on the
state dir, so two processes starting the same state dir do not race.
"""

from storemon.services.command import add_arguments, run
from storemon.services.kafka import (
    KafkaBackendChoice,
    fetch_kafka_jars,
    kafka_answers,
    kafka_cache_dir,
    kafka_version,
)
from storemon.services.lifecycle import (
    ServiceEndpoints,
    ServicesStatus,
    ServiceStatus,
    down,
    ensure_up,
    ensure_up_async,
    resolve_endpoints,
    status,
)
from storemon.services.postgres import postgres_bin_dir
from storemon.services.processes import ServiceError
from storemon.services.state import (
    DB_NAME,
    DB_USER,
    EXTERNAL,
    KAFKA_BACKEND_JVM,
    KAFKA_BACKEND_NOIDA,
)

__all__ = [
    "DB_NAME",
    "DB_USER",
    "EXTERNAL",
    "KAFKA_BACKEND_JVM",
    "KAFKA_BACKEND_NOIDA",
    "KafkaBackendChoice",
    "ServiceEndpoints",
    "ServiceError",
    "ServiceStatus",
    "ServicesStatus",
    "add_arguments",
    "down",
    "ensure_up",
    "ensure_up_async",
    "fetch_kafka_jars",
    "kafka_answers",
    "kafka_cache_dir",
    "kafka_version",
    "postgres_bin_dir",
    "resolve_endpoints",
    "run",
    "status",
]
