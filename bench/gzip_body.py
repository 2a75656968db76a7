"""The gzip of a report body: ISA-L (what the job uses) against zlib at level 1 (what the
API used per response before), same process, same bytes, alternating.

    .venv/bin/python bench/gzip_body.py bench/work/report-14000x8/batch.csv [--rounds 21]

Prints the median time of each, the ratio, and the sizes.
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from storemon.compression import gunzip, gzip_bytes  # noqa: E402


def main(path: Path, rounds: int) -> None:
    data = path.read_bytes()
    times: dict[str, list[float]] = {"isal level 1": [], "zlib level 1": []}
    sizes: dict[str, int] = {}
    for _ in range(rounds):
        for name, compress in (
            ("isal level 1", gzip_bytes),
            ("zlib level 1", lambda d: gzip.compress(d, 1, mtime=0)),
        ):
            began = time.perf_counter()
            out = compress(data)
            times[name].append(time.perf_counter() - began)
            sizes[name] = len(out)
            assert gunzip(out) == data
    medians = {name: statistics.median(t) for name, t in times.items()}
    for name, median in medians.items():
        print(f"{name}: {median * 1000:.2f} ms, {sizes[name]:,} bytes of {len(data):,}")
    print(f"zlib / isal: {medians['zlib level 1'] / medians['isal level 1']:.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("csv", type=Path)
    parser.add_argument("--rounds", type=int, default=21)
    args = parser.parse_args()
    main(args.csv, args.rounds)
