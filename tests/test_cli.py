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
