#!/usr/bin/env bash
# Issue 16, item 5, on a lent GPU: the full mujoco-rules config (2 envs x 2 teachers x 12 rules x 3 seeds) at
# a longer per-cell budget, each env's 72 cells as ONE stacked process on CUDA (`--stack`), the simulators
# stepped by worker processes (`env_workers`). Resumable: each group checkpoints every 10k env steps into the
# runner's work dirs (deep.rules_study.GROUP_CHECKPOINT_EVERY), so a second call with the same OUT continues a
# group the first call's time limit stopped (finished cells are skipped).
#
#   bash scripts/gpu_study.sh OUT_ROOT [STEPS]        (default STEPS: 50000 for both envs)
#
# Writes OUT_ROOT/full/mujoco-rules/results.parquet (versions and device in its metadata) and the study's log
# lines with wall times. Settings (environment variables):
#   PYTHON              the interpreter (default: python)
#   GPU_STUDY_DEVICE    cuda (default) or cpu (to try the script anywhere)
#   GPU_STUDY_SCALE     full (default) or smoke (a tiny config: to try the script anywhere)
#   GPU_STUDY_WORKERS   env worker processes per group (default: half the cores, at least 1)
#   GPU_STUDY_BATCH     minibatch (default: 256, SAC's; the CPU study used 128)
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-python}"
out="${1:?give the results root, e.g. \$OUT/gpu_study}"
steps="${2:-50000}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export GPU_STUDY_OUT="$out" GPU_STUDY_STEPS="$steps"
# -c, not a script on stdin: the env workers are spawned, and spawn re-imports a main module given as a path
code=$(cat <<'PYEOF'
import os, sys, time
from dataclasses import replace

import deep.rules_study as rs
from distlab import studies

steps, out = int(os.environ["GPU_STUDY_STEPS"]), os.environ["GPU_STUDY_OUT"]
scale = os.environ.get("GPU_STUDY_SCALE", "full")
if scale not in ("full", "smoke"):
    sys.exit(f"GPU_STUDY_SCALE {scale!r}: valid: full, smoke")
workers = int(os.environ.get("GPU_STUDY_WORKERS", max(1, (os.cpu_count() or 2) // 2)))
config = replace(rs.CONFIGS[scale], steps=steps, record_every=max(1, steps // 10), stack=True,
                 device=os.environ.get("GPU_STUDY_DEVICE", "cuda"), env_workers=workers,
                 batch_size=int(os.environ.get("GPU_STUDY_BATCH", rs.CONFIGS[scale].batch_size if scale == "smoke" else 256)))
groups = len(config.envs)
print(f"mujoco-rules {scale}: {len(rs.cells(config))} cells in {groups} stacked groups, {steps} env steps per cell, "
      f"device {config.device}, {workers} env workers per group, batch {config.batch_size}", flush=True)
began = time.perf_counter()
table = studies.run_study("mujoco-rules", scale, out, workers=groups, config=config)
print(f"done: {len(table)} rows -> {studies.results_path(out, 'mujoco-rules', scale)} in {time.perf_counter() - began:.0f} s", flush=True)
PYEOF
)
"$py" -c "$code"
