#!/usr/bin/env bash
# Report latency as the fleet grows (1,000 stores with 8 days of polls, 10,000 with 3,
# 14,000 with 8, 100,000 with 2) and as the history grows (10,000 stores, 12 days against 3):
# bench/report_latency.py, medians of 3 runs with the batch command as same-run baseline,
# each set under the shared lock; results in bench/work/report-*/result.json; chart:
# bench/growth.svg.
#     bench/growth.sh
set -euo pipefail
cd "$(dirname "$0")/.."
for run in "1000 8" "10000 3" "10000 12" "14000 8" "100000 2"; do
    set -- $run
    flock /work/bench.lock timeout 3000 \
        .venv/bin/python bench/report_latency.py --stores "$1" --days "$2" --runs 3
done
.venv/bin/python bench/plot_growth.py
