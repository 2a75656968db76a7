"""The fleet page's numbers: computed on the worker's arrays they equal those summed from a
report's rows (the page's PostgreSQL path), survive the trip through the table, and the
index's business time of many stores equals the core's, store by store."""

from __future__ import annotations

import random

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storemon.aggregates.coverage import PairSessions, business_windows
from storemon.aggregates.fleet_summary import (
    business_of_pairs,
    fleet_coverage_of,
    summary_fields,
    summary_from_fields,
    summary_of_rows,
    summary_of_sums,
)
from storemon.aggregates.hour_index import HourIndex, PairKey, StoreTail, parse_pair
from storemon.aggregates.report import StoreWindows
from storemon.aggregates.schedule import Schedule
from storemon.aggregates.state import StoreState
from storemon.aggregates.timebase import HOUR_US
from storemon.db.sink import SinkBatch, StoreRow
from storemon.streams.report_index import apply_batch, schedule_rows

from .test_core_properties import stores
from .test_hour_index import _publish

# Few distinct values, so that ties in downtime (and zeros) are common.
microseconds = st.sampled_from([0, 1, HOUR_US, 5 * HOUR_US, 5 * HOUR_US + 1, 168 * HOUR_US])
hours = st.lists(
    st.tuples(st.integers(0, 2**40), st.integers(0, 2**32), st.integers(0, 2**32)), max_size=5
)


@st.composite
def fleets(draw: st.DrawFn) -> list[StoreWindows]:
    ids = draw(st.lists(st.text("ab<>é", min_size=1, max_size=4), unique=True, max_size=40))
    return [
        StoreWindows(
            store_id,
            (draw(microseconds), draw(microseconds), draw(microseconds)),
            (draw(microseconds), draw(microseconds), draw(microseconds)),
        )
        for store_id in ids
    ]


def as_sums(rows: list[StoreWindows]) -> np.ndarray:
    return np.array([[*r.up_us, *r.down_us] for r in rows], np.int64).reshape(len(rows), 6)


@settings(max_examples=300, deadline=None)
@given(fleets(), hours, st.integers(0, 20), st.booleans(), st.randoms())
def test_the_summary_on_arrays_equals_the_summary_of_the_rows(  # type: ignore[no-untyped-def]
    rows, week, count, with_business, rng
) -> None:
    """Totals, coverage and the most-down stores (ties broken by id) are the same whether
    summed over row objects or on the arrays of exact sums, in any row order."""
    up = [sum(r.up_us[w] for r in rows) for w in range(3)]
    down = [sum(r.down_us[w] for r in rows) for w in range(3)]
    business = [u + d + rng.randrange(3 * HOUR_US) for u, d in zip(up, down, strict=True)]
    found = fleet_coverage_of(business, up, down) if with_business else None
    expected = summary_of_rows(1234, rows, week, found, count)
    shuffled = list(rows)
    rng.shuffle(shuffled)
    got = summary_of_sums(
        1234,
        [r.store_id for r in shuffled],
        as_sums(shuffled),
        week,
        business if with_business else None,
        count,
    )
    assert got == expected
    assert summary_from_fields(orjson.loads(orjson.dumps(summary_fields(got)))) == expected
    assert all(r.down_us[2] > 0 for r in got.worst)
    assert len(got.worst) == min(count, sum(1 for r in rows if r.down_us[2] > 0))


def test_more_up_and_down_than_business_time_is_an_error() -> None:
    assert fleet_coverage_of([10, 20, 30], [1, 2, 3], [4, 5, 6]).unobserved_us == (5, 13, 21)
    with pytest.raises(ValueError, match="exceed"):
        fleet_coverage_of([10, 20, 30], [1, 2, 30], [4, 5, 6])
    rows = [StoreWindows("a", (1, 2, 3), (4, 5, 6))]
    with pytest.raises(ValueError, match="exceed"):
        summary_of_sums(0, ["a"], as_sums(rows), [], [5, 7, 8])
    with pytest.raises(ValueError, match="match"):
        summary_of_sums(0, ["a", "b"], as_sums(rows), [], None)


def test_business_of_pairs_counts_each_pair_once_per_store() -> None:
    per_pair = np.array([[1, 10, 100], [2, 20, 200], [3, 30, 300]], np.int64)
    assert business_of_pairs(per_pair, np.array([0, 2, 2, 0, 2], np.int64)) == (11, 110, 1100)
    assert business_of_pairs(per_pair, np.zeros(0, np.int64)) == (0, 0, 0)


def key_of(sched: Schedule, zone: str) -> PairKey:
    return tuple((i.weekday, i.start_s, i.end_s) for i in sched), zone


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(stores(), min_size=1, max_size=6),
    st.integers(0, 2**32),
    st.integers(0, 72),
    st.integers(0, 24),
)
def test_the_index_business_time_equals_the_core_store_by_store(  # type: ignore[no-untyped-def]
    fleet, seed, hours_later, hours_on
) -> None:
    """The index keeps each store's schedule and zone (shared pairs counted per store, the
    newest winning); the worker keeps the pairs' sessions over a span a day wider than the
    week, appending new pairs as they come: the fleet's business time at any report time in
    the span is the sum of the core's business time of each store."""
    rng = random.Random(seed)
    index = HourIndex(hours_kept=3 * 168)
    expected_pairs = {}
    for n, (sched, zone, polls, _) in enumerate(fleet):
        store_id = f"store-{n}"
        state = StoreState(store_id, sched, zone)
        _publish(index, state, state.apply_polls(polls))
        # an old schedule first, now and then: the newest one wins
        if rng.random() < 0.3:
            index.apply_schedules([(store_id, (), "UTC")])
        index.apply_schedules([(store_id, *key_of(sched, zone))])
        expected_pairs[store_id] = (sched, zone)
        if rng.random() < 0.4:  # a second store of the same pair
            twin = f"store-{n}-twin"
            index.apply_schedules([(twin, *key_of(sched, zone))])
            expected_pairs[twin] = (sched, zone)
    first_as_of = fleet[0][3] + hours_later * HOUR_US
    as_of = first_as_of + hours_on * HOUR_US  # a later report time inside the span
    parsed = [parse_pair(p) for p in index.pairs]
    cut = rng.randint(0, len(parsed))
    kept = PairSessions.around(first_as_of).extended(parsed[:cut]).extended(parsed[cut:])
    assert kept.covers(as_of)
    assert kept.count == len(index.pairs)
    rows = np.array([index.rows[s] for s in expected_pairs], np.int64)
    found = index.business_windows(rows, kept.business(as_of))
    expected = [business_windows(s, z, as_of) for s, z in expected_pairs.values()]
    assert found == tuple(sum(e[w] for e in expected) for w in range(3))
    # a store whose schedule the index never got: unknown, not zero
    index.apply_tails([StoreTail("never-scheduled", None, None, None, None, None)])
    unknown = index.rows["never-scheduled"]
    rows = np.array([*rows, unknown], np.int64)
    assert index.business_windows(rows, kept.business(as_of)) is None
    with pytest.raises(ValueError, match="span"):
        kept.business(first_as_of + 2 * 24 * HOUR_US)


def test_a_sink_write_carries_the_schedule_and_zone_into_the_index() -> None:
    index = HourIndex(hours_kept=3 * 168)
    rows = [[0, 9 * 3600, 17 * 3600], [1, 9 * 3600, 17 * 3600]]

    def store(store_id: str, schedule: list[list[int]], zone: str) -> StoreRow:
        return StoreRow(store_id, schedule, zone, 1, 1, None, None, None)

    batch = SinkBatch(stores={s: store(s, rows, "Asia/Tokyo") for s in ("a", "b")})
    batch.stores["c"] = store("c", [], "UTC")
    apply_batch(index, batch)
    assert [index.pairs[index.pair[index.rows[s]]] for s in "abc"] == [
        (schedule_rows(rows), "Asia/Tokyo"),
        (schedule_rows(rows), "Asia/Tokyo"),
        ((), "UTC"),
    ]
    assert len(index.pairs) == 2
    apply_batch(index, SinkBatch(stores={"a": store("a", [], "UTC")}))  # a's hours changed
    assert index.pair[index.rows["a"]] == index.pair[index.rows["c"]]
