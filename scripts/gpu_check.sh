#!/usr/bin/env bash
# One call on a lent GPU: the `cuda` tests and the GPU bench, as JSON lines in one file.
#
#   bash scripts/gpu_check.sh [OUTPUT.jsonl]      (default: $OUT/gpu_check.jsonl, else ./gpu_check.jsonl)
#
# Lines: {"check": "environment", ...} (torch, CUDA, device name), one {"check": "cuda_test", ...} per test
# (outcome, seconds, the failure's last line), {"check": "cuda_tests", ...} (counts), then the lines of
# `distlab bench deep --device DEVICE` ({"group": "deep", "benchmark": ...}), and {"check": "done", ...}.
# Without CUDA the cuda tests skip and the bench runs on the CPU (GPU_CHECK_DEVICE=cpu, set automatically),
# so the script can be tried anywhere. Settings (environment variables):
#   PYTHON            the interpreter (default: python)
#   GPU_CHECK_DEVICE  the bench's device (default: cuda if torch sees one, else cpu)
#   GPU_CHECK_QUICK=1 the bench's --quick settings (Pendulum, small networks; not speed figures)
# Wheels the device image lacks (mujoco, gymnasium at the pins of constraints.txt): bash scripts/device_wheels.sh.
# Exit status: 0 if every cuda test passed (or skipped) and the bench ran, 1 otherwise.
set -uo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-python}"
out="${1:-${OUT:-.}/gpu_check.jsonl}"
mkdir -p "$(dirname "$out")"
: > "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

"$py" - "$out" <<'PYEOF'
import json, sys, time
import pytest, torch

out = sys.argv[1]

def emit(record):
    with open(out, "a") as f:
        f.write(json.dumps(record) + "\n")

cuda = torch.cuda.is_available()
emit(dict(check="environment", torch=torch.__version__, cuda_available=cuda, cuda_version=torch.version.cuda,
          device_name=torch.cuda.get_device_name(0) if cuda else None, time_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())))

class Collect:
    def __init__(self):
        self.counts = {"passed": 0, "failed": 0, "skipped": 0}

    def pytest_runtest_logreport(self, report):
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
            outcome = report.outcome
            self.counts[outcome] = self.counts.get(outcome, 0) + 1
            message = None
            if isinstance(report.longrepr, tuple):  # a skip: (file, line, reason)
                message = str(report.longrepr[2])
            elif outcome != "passed" and report.longrepr is not None:
                text = str(report.longrepr).strip().splitlines()
                message = text[-1][:500] if text else None
            emit(dict(check="cuda_test", test=report.nodeid, outcome=outcome, seconds=round(report.duration, 3), message=message))

collect = Collect()
import importlib.util
no_xdist = ["-n", "0"] if importlib.util.find_spec("xdist") else []  # one process: the device is shared by the tests
code = pytest.main(["-q", "-p", "no:cacheprovider", *no_xdist, "-m", "cuda", "tests/deep/test_cuda.py"], plugins=[collect])
emit(dict(check="cuda_tests", exit_code=int(code), **collect.counts))
sys.exit(0 if int(code) in (0, 5) and collect.counts["failed"] == 0 else 1)
PYEOF
tests_status=$?

device="${GPU_CHECK_DEVICE:-$("$py" -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')}"
quick=()
[ "${GPU_CHECK_QUICK:-0}" = "1" ] && quick=(--quick)
"$py" -m distlab bench deep --device "$device" "${quick[@]}" >> "$out"
bench_status=$?

"$py" -c 'import json, sys; print(json.dumps(dict(check="done", tests_status=int(sys.argv[1]), bench_status=int(sys.argv[2]))))' \
    "$tests_status" "$bench_status" >> "$out"
echo "gpu_check: tests exit $tests_status, bench exit $bench_status; JSON lines in $out" >&2
[ "$tests_status" -eq 0 ] && [ "$bench_status" -eq 0 ]
