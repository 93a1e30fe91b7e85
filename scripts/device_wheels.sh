#!/usr/bin/env bash
# Wheels a lent GPU machine (Python 3.12, torch preinstalled, no network) lacks: mujoco and gymnasium at the
# versions constraints.txt pins, and their dependencies missing from that image. Run here, then carry `.whl`:
#
#   bash scripts/device_wheels.sh            # -> .whl/*.whl (ignored by git via .git/info/exclude)
#   device run, carry [".whl"], command starting with:
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
#       .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit; ...
#   (then `python3 -m pip install --no-deps --no-build-isolation -e .` or PYTHONPATH=$PWD for distlab itself)
set -euo pipefail
cd "$(dirname "$0")/.."
pin() { sed -n "s/^$1==\([^ ]*\).*/\1/p" constraints.txt; }
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
mkdir -p .whl
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any -d .whl \
    "mujoco==$(pin mujoco)" "gymnasium==$(pin gymnasium)" farama-notifications glfw pyopengl "websockets>=13"
ls -l .whl
