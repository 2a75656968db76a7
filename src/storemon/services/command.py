"""The ``storemon services up|down|status|fetch`` command."""

from __future__ import annotations

import argparse
import shlex
import sys
import time

from storemon.services.kafka import fetch_kafka_jars
from storemon.services.lifecycle import ServicesStatus, down, ensure_up, mask, status
from storemon.services.processes import ServiceError, say
from storemon.services.state import EXTERNAL, KAFKA_BACKEND_JVM, KAFKA_BACKEND_NOIDA
from storemon.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    up = actions.add_parser("up", help="start (or reuse) Kafka and PostgreSQL; prints exports")
    up.add_argument(
        "--kafka-backend", choices=["auto", KAFKA_BACKEND_JVM, KAFKA_BACKEND_NOIDA],
        default="auto", help="auto: the real broker when java (and mvn or cached jars) exist",
    )  # fmt: skip
    up.add_argument("--timeout", type=float, default=None, help="readiness timeout, seconds")
    dn = actions.add_parser("down", help="stop them (SIGTERM/SIGKILL, pg_ctl stop -m fast)")
    dn.add_argument("--purge", action="store_true", help="also delete their data")
    actions.add_parser("status", help="backend, address, pid, up/down; exit 3 if not all up")
    actions.add_parser("fetch", help="only download the Kafka jars into the cache")


def _print_status(report: ServicesStatus) -> None:
    print(f"state dir: {report.state_dir}")
    for item in (report.kafka, report.postgres):
        word = "up" if item.running else "down"
        pid = f"pid {item.pid}" if item.pid else ""
        print(f"{item.name:<9} {word:<5} {item.backend:<14} {item.address:<50} {pid}".rstrip())
        for log in item.log_files:
            print(f"{'':<9} log   {log}")


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    try:
        if args.action == "up":
            started = time.monotonic()
            endpoints = ensure_up(
                settings, kafka_backend=args.kafka_backend, timeout_s=args.timeout
            )
            say(f"all up in {time.monotonic() - started:.1f} s")
            print(f"kafka     {endpoints.kafka_backend:<14} {endpoints.kafka_bootstrap}")
            print(f"postgres  {endpoints.postgres_backend:<14} {mask(endpoints.database_url)}")
            # For the shell: `eval "$(storemon services up | grep ^export)"`.
            if endpoints.kafka_backend != EXTERNAL:
                print(f"export STOREMON_KAFKA_BOOTSTRAP={shlex.quote(endpoints.kafka_bootstrap)}")
            if endpoints.postgres_backend != EXTERNAL:
                print(f"export STOREMON_DATABASE_URL={shlex.quote(endpoints.database_url)}")
            return 0
        if args.action == "down":
            down(settings, purge=args.purge)
            return 0
        if args.action == "fetch":
            print(fetch_kafka_jars())
            return 0
        report = status(settings)
        _print_status(report)
        return 0 if report.all_running else 3
    except ServiceError as exc:
        print(f"storemon services {args.action}: {exc}", file=sys.stderr)
        return 1
