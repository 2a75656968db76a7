"""The database a benchmark left behind, for the scripts that time report assembly on it."""

from __future__ import annotations

import asyncpg

from storemon import services
from storemon.db.migrate import connect
from storemon.settings import Settings


async def open_bench_database(database: str | None) -> asyncpg.Pool:
    """A pool on ``database``, or on the newest ``bench*`` database of the local server."""
    settings = services.resolve_endpoints(Settings.from_env()).apply_to(Settings.from_env())
    if database is None:
        admin = await asyncpg.connect(settings.database_url)
        database = await admin.fetchval(
            "SELECT datname FROM pg_database WHERE datname LIKE 'bench%' ORDER BY oid DESC"
        )
        await admin.close()
    return await connect(settings.database_url.rsplit("/", 1)[0] + f"/{database}")
