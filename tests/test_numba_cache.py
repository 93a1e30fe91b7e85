"""The numba cache directory is keyed by the kernel sources, so a kernel never loads stale across files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import distlab

ROOT = Path(distlab.__file__).resolve().parent.parent


def _copy_sources(tmp_path: Path) -> Path:
    for package in ("distlab", "mdps"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_the_cache_directory_changes_when_a_kernel_source_changes(tmp_path):
    root = _copy_sources(tmp_path)
    before = distlab.kernel_cache_dir(root)
    assert before == distlab.kernel_cache_dir(root)  # deterministic
    with open(root / "distlab" / "components.py", "a") as f:  # an inlined helper's file, not the kernel's
        f.write("\n# edited\n")
    edited = distlab.kernel_cache_dir(root)
    assert edited != before
    with open(root / "distlab" / "options.py", "a") as f:  # pure Python: no recompilation needed
        f.write("\n# edited\n")
    assert distlab.kernel_cache_dir(root) == edited
    with open(root / "mdps" / "gridworld.py", "a") as f:  # a generator kernel
        f.write("\n# edited\n")
    assert distlab.kernel_cache_dir(root) != edited


def _cache_dir_in_subprocess(env: dict) -> str:
    code = "import numba, distlab; print(numba.config.CACHE_DIR)"
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_importing_distlab_points_numba_at_the_keyed_directory_unless_the_user_chose_one(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["PYTHONPATH"] = str(ROOT)
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    expected = tmp_path / "cache" / "distlab" / f"numba-{distlab.kernel_sources_hash(ROOT)}"
    assert _cache_dir_in_subprocess(env) == str(expected)
    env["NUMBA_CACHE_DIR"] = str(tmp_path / "mine")
    assert _cache_dir_in_subprocess(env) == str(tmp_path / "mine")
