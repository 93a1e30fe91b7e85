#!/usr/bin/env bash
# Set up distlab in ./.venv (created if missing), with the pinned stack of constraints.txt: torch's CPU wheel
# first, so that pip never resolves a newer torch with its CUDA packages; then distlab with its test, Ray and
# TensorBoard extras.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -c constraints.txt "torch==2.13.0"
.venv/bin/python -m pip install --quiet -c constraints.txt -e ".[test,ray,tb]"
.venv/bin/distlab warm-cache  # compile the numba kernels now: the first study then starts at once
