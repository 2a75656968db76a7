#!/usr/bin/env bash
# Report latency and worker memory as the fleet grows (1,000 and 10,000 stores with three
# days of polls, 100,000 with two) and as the history grows past the 8-day horizon (10,000
# stores, twelve days). Each run: bench/stream_ingest.py; results in bench/work/stream-*/;
# chart: bench/growth.svg.
#     bench/growth.sh
set -euo pipefail
cd "$(dirname "$0")/.."
for run in "1000 3" "10000 3" "10000 12" "100000 2"; do
    set -- $run
    .venv/bin/python bench/stream_ingest.py --stores "$1" --days "$2"
done
.venv/bin/python bench/plot_growth.py
