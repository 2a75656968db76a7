"""The sink's rows read back from PostgreSQL exactly as the worker wrote them (its array
columns travel as text and are cast by the server, see db/sink.py)."""

from __future__ import annotations

from itertools import accumulate

import pytest

from storemon.aggregates.state import DayRecord
from storemon.aggregates.timebase import DAY_US, HOUR_US
from storemon.db.sink import SinkBatch, StoreRow, write_batch

from .pipeline import Pipeline

pytestmark = [pytest.mark.services, pytest.mark.timeout(120)]

DAY = 1_700_006_400_000_000 // DAY_US * DAY_US


def day_record(seed: int, polls: int) -> DayRecord:
    hour_up = [(seed * 7_919 + h * 104_729) % (HOUR_US + 1) for h in range(24)]
    hour_down = [HOUR_US - up for up in hour_up]
    runs = [v for h in range(polls) for v in (DAY + h * HOUR_US, DAY + h * HOUR_US + 59, h % 2)]
    return DayRecord(
        up_us=sum(hour_up),
        down_us=sum(hour_down),
        hour_up_us=hour_up,
        hour_down_us=hour_down,
        runs=runs,
        run_bounds=[min(h, polls) * 3 for h in range(25)],
        poll_ts_us=[DAY + h * HOUR_US + seed for h in range(polls)],
        poll_active=[(h + seed) % 3 != 0 for h in range(polls)],
    )


def store_row(store_id: str) -> StoreRow:
    return StoreRow(store_id, [[0, 0, 86_400]], "America/Chicago", DAY, DAY, DAY, True, DAY)


async def read_day(pipeline: Pipeline, store_id: str, day: int) -> tuple[object, ...]:
    assert pipeline.pool is not None
    row = await pipeline.pool.fetchrow(
        "SELECT up_us, down_us, up_before_us, down_before_us, runs, run_bounds, poll_ts_us,"
        " poll_active FROM store_days WHERE store_id = $1 AND day_start_us = $2",
        store_id,
        day,
    )
    assert row is not None
    return tuple(row)


def expected(record: DayRecord) -> tuple[object, ...]:
    return (
        record.up_us,
        record.down_us,
        list(accumulate(record.hour_up_us, initial=0)),
        list(accumulate(record.hour_down_us, initial=0)),
        record.runs,
        record.run_bounds,
        record.poll_ts_us,
        record.poll_active,
    )


async def test_store_days_read_back_as_written_and_a_second_write_replaces_them(
    pipeline: Pipeline,
) -> None:
    assert pipeline.pool is not None
    first = {("s-1", DAY): day_record(1, 24), ("s-2", DAY): day_record(2, 0)}
    batch = SinkBatch(stores={s: store_row(s) for s in ("s-1", "s-2")}, days=dict(first))
    await write_batch(pipeline.pool, batch)
    await write_batch(pipeline.pool, batch)  # redelivered: the same rows
    for (store_id, day), record in first.items():
        assert await read_day(pipeline, store_id, day) == expected(record)
    # An empty day comes back as empty arrays, not NULLs.
    assert (await read_day(pipeline, "s-2", DAY))[4:] == ([], [0] * 25, [], [])

    later = day_record(3, 5)
    await write_batch(pipeline.pool, SinkBatch(days={("s-1", DAY): later}))
    assert await read_day(pipeline, "s-1", DAY) == expected(later)
    assert await pipeline.pool.fetchval("SELECT count(*) FROM store_days") == 2
