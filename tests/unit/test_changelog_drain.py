"""How long the ingest agent waits for Faust's changelog producer after a batch: down to a
bounded backlog normally, down to nothing while a commit waits for the producer's flush."""

from __future__ import annotations

import asyncio

from storemon.streams.app import drain_changelog


class SendingBuffer:
    """Stands in for Faust's producer buffer: ``size`` messages waiting, one sent per turn
    of the loop by its own task (as the buffer's sender does)."""

    def __init__(self, size: int) -> None:
        self.size = size

    async def send_all(self) -> None:
        while self.size:
            await asyncio.sleep(0.001)
            self.size -= 1


def drained_to(size: int, keep_at_most: int, commit_from: int | None) -> int:
    """The buffer's size when ``drain_changelog`` returns; a commit starts waiting once the
    buffer is down to ``commit_from`` messages (never with None)."""
    buffer = SendingBuffer(size)

    def commit_waiting() -> bool:
        return commit_from is not None and buffer.size <= commit_from

    async def run() -> int:
        sender = asyncio.ensure_future(buffer.send_all())
        await drain_changelog(buffer, keep_at_most, commit_waiting)
        left = buffer.size
        sender.cancel()
        return left

    return asyncio.run(run())


def test_without_a_commit_the_agent_goes_on_once_the_backlog_is_bounded() -> None:
    left = drained_to(200, keep_at_most=50, commit_from=None)
    assert 0 < left <= 50


def test_a_waiting_commit_gets_an_empty_buffer_before_the_next_batch() -> None:
    assert drained_to(200, keep_at_most=50, commit_from=200) == 0


def test_a_commit_that_starts_while_draining_also_gets_an_empty_buffer() -> None:
    assert drained_to(200, keep_at_most=50, commit_from=120) == 0
