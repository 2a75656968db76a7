"""Properties of the core, checked on generated stores (hypothesis)."""

from __future__ import annotations

import random
from bisect import bisect_right

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from storemon.aggregates.reach import retention_us, store_cutoff_us, supported_range
from storemon.aggregates.records import DEFAULT_ZONE, HoursRow
from storemon.aggregates.report import LONGEST_WINDOW_US, WINDOWS
from storemon.aggregates.schedule import ALWAYS_OPEN, Schedule, build_schedule, sessions_between
from storemon.aggregates.state import StoreState
from storemon.aggregates.timebase import DAY_US, HOUR_US, MINUTE_US
from storemon.aggregates.timeline import business_us, dedupe_polls, timeline_runs
from storemon.aggregates.windows import state_windows
from storemon.streams import state_codec

from .corekit import STORE, scratch, utc

ZONES = ["UTC", "America/New_York", "Australia/Sydney", "Asia/Kathmandu", "America/Phoenix"]
# Around DST changes in New York and Sydney, and a quiet week.
BASES = [utc(2024, 3, 12, 9), utc(2024, 11, 5, 3), utc(2024, 4, 9, 17), utc(2024, 1, 20, 12)]

times_of_day = st.integers(min_value=0, max_value=96).map(lambda q: min(q * 900, 86400))
hours_rows = st.lists(
    st.tuples(
        st.integers(0, 6), times_of_day, st.one_of(times_of_day, st.sampled_from([86340, 86399]))
    ),
    max_size=6,
)


@st.composite
def stores(draw: st.DrawFn) -> tuple[Schedule, str, list[tuple[int, bool]], int]:
    zone = draw(st.sampled_from(ZONES))
    base = draw(st.sampled_from(BASES))
    rows = [HoursRow(STORE, d, s if s < 86400 else 0, e) for d, s, e in draw(hours_rows)]
    sched = build_schedule(rows)
    offsets = st.integers(min_value=-10 * DAY_US, max_value=DAY_US)
    polls = draw(st.lists(st.tuples(offsets, st.booleans()), max_size=40))
    as_of = base + draw(st.integers(min_value=-2 * DAY_US, max_value=DAY_US))
    return sched, zone, [(base + o, a) for o, a in polls], as_of


def through_the_tables(state: StoreState) -> StoreState:
    """The state as the worker rebuilds it from its table entries."""
    settings_entry, day_entries = state_codec.encode(state)
    return state_codec.decode(
        state.store_id, settings_entry, day_entries.get, horizon_us=state.horizon_us
    ).state


def _incremental(
    sched: Schedule, zone: str, polls: list[tuple[int, bool]], seed: int
) -> StoreState:
    rng = random.Random(seed)
    delivered = polls + rng.sample(polls, k=len(polls) // 3)  # redelivery
    rng.shuffle(delivered)
    state = StoreState(STORE, sched, zone)
    i = 0
    while i < len(delivered):
        step = rng.randint(1, 5)
        state.apply_polls(delivered[i : i + step])
        i += step
    return state


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stores(), st.integers(0, 2**32))
def test_incremental_state_equals_from_scratch_in_any_order(store, seed) -> None:  # type: ignore[no-untyped-def]
    sched, zone, polls, as_of = store
    assume(any(ts <= as_of for ts, _ in polls))  # otherwise the store is not in the report
    state = _incremental(sched, zone, polls, seed)
    assert state_windows(state, as_of) == scratch(sched, zone, polls, as_of)


@settings(max_examples=150, deadline=None)
@given(stores(), stores(), st.integers(0, 2**32))
def test_replacing_hours_recomputes_the_store(first, second, seed) -> None:  # type: ignore[no-untyped-def]
    sched_a, zone_a, polls, as_of = first
    sched_b, zone_b, _, _ = second
    assume(any(ts <= as_of for ts, _ in polls))
    state = _incremental(sched_a, zone_a, polls, seed)
    state.replace_schedule(sched_b, zone_b)
    assert state_windows(state, as_of) == scratch(sched_b, zone_b, polls, as_of)


@settings(max_examples=300, deadline=None)
@given(stores())
def test_up_plus_down_plus_unobserved_is_business_time(store) -> None:  # type: ignore[no-untyped-def]
    sched, zone, polls, as_of = store
    row = scratch(sched, zone, polls, as_of)
    poll_ts, _ = dedupe_polls(polls)
    used = poll_ts[: bisect_right(poll_ts, as_of)]
    sessions = sessions_between(sched, zone, as_of - LONGEST_WINDOW_US, as_of)
    for i, (length, _) in enumerate(WINDOWS):
        lo = as_of - length
        business = business_us(sessions, lo, as_of)
        unobserved = 0
        for start, end in zip(sessions.starts, sessions.ends, strict=True):
            if not any(start <= ts < end for ts in used):
                unobserved += max(0, min(end, as_of) - max(start, lo))
        assert row.up_us[i] + row.down_us[i] + unobserved == business


def _naive_status(sched: Schedule, zone: str, polls: list[tuple[int, bool]], t: int) -> bool | None:
    """The rule read literally: nearest poll of the same session, ties to the later one."""
    sessions = sessions_between(sched, zone, t, t + 1)
    holding = [(s, e) for s, e in zip(sessions.starts, sessions.ends, strict=True) if s <= t < e]
    if not holding:
        return None
    s, e = holding[0]
    poll_ts, poll_active = dedupe_polls(polls)
    best: tuple[int, int] | None = None
    for k, ts in enumerate(poll_ts):
        if s <= ts < e:
            distance = abs(ts - t)
            # a tie goes to the later poll: prefer it when equally near
            if (
                best is None
                or distance < best[0]
                or (distance == best[0] and ts > poll_ts[best[1]])
            ):
                best = (distance, k)
    return None if best is None else poll_active[best[1]]


@settings(max_examples=200, deadline=None)
@given(
    stores(),
    st.lists(st.integers(min_value=0, max_value=LONGEST_WINDOW_US - 1), min_size=1, max_size=25),
)
def test_timeline_matches_the_rule_read_literally(store, probes) -> None:  # type: ignore[no-untyped-def]
    sched, zone, polls, as_of = store
    every = [(ts, a) for ts, a in polls]
    poll_ts, poll_active = dedupe_polls(every)
    lo = as_of - LONGEST_WINDOW_US
    sessions = sessions_between(sched, zone, lo, as_of + DAY_US)
    runs = timeline_runs(sessions, poll_ts, poll_active, lo, as_of + DAY_US)
    for offset in probes:
        t = lo + offset
        expected = _naive_status(sched, zone, every, t)
        found = [r.active for r in runs if r.start_us <= t < r.end_us]
        assert found == ([] if expected is None else [expected])


@settings(max_examples=100, deadline=None)
@given(stores(), st.integers(0, 2**32))
def test_pruning_keeps_recent_windows_exact(store, seed) -> None:  # type: ignore[no-untyped-def]
    sched, zone, polls, as_of = store
    assume(any(ts <= as_of for ts, _ in polls))
    state = _incremental(sched, zone, polls, seed)
    state.prune(as_of - 8 * DAY_US)
    late = [(as_of - 3 * HOUR_US + 17 * MINUTE_US, False)]
    state.apply_polls(late)
    assert state_windows(state, as_of) == scratch(sched, zone, polls + late, as_of)


@settings(max_examples=100, deadline=None)
@given(stores(), st.integers(0, 2**32))
def test_state_survives_a_round_trip_through_its_table_entries(store, seed) -> None:  # type: ignore[no-untyped-def]
    sched, zone, polls, as_of = store
    state = _incremental(sched, zone, polls, seed)
    state.prune(as_of - 8 * DAY_US)
    again = through_the_tables(state)
    kept = [h for h in state.hours_with_time() if h >= state.cutoff_us]
    assert [h for h in again.hours_with_time() if h >= again.cutoff_us] == kept
    assert [again.hour_totals(h) for h in kept] == [state.hour_totals(h) for h in kept]
    assert [again.bucket(h) for h in kept] == [state.bucket(h) for h in kept]
    assert again.summary() == state.summary()
    assert state_windows(again, as_of) == state_windows(state, as_of)


@settings(max_examples=150, deadline=None)
@given(stores(), st.integers(0, 2**32))
def test_day_records_agree_with_the_hours_and_polls(store, seed) -> None:  # type: ignore[no-untyped-def]
    """What the database gets per store-day: hour totals, the runs of each hour (sliced by
    the bounds) exactly the hour's bucket, and the day's polls."""
    sched, zone, polls, _ = store
    state = _incremental(sched, zone, polls, seed)
    days = {h - h % DAY_US for h in state.hours_with_time()} | {
        ts - ts % DAY_US for ts in state.poll_ts
    }
    for day in days:
        record = state.day_record(day)
        assert len(record.hour_up_us) == len(record.hour_down_us) == 24
        assert len(record.run_bounds) == 25
        assert record.run_bounds[0] == 0
        assert (record.up_us, record.down_us) == state.day_totals(day)
        for h in range(24):
            hour = day + h * HOUR_US
            assert (record.hour_up_us[h], record.hour_down_us[h]) == state.hour_totals(hour)
            flat = record.runs[record.run_bounds[h] : record.run_bounds[h + 1]]
            runs = [(flat[i], flat[i + 1], bool(flat[i + 2])) for i in range(0, len(flat), 3)]
            assert runs == [tuple(r) for r in state.bucket(hour).runs]
        assert list(zip(record.poll_ts_us, record.poll_active, strict=True)) == (
            state.polls_in_range(day, day + DAY_US)
        )


@settings(max_examples=150, deadline=None)
@given(stores(), stores())
def test_day_records_from_an_updates_buckets_equal_recomputed_ones(first, later) -> None:  # type: ignore[no-untyped-def]
    sched, zone, polls, _ = first
    state = StoreState(STORE, sched, zone)
    state.apply_polls(polls)
    changes = state.apply_polls(later[2])
    days = {h - h % DAY_US for h in changes.hours} | set(changes.days)
    for day in days:
        assert state.day_record(day, changes.hours) == state.day_record(day)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stores(), st.integers(0, 2**32))
def test_day_records_taken_between_updates_equal_a_fresh_computation(store, seed) -> None:  # type: ignore[no-untyped-def]
    """As the worker runs: polls arrive a few at a time (any order, some twice), and after
    each update the changed days are recorded, which reuses the runs the state keeps of its
    recent days. Every record equals the one a state given the same polls at once computes
    from scratch."""
    sched, zone, polls, _ = store
    rng = random.Random(seed)
    delivered = polls + rng.sample(polls, k=len(polls) // 4)
    rng.shuffle(delivered)
    state = StoreState(STORE, sched, zone)
    seen: list[tuple[int, bool]] = []
    i = 0
    while i < len(delivered):
        step = delivered[i : i + rng.randint(1, 4)]
        i += len(step)
        seen.extend(step)
        changes = state.apply_polls(step)
        days = {h - h % DAY_US for h in changes.hours} | set(changes.days)
        days |= {ts - ts % DAY_US for ts, _ in step}
        fresh = StoreState(STORE, sched, zone)
        fresh.apply_polls(seen)
        for day in sorted(days):
            assert state.day_record(day, changes.hours) == fresh.day_record(day), day


@st.composite
def reached_stores(draw: st.DrawFn) -> tuple[Schedule, str, list[tuple[int, bool]], int, int]:
    """A store with up to 12 days of polls, a reach of 0 to 4 days, and a report time
    anywhere in the supported range (the lead reaches 3 h past the newest poll)."""
    zone = draw(st.sampled_from(ZONES))
    base = draw(st.sampled_from(BASES))
    rows = [HoursRow(STORE, d, s if s < 86400 else 0, e) for d, s, e in draw(hours_rows)]
    sched = build_schedule(rows)
    offsets = st.integers(min_value=-12 * DAY_US, max_value=0)
    polls = draw(st.lists(st.tuples(offsets, st.booleans()), min_size=1, max_size=50))
    reach = draw(st.integers(min_value=0, max_value=96)) * HOUR_US
    newest = base + max(o for o, _ in polls)
    allowed = supported_range(newest, reach, 3 * HOUR_US)
    assert allowed is not None
    # The ends exactly, whole hours and days, and anything in between.
    as_of = draw(
        st.one_of(
            st.sampled_from([allowed.earliest_us, allowed.latest_us, newest]),
            st.integers(allowed.earliest_us, allowed.latest_us),
            st.integers(allowed.earliest_us // HOUR_US + 1, allowed.latest_us // HOUR_US).map(
                lambda h: h * HOUR_US
            ),
        )
    )
    return sched, zone, [(base + o, a) for o, a in polls], reach, as_of


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reached_stores(), st.integers(0, 2**32), st.integers(0, 10 * DAY_US))
def test_pruned_state_is_exact_for_every_report_time_in_the_reach(store, seed, extra) -> None:  # type: ignore[no-untyped-def]
    """Polls arrive in any order, in small batches, redelivered; after each batch the state
    is pruned as the worker does (whole days, reach + 1 week before its newest poll), and
    now and then at an earlier cut (a longer history kept: any horizon at least the
    retention). For every report time in the supported range the windows equal those
    computed from scratch from every poll."""
    sched, zone, polls, reach, as_of = store
    assume(any(ts <= as_of for ts, _ in polls))  # otherwise the store is not in the report
    rng = random.Random(seed)
    delivered = polls + rng.sample(polls, k=len(polls) // 3)
    rng.shuffle(delivered)
    state = StoreState(STORE, sched, zone, retention_us(reach))
    i = 0
    while i < len(delivered):
        step = rng.randint(1, 6)
        state.apply_polls(delivered[i : i + step])
        i += step
        cut = store_cutoff_us(state.poll_ts[-1], reach)
        state.prune(cut - extra if rng.random() < 0.3 else cut)
    assert state_windows(state, as_of) == scratch(sched, zone, polls, as_of)
    # and after a rebuild from what the worker persists
    again = through_the_tables(state)
    assert state_windows(again, as_of) == scratch(sched, zone, polls, as_of)


def test_a_first_poll_materialises_one_week_back_and_no_further() -> None:
    """A store enters reports only from its first poll on, so the week window of the
    earliest report that counts it starts one week before that poll: a 24x7 store's first
    poll fills exactly that week (not the whole retention), and the report is still exact."""
    first = utc(2024, 3, 12, 9, 30)
    state = StoreState(STORE, horizon_us=retention_us(168 * HOUR_US))
    changes = state.apply_polls([(first, True)])
    hours = state.hours_with_time()
    assert hours[0] == utc(2024, 3, 5, 9)
    assert hours[-1] == utc(2024, 3, 12, 9)
    assert sorted(changes.hours) == hours
    as_of = first + 1
    windows = state_windows(state, as_of)
    assert windows == scratch(ALWAYS_OPEN, DEFAULT_ZONE, [(first, True)], as_of)
    assert windows.up_us[-1] == LONGEST_WINDOW_US


@settings(max_examples=150, deadline=None)
@given(stores(), st.integers(0, 2**32))
def test_day_records_kept_up_to_date_update_by_update_equal_fresh_ones(store, seed) -> None:  # type: ignore[no-untyped-def]
    """A state keeps its newest days' runs and splices in the hours each update changes; a
    day's record taken after every update (as the worker does, live polls mostly in time
    order, a late one now and then) equals the record of a state that never cached it."""
    sched, zone, polls, _ = store
    rng = random.Random(seed)
    delivered = sorted(polls)
    for _ in range(len(delivered) // 4):  # some late and redelivered polls
        delivered.insert(rng.randrange(len(delivered) + 1), rng.choice(delivered))
    state = StoreState(STORE, sched, zone)
    for n, poll in enumerate(delivered, 1):
        changes = state.apply_polls([poll])
        days = {h - h % DAY_US for h in changes.hours} | {poll[0] - poll[0] % DAY_US}
        fresh = StoreState(STORE, sched, zone)
        fresh.apply_polls(delivered[:n])
        for day in sorted(days):
            assert state.day_record(day, changes.hours) == fresh.day_record(day)
