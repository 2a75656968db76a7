"""PostgreSQL adapter: schema migrations and the queries of the worker, the report job and
the API. All SQL takes its values as parameters; identifiers are constants of this package."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    import asyncpg
    from asyncpg.pool import PoolConnectionProxy

    # A connection of its own or one borrowed from a pool: the queries take either.
    Connection: TypeAlias = asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]
