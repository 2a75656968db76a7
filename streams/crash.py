"""Crash-only exits shared by the worker and its batching process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def stop_unless_done(what: str) -> AsyncIterator[None]:
    """End the process at once if the work inside fails or is cancelled half-way.

    Faust acknowledges the events of a batch even when the code that handles it raises
    (``take_events`` acks in a ``finally``), and commits acknowledged offsets on shutdown.
    Work left half-done must therefore never be acknowledged: exiting without a commit gets
    the events redelivered, and every write being idempotent makes that safe (crash-only).
    The batching stage uses the same rule for its flushes."""
    try:
        yield
    except asyncio.CancelledError:
        log.warning("stopped while %s: exiting without acknowledging it", what)
        exit_now(0)
    except BaseException:
        log.critical("failed while %s: exiting without acknowledging it", what, exc_info=True)
        exit_now(70)


def exit_now(code: int) -> None:
    logging.shutdown()
    os._exit(code)
