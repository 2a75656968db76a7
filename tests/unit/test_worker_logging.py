"""The worker's Faust set-up keeps the log levels it was given."""

from __future__ import annotations

import logging

import faust

from storemon import logs
from storemon.streams.worker import faust_worker


def test_a_warning_level_worker_does_not_lower_the_root_logger_to_debug() -> None:
    app = faust.App("storemon-logging-test", broker="kafka://127.0.0.1:1", autodiscover=False)
    worker = faust_worker(app, "warning", logs.logging_config("warning", "text"))
    root = logging.getLogger("storemon-logging-test-root")  # stands in for the root logger
    root.setLevel(logging.WARNING)
    root.addHandler(logging.NullHandler())
    # What mode calls once it has applied the logging configuration.
    worker.on_setup_root_logger(root, logging.WARNING)
    assert root.level == logging.WARNING
    assert not root.isEnabledFor(logging.DEBUG)
    assert len(root.handlers) == 1
