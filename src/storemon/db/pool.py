"""The worker's connection pool, and the errors that mean PostgreSQL is away for a while."""

from __future__ import annotations

import asyncio

import asyncpg

from storemon.db.migrate import connect

# Errors of an outage (a restart, a cut connection): waited out with backoff, never fatal.
DB_OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    ConnectionError,
)


class Database:
    """The worker's connection pool, opened on first use (and again after an outage)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._pool: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()

    async def pool(self) -> asyncpg.Pool:
        async with self._lock:
            if self._pool is None:
                self._pool = await connect(self.dsn, max_size=4)
            return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
