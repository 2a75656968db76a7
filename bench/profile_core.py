"""Where the time goes: cProfile of applying polls to StoreState, or of the batch report.

    .venv/bin/python bench/profile_core.py apply [--order time|random] [--stores N]
    .venv/bin/python bench/profile_core.py report

``apply`` profiles the same loop as core_apply.py (states built outside the profile);
``report`` profiles ``storemon report`` on bench/work/full, split into load_dataset,
compute_report and render_csv. Prints the top functions by own time and by cumulative time,
and writes the raw profile to bench/work/profile_<what>.pstats (open it with pstats or
snakeviz). cProfile adds a fixed cost per call, so small, often-called functions look
heavier than they are: read it for the shape, take the timings from core_apply.py.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import core_apply as ca

from storemon.aggregates.report import render_csv
from storemon.batch import compute_report, load_dataset


def show(profile: cProfile.Profile, out: Path, top: int) -> None:
    profile.dump_stats(out)
    stats = pstats.Stats(profile).strip_dirs()
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    print(f"raw profile: {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["apply", "report"])
    parser.add_argument("--order", choices=["time", "random"], default="time")
    parser.add_argument("--stores", type=int, default=None)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    ca.ensure_dataset(ca.DEFAULT_DATA)
    profile = cProfile.Profile()
    if args.what == "apply":
        settings, ordered, shuffled, _ = ca.load(ca.DEFAULT_DATA, args.stores, 0.05, 1)
        cols = ordered if args.order == "time" else shuffled
        states = ca.build_states(settings)
        ts_col, store_col, active_col = cols
        profile.enable()
        for i in range(len(ts_col)):
            states[store_col[i]].apply_polls(((ts_col[i], active_col[i] == 1),))
        profile.disable()
        show(profile, ca.WORK / f"profile_apply_{args.order}.pstats", args.top)
        return
    phases = {}
    profile.enable()
    started = time.perf_counter()
    data = load_dataset(ca.DEFAULT_DATA)
    phases["load_dataset"] = time.perf_counter() - started
    started = time.perf_counter()
    rows = compute_report(data, data.newest_poll_us)
    phases["compute_report"] = time.perf_counter() - started
    started = time.perf_counter()
    render_csv(rows)
    phases["render_csv"] = time.perf_counter() - started
    profile.disable()
    show(profile, ca.WORK / "profile_report.pstats", args.top)
    print("phases under the profiler:", {k: round(v, 2) for k, v in phases.items()})
    profile = None
    for name in list(phases):
        phases[name] = 0.0
    started = time.perf_counter()
    data = load_dataset(ca.DEFAULT_DATA)
    phases["load_dataset"] = time.perf_counter() - started
    started = time.perf_counter()
    rows = compute_report(data, data.newest_poll_us)
    phases["compute_report"] = time.perf_counter() - started
    started = time.perf_counter()
    render_csv(rows)
    phases["render_csv"] = time.perf_counter() - started
    print("phases without the profiler, s:", {k: round(v, 2) for k, v in phases.items()})


if __name__ == "__main__":
    main()
