"""The command line: the foundation commands and their errors."""

import json

import pandas as pd
from typer.testing import CliRunner

from distlab import rules
from distlab.cli import app
from distlab.io import read_parquet_metadata

runner = CliRunner()


def test_gridworlds_summary_and_table(tmp_path):
    result = runner.invoke(app, ["gridworlds", "--n", "3", "--size", "7", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "v_optimal" in result.output
    table = pd.read_parquet(tmp_path / "results.parquet")
    assert len(table) == 3 and (table.v_optimal >= table.v_uniform - 1e-9).all()
    meta = read_parquet_metadata(tmp_path / "results.parquet")
    assert meta["config"]["n"] == 3 and "git_commit" in meta and "distlab_version" in meta
    _assert_versions_and_device(meta)


def _assert_versions_and_device(meta):
    """Every results file records what ran: the installed versions (as importlib.metadata reads them) and the CPU."""
    import platform
    from importlib import metadata

    versions = meta["versions"]
    assert versions["python"] == platform.python_version()
    for name in ("numpy", "numba", "pandas", "torch", "mujoco", "gymnasium"):
        assert versions[name] == metadata.version(name)
    assert meta["device"]["cpu"] and meta["device"]["machine"] == platform.machine()


def test_deep_run_tables_record_versions_and_device(tmp_path):
    result = runner.invoke(app, ["train", "--env", "Pendulum-v1", "--method", "sac", "--steps", "40", "--eval-every", "40",
                                 "--eval-episodes", "1", "--set", "sac.warmup_steps=20", "--set", "sac.batch_size=8",
                                 "--set", "sac.width=8", "--out", str(tmp_path / "run"), "--no-progress"])
    assert result.exit_code == 0, result.output
    for name in ("eval", "episodes"):
        _assert_versions_and_device(read_parquet_metadata(tmp_path / "run" / f"{name}.parquet"))


def test_rules_command_lists_every_rule():
    result = runner.invoke(app, ["rules"])
    assert result.exit_code == 0
    listed = [line.split()[0] for line in result.output.splitlines() if line.strip()]
    assert listed == rules.names()


def test_bench_rejects_unknown_group():
    result = runner.invoke(app, ["bench", "nonsense"])
    assert result.exit_code != 0
    assert "unknown benchmark group" in result.output and "foundation" in result.output


def test_bench_foundation_prints_json_lines():
    result = runner.invoke(app, ["bench", "foundation"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.output.splitlines()]
    names = {r["benchmark"] for r in records}
    assert {"gridworld_generation", "exact_evaluate"} <= names
    assert all(r["group"] == "foundation" for r in records)
