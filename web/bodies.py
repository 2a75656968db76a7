"""Finished reports never change, so the API renders each (report, format, encoding) once
and keeps the bytes in a least-recently-used cache bounded by size. Under many pollers of
the same reports this saves a read from PostgreSQL and, for the formats converted from the
CSV, a conversion and a gzip run per request, which on a small machine is CPU the worker
needs. The status is still looked up on every request, so a report deleted by retention is
never served from here."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable

BodyKey = tuple[str, str, bool]  # report id (or "as_of@version" for a CSV), format, gzip


class BodyCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[BodyKey, bytes] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def get(self, key: BodyKey) -> bytes | None:
        body = self._entries.get(key)
        if body is None:
            return None
        self._entries.move_to_end(key)
        return body

    def put(self, key: BodyKey, body: bytes) -> None:
        if len(body) > self.max_bytes:
            return  # larger than the whole cache: served, not kept
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= len(old)
        self._entries[key] = body
        self._bytes += len(body)
        while self._bytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= len(evicted)

    async def body(self, key: BodyKey, render: Callable[[], Awaitable[bytes]]) -> bytes:
        """The cached bytes, or ``render()``'s (already in the key's encoding), then kept."""
        cached = self.get(key)
        if cached is not None:
            self.hits += 1
            return cached
        self.misses += 1
        body = await render()
        self.put(key, body)
        return body
