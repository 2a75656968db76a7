"""The one deadline / poll / retry helper (storemon.waiting)."""

from __future__ import annotations

import asyncio
import logging
import random

import pytest

from storemon.waiting import (
    Deadline,
    backoff,
    poll,
    poll_async,
    retry,
    retry_async,
    retry_forever,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_deadline_counts_down_on_its_clock() -> None:
    clock = FakeClock()
    deadline = Deadline(5.0, clock=clock)
    assert deadline.remaining() == 5.0
    assert not deadline.expired
    clock.now += 4.5
    assert deadline.remaining() == pytest.approx(0.5)
    clock.now += 1.0
    assert deadline.expired
    assert deadline.remaining() == 0.0


def test_backoff_is_full_jitter_under_a_growing_capped_ceiling() -> None:
    pauses = backoff(0.1, 1.0, rng=random.Random(3))
    drawn = [next(pauses) for _ in range(200)]
    ceilings = [min(1.0, 0.1 * 2**n) for n in range(200)]
    assert all(0.0 <= p <= c for p, c in zip(drawn, ceilings, strict=True))
    # Jittered: the pauses under the cap are not all equal, and some come close to it.
    capped = drawn[10:]
    assert len(set(capped)) == len(capped)
    assert max(capped) > 0.9
    assert min(capped) < 0.1


def test_poll_returns_the_first_value() -> None:
    answers = iter([None, None, "ready"])
    assert (
        poll(lambda: next(answers), timeout_s=5.0, on_timeout=TimeoutError, first_s=0.001)
        == "ready"
    )


def test_poll_raises_what_on_timeout_builds_after_checking_at_least_once() -> None:
    calls = []

    def never() -> None:
        calls.append(1)

    with pytest.raises(LookupError, match="gave up"):
        poll(never, timeout_s=0.05, on_timeout=lambda: LookupError("gave up"), first_s=0.001)
    assert len(calls) >= 2


def test_poll_lets_the_check_give_up_early() -> None:
    def broken() -> None:
        raise ValueError("worker exited")

    with pytest.raises(ValueError, match="worker exited"):
        poll(broken, timeout_s=5.0, on_timeout=TimeoutError)


def test_retry_retries_only_the_listed_errors() -> None:
    attempts = []

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError("not yet")
        return "done"

    assert retry(flaky, retry_on=(ConnectionError,), timeout_s=5.0, first_s=0.001) == "done"
    assert len(attempts) == 3

    def wrong() -> None:
        attempts.append(1)
        raise KeyError("a bug, not an outage")

    attempts.clear()
    with pytest.raises(KeyError):
        retry(wrong, retry_on=(ConnectionError,), timeout_s=5.0)
    assert len(attempts) == 1


def test_retry_gives_the_last_error_after_the_deadline() -> None:
    attempts = []

    def down() -> None:
        attempts.append(1)
        raise ConnectionError(f"attempt {len(attempts)}")

    with pytest.raises(ConnectionError) as raised:
        retry(down, retry_on=(ConnectionError,), timeout_s=0.05, first_s=0.001, cap_s=0.01)
    assert str(raised.value) == f"attempt {len(attempts)}"
    assert len(attempts) >= 2


async def test_async_poll_and_retry() -> None:
    answers = iter([None, 7])

    async def check() -> int | None:
        return next(answers)

    assert await poll_async(check, timeout_s=5.0, on_timeout=TimeoutError, first_s=0.001) == 7

    attempts = []

    async def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 2:
            raise ConnectionError
        return "ok"

    assert (
        await retry_async(flaky, retry_on=(ConnectionError,), timeout_s=5.0, first_s=0.001) == "ok"
    )

    async def never() -> None:
        return None

    with pytest.raises(TimeoutError):
        await poll_async(never, timeout_s=0.02, on_timeout=TimeoutError, first_s=0.001)


async def test_retry_forever_waits_out_an_outage_with_jittered_growing_pauses(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    pauses: list[float] = []
    real_sleep = asyncio.sleep

    async def recorded_sleep(seconds: float) -> None:
        pauses.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr("storemon.waiting.asyncio.sleep", recorded_sleep)
    attempts = []

    async def down_for_a_while() -> str:
        attempts.append(1)
        if len(attempts) <= 40:  # far past any deadline a caller would set
            raise ConnectionError("database down")
        return "written"

    with caplog.at_level(logging.WARNING, logger="storemon.waiting"):
        result = await retry_forever(
            down_for_a_while, (ConnectionError,), "writing rows", rng=random.Random(4)
        )
    assert result == "written"
    assert len(attempts) == 41
    ceilings = [min(10.0, 0.2 * 2**n) for n in range(40)]
    assert all(0.0 <= p <= c for p, c in zip(pauses, ceilings, strict=True))
    assert len(set(pauses)) == 40  # jittered, never in lock-step
    assert max(pauses) > 5.0  # and they did grow toward the cap
    assert len(caplog.records) == 40
    assert caplog.records[0].getMessage().startswith("writing rows failed (ConnectionError)")


async def test_retry_forever_lets_other_errors_through_at_once() -> None:
    attempts = []

    async def broken() -> None:
        attempts.append(1)
        raise KeyError("a bug, not an outage")

    with pytest.raises(KeyError):
        await retry_forever(broken, (ConnectionError,), "writing rows")
    assert attempts == [1]
