"""``storemon generate``: a realistic synthetic data set in the real Loop file formats.

The output is three files, exactly as the real data writes them:

* ``store_status.csv``: ``store_id,status,timestamp_utc`` with timestamps such as
  ``2023-01-25 18:13:22.47922 UTC`` (trailing zeros of the fraction stripped, no fraction when
  the microseconds are 0), sorted by timestamp, then store_id;
* ``menu_hours.csv``: ``store_id,dayOfWeek,start_time_local,end_time_local``, overnight hours
  split at midnight into ``[open, 23:59:xx]`` on day *d* plus ``[00:00:00, close]`` on *d + 1*;
* ``timezones.csv``: ``store_id,timezone_str``.

Everything is calibrated on ``shared/data/PROFILE.md`` (the 2023 release): about 16 polls per
store per day from an hourly poller that runs near the top of the hour, multi-hour gaps several
times a week and now and then a whole-day hole, an up/down Markov process for the status, the
real mix of schedules and zones, about a fifth of the stores without business hours (24x7), 4-5%
without a zone (America/Chicago) and a few stores listed in hours/zones that never report.

The module has a pure part (functions that take a :class:`random.Random` and return records;
no I/O, no clock) and a thin writer (:func:`write_dataset`, :func:`run`). The same seed and
arguments give byte-identical files.
"""

from __future__ import annotations

import argparse
import gzip
import io
import random
import sys
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

from storemon.aggregates.records import HoursRow, Poll, Rejection
from storemon.aggregates.timebase import (
    DAY_US,
    HOUR_US,
    MINUTE_US,
    US_PER_SECOND,
    parse_as_of,
    us_to_datetime,
)
from storemon.sources import read_hours, read_zones

# --------------------------------------------------------------------------- constants

STATUS_HEADER = ("store_id", "status", "timestamp_utc")
HOURS_HEADER = ("store_id", "dayOfWeek", "start_time_local", "end_time_local")
TIMEZONE_HEADER = ("store_id", "timezone_str")
STATUS_FILE = "store_status.csv"
HOURS_FILE = "menu_hours.csv"
TIMEZONES_FILE = "timezones.csv"

# The newest poll of the full 2023 file, as other implementations report it.
DEFAULT_END = "2023-01-25 18:13:22.47922"
DEFAULT_TIMEZONE = "America/Chicago"

IdStyle = Literal["uuid", "numeric"]

# --- store sets (PROFILE.md section 5)
GHOST_SHARE = 0.02  # listed in hours and/or zones, never polled (134 of 14,226 in 2023)
NO_TIMEZONE_SHARE = 0.045  # polled stores without a zone row (4.57%)
NO_HOURS_IF_NO_TIMEZONE = 0.95  # in 2023, 642 of the 644 stores without a zone lack hours too
NO_HOURS_IF_TIMEZONE = 0.185  # gives ~22% of polled stores without hours overall (21.96%)

# --- zones (2023 counts)
MAIN_ZONES: tuple[tuple[str, int], ...] = (
    ("America/New_York", 8191),
    ("America/Los_Angeles", 3224),
    ("America/Chicago", 1517),
    ("America/Phoenix", 418),
    ("America/Denver", 127),
    ("America/Detroit", 62),
    ("America/Indiana/Indianapolis", 15),
)
# Zones with a handful of stores in the whole file: each gets max(1, its share) stores once at
# least RARE_ZONE_MIN_STORES stores have a zone, so small sets still carry the odd cases.
RARE_ZONES: tuple[tuple[str, int], ...] = (
    ("America/Edmonton", 2),
    ("America/Boise", 1),
    ("Pacific/Honolulu", 1),
    ("Asia/Beirut", 1),
)
REAL_ZONE_ROWS = 13_559
RARE_ZONE_MIN_STORES = 100

# --- poller (PROFILE.md section 2, "Cadence")
POLL_P_RANGE = (0.62, 0.84)  # chance that a store is polled in a normal hourly round
RETRY_SHARE = 0.08  # a second poll later in the same hour
ON_TIME_SHARE = 0.78  # minute :00-:09 (with the retries: ~72% of all polls)
LATE_SHARE = 0.17  # minute :10-:19 (~16%); the rest spreads over :20-:59
QUEUE_SPAN_US = 9 * MINUTE_US  # the store's slot in the poller's queue, then up to 60 s jitter
GAP_RATE = 3.5 / 168  # a 3-11 h hole starts, per normal round (3.5 a week)
GAP_SKIPPED_ROUNDS = (2, 10)
HOLE_RATE = 0.25 / 168  # a whole-day hole (24-41 h), per normal round
HOLE_SKIPPED_ROUNDS = (23, 40)
BURN_IN_ROUNDS = 24  # simulate a day before the range so gaps and outages are in steady state

# --- status: a two-state Markov chain, one step per poll
RECOVER_P = 0.4  # down -> up per poll: outages last 2.5 polls on average, 95% at most 6
DOWN_SHARE_CLASSES: tuple[tuple[float, float], ...] = (
    # (weight, long-run share of inactive polls)
    (0.30, 0.02),  # solid
    (0.55, 0.12),  # typical
    (0.15, 0.35),  # flaky
)

# --- schedules (PROFILE.md section 3)
SCHEDULE_KINDS: tuple[tuple[str, float], ...] = (
    ("allday", 0.13),
    ("overnight", 0.17),
    ("split", 0.03),
    ("single", 0.67),
)
OPEN_DAY_COUNTS: tuple[tuple[int, float], ...] = (
    (7, 81.0),
    (6, 13.0),
    (5, 3.5),
    (4, 0.5),
    (3, 0.5),
    (1, 1.5),
)
# Weight of each weekday (0 = Monday) among the closed days of a store that skips some.
CLOSED_DAY_WEIGHTS = (5.2, 1.7, 0.7, 0.4, 0.3, 0.3, 5.9)
END_OF_DAY_MARKERS = (86_399, 86_340)  # 23:59:59 and 23:59:00, as the real files write them
MIDNIGHT = 24 * 3600  # a close at MIDNIGHT is written with the store's end-of-day marker

_H = 3600
SINGLE_OPENS: tuple[tuple[int, float], ...] = (
    (5 * _H, 1.0),
    (6 * _H, 10.0),
    (6 * _H + 1800, 1.5),
    (7 * _H, 7.0),
    (7 * _H + 1800, 1.0),
    (8 * _H, 5.0),
    (9 * _H, 3.0),
    (10 * _H, 11.0),
    (10 * _H + 1800, 4.0),
    (11 * _H, 30.0),
    (11 * _H + 1800, 3.0),
    (12 * _H, 4.0),
    (16 * _H, 1.5),
    (17 * _H, 1.5),
)
SINGLE_CLOSES: tuple[tuple[int, float], ...] = (
    (14 * _H, 1.5),
    (15 * _H, 2.0),
    (18 * _H, 1.5),
    (19 * _H, 4.0),
    (19 * _H + 1800, 2.0),
    (20 * _H, 7.0),
    (20 * _H + 1800, 5.0),
    (20 * _H + 2700, 2.5),
    (21 * _H, 11.0),
    (21 * _H + 1800, 6.5),
    (21 * _H + 2700, 2.0),
    (22 * _H, 12.0),
    (22 * _H + 1800, 3.5),
    (23 * _H, 9.0),
    (23 * _H + 1800, 3.0),
    (MIDNIGHT, 9.0),
)
OVERNIGHT_OPENS: tuple[tuple[int, float], ...] = (
    (6 * _H, 2.0),
    (7 * _H, 1.0),
    (10 * _H, 3.0),
    (10 * _H + 1800, 1.0),
    (11 * _H, 6.0),
    (16 * _H, 1.0),
    (17 * _H, 1.0),
)
OVERNIGHT_CLOSES: tuple[tuple[int, float], ...] = (
    (600, 0.3),
    (1800, 1.0),
    (1 * _H, 10.0),
    (1 * _H + 1800, 2.0),
    (1 * _H + 2700, 1.5),
    (2 * _H, 9.0),
    (2 * _H + 1800, 1.5),
    (3 * _H, 4.0),
    (4 * _H, 2.0),
    (5 * _H, 0.5),
)

# --------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class StoreSpec:
    """A store: its id, its zone row (``None``: no row), hours rows (empty: none), polled?"""

    store_id: str
    timezone: str | None
    hours: tuple[HoursRow, ...]
    polled: bool


@dataclass(frozen=True, slots=True)
class PollProfile:
    """How one store is polled and how reliable it is."""

    poll_p: float  # chance of a poll in a normal hourly round
    queue_offset_us: int  # where the store sits in the poller's queue, within :00-:09
    fail_p: float  # up -> down per poll
    recover_p: float  # down -> up per poll


@dataclass(frozen=True, slots=True)
class PollSet:
    """All polls, sorted by timestamp then store_id, packed one int per poll.

    ``key = (((ts_us - base_us) << rank_bits | rank) << 1) | inactive`` where ``rank`` indexes
    ``store_ids`` (which is sorted), so sorting the keys sorts by timestamp, then store_id.
    """

    base_us: int
    rank_bits: int
    store_ids: tuple[str, ...]
    keys: list[int]

    def __len__(self) -> int:
        return len(self.keys)

    def __iter__(self) -> Iterator[Poll]:
        mask = (1 << self.rank_bits) - 1
        bits = self.rank_bits
        base = self.base_us
        ids = self.store_ids
        for key in self.keys:
            rest = key >> 1
            yield Poll(ids[rest & mask], (rest >> bits) + base, not key & 1)

    def lines(self) -> Iterator[str]:
        """The data lines of ``store_status.csv`` (no header), each ending in ``\\n``."""
        mask = (1 << self.rank_bits) - 1
        bits = self.rank_bits
        base = self.base_us
        prefixes = [f"{sid},active," for sid in self.store_ids]
        down_prefixes = [f"{sid},inactive," for sid in self.store_ids]
        hour_prefix: dict[int, str] = {}
        minute_second = _MINUTE_SECOND
        for key in self.keys:
            rest = key >> 1
            ts = (rest >> bits) + base
            hour, within = divmod(ts, HOUR_US)
            head = hour_prefix.get(hour)
            if head is None:
                head = _hour_prefix(hour)
                hour_prefix[hour] = head
            whole, micros = divmod(within, US_PER_SECOND)
            frac = f".{micros:06d}".rstrip("0") if micros else ""
            prefix = down_prefixes if key & 1 else prefixes
            yield f"{prefix[rest & mask]}{head}{minute_second[whole]}{frac} UTC\n"

    def rows(self) -> Iterator[tuple[str, str, str]]:
        """The data rows of ``store_status.csv`` as written: (store_id, status, timestamp)."""
        for line in self.lines():
            store_id, status, stamp = line[:-1].split(",")
            yield store_id, status, stamp


@dataclass(frozen=True, slots=True)
class Dataset:
    """A generated data set: the stores (with hours and zones) and their polls."""

    stores: tuple[StoreSpec, ...]
    polls: PollSet
    start_us: int
    end_us: int


# --------------------------------------------------------------------------- time helpers


def _hour_prefix(hour: int) -> str:
    return us_to_datetime(hour * HOUR_US).strftime("%Y-%m-%d %H:")


_MINUTE_SECOND: tuple[str, ...] = tuple(f"{s // 60:02d}:{s % 60:02d}" for s in range(3600))


def format_timestamp(ts_us: int) -> str:
    """The real files' timestamp text: ``2023-01-25 18:13:22.47922 UTC``.

    Trailing zeros of the fraction are stripped; a fraction of 0 prints no fraction at all.
    """
    whole, micros = divmod(ts_us, US_PER_SECOND)
    head = us_to_datetime(whole * US_PER_SECOND).strftime("%Y-%m-%d %H:%M:%S")
    frac = f".{micros:06d}".rstrip("0") if micros else ""
    return f"{head}{frac} UTC"


def format_clock(seconds: int) -> str:
    """Seconds after local midnight as ``HH:MM:SS``."""
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


# --------------------------------------------------------------------------- pure part: stores


_T = TypeVar("_T")


def _pick(rng: random.Random, table: Sequence[tuple[_T, float]]) -> _T:
    values = [value for value, _ in table]
    weights = [weight for _, weight in table]
    return rng.choices(values, weights)[0]


def make_store_ids(rng: random.Random, n: int, style: IdStyle = "uuid") -> list[str]:
    """``n`` distinct ids: lowercase UUID4 strings, or 19-digit decimals inside int64."""
    seen: set[str] = set()
    ids: list[str] = []
    while len(ids) < n:
        if style == "uuid":
            store_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        else:
            store_id = str(rng.randrange(10**18, 2**63))
        if store_id not in seen:
            seen.add(store_id)
            ids.append(store_id)
    return ids


def _open_days(rng: random.Random) -> list[int]:
    count = _pick(rng, OPEN_DAY_COUNTS)
    days = list(range(7))
    if count == 1:
        return [rng.randrange(7)]
    for _ in range(7 - count):
        weights = [CLOSED_DAY_WEIGHTS[d] for d in days]
        days.remove(rng.choices(days, weights)[0])
    return days


def _shift(base: int, delta: int, limit: int) -> int:
    return min(base + delta, limit)


def _single_day(
    rng: random.Random, opens: int, closes: int, varies: bool, day: int
) -> list[tuple[int, int]]:
    if varies and day in (4, 5):  # Friday and Saturday nights run later
        closes = _shift(closes, rng.choice((1800, 3600, 3600, 7200)), MIDNIGHT)
    if varies and day == 6 and rng.random() < 0.6:  # Sunday opens later, closes earlier
        opens = _shift(opens, 3600, closes - 4 * 3600)
        closes = max(opens + 4 * 3600, closes - 3600)
    return [(opens, closes)]


def _single_schedule(rng: random.Random, days: Sequence[int]) -> dict[int, list[tuple[int, int]]]:
    opens = _pick(rng, SINGLE_OPENS)
    closes = _pick(rng, SINGLE_CLOSES)
    if closes - opens < 4 * 3600:
        closes = min(opens + 8 * 3600, MIDNIGHT)
    varies = rng.random() < 0.45
    return {day: _single_day(rng, opens, closes, varies, day) for day in days}


def _overnight_schedule(
    rng: random.Random, days: Sequence[int]
) -> dict[int, list[tuple[int, int]]]:
    opens = _pick(rng, OVERNIGHT_OPENS)
    closes = _pick(rng, OVERNIGHT_CLOSES)
    varies = rng.random() < 0.5
    out: dict[int, list[tuple[int, int]]] = {}
    for day in days:
        late = closes
        if varies and day in (4, 5):
            late = min(closes + rng.choice((1800, 3600, 3600, 7200)), 6 * 3600)
        out.setdefault(day, []).append((opens, MIDNIGHT))
        out.setdefault((day + 1) % 7, []).append((0, late))
    return out


def _split_schedule(rng: random.Random, days: Sequence[int]) -> dict[int, list[tuple[int, int]]]:
    lunch_open = rng.choice((10 * _H + 1800, 11 * _H, 11 * _H, 11 * _H + 1800))
    lunch_close = rng.choice((14 * _H, 14 * _H + 1800, 15 * _H))
    dinner_open = rng.choice((16 * _H + 1800, 17 * _H, 17 * _H, 17 * _H + 1800))
    dinner_close = rng.choice((21 * _H, 21 * _H + 1800, 22 * _H, 23 * _H))
    pieces = [(lunch_open, lunch_close), (dinner_open, dinner_close)]
    if rng.random() < 0.25:  # breakfast as well: three intervals a day
        pieces.insert(0, (rng.choice((6 * _H, 7 * _H)), rng.choice((10 * _H, 10 * _H + 1800))))
    return {day: list(pieces) for day in days}


def make_schedule(rng: random.Random, store_id: str) -> list[HoursRow]:
    """A store's ``menu_hours`` rows, sorted by day and start (never empty).

    The kinds follow the 2023 file: 24x7 rows, single shifts, split shifts of 2-3 intervals and
    overnight hours written split at midnight; some stores list fewer than 7 days (closed days);
    half of the stores write the end of the day as ``23:59:59``, half as ``23:59:00``.
    """
    end_of_day = rng.choice(END_OF_DAY_MARKERS)
    kind = _pick(rng, SCHEDULE_KINDS)
    intervals: dict[int, list[tuple[int, int]]]
    if kind == "allday":
        intervals = {day: [(0, MIDNIGHT)] for day in range(7)}
    elif kind == "overnight":
        intervals = _overnight_schedule(rng, _open_days(rng))
    elif kind == "split":
        intervals = _split_schedule(rng, _open_days(rng))
    else:
        intervals = _single_schedule(rng, _open_days(rng))
    rows: list[HoursRow] = []
    for day in sorted(intervals):
        for start, end in sorted(intervals[day]):
            rows.append(HoursRow(store_id, day, start, end_of_day if end >= MIDNIGHT else end))
    return rows


def assign_timezones(rng: random.Random, count: int) -> list[str]:
    """``count`` zone names in the real mix, the rare zones placed once the set is big enough."""
    names = [name for name, _ in MAIN_ZONES]
    weights = [float(weight) for _, weight in MAIN_ZONES]
    zones = rng.choices(names, weights, k=count)
    if count >= RARE_ZONE_MIN_STORES:
        rare: list[str] = []
        for name, real in RARE_ZONES:
            rare += [name] * max(1, round(count * real / REAL_ZONE_ROWS))
        for position, name in zip(rng.sample(range(count), len(rare)), rare, strict=True):
            zones[position] = name
    return zones


def make_stores(rng: random.Random, n: int, id_style: IdStyle = "uuid") -> list[StoreSpec]:
    """``n`` invented stores with schedules, zones and the real store-set overlaps.

    About 2% are listed in hours and/or zones but never polled; of the polled ones about 4.5%
    have no zone row (almost all of those also lack hours) and about 22% have no hours rows.
    """
    ids = make_store_ids(rng, n, id_style)
    plans: list[tuple[str, bool, bool, bool]] = []  # id, polled, has zone, has hours
    for store_id in ids:
        if rng.random() < GHOST_SHARE:
            has_zone = rng.random() < 0.97
            has_hours = not has_zone or rng.random() < 0.8
            plans.append((store_id, False, has_zone, has_hours))
            continue
        has_zone = rng.random() >= NO_TIMEZONE_SHARE
        no_hours_p = NO_HOURS_IF_TIMEZONE if has_zone else NO_HOURS_IF_NO_TIMEZONE
        plans.append((store_id, True, has_zone, rng.random() >= no_hours_p))
    zones = iter(assign_timezones(rng, sum(1 for plan in plans if plan[2])))
    stores: list[StoreSpec] = []
    for store_id, polled, has_zone, has_hours in plans:
        hours = tuple(make_schedule(rng, store_id)) if has_hours else ()
        stores.append(StoreSpec(store_id, next(zones) if has_zone else None, hours, polled))
    return stores


def sample_stores(
    rng: random.Random,
    n: int,
    hours: Mapping[str, Sequence[HoursRow]],
    zones: Mapping[str, str],
) -> list[StoreSpec]:
    """``n`` stores sampled from the ids of real hours and zone tables, keeping their rows.

    About 2% of the chosen stores are left unpolled, as in the real data.
    """
    ids = sorted(set(hours) | set(zones))
    if n > len(ids):
        raise ValueError(f"asked for {n} stores but the files list only {len(ids)}")
    chosen = rng.sample(ids, n)
    return [
        StoreSpec(
            store_id,
            zones.get(store_id),
            tuple(hours.get(store_id, ())),
            rng.random() >= GHOST_SHARE,
        )
        for store_id in chosen
    ]


# --------------------------------------------------------------------------- pure part: polls


def make_poll_profile(rng: random.Random) -> PollProfile:
    """Per-store poll rate, queue slot and outage behaviour."""
    down_share = _pick(rng, tuple((share, weight) for weight, share in DOWN_SHARE_CLASSES))
    return PollProfile(
        poll_p=rng.uniform(*POLL_P_RANGE),
        queue_offset_us=int(rng.random() * QUEUE_SPAN_US),
        fail_p=down_share * RECOVER_P / (1.0 - down_share),
        recover_p=RECOVER_P,
    )


def _poll_offset(rng: random.Random, profile: PollProfile) -> int:
    """Microseconds after the top of the hour at which the poller reaches the store."""
    u = rng.random()
    if u < ON_TIME_SHARE:
        return profile.queue_offset_us + int(rng.random() * MINUTE_US)
    if u < ON_TIME_SHARE + LATE_SHARE:
        return 10 * MINUTE_US + int(rng.random() * 10 * MINUTE_US)
    return 20 * MINUTE_US + int(rng.random() * 40 * MINUTE_US)


def simulate_store(
    rng: random.Random, profile: PollProfile, start_us: int, end_us: int
) -> list[tuple[int, bool]]:
    """One store's polls in ``[start_us, end_us]``: (timestamp in microseconds, active).

    The poller visits every store once an hour, near the top of the hour; a store is missed
    now and then, drops out for 3-11 hours several times a week and for a whole day about once
    a month, and is sometimes polled twice in an hour. The status is a two-state Markov chain
    stepped once per poll, started in its long-run state.
    """
    rand = rng.random
    randint = rng.randint
    poll_p = profile.poll_p
    fail_p = profile.fail_p
    recover_p = profile.recover_p
    active = rand() >= fail_p / (fail_p + recover_p)
    out: list[tuple[int, bool]] = []
    last_round = end_us // HOUR_US
    round_no = start_us // HOUR_US - BURN_IN_ROUNDS
    while round_no <= last_round:
        u = rand()
        if u < GAP_RATE:
            round_no += randint(*GAP_SKIPPED_ROUNDS)
            continue
        if u < GAP_RATE + HOLE_RATE:
            round_no += randint(*HOLE_SKIPPED_ROUNDS)
            continue
        if rand() < poll_p:
            offset = _poll_offset(rng, profile)
            offsets = [offset]
            if rand() < RETRY_SHARE and offset < 50 * MINUTE_US:
                retry_from = offset + 10 * MINUTE_US
                offsets.append(retry_from + int(rand() * (HOUR_US - retry_from)))
            for off in offsets:
                active = rand() >= fail_p if active else rand() < recover_p
                ts = round_no * HOUR_US + off
                if start_us <= ts <= end_us:
                    out.append((ts, active))
        round_no += 1
    return out


def generate_polls(
    rng: random.Random, stores: Sequence[StoreSpec], start_us: int, end_us: int
) -> PollSet:
    """The polls of every polled store, sorted; the newest poll is exactly at ``end_us``."""
    polled = sorted(store.store_id for store in stores if store.polled)
    rank_of = {store_id: rank for rank, store_id in enumerate(polled)}
    bits = max(1, len(polled).bit_length())
    keys: list[int] = []
    append = keys.append
    anchor = rng.randrange(len(polled)) if polled else -1
    for store in stores:
        if not store.polled:
            continue
        rank = rank_of[store.store_id]
        polls = simulate_store(rng, make_poll_profile(rng), start_us, end_us)
        if rank == anchor and (not polls or polls[-1][0] < end_us):
            polls.append((end_us, polls[-1][1] if polls else True))
        for ts, active in polls:
            append((((ts - start_us) << bits | rank) << 1) | (not active))
    keys.sort()
    return PollSet(start_us, bits, tuple(polled), keys)


def build_dataset(
    rng: random.Random,
    n_stores: int,
    days: float,
    end_us: int,
    id_style: IdStyle = "uuid",
    real_hours: Mapping[str, Sequence[HoursRow]] | None = None,
    real_zones: Mapping[str, str] | None = None,
) -> Dataset:
    """Stores (invented, or sampled from real tables when both are given) and their polls.

    The polls cover ``[end_us - days, end_us]``. Two independent streams are split off
    ``rng`` so the stores do not depend on ``days`` or ``end_us``.
    """
    if n_stores < 0 or days <= 0:
        raise ValueError("need n_stores >= 0 and days > 0")
    store_rng = random.Random(rng.getrandbits(64))
    poll_rng = random.Random(rng.getrandbits(64))
    if real_hours is not None and real_zones is not None:
        stores = sample_stores(store_rng, n_stores, real_hours, real_zones)
    else:
        stores = make_stores(store_rng, n_stores, id_style)
    start_us = end_us - round(days * DAY_US)
    polls = generate_polls(poll_rng, stores, start_us, end_us)
    return Dataset(tuple(stores), polls, start_us, end_us)


def hours_rows(stores: Iterable[StoreSpec]) -> Iterator[tuple[str, str, str, str]]:
    """The data rows of ``menu_hours.csv``."""
    for store in stores:
        for row in store.hours:
            yield (
                store.store_id,
                str(row.weekday),
                format_clock(row.start_s),
                format_clock(row.end_s),
            )


def timezone_rows(stores: Iterable[StoreSpec]) -> Iterator[tuple[str, str]]:
    """The data rows of ``timezones.csv``."""
    for store in stores:
        if store.timezone is not None:
            yield store.store_id, store.timezone


# --------------------------------------------------------------------------- reading real files


def read_hours_file(path: Path) -> dict[str, list[HoursRow]]:
    """The valid rows of a real ``menu_hours`` file, by store (bad rows are left out)."""
    out: dict[str, list[HoursRow]] = {}
    for row in read_hours(path):
        if not isinstance(row, Rejection):
            out.setdefault(row.store_id, []).append(row)
    return out


def read_timezones_file(path: Path) -> dict[str, str]:
    """The valid rows of a real ``timezones`` file; the last row of a store wins."""
    return {
        row.store_id: row.zone_name for row in read_zones(path) if not isinstance(row, Rejection)
    }


# --------------------------------------------------------------------------- writer


def _csv_line(fields: Sequence[str]) -> str:
    return ",".join(fields) + "\n"


def _open_out(path: Path, compress: bool) -> io.BufferedIOBase:
    if compress:
        # mtime=0: the same data always gives the same bytes
        return gzip.GzipFile(filename=path, mode="wb", compresslevel=6, mtime=0)
    return path.open("wb")


def _write_lines(path: Path, header: Sequence[str], lines: Iterable[str], compress: bool) -> None:
    with _open_out(path, compress) as raw:
        raw.write(_csv_line(header).encode())
        chunk: list[str] = []
        for line in lines:
            chunk.append(line)
            if len(chunk) >= 65_536:
                raw.write("".join(chunk).encode())
                chunk.clear()
        raw.write("".join(chunk).encode())


@dataclass(frozen=True, slots=True)
class WriteSummary:
    """What :func:`write_dataset` wrote."""

    paths: tuple[Path, ...]
    polls: int
    hours_rows: int
    zone_rows: int


def write_dataset(dataset: Dataset, out_dir: Path, compress: bool = False) -> WriteSummary:
    """Write the three files into ``out_dir`` (``.csv``, or ``.csv.gz`` with ``compress``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if compress else ""
    status_path = out_dir / (STATUS_FILE + suffix)
    hours_path = out_dir / (HOURS_FILE + suffix)
    zones_path = out_dir / (TIMEZONES_FILE + suffix)
    _write_lines(status_path, STATUS_HEADER, dataset.polls.lines(), compress)
    hours = [_csv_line(row) for row in hours_rows(dataset.stores)]
    _write_lines(hours_path, HOURS_HEADER, hours, compress)
    zones = [_csv_line(row) for row in timezone_rows(dataset.stores)]
    _write_lines(zones_path, TIMEZONE_HEADER, zones, compress)
    return WriteSummary(
        (status_path, hours_path, zones_path), len(dataset.polls), len(hours), len(zones)
    )


# --------------------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``storemon generate``."""
    parser.add_argument("--stores", type=int, default=150, help="number of stores (default 150)")
    parser.add_argument(
        "--days", type=float, default=8.0, help="days of polls before --end (default 8)"
    )
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument(
        "--end",
        default=DEFAULT_END,
        help=f"newest poll, 'YYYY-MM-DD HH:MM:SS[.ffffff]' UTC (default {DEFAULT_END})",
    )
    parser.add_argument(
        "--id-style",
        choices=("uuid", "numeric"),
        default="uuid",
        help="invented store ids: UUIDs (2024 style) or 19-digit numbers (2023 style)",
    )
    parser.add_argument(
        "--hours", type=Path, help="real menu_hours file (.csv or .csv.gz) to take stores from"
    )
    parser.add_argument(
        "--timezones", type=Path, help="real timezones file (.csv or .csv.gz), with --hours"
    )
    parser.add_argument("--gzip", action="store_true", help="write .csv.gz files")


def run(args: argparse.Namespace) -> int:
    """Generate and write the data set; a one-line summary goes to stderr."""
    began = time.perf_counter()
    if (args.hours is None) != (args.timezones is None):
        print("storemon generate: --hours and --timezones go together", file=sys.stderr)
        return 2
    if args.stores < 0 or args.days <= 0:
        print("storemon generate: need --stores >= 0 and --days > 0", file=sys.stderr)
        return 2
    try:
        end_us = parse_as_of(args.end)
    except ValueError as exc:
        print(f"storemon generate: bad --end {args.end!r}: {exc}", file=sys.stderr)
        return 2
    real_hours: dict[str, list[HoursRow]] | None = None
    real_zones: dict[str, str] | None = None
    if args.hours is not None:
        real_hours = read_hours_file(args.hours)
        real_zones = read_timezones_file(args.timezones)
    try:
        dataset = build_dataset(
            random.Random(args.seed),
            args.stores,
            args.days,
            end_us,
            args.id_style,
            real_hours,
            real_zones,
        )
    except ValueError as exc:
        print(f"storemon generate: {exc}", file=sys.stderr)
        return 2
    summary = write_dataset(dataset, args.out, compress=args.gzip)
    polled = len(dataset.polls.store_ids)
    print(
        f"storemon generate: {len(dataset.stores)} stores ({polled} polled), "
        f"{summary.polls} polls, {summary.hours_rows} hours rows, {summary.zone_rows} zones, "
        f"{format_timestamp(dataset.start_us)} .. {format_timestamp(dataset.end_us)} "
        f"-> {args.out} in {time.perf_counter() - began:.1f} s",
        file=sys.stderr,
    )
    return 0
