"""CPU of one live store update in the core: one new poll applied, then the day's record
built (what the worker does per store and batch when a batch holds one poll of a store).

    .venv/bin/python bench/live_update.py [--stores 200] [--runs 5]

Synthetic stores (a third with 09:00-21:00 hours in America/Chicago, the rest open around
the clock), 8 days of hourly polls each, then 24 more hours of polls applied one at a time.
Baseline in the same run, same loop shape: ``bisect.insort`` of each poll into a per-store
list (the least any implementation must do). Prints the per-update CPU microseconds (min
over the runs, process time) and the median of the paired ratios update/baseline.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from bisect import insort

from storemon.aggregates.schedule import WeeklyInterval
from storemon.aggregates.state import StoreState
from storemon.aggregates.timebase import DAY_US, HOUR_US

T0 = 1_674_000_000_000_000 - 1_674_000_000_000_000 % DAY_US
HISTORY_HOURS = 24 * 8
LIVE_HOURS = 24


def build(stores: int) -> list[StoreState]:
    random.seed(1)
    states = []
    for s in range(stores):
        if s % 3 == 0:
            hours = tuple(WeeklyInterval(d, 9 * 3600, 21 * 3600) for d in range(7))
            state = StoreState(f"s{s}", hours, "America/Chicago")
        else:
            state = StoreState(f"s{s}")
        state.apply_polls(
            [
                (T0 + h * HOUR_US + random.randrange(HOUR_US), random.random() < 0.9)
                for h in range(HISTORY_HOURS)
            ]
        )
        states.append(state)
    return states


def live_polls(stores: int) -> list[list[int]]:
    rng = random.Random(2)
    return [
        [T0 + h * HOUR_US + rng.randrange(HOUR_US) for _ in range(stores)]
        for h in range(HISTORY_HOURS, HISTORY_HOURS + LIVE_HOURS)
    ]


def time_updates(states: list[StoreState], hours: list[list[int]]) -> float:
    began = time.process_time()
    for stamps in hours:
        for state, ts in zip(states, stamps, strict=True):
            changes = state.apply_polls(((ts, True),))
            state.day_record(ts - ts % DAY_US, changes.hours)
    return time.process_time() - began


def time_baseline(stores: int, hours: list[list[int]]) -> float:
    lists: list[list[tuple[int, bool]]] = [[] for _ in range(stores)]
    began = time.process_time()
    for stamps in hours:
        for kept, ts in zip(lists, stamps, strict=True):
            insort(kept, (ts, True))
    return time.process_time() - began


def main(stores: int, runs: int) -> None:
    hours = live_polls(stores)
    updates = stores * LIVE_HOURS
    per_update: list[float] = []
    ratios: list[float] = []
    for _ in range(runs):
        baseline = time_baseline(stores, hours)
        spent = time_updates(build(stores), hours)
        per_update.append(spent / updates * 1e6)
        ratios.append(spent / baseline)
    print(
        f"{updates} live updates x {runs} runs: {min(per_update):.1f} us per update (min),"
        f" median ratio to insort {statistics.median(ratios):.0f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stores", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    main(args.stores, args.runs)
