#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the default test suite (the `slow` tests are excluded; run them
# with `.venv/bin/python -m pytest -m slow`). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -n 2 --durations=15 "$@"
