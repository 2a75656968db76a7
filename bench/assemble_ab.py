"""Report assembly, this checkout against an earlier commit, on the same database.

    .venv/bin/python bench/assemble_ab.py --old 5a21db8 [--database NAME] [--rounds 7]

Loads ``src/storemon/db/assemble.py`` as it was at ``--old`` (``git show``) beside the
current one, then times ``assemble_report`` (default report time: the newest poll) of both,
alternating, on one database: by default the newest ``bench-*`` database that
``bench/stream_ingest.py`` left in the local PostgreSQL. Both must produce the same CSV.
Prints the medians and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from benchdb import open_bench_database  # noqa: E402

from storemon.db import assemble as current  # noqa: E402


def load_old(rev: str) -> ModuleType:
    source = subprocess.run(
        ["git", "show", f"{rev}:src/storemon/db/assemble.py"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    path = Path(tempfile.mkdtemp()) / "assemble_old.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("assemble_old", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


async def main(old_rev: str, database: str | None, rounds: int) -> None:
    pool = await open_bench_database(database)
    old = load_old(old_rev)
    times: dict[str, list[float]] = {"old": [], "new": []}
    texts: dict[str, str] = {}
    for _ in range(rounds):
        for name, module in (("old", old), ("new", current)):
            began = time.perf_counter()
            report = await module.assemble_report(pool, None)
            times[name].append(time.perf_counter() - began)
            texts[name] = report.csv_text
    await pool.close()
    assert texts["old"] == texts["new"], "the two versions disagree"
    old_s, new_s = statistics.median(times["old"]), statistics.median(times["new"])
    print(f"database {database}: {texts['new'].count(chr(10)) - 1} stores, {rounds} rounds")
    print(f"old ({old_rev}) median {old_s:.3f} s  {sorted(round(t, 3) for t in times['old'])}")
    print(f"new (checkout) median {new_s:.3f} s  {sorted(round(t, 3) for t in times['new'])}")
    print(f"old / new = {old_s / new_s:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", required=True, help="git revision to compare with")
    parser.add_argument("--database", default=None)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    asyncio.run(main(args.old, args.database, args.rounds))
