#!/usr/bin/env bash
# Set up (scripts/setup.sh), check the one-way import structure (`lint-imports`, the contracts in
# pyproject.toml) and run the default test suite (the `slow` tests are excluded; run them with
# `.venv/bin/python -m pytest -m slow`). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/lint-imports
exec .venv/bin/python -m pytest -n 2 --durations=15 "$@"
