"""Cost of applying polls to the incremental state (StoreState), per poll, and its memory.

    .venv/bin/python bench/core_apply.py                 # full-size set, 3 runs per order
    .venv/bin/python bench/core_apply.py --stores 500    # a quick look on a subset

What it does:

* loads the data set with ``load_dataset`` (generating it into ``bench/work/full`` first if
  missing: ``storemon generate --stores 14000 --days 8 --seed 1``);
* builds one ``StoreState`` per polled store with its schedule and zone (outside the timed
  part), then times applying every poll one call at a time, ``apply_polls(((ts, active),))``,
  as the stream does when a batch holds one poll of a store:
    - in timestamp order (the replay / live order);
    - in random order with 5 % duplicates (redeliveries, same timestamp and status);
* in the same run, before each timed apply run, times the BASELINE: the least any
  implementation must do per poll, ``bisect.insort(per_store[store_id], (ts, active))``,
  over the same sequence in the same loop shape. The ratio apply/baseline is taken pair by
  pair and its median quoted: it holds when the machine's speed drifts (2 shared cores);
* checks that both orders end in the same state (order independence, a correctness guard);
* measures the memory of all states after the time-ordered run, each in a fresh subprocess:
  the RSS difference (before building the states, after the run) and the deep size of the
  states (``sys.getsizeof`` over every object reachable from them, each counted once);
  without pruning, with ``prune(clock - 192 h)`` of every store each time the data's clock
  crosses an hour (the 8-day horizon), and with ``prune(newest poll - 192 h)`` after each
  apply as the worker does. (tracemalloc was tried: it slows the run about 10x, to
  ~10 min at full size; on a subset it agreed with the two figures here within ~15 %.)

Prints a table and writes ``bench/work/core_apply.json``. Standard library only.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import pickle
import platform
import random
import statistics
import subprocess
import sys
import time
import types
from array import array
from bisect import insort
from pathlib import Path
from typing import NamedTuple

from storemon.aggregates.records import DEFAULT_ZONE
from storemon.aggregates.schedule import ALWAYS_OPEN
from storemon.aggregates.state import StoreState
from storemon.aggregates.timebase import HOUR_US
from storemon.batch import load_dataset

# The retention these measurements were taken with (8 days; the default is now reach + 1 week,
# see aggregates/reach.py).
HORIZON_US = 192 * HOUR_US

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "work"
DEFAULT_DATA = WORK / "full"
GENERATE = ["--stores", "14000", "--days", "8", "--seed", "1"]

Settings = list[tuple[str, tuple, str]]  # (store_id, schedule, zone), index = store number
MEMORY_MODES = {
    "none": "no pruning",
    "hourly": "prune(clock - 192 h) of every store each hour of data",
    "per-update": "prune(newest poll - 192 h) after each apply, as the worker",
}


class Columns(NamedTuple):
    """A stream of polls as flat arrays: the loop makes each poll's objects afresh, as a
    consumer parsing messages does, instead of walking a million cold tuples in memory."""

    ts: array  # int64 microseconds
    store: array  # int32 index into Settings
    active: bytes  # 1 = active

    def __len__(self) -> int:
        return len(self.ts)


def ensure_dataset(path: Path) -> None:
    if (path / "store_status.csv").exists() or (path / "store_status.csv.gz").exists():
        return
    if path != DEFAULT_DATA:
        sys.exit(f"no data set in {path}")
    print(f"generating the full-size data set into {path} ...", file=sys.stderr)
    storemon = ROOT / ".venv" / "bin" / "storemon"
    subprocess.run([str(storemon), "generate", *GENERATE, "--out", str(path)], check=True)


def code_version() -> str:
    """HEAD and whether the core differs from it (others edit the tree during a run)."""

    def git(*cmd: str) -> str:
        done = subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip()

    dirty = git("status", "--short", "--", "aggregates")
    return git("rev-parse", "--short", "HEAD") + (" + uncommitted aggregates/" if dirty else "")


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def load(
    path: Path, stores: int | None, duplicates: float, seed: int
) -> tuple[Settings, Columns, Columns, float]:
    """Settings, the polls in timestamp order, and shuffled with duplicates added."""
    started = time.perf_counter()
    data = load_dataset(path)
    load_s = time.perf_counter() - started
    by_store = data.polls_by_store()
    ids = sorted(by_store)
    if stores is not None:
        ids = sorted(random.Random(1).sample(ids, min(stores, len(ids))))
    settings = [
        (sid, data.schedules.get(sid, ALWAYS_OPEN), data.zones.get(sid, DEFAULT_ZONE))
        for sid in ids
    ]
    stream = [(ts, i, active) for i, sid in enumerate(ids) for ts, active in by_store[sid]]
    del data
    stream.sort(key=lambda item: item[0])  # stable: ties keep file order per store
    ordered = to_columns(stream)
    rng = random.Random(seed)
    stream += rng.sample(stream, int(len(stream) * duplicates))  # redeliveries, same status
    rng.shuffle(stream)
    shuffled = to_columns(stream)
    return settings, ordered, shuffled, load_s


def to_columns(stream: list[tuple[int, int, bool]]) -> Columns:
    return Columns(
        array("q", [ts for ts, _, _ in stream]),
        array("i", [i for _, i, _ in stream]),
        bytes(bool(a) for _, _, a in stream),
    )


def build_states(settings: Settings) -> list[StoreState]:
    return [StoreState(sid, sch, zone, HORIZON_US) for sid, sch, zone in settings]


def run_baseline(settings: Settings, cols: Columns) -> float:
    """The least any implementation does per poll: put it in order in its store's list."""
    lists: list[list[tuple[int, bool]]] = [[] for _ in settings]
    ts_col, store_col, active_col = cols
    gc.collect()
    started = time.perf_counter()
    for i in range(len(ts_col)):
        insort(lists[store_col[i]], (ts_col[i], active_col[i] == 1))
    return time.perf_counter() - started


def run_apply(
    settings: Settings, cols: Columns, prune: str = "none"
) -> tuple[float, list[StoreState]]:
    """Build the states (not timed), then apply every poll, one call each (timed)."""
    states = build_states(settings)
    ts_col, store_col, active_col = cols
    n = len(ts_col)
    gc.collect()  # the collector stays on, as in the worker
    started = time.perf_counter()
    if prune == "none":
        for i in range(n):
            states[store_col[i]].apply_polls(((ts_col[i], active_col[i] == 1),))
    elif prune == "hourly":
        next_hour = ts_col[0] - ts_col[0] % HOUR_US + HOUR_US if n else 0
        for i in range(n):
            ts = ts_col[i]
            while ts >= next_hour:  # the data's clock crossed an hour: prune every store
                cutoff = next_hour - HORIZON_US
                for state in states:
                    state.prune(cutoff)
                next_hour += HOUR_US
            states[store_col[i]].apply_polls(((ts, active_col[i] == 1),))
    elif prune == "per-update":  # as the worker does after each store's update
        for i in range(n):
            state = states[store_col[i]]
            state.apply_polls(((ts_col[i], active_col[i] == 1),))
            state.prune(state.poll_ts[-1] - HORIZON_US)
    else:
        raise ValueError(prune)
    return time.perf_counter() - started, states


def fingerprint(states: list[StoreState]) -> str:
    digest = hashlib.sha256()
    for s in states:
        digest.update(s.store_id.encode())
        digest.update(s.poll_ts.tobytes())
        digest.update(bytes(s.poll_active))
        digest.update(repr((s.first_poll_us, s.summary())).encode())
        for day in sorted(s.day_hours):
            digest.update(day.to_bytes(8, "little", signed=True))
            digest.update(s.day_hours[day].tobytes())
    return digest.hexdigest()


# -- memory, in a fresh process ---------------------------------------------------------------
# The child does not parse the CSV files (their garbage would be reused by the states and hide
# them from the RSS): the parent hands it the time-ordered stream as flat arrays and the
# stores' settings as a pickle, both small to load.


def write_stream_files(settings: Settings, cols: Columns, base: Path) -> None:
    with open(base.with_suffix(".ts"), "wb") as handle:
        cols.ts.tofile(handle)
    with open(base.with_suffix(".store"), "wb") as handle:
        cols.store.tofile(handle)
    base.with_suffix(".active").write_bytes(cols.active)
    with open(base.with_suffix(".meta"), "wb") as handle:
        pickle.dump(settings, handle)


def read_stream_files(base: Path) -> tuple[Settings, Columns]:
    with open(base.with_suffix(".meta"), "rb") as handle:
        settings = pickle.load(handle)
    n = base.with_suffix(".ts").stat().st_size // 8
    ts_col, store_col = array("q"), array("i")
    with open(base.with_suffix(".ts"), "rb") as handle:
        ts_col.fromfile(handle, n)
    with open(base.with_suffix(".store"), "rb") as handle:
        store_col.fromfile(handle, n)
    return settings, Columns(ts_col, store_col, base.with_suffix(".active").read_bytes())


def deep_size(roots: list[object]) -> int:
    """Bytes of every object reachable from ``roots``, each counted once (shared ones too:
    schedules, zone names, the endless session). Classes, modules and functions excluded."""
    skip = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType)
    seen: set[int] = set()
    total = 0
    todo = list(roots)
    while todo:
        obj = todo.pop()
        if id(obj) in seen or isinstance(obj, skip):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        if isinstance(obj, StoreState):  # __slots__: not all referents show to the gc
            todo.extend(getattr(obj, name) for name in StoreState.__slots__)
        else:
            todo.extend(gc.get_referents(obj))
    return total


def memory_child(base: Path, prune: str) -> None:
    settings, cols = read_stream_files(base)
    gc.collect()
    before = rss_bytes()
    elapsed, states = run_apply(settings, cols, prune)
    gc.collect()
    rss_delta = rss_bytes() - before
    print(
        json.dumps(
            {
                "rss_delta_bytes": rss_delta,
                "deep_size_bytes": deep_size(states),
                "stores": len(states),
                "polls_kept": sum(len(s.poll_ts) for s in states),
                "day_arrays_kept": sum(len(s.day_hours) for s in states),
                "elapsed_s": elapsed,
                "process_rss_after_bytes": rss_bytes(),
            }
        )
    )


def measure_memory(base: Path, prune: str) -> dict:
    cmd = [sys.executable, __file__, "--memory", "--prune", prune, "--stream-files", str(base)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


# -- main -------------------------------------------------------------------------------------


def summarise(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--stores", type=int, default=None, help="a random subset of stores")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duplicates", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-memory", action="store_true", help="skip the memory passes")
    parser.add_argument("--json", type=Path, default=WORK / "core_apply.json")
    parser.add_argument("--memory", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--prune", default="none", help=argparse.SUPPRESS)
    parser.add_argument("--stream-files", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory:
        memory_child(args.stream_files, args.prune)
        return
    args.data = args.data.resolve()
    ensure_dataset(args.data)

    settings, ordered, shuffled, load_s = load(args.data, args.stores, args.duplicates, args.seed)
    orders = {"time order": ordered, f"random + {args.duplicates:.0%} dup": shuffled}
    print(
        f"{len(settings)} stores, {len(ordered)} polls; load_dataset {load_s:.1f} s; "
        f"{args.runs} runs per order, baseline and apply alternating",
        file=sys.stderr,
    )
    results: dict = {
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
        "data": str(args.data),
        "code": code_version(),
        "load_dataset_s": load_s,
        "stores": len(settings),
        "polls": len(ordered),
        "runs": args.runs,
        "apply": "states[store].apply_polls(((ts, active),)), one call per poll",
        "baseline": "bisect.insort(lists[store], (ts, active)), same loop over the same arrays",
        "orders": {},
    }
    prints = {}
    for name, stream in orders.items():
        base_us, apply_us, ratios = [], [], []
        for run in range(args.runs):
            b = run_baseline(settings, stream) / len(stream) * 1e6
            a, states = run_apply(settings, stream)
            a = a / len(stream) * 1e6
            base_us.append(b)
            apply_us.append(a)
            ratios.append(a / b)
            print(
                f"  {name:<18} run {run + 1}: apply {a:6.2f} us/poll, baseline {b:5.3f} "
                f"us/poll, ratio {a / b:6.1f}",
                file=sys.stderr,
            )
            if run == args.runs - 1:
                prints[name] = fingerprint(states)
            del states
            gc.collect()
        results["orders"][name] = {
            "polls_applied": len(stream),
            "apply_us_per_poll": summarise(apply_us),
            "baseline_us_per_poll": summarise(base_us),
            "ratio_apply_vs_baseline": summarise(ratios),  # pair by pair
            "ratio_of_medians": statistics.median(apply_us) / statistics.median(base_us),
            "raw": {"apply": apply_us, "baseline": base_us},
        }
    results["same_state_both_orders"] = len(set(prints.values())) == 1

    if not args.no_memory:
        base = args.json.with_suffix(".stream")
        write_stream_files(settings, ordered, base)
        memory = {}
        for prune, key in MEMORY_MODES.items():
            print(f"  memory ({key}) ...", file=sys.stderr)
            memory[key] = measure_memory(base, prune)
            print(f"    {memory[key]}", file=sys.stderr)
        for suffix in (".ts", ".store", ".active", ".meta"):
            base.with_suffix(suffix).unlink()
        results["memory_after_time_ordered_run"] = memory

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    print(f"\nJSON written to {args.json}")


def print_table(r: dict) -> None:
    print(
        f"\n{r['stores']} stores, {r['polls']} polls, "
        f"median of {r['runs']} runs ({r['date_utc']} UTC, code {r['code']})"
    )
    print(f"{'order':<20}{'apply us/poll':>24}{'baseline us/poll':>24}{'ratio':>22}")
    print(f"{'':<20}{'median (min-max)':>24}{'median (min-max)':>24}{'median (min-max)':>22}")
    for name, o in r["orders"].items():
        a, b, q = o["apply_us_per_poll"], o["baseline_us_per_poll"], o["ratio_apply_vs_baseline"]
        print(
            f"{name:<20}{a['median']:>9.2f} ({a['min']:.2f}-{a['max']:.2f})"
            f"{b['median']:>11.3f} ({b['min']:.3f}-{b['max']:.3f})"
            f"{q['median']:>9.1f} ({q['min']:.1f}-{q['max']:.1f})"
        )
    print(f"same final state in both orders: {r['same_state_both_orders']}")
    mem = r.get("memory_after_time_ordered_run")
    if mem:
        print("\nstates after the time-ordered run (one fresh process each, one run):")
        print(
            f"{'pruning':<56}{'deep size MiB':>14}{'RSS delta MiB':>15}{'polls kept':>12}"
            f"{'us/poll incl. prune':>21}"
        )
        for key, m in mem.items():
            print(
                f"{key:<56}{m['deep_size_bytes'] / 2**20:>14.1f}"
                f"{m['rss_delta_bytes'] / 2**20:>15.1f}{m['polls_kept']:>12}"
                f"{m['elapsed_s'] / r['polls'] * 1e6:>21.2f}"
            )


if __name__ == "__main__":
    main()
