#!/usr/bin/env bash
# Report latency and worker memory as the fleet grows (1,000 / 10,000 / 100,000 stores, three
# days of polls each) and as the history grows past the 8-day horizon (10,000 stores, twelve
# days). Each run: bench/stream_ingest.py; results in bench/work/stream-*/; chart: growth.svg.
#     bench/growth.sh
set -euo pipefail
cd "$(dirname "$0")/.."
for stores in 1000 10000 100000; do
    .venv/bin/python bench/stream_ingest.py --stores "$stores" --days 3
done
.venv/bin/python bench/stream_ingest.py --stores 10000 --days 12
.venv/bin/python bench/plot_growth.py
