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


def _stub_runner(monkeypatch) -> list:
    """Replace the runner by a recorder: these tests check what is said before a study runs, not the study."""
    import pandas as pd

    import distlab.runner

    calls = []
    monkeypatch.setattr(distlab.runner, "run_grid", lambda name, *args, **kwargs: calls.append(name) or pd.DataFrame())
    return calls


def test_a_study_on_a_cold_kernel_cache_says_it_compiles_and_for_how_long(tmp_path, monkeypatch, capsys):
    """First run of a source version: one line on stderr before the progress bar (which would sit at 0 %
    while numba compiles); none once the cache holds kernels, none for a deep study."""
    from distlab import kernel_cache_is_warm, studies

    cache = tmp_path / "numba"
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(cache))
    calls = _stub_runner(monkeypatch)
    assert not kernel_cache_is_warm()
    studies.run_study("control", "smoke", tmp_path / "out")
    notice = capsys.readouterr().err
    assert "compiling the numba kernels" in notice and "minute" in notice and "distlab warm-cache" in notice
    studies.run_study("control", "smoke", tmp_path / "out", progress=False)  # no bar, no notice (library use)
    assert capsys.readouterr().err == ""
    assert studies.compile_notice("mujoco-rules") is None  # deep studies run no numba kernel
    (cache / "distlab_x").mkdir(parents=True)
    (cache / "distlab_x" / "kernels.train-42.py311.nbi").write_bytes(b"")  # what numba writes per kernel
    assert kernel_cache_is_warm()
    studies.run_study("control", "smoke", tmp_path / "out")
    assert "compiling" not in capsys.readouterr().err
    assert calls == ["control"] * 3


def test_warm_cache_runs_every_tabular_study_at_smoke_scale_and_keeps_no_results(monkeypatch):
    """`distlab warm-cache` (run by scripts/setup.sh, its last line) compiles by running the smoke configs in
    this process into a temporary directory that it removes."""
    from typer.testing import CliRunner

    from distlab import studies
    from distlab.cli import app

    seen = []
    monkeypatch.setattr(studies, "run_study", lambda name, scale, out, **kw: seen.append((name, scale, Path(out), kw)))
    result = CliRunner().invoke(app, ["warm-cache"])
    assert result.exit_code == 0, result.output
    assert [s[0] for s in seen] == studies.tabular_names() and "mujoco-rules" not in studies.tabular_names()
    assert {(s[1], s[3]["workers"]) for s in seen} == {("smoke", 1)}
    assert not seen[0][2].exists()
    bad = CliRunner().invoke(app, ["warm-cache", "mujoco-rules"])
    assert bad.exit_code == 2 and "not a tabular study: 'mujoco-rules'" in " ".join(bad.output.split())
    setup = (ROOT / "scripts" / "setup.sh").read_text().strip().splitlines()
    assert setup[-1].split()[:2] == [".venv/bin/distlab", "warm-cache"]
