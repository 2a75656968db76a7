#!/bin/sh
# Time the batch command on the full-size data set, paired against just reading its files.
#
#   bench/batch_report.sh            # from the repository root
#   RUNS=3 bench/batch_report.sh
#
# Generates bench/work/full if missing (storemon generate --stores 14000 --days 8 --seed 1),
# then runs the report RUNS times (default 5) after one warm-up, alternating with
# bench/read_baseline.py (reads the same three CSV files with the csv module, counts rows),
# and prints min/median/max of user, sys, cpu and wall seconds and peak memory for each, and
# the ratio report/baseline pair by pair (bench/pair_time.py, standard library only).
set -eu
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
DATA=bench/work/full
if [ ! -f "$DATA/store_status.csv" ]; then
    .venv/bin/storemon generate --stores 14000 --days 8 --seed 1 --out "$DATA"
fi
# one run of each to show what they print (and check they work)
.venv/bin/storemon report --data "$DATA" --out bench/work/report.csv
.venv/bin/python bench/read_baseline.py "$DATA"
exec .venv/bin/python bench/pair_time.py -n "$RUNS" \
    --vs ".venv/bin/python bench/read_baseline.py $DATA" \
    -- .venv/bin/storemon report --data "$DATA" --out bench/work/report.csv
