"""Retention of the aggregates in PostgreSQL, and the supported range of report times.

Each store's days are kept from its own cutoff (``reach + 1 week`` before its newest poll,
whole days; see :mod:`storemon.aggregates.reach`), the same cut its worker state applies.
Per store, not from the newest poll of all stores: one store's poll, however far in the
future, never removes another store's history. Besides, a store keeps the last day before
its cutoff that holds a poll: its newest poll there is the anchor, the status of the
instants after the cutoff until the next poll of the same session (a report taken before a
later poll looks it up).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncpg

from storemon.aggregates.reach import ReportRange, supported_range
from storemon.aggregates.timebase import DAY_US

if TYPE_CHECKING:
    from storemon.db import Connection


# The store-days before each store's cutoff (the anchor's day excepted): $1 is the
# retention, $2 a day. Shared by the prune and by the count of what it would remove.
_PRUNABLE = (
    " FROM store_days d, (SELECT store_id, ((newest_poll_us - $1) / $2) * $2 AS cutoff"
    "  FROM stores WHERE newest_poll_us IS NOT NULL) cut"
    " WHERE d.store_id = cut.store_id AND d.day_start_us + $2 <= cut.cutoff"
    # the anchor's day stays: unless a later day before the cutoff holds a poll
    " AND (cardinality(d.poll_ts_us) = 0 OR EXISTS (SELECT 1 FROM store_days e"
    "  WHERE e.store_id = d.store_id AND e.day_start_us > d.day_start_us"
    "  AND e.day_start_us < cut.cutoff AND e.poll_ts_us[1] < cut.cutoff))"
)


async def prune_history(pool: asyncpg.Pool, retention_us: int) -> dict[str, int]:
    """Delete the store-days before each store's cutoff (the anchor's day excepted) and
    record the latest cutoff applied; returns rows deleted per table."""
    async with pool.acquire() as conn, conn.transaction():
        status = await conn.execute(
            "DELETE FROM store_days WHERE (store_id, day_start_us) IN"
            f" (SELECT d.store_id, d.day_start_us {_PRUNABLE})",
            retention_us,
            DAY_US,
        )
        await conn.execute(
            "INSERT INTO retention_mark (pruned_before_us)"
            " SELECT ((max(newest_poll_us) - $1) / $2) * $2 FROM stores"
            " HAVING max(newest_poll_us) IS NOT NULL"
            " ON CONFLICT (only_row) DO UPDATE SET pruned_before_us ="
            " greatest(retention_mark.pruned_before_us, EXCLUDED.pruned_before_us)",
            retention_us,
            DAY_US,
        )
    return {"store_days": int(status.split()[-1])}


async def count_prunable(conn: Connection, retention_us: int) -> int:
    """How many store-days the next prune would delete (0: history is cut everywhere)."""
    found = await conn.fetchval(f"SELECT count(*) {_PRUNABLE}", retention_us, DAY_US)
    return int(found)


async def report_range(conn: Connection, reach_us: int, lead_us: int) -> ReportRange | None:
    """The supported range as the connection's snapshot sees it (None: no poll yet)."""
    row = await conn.fetchrow(
        # kept by the triggers of migration 0019: equal to max(newest_poll_us) over stores
        "SELECT (SELECT newest_poll_us FROM aggregates_version) AS newest,"
        " (SELECT pruned_before_us FROM retention_mark) AS pruned_before"
    )
    assert row is not None
    return supported_range(row["newest"], reach_us, lead_us, row["pruned_before"])
