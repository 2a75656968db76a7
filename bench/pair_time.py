"""Time two commands as whole processes, alternating A B A B, and the ratio A/B pair by pair.

    .venv/bin/python bench/pair_time.py -n 5 --vs 'CMD_B ...' -- CMD_A ...

Standard library only. Each command runs after one warm-up pair (not counted); for each
counted run: wall seconds (monotonic clock around start and reap), user and system CPU
seconds and peak RSS of the finished child (os.wait4's rusage). Prints min / median / max of
each figure for A and B and of the ratios A/B taken pair by pair: quote the medians; pairing
keeps the ratio meaningful when a shared machine's speed drifts during the call.
Output of the commands is discarded.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import time


def run_once(cmd: list[str]) -> dict[str, float]:
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{shlex.join(cmd)} exited with {proc.returncode}")
    return {
        "wall_s": wall,
        "user_s": usage.ru_utime,
        "sys_s": usage.ru_stime,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_mib": usage.ru_maxrss / 1024,
    }


def line(name: str, values: list[float], fmt: str) -> str:
    med, lo, hi = statistics.median(values), min(values), max(values)
    return f"  {name:<10} median {med:{fmt}}   min {lo:{fmt}}   max {hi:{fmt}}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=5, help="counted runs of each (default 5)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--vs", required=True, help="command B, one string split like a shell")
    parser.add_argument("cmd", nargs=argparse.REMAINDER, help="-- command A")
    args = parser.parse_args()
    a_cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    b_cmd = shlex.split(args.vs)
    for _ in range(args.warmup):
        run_once(a_cmd)
        run_once(b_cmd)
    runs_a, runs_b = [], []
    for i in range(args.n):
        runs_a.append(run_once(a_cmd))
        runs_b.append(run_once(b_cmd))
        print(
            f"run {i + 1}: A {runs_a[-1]['wall_s']:.2f} s  B {runs_b[-1]['wall_s']:.2f} s",
            file=sys.stderr,
        )
    print(
        f"A: {shlex.join(a_cmd)}\nB: {shlex.join(b_cmd)}\n{args.n} counted runs each, "
        f"{args.warmup} warm-up, alternating A B"
    )
    for label, runs in (("A", runs_a), ("B", runs_b)):
        print(label)
        for key, fmt in (
            ("wall_s", "8.2f"),
            ("cpu_s", "8.2f"),
            ("user_s", "8.2f"),
            ("sys_s", "8.2f"),
            ("peak_mib", "8.0f"),
        ):
            print(line(key, [r[key] for r in runs], fmt))
    print("A/B pair by pair")
    for key in ("wall_s", "cpu_s"):
        ratios = [a[key] / b[key] for a, b in zip(runs_a, runs_b, strict=True)]
        print(line(key, ratios, "8.2f"))


if __name__ == "__main__":
    main()
