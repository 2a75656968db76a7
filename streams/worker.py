"""``storemon worker``: run the Faust stream worker."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import logging
import logging.config
import sys
from typing import Any

from storemon import logs
from storemon.settings import Settings

# The cyclic collector's thresholds for the worker. With Python's defaults (700, 10, 10) a
# 14,000-store worker spent about a third of its ingestion CPU in collections: a batch runs
# for seconds, so its short-lived containers (day records, table writes, messages) outlive
# the young collections, reach the oldest generation and make full passes over the millions
# of objects of the store states frequent. A young generation of 100,000 lets a batch's
# objects die before they are promoted (bench: 7,852 -> 10,292 polls/s, the ingestor alone
# at 14,000 stores; collections off: no faster).
GC_THRESHOLDS = (100_000, 50, 100)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--web-port", type=int, default=None, help="port of the worker's web views")
    parser.add_argument("--loglevel", default="info")


def run(args: argparse.Namespace) -> int:
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
    app = create_app(settings, args.loglevel)
    gc.collect()
    gc.freeze()  # what start-up made (modules, Faust's app) is never scanned again
    gc.set_threshold(*GC_THRESHOLDS)
    faust_worker(app, args.loglevel, log_config).execute_from_commandline()
    return 0


def faust_worker(app: Any, loglevel: str, log_config: dict[str, Any]) -> Any:
    """Faust's worker for ``app``, without its terminal spinner.

    At ``--loglevel warning`` or above, the spinner's set-up lowers the root logger to DEBUG
    (its handler spins on every record), so every debug call of aiokafka and Faust, one per
    changelog message sent among them, built a record: 5-6 % of a 100,000-store fill. The
    worker writes a log, not a terminal."""
    from faust import Worker

    worker = Worker(app, loglevel=loglevel, quiet=True, logging_config=log_config)
    worker.spinner = None
    return worker
