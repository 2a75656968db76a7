#!/bin/sh
# Time the batch command on the full-size data set, paired against just reading its files.
#
#   bench/batch_report.sh            # from the repository root
#   RUNS=3 bench/batch_report.sh
#   OLD=/path/to/older/checkout bench/batch_report.sh   # also time that checkout's report
#
# Generates bench/work/full if missing (storemon generate --stores 14000 --days 8 --seed 1),
# compiles the report's modules to bytecode (as an installed package has them), then runs
# the report RUNS times (default 5) after one warm-up, alternating with
# bench/read_baseline.py: first a bare pyarrow read of the same three files (every column as
# text, all cores; the target is report <= 3x this), then the csv module's read (the
# baseline of the earlier figures). bench/pair_time.py prints min/median/max of user, sys,
# cpu and wall seconds and peak memory for each, and the ratio report/baseline pair by pair.
set -eu
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
DATA=bench/work/full
if [ ! -f "$DATA/store_status.csv" ]; then
    .venv/bin/storemon generate --stores 14000 --days 8 --seed 1 --out "$DATA"
fi
REPORT=".venv/bin/storemon report --data $DATA --out bench/work/report.csv"
# Bytecode of the storemon modules the report imports, as an installed package has it (pip
# compiles on install). Without it, a checkout run under PYTHONDONTWRITEBYTECODE=1 (as the
# sessions here are) compiles those modules from source on every run: about 35 ms of the
# report's time that no installed command spends. $1: the PYTHONPATH to compile under.
compile_report() {
    PYTHONPATH="$1" .venv/bin/python -c '
import importlib.util, py_compile, sys
import storemon.batch, storemon.cli
paths = [getattr(module, "__file__", None) or "" for module in list(sys.modules.values())
         if module.__name__.startswith("storemon")]
paths.append(importlib.util.find_spec("storemon.__main__").origin)
for path in paths:
    if path.endswith(".py"):
        py_compile.compile(path, doraise=True)
'
}
compile_report "${PYTHONPATH:-}"
# one run of each to show what they print (and check they work)
$REPORT
.venv/bin/python bench/read_baseline.py "$DATA"
echo "== report vs a bare pyarrow read"
.venv/bin/python bench/pair_time.py -n "$RUNS" \
    --vs ".venv/bin/python bench/read_baseline.py $DATA" -- $REPORT
echo "== report vs the csv module's read"
.venv/bin/python bench/pair_time.py -n "$RUNS" \
    --vs ".venv/bin/python bench/read_baseline.py $DATA --csv" -- $REPORT
if [ -n "${OLD:-}" ]; then
    echo "== $OLD's report vs this one (same output checked)"
    compile_report "$OLD/src"
    PYTHONPATH="$OLD/src" .venv/bin/python -m storemon report --data "$DATA" --out bench/work/report-old.csv
    cmp bench/work/report-old.csv bench/work/report.csv
    .venv/bin/python bench/pair_time.py -n "$RUNS" --vs "$REPORT" \
        -- env PYTHONPATH="$OLD/src" .venv/bin/python -m storemon report --data "$DATA" \
        --out bench/work/report-old.csv
fi
