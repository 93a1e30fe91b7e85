#!/usr/bin/env bash
# Run the full studies behind REPRODUCTION.md (`--workers 2`), time each, draw their figures into
# figures/out/ and print the numbers REPRODUCTION.md quotes. Arguments: the studies to run (default all).
#   bash scripts/reproduce.sh control actions
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
mkdir -p results
for study in ${*:-oscillation control actions noisy-teacher chain multi-teacher dual exploration}; do
    start=$(date +%s)
    "$py" -m distlab study "$study" --workers 2
    echo "$study: wall $(( $(date +%s) - start )) s ($(date -u +%FT%TZ), $(git rev-parse --short HEAD))" | tee -a results/wall_times.txt
    "$py" -m distlab figure "$study" --out figures/out
done
"$py" figures/reproduction_numbers.py results
