"""The `distlab train` / `distlab sweep` commands: argument errors before work, and a tiny sweep."""

import pandas as pd
from typer.testing import CliRunner

from distlab.cli import app

TINY = ["--set", "sac.width=8", "--set", "sac.batch_size=8", "--set", "sac.warmup_steps=300", "--set", "progress=false"]


def test_train_rejects_bad_arguments_with_the_valid_choices(tmp_path):
    result = CliRunner().invoke(app, ["train", "--env", "Pendulum-v1", "--method", "dpd", "--k", "3", "--out", str(tmp_path / "r")])
    assert result.exit_code != 0 and "k must be 2" in result.output
    assert not (tmp_path / "r").exists()


def test_sweep_runs_methods_x_seeds_and_resumes(tmp_path):
    args = ["sweep", "tiny", "--envs", "Pendulum-v1", "--methods", "sac,ensemble-sac", "--seeds", "0", "--steps", "400",
            "--eval-every", "400", "--out", str(tmp_path), "--workers", "1", "--set", "eval_episodes=1", *TINY]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(tmp_path / "tiny" / "results.parquet")
    assert sorted(table.method.unique()) == ["ensemble-sac", "sac"]
    assert table.groupby("method").size().to_dict() == {"ensemble-sac": 3, "sac": 1}  # one row per member
    again = CliRunner().invoke(app, args)  # every cell finished: nothing reruns, same table
    assert again.exit_code == 0
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "tiny" / "results.parquet"), table)


def test_train_set_overrides_named_options(tmp_path):
    # --set progress=false and --set eval_episodes=1 override the named options' defaults without clashing
    args = ["train", "--env", "Pendulum-v1", "--method", "sac", "--steps", "400", "--eval-every", "400",
            "--set", "eval_episodes=1", "--out", str(tmp_path), *TINY]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "step 400: best member" in result.output
    assert pd.read_parquet(tmp_path / "eval.parquet").episodes.tolist() == [1]


def test_every_config_field_is_a_train_option():
    """The options are generated from TrainConfig and its nested groups (SACConfig, RuleMapping): every field has
    its --flag, with its help text."""
    from dataclasses import fields

    from click.testing import CliRunner as ClickRunner
    from typer.main import get_command

    from deep.config import NESTED, TrainConfig

    command = get_command(app).commands["train"]
    flags = {opt for param in command.params for opt in param.opts}
    helps = {param.name: param.help for param in command.params}
    for f in fields(TrainConfig):
        if f.name not in NESTED:
            assert f"--{f.name.replace('_', '-')}" in flags and helps[f.name] == f.metadata["help"], f.name
    assert set(NESTED) == {"sac", "mapping"}
    for group, cls in NESTED.items():
        for f in fields(cls):
            assert f"--{group}-{f.name.replace('_', '-')}" in flags and helps[f"{group}_{f.name}"] == f.metadata["help"], f.name
    assert {"--resume", "--overwrite", "--set"} <= flags
    assert ClickRunner().invoke(command, ["--help"]).exit_code == 0
