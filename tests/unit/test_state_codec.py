"""The one codec of a store's state (streams.state_codec): a settings entry and day entries
out, the same state back."""

from __future__ import annotations

import random

import orjson

from storemon.aggregates.schedule import ALWAYS_OPEN, Schedule, WeeklyInterval
from storemon.aggregates.state import StoreState
from storemon.aggregates.timebase import DAY_US, HOUR_US, MINUTE_US, floor_to
from storemon.streams import state_codec

T0 = 1_674_000_000_000_000 - 1_674_000_000_000_000 % DAY_US  # a UTC midnight in January 2023
HORIZON_US = 192 * HOUR_US
WEEKDAYS_NINE_TO_NINE = tuple(WeeklyInterval(d, 9 * 3600, 21 * 3600) for d in range(5))


def live_state(days: int, seed: int = 1, schedule: Schedule = WEEKDAYS_NINE_TO_NINE) -> StoreState:
    """A store polled about hourly for ``days`` days, pruned as the worker prunes it."""
    rng = random.Random(seed)
    state = StoreState("s", schedule, "Asia/Kathmandu", HORIZON_US)
    for h in range(24 * days):
        state.apply_polls([(T0 + h * HOUR_US + rng.randrange(HOUR_US), rng.random() < 0.7)])
        state.prune(floor_to(state.poll_ts[-1] - HORIZON_US, DAY_US))
    return state


def round_trip(state: StoreState) -> state_codec.Decoded:
    settings, day_entries = state_codec.encode(state)
    return state_codec.decode("s", settings, day_entries.get, horizon_us=HORIZON_US)


def assert_same_state(got: StoreState, want: StoreState) -> None:
    assert list(got.poll_ts) == list(want.poll_ts)
    assert got.poll_active == want.poll_active
    assert (got.schedule, got.zone_name) == (want.schedule, want.zone_name)
    assert (got.first_poll_us, got.cutoff_us) == (want.first_poll_us, want.cutoff_us)
    assert got.summary() == want.summary()
    kept = [h for h in want.hours_with_time() if h >= want.cutoff_us]
    assert [h for h in got.hours_with_time() if h >= got.cutoff_us] == kept
    assert [got.bucket(h) for h in kept] == [want.bucket(h) for h in kept]


def test_a_pruned_state_round_trips_with_its_anchor_and_cutoff() -> None:
    state = live_state(12)
    assert state.cutoff_us > T0
    decoded = round_trip(state)
    assert_same_state(decoded.state, state)
    assert not decoded.old_layout
    assert decoded.days == state_codec.layout(state).days
    # Encoding the rebuilt state gives the same bytes: a restart rewrites nothing new.
    assert state_codec.encode(decoded.state) == state_codec.encode(state)


def test_the_anchor_lives_in_the_settings_entry_and_days_hold_only_polls_after_the_cutoff() -> None:
    state = live_state(12, schedule=ALWAYS_OPEN)
    cutoff = state.cutoff_us
    settings, day_entries = state_codec.encode(state)
    meta = orjson.loads(settings)
    anchor_ts = state.poll_ts[0]
    assert anchor_ts < cutoff <= state.poll_ts[1]
    assert meta["anchor"] == [anchor_ts, state.poll_active[0]]
    assert meta["cutoff"] == cutoff
    assert meta["first"] == state.first_poll_us
    assert state.first_poll_us is not None
    assert state.first_poll_us < cutoff
    polls_after = list(state.poll_ts[1:])
    days = sorted({ts - ts % DAY_US for ts in polls_after})
    assert meta["span"] == [days[0], days[-1]]
    stored = [ts for entry in day_entries.values() for ts in orjson.loads(entry)["ts"]]
    assert sorted(stored) == polls_after


def test_the_anchor_gives_the_status_just_after_the_cutoff() -> None:
    cutoff = T0 + 3 * DAY_US
    state = StoreState("s", ALWAYS_OPEN, "UTC", HORIZON_US)
    state.apply_polls(
        [(T0, True), (cutoff - 10 * MINUTE_US, False), (cutoff + 50 * MINUTE_US, True)]
    )
    state.prune(cutoff)
    decoded = round_trip(state)
    assert_same_state(decoded.state, state)
    # nearest poll: the first 20 minutes after the cutoff are the anchor's (down)
    assert decoded.state.bucket(cutoff).down_us == 20 * MINUTE_US
    settings, day_entries = state_codec.encode(state)
    without_anchor = orjson.dumps({**orjson.loads(settings), "anchor": None})
    lost = state_codec.decode("s", without_anchor, day_entries.get, horizon_us=HORIZON_US)
    assert lost.state.bucket(cutoff).down_us == 0


def test_a_state_without_polls_round_trips() -> None:
    state = StoreState("s", WEEKDAYS_NINE_TO_NINE, "Europe/Berlin", HORIZON_US)
    kept = state_codec.layout(state)
    assert (kept.anchor, kept.days, kept.first_poll_us) == (None, [], None)
    decoded = round_trip(state)
    assert_same_state(decoded.state, state)
    assert decoded.days == []


def test_a_missing_day_entry_reads_as_a_day_without_polls() -> None:
    state = StoreState("s", horizon_us=HORIZON_US)
    state.apply_polls([(T0 + HOUR_US, True), (T0 + DAY_US + HOUR_US, False)])
    settings, day_entries = state_codec.encode(state)
    assert sorted(day_entries) == [T0, T0 + DAY_US]
    decoded = state_codec.decode("s", settings, {T0: day_entries[T0]}.get, horizon_us=HORIZON_US)
    assert list(decoded.state.poll_ts) == [T0 + HOUR_US]
    assert decoded.days == [T0]  # only entries that exist can need a tombstone later


def test_the_old_one_entry_layout_is_still_read() -> None:
    state = live_state(10, seed=2)
    old = orjson.dumps(
        {
            "schedule": [list(i) for i in state.schedule],
            "zone": state.zone_name,
            "first": state.first_poll_us,
            "cutoff": state.cutoff_us,
            "ts": state.poll_ts.tolist(),
            "active": list(state.poll_active),
        }
    )
    decoded = state_codec.decode("s", old, lambda day: None, horizon_us=HORIZON_US)
    assert decoded.old_layout
    assert decoded.days == []
    assert_same_state(decoded.state, state)


def test_the_layout_that_listed_every_day_is_still_read() -> None:
    state = live_state(10, seed=3)
    settings, day_entries = state_codec.encode(state)
    meta = orjson.loads(settings)
    del meta["span"]
    meta["days"] = sorted(day_entries)
    decoded = state_codec.decode("s", orjson.dumps(meta), day_entries.get, horizon_us=HORIZON_US)
    assert_same_state(decoded.state, state)
    assert decoded.days == sorted(day_entries)


def test_the_settings_entry_keeps_its_size_as_history_grows() -> None:
    """Written about once a store and day, so its size is part of the bytes per poll: 12 days
    of kept polls cost what 3 days cost (a list of the days grew by a number a day)."""
    horizon = 15 * DAY_US  # nothing pruned: both states keep every poll

    def settings_entry(days: int) -> bytes:
        state = StoreState("s", WEEKDAYS_NINE_TO_NINE, "Asia/Kathmandu", horizon)
        state.apply_polls([(T0 + h * HOUR_US + 600_000_000, h % 7 != 0) for h in range(24 * days)])
        state.prune(floor_to(state.poll_ts[-1] - horizon, DAY_US))
        return state_codec.encode_settings(state_codec.layout(state))

    three_days, twelve_days = settings_entry(3), settings_entry(12)
    assert (
        orjson.loads(twelve_days)["span"][1] - orjson.loads(twelve_days)["span"][0] == 11 * DAY_US
    )
    assert len(twelve_days) == len(three_days)


def test_equal_layouts_mean_equal_settings_entries() -> None:
    state = live_state(3)
    again = round_trip(state).state
    assert state_codec.layout(again) == state_codec.layout(state)
    newest = state.poll_ts[-1]
    next_day = newest - newest % DAY_US + DAY_US
    before = state_codec.layout(state)
    state.apply_polls([(newest + 1, True)])  # same day: the settings entry stays
    assert state_codec.layout(state) == before
    state.apply_polls([(next_day, True)])  # a new day begins: it is listed
    assert state_codec.layout(state).days == [*before.days, next_day]
    assert state_codec.encode_settings(state_codec.layout(state)) != state_codec.encode_settings(
        before
    )
