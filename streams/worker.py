"""``storemon worker``: run the Faust stream worker."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import logging.config
import sys

from storemon import logs
from storemon.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--web-port", type=int, default=None, help="port of the worker's web views")
    parser.add_argument("--loglevel", default="info")


def run(args: argparse.Namespace) -> int:
    from faust import Worker

    from storemon import services
    from storemon.streams.app import create_app
    from storemon.streams.topics import TopicMismatch, ensure_topics

    settings = Settings.from_env()
    if args.web_port is not None:
        settings = dataclasses.replace(settings, worker_web_port=args.web_port)
    if not settings.kafka_bootstrap or not settings.database_url:
        settings = services.ensure_up(settings).apply_to(settings)
    try:
        asyncio.run(ensure_topics(settings))
    except TopicMismatch as error:
        print(f"storemon worker: {error}", file=sys.stderr)
        return 2
    log_config = logs.logging_config(args.loglevel, settings.log_format)
    logging.config.dictConfig(log_config)
    app = create_app(settings)
    worker = Worker(app, loglevel=args.loglevel, quiet=True, logging_config=log_config)
    worker.execute_from_commandline()
    return 0
