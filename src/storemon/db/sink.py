"""The worker's sink in PostgreSQL: each batch's store rows, store-days and dead letters
(:class:`SinkBatch`), written idempotently. The report's reads are in :mod:`storemon.db.assemble`.

Every write sets absolute values keyed by a natural key (store), (store, day), so a batch
written twice, or replayed after a crash, changes nothing.
A write goes in one transaction, and the worker puts all of a store's rows in the same
write: a report never sees half of a store's update.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from typing import TYPE_CHECKING, Any, NamedTuple

import asyncpg
import orjson

from storemon.aggregates.state import DayRecord, HourBucket

if TYPE_CHECKING:
    from storemon.db import Connection


class StoreRow(NamedTuple):
    """A ``stores`` row (a tuple: one is made per store and batch, so it must be cheap)."""

    store_id: str
    schedule: Sequence[Sequence[int]]
    zone: str
    first_poll_us: int | None
    newest_poll_us: int | None
    last_poll_us: int | None
    last_active: bool | None
    tail_end_us: int | None
    # The schedule as the row's JSON, when the writer has it already (one per schedule).
    schedule_json: str | None = None


@dataclass
class SinkBatch:
    """Rows to write, deduplicated by key (the last value for a key wins)."""

    stores: dict[str, StoreRow] = field(default_factory=dict)
    days: dict[tuple[str, int], DayRecord] = field(default_factory=dict)
    # The hours whose value changed (not written here: the worker's report index takes
    # them after the write, see streams/report_index.py).
    hours: dict[tuple[str, int], HourBucket] = field(default_factory=dict)
    # (source, reason, detail, record as JSON, partition, offset, index within the message)
    dead_letters: list[tuple[str, str, str, str, int | None, int | None, int]] = field(
        default_factory=list
    )

    def __bool__(self) -> bool:
        return bool(self.stores or self.days or self.dead_letters)


# (table, columns, key columns, SET clause on conflict, array columns and their types).
# The array columns travel as PostgreSQL's text form of an array and are cast in the
# INSERT: asyncpg's binary COPY checks every element of an array against several
# abstract base classes, which cost a live batch's worker more CPU than the rest of its
# write (66 µs of worker CPU for a full store-day row against 37 for the text, with
# the cast done by the server process; bench/sink_arrays.py, bench/RESULTS.md).
_UPSERTS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...], str, dict[str, str]]] = {
    "stores": (
        "stores",
        (
            "store_id",
            "schedule",
            "zone",
            "first_poll_us",
            "newest_poll_us",
            "last_poll_us",
            "last_active",
            "tail_end_us",
        ),
        ("store_id",),
        "schedule = EXCLUDED.schedule, zone = EXCLUDED.zone,"
        " first_poll_us = EXCLUDED.first_poll_us, newest_poll_us = EXCLUDED.newest_poll_us,"
        " last_poll_us = EXCLUDED.last_poll_us, last_active = EXCLUDED.last_active,"
        " tail_end_us = EXCLUDED.tail_end_us, updated_at = now()",
        {},
    ),
    "store_days": (
        "store_days",
        (
            "store_id",
            "day_start_us",
            "up_us",
            "down_us",
            "up_before_us",
            "down_before_us",
            "runs",
            "run_bounds",
            "poll_ts_us",
            "poll_active",
        ),
        ("store_id", "day_start_us"),
        "up_us = EXCLUDED.up_us, down_us = EXCLUDED.down_us,"
        " up_before_us = EXCLUDED.up_before_us, down_before_us = EXCLUDED.down_before_us,"
        " runs = EXCLUDED.runs, run_bounds = EXCLUDED.run_bounds,"
        " poll_ts_us = EXCLUDED.poll_ts_us, poll_active = EXCLUDED.poll_active",
        {
            "up_before_us": "bigint[]",
            "down_before_us": "bigint[]",
            "runs": "bigint[]",
            "run_bounds": "integer[]",
            "poll_ts_us": "bigint[]",
            "poll_active": "boolean[]",
        },
    ),
}


async def _upsert(conn: Connection, kind: str, records: list[tuple[Any, ...]]) -> None:
    if not records:
        return
    table, columns, keys, update, arrays = _UPSERTS[kind]
    # Named after its shape: a connection that held an earlier shape's table keeps it.
    staging = f"staging_{table}_text_arrays" if arrays else f"staging_{table}"
    cols = ", ".join(columns)
    staged = ", ".join(f"{c}::text AS {c}" if c in arrays else c for c in columns)
    unstaged = ", ".join(f"{c}::{arrays[c]}" if c in arrays else c for c in columns)
    # A per-connection staging table: COPY is far faster than row-by-row INSERTs.
    await conn.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {staging} AS SELECT {staged} FROM {table} WITH NO DATA"
    )
    await conn.copy_records_to_table(staging, records=records, columns=list(columns))
    await conn.execute(
        f"INSERT INTO {table} ({cols}) SELECT {unstaged} FROM {staging}"
        f" ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {update}"
    )
    await conn.execute(f"TRUNCATE {staging}")


def sink_records(batch: SinkBatch) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The ``stores`` and ``store_days`` records of a batch, as COPY takes them."""
    stores = [
        (
            s.store_id,
            s.schedule_json if s.schedule_json is not None else orjson.dumps(s.schedule).decode(),
            s.zone,
            s.first_poll_us,
            s.newest_poll_us,
            s.last_poll_us,
            s.last_active,
            s.tail_end_us,
        )
        for s in batch.stores.values()
    ]
    days = [
        (
            store_id,
            day,
            r.up_us,
            r.down_us,
            _int_array(list(accumulate(r.hour_up_us, initial=0))),
            _int_array(list(accumulate(r.hour_down_us, initial=0))),
            _int_array(r.runs),
            _int_array(r.run_bounds),
            _int_array(r.poll_ts_us),
            _bool_array(r.poll_active),
        )
        for (store_id, day), r in batch.days.items()
    ]
    return stores, days


def _int_array(values: list[int]) -> str:
    """PostgreSQL's text form of an integer array: ``{1, 2, 3}``. A list's own ``str`` makes
    it in one pass in C, 1.6x faster than joining each number's ``str`` (the array input
    allows the blank after each comma)."""
    return "{" + str(values)[1:-1] + "}"


_BOOL_TEXT = ("f", "t")


def _bool_array(values: Iterable[bool]) -> str:
    """PostgreSQL's text form of a boolean array: ``{t,f}``."""
    return "{" + ",".join(map(_BOOL_TEXT.__getitem__, values)) + "}"


async def write_batch(pool: asyncpg.Pool, batch: SinkBatch) -> int:
    """Write one batch of changes atomically. Returns the aggregates' version right after
    it (migration 0004): the tables then hold exactly what this version names, as long as
    no other writer touched them."""
    stores, days = sink_records(batch)
    async with pool.acquire() as conn, conn.transaction():
        await _upsert(conn, "stores", stores)
        await _upsert(conn, "store_days", days)
        if batch.dead_letters:
            await conn.executemany(
                "INSERT INTO dead_letters (source, reason, detail, record, kafka_partition,"
                " kafka_offset, record_index) VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7)"
                " ON CONFLICT DO NOTHING",
                batch.dead_letters,
            )
        version: int = await conn.fetchval("SELECT version FROM aggregates_version")
        return version
