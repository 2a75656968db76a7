"""Waiting for something, the one way the project does it: a deadline, and retries whose
pauses grow exponentially with full jitter (so processes that fail together do not retry
in lock-step).

* :class:`Deadline`: a point on the monotonic clock; ``remaining()`` and ``expired``.
* :func:`backoff`: the pauses, ``random.uniform(0, min(cap, first * factor**n))``.
* :func:`poll` / :func:`poll_async`: call ``check`` until it returns something other than
  ``None``; on the deadline raise what ``on_timeout`` builds.
* :func:`retry` / :func:`retry_async`: call ``action`` until it stops raising one of
  ``retry_on``; on the deadline the last error propagates.
* :func:`retry_forever`: the same without a deadline, for an outage the service waits out
  (the database or broker down); each retry is logged.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

_T = TypeVar("_T")

log = logging.getLogger(__name__)


class Deadline:
    """``seconds`` from now on the monotonic clock."""

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._at = clock() + seconds

    def remaining(self) -> float:
        """Seconds left, never below zero."""
        return max(0.0, self._at - self._clock())

    @property
    def expired(self) -> bool:
        return self._clock() >= self._at


def backoff(
    first_s: float = 0.1,
    cap_s: float = 2.0,
    *,
    factor: float = 2.0,
    rng: random.Random | None = None,
) -> Iterator[float]:
    """Endless pauses: the n-th is uniform in ``[0, min(cap_s, first_s * factor**n)]``."""
    draw = rng or random.Random()
    ceiling = first_s
    while True:
        yield draw.uniform(0.0, ceiling)
        ceiling = min(cap_s, ceiling * factor)


def _pause(deadline: Deadline, pauses: Iterator[float], floor_s: float) -> float:
    # A floor keeps a poll from spinning when the jitter draws ~0 several times in a row.
    return min(deadline.remaining(), max(floor_s, next(pauses)))


def poll(
    check: Callable[[], _T | None],
    *,
    timeout_s: float,
    on_timeout: Callable[[], BaseException],
    first_s: float = 0.05,
    cap_s: float = 1.0,
) -> _T:
    """``check()`` until it returns a value (not ``None``), at least once, at most until
    ``timeout_s``; then ``raise on_timeout()``. ``check`` may raise to give up early."""
    deadline = Deadline(timeout_s)
    pauses = backoff(first_s, cap_s)
    while True:
        result = check()
        if result is not None:
            return result
        if deadline.expired:
            raise on_timeout()
        time.sleep(_pause(deadline, pauses, first_s / 2))


async def poll_async(
    check: Callable[[], Awaitable[_T | None]],
    *,
    timeout_s: float,
    on_timeout: Callable[[], BaseException],
    first_s: float = 0.05,
    cap_s: float = 1.0,
) -> _T:
    """:func:`poll` for a coroutine function."""
    deadline = Deadline(timeout_s)
    pauses = backoff(first_s, cap_s)
    while True:
        result = await check()
        if result is not None:
            return result
        if deadline.expired:
            raise on_timeout()
        await asyncio.sleep(_pause(deadline, pauses, first_s / 2))


def retry(
    action: Callable[[], _T],
    *,
    retry_on: tuple[type[BaseException], ...],
    timeout_s: float,
    first_s: float = 0.1,
    cap_s: float = 2.0,
) -> _T:
    """``action()`` until it returns; errors of ``retry_on`` are retried until ``timeout_s``,
    after which the last one propagates. Other errors propagate at once."""
    deadline = Deadline(timeout_s)
    pauses = backoff(first_s, cap_s)
    while True:
        try:
            return action()
        except retry_on:
            if deadline.expired:
                raise
        time.sleep(_pause(deadline, pauses, 0.0))


async def retry_async(
    action: Callable[[], Awaitable[_T]],
    *,
    retry_on: tuple[type[BaseException], ...],
    timeout_s: float,
    first_s: float = 0.1,
    cap_s: float = 2.0,
) -> _T:
    """:func:`retry` for a coroutine function."""
    deadline = Deadline(timeout_s)
    pauses = backoff(first_s, cap_s)
    while True:
        try:
            return await action()
        except retry_on:
            if deadline.expired:
                raise
        await asyncio.sleep(_pause(deadline, pauses, 0.0))


async def retry_forever(
    action: Callable[[], Awaitable[_T]],
    retry_on: tuple[type[BaseException], ...],
    what: str,
    *,
    first_s: float = 0.2,
    cap_s: float = 10.0,
    rng: random.Random | None = None,
) -> _T:
    """``await action()`` until it returns; errors of ``retry_on`` are logged (as ``what``
    failed) and retried after a backoff pause, with no deadline. Other errors propagate."""
    pauses = backoff(first_s, cap_s, rng=rng)
    while True:
        try:
            return await action()
        except retry_on as error:
            pause = next(pauses)
            log.warning("%s failed (%s); retrying in %.1f s", what, type(error).__name__, pause)
        await asyncio.sleep(pause)
