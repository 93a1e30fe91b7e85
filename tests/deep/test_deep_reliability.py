"""Run directories and checkpoints, tried as a user would through `distlab train`: every refusal exits
non-zero and leaves the directory exactly as it was; a finished run can be extended; damaged checkpoints
and stray temporary files give one clear line; only argument problems are usage errors."""

import hashlib
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from distlab.cli import app
from deep.checkpoint import load_checkpoint, save_atomic

TINY = ["--env", "Pendulum-v1", "--method", "sac", "--sac-width", "8", "--sac-batch-size", "8", "--sac-warmup-steps", "300",
        "--no-progress", "--eval-episodes", "1"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _invoke(*args):
    return CliRunner().invoke(app, ["train", *TINY, *[str(a) for a in args]])


def _snapshot(directory: Path) -> dict:
    """name -> (size, mtime_ns, sha256) of every file under ``directory`` (nothing if it does not exist)."""
    if not directory.exists():
        return {}
    return {str(p.relative_to(directory)): (p.stat().st_size, p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(directory.rglob("*")) if p.is_file()}


def _one_clear_error(result, *needles):
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "Invalid value" not in result.output and "Aborted" not in result.output
    assert result.output.strip().splitlines()[-1].startswith("error: "), result.output
    for needle in needles:
        assert needle in result.output, result.output


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished 400-step SAC run (checkpoint and tables at step 400)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    result = _invoke("--steps", 400, "--eval-every", 200, "--out", out)
    assert result.exit_code == 0, result.output
    return out


def _copy(run: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(run, dest)  # files and the TensorBoard folder
    return dest


def test_an_existing_run_is_not_overwritten_without_overwrite(finished_run, tmp_path):
    run = _copy(finished_run, tmp_path / "run")
    before = _snapshot(run)
    result = _invoke("--steps", 400, "--eval-every", 200, "--out", run)
    _one_clear_error(result, "already holds a run", "--resume", "--overwrite")
    assert _snapshot(run) == before


def test_overwrite_replaces_the_run(finished_run, tmp_path):
    run = _copy(finished_run, tmp_path / "run")
    result = _invoke("--steps", 300, "--eval-every", 300, "--out", run, "--overwrite")
    assert result.exit_code == 0, result.output
    assert sorted(pd.read_parquet(run / "eval.parquet").step) == [300]
    assert load_checkpoint(run)["step"] == 300


@pytest.mark.parametrize("kind", ["missing", "empty"])
def test_resume_refuses_a_missing_or_empty_directory(kind, tmp_path):
    run = tmp_path / "run"
    if kind == "empty":
        run.mkdir()
    result = _invoke("--steps", 400, "--out", run, "--resume")
    _one_clear_error(result, "cannot resume", str(run))
    assert run.exists() == (kind == "empty") and _snapshot(run) == {}


def test_a_finished_run_is_extended_to_more_steps(finished_run, tmp_path):
    run = _copy(finished_run, tmp_path / "run")
    first = pd.read_parquet(run / "episodes.parquet")
    result = _invoke("--steps", 600, "--eval-every", 200, "--out", run, "--resume")
    assert result.exit_code == 0, result.output
    assert sorted(pd.read_parquet(run / "eval.parquet").step) == [200, 400, 600]
    state = load_checkpoint(run)
    assert state["step"] == 600 and state["buffer"]["size"] == 600  # the buffer grew with the run
    episodes = pd.read_parquet(run / "episodes.parquet")
    pd.testing.assert_frame_equal(episodes.iloc[:len(first)].reset_index(drop=True), first)  # the old log kept
    assert episodes.episode.tolist() == list(range(len(episodes)))
    # different settings are refused, naming the setting
    before = _snapshot(run)
    result = _invoke("--steps", 800, "--out", run, "--resume", "--sac-lr", "0.001")
    _one_clear_error(result, "sac.lr")
    assert _snapshot(run) == before


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage"])
def test_a_damaged_checkpoint_gives_one_clear_error_naming_the_file(damage, finished_run, tmp_path):
    run = _copy(finished_run, tmp_path / "run")
    path = run / "checkpoint.pt"
    data = path.read_bytes()
    path.write_bytes({"empty": b"", "truncated": data[: len(data) // 2], "garbage": b"not a checkpoint at all" * 50}[damage])
    (run / "checkpoint.pt.tmp").write_bytes(b"stale")  # not even this is removed by a refused run
    before = _snapshot(run)
    result = _invoke("--steps", 600, "--out", run, "--resume")
    _one_clear_error(result, str(path))
    assert len(result.output.strip().splitlines()) == 1
    assert _snapshot(run) == before


def test_a_stray_temporary_file_from_a_killed_write_is_harmless(finished_run, tmp_path):
    run = _copy(finished_run, tmp_path / "run")
    (run / "checkpoint.pt.tmp").write_bytes(b"half a checkpoint")  # a kill during a write leaves this
    (run / ".eval.parquet.x1y2.tmp").write_bytes(b"half a table")  # (distlab.io's temporary name)
    result = _invoke("--steps", 600, "--eval-every", 200, "--out", run, "--resume")
    assert result.exit_code == 0, result.output
    assert not list(run.glob("*.tmp")) and not list(run.glob(".*.tmp")) and load_checkpoint(run)["step"] == 600


def test_atomic_save_keeps_the_previous_file_when_the_write_fails(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_atomic({"step": 1}, path)

    def dies(obj, f):
        f.write(b"partial")
        raise KeyboardInterrupt  # a kill in the middle of torch.save

    monkeypatch.setattr(torch, "save", dies)
    with pytest.raises(KeyboardInterrupt):
        save_atomic({"step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path)["step"] == 1
    save_atomic({"step": 3}, path)  # the next write reuses the one temporary name
    assert torch.load(path)["step"] == 3 and sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


@pytest.mark.parametrize("args,needle", [
    (["--set", "sac.lr=-1"], "sac.lr must be > 0"),
    (["--sac-lr", "-1"], "sac.lr must be > 0"),
    (["--widths", "256,abc"], "--widths '256,abc'"),
    (["--set", "sac.gamma=2"], "sac.gamma must be in [0, 1]"),
    (["--set", "eval_every=fast"], "eval_every must be an integer"),
    (["--method", "dpd", "--k", "3"], "k must be 2"),
])
def test_bad_settings_are_usage_errors_naming_the_option(args, needle, tmp_path):
    result = _invoke("--steps", 400, "--out", tmp_path / "run", *args)
    assert result.exit_code == 2 and needle in result.output, result.output
    assert not (tmp_path / "run").exists()


def test_errors_during_training_are_not_usage_errors(tmp_path, monkeypatch, nan_reward_env):
    import deep.state


    make_env = deep.state.make_env
    monkeypatch.setattr(deep.state, "make_env", lambda env_id: nan_reward_env(make_env(env_id)))
    result = _invoke("--steps", 400, "--out", tmp_path / "run", "--checkpoint-every", 100)
    _one_clear_error(result, "critic", "loss became NaN", "last good checkpoint (step 200)")


def test_without_out_the_run_goes_to_a_default_directory_and_says_where(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = _invoke("--steps", 300, "--eval-every", 300)
    assert result.exit_code == 0, result.output
    run = Path("results/deep/Pendulum-v1_sac_s0")
    assert str(run) in result.output and load_checkpoint(run)["step"] == 300
    before = _snapshot(run)
    again = _invoke("--steps", 300, "--eval-every", 300)  # the default directory is not overwritten either
    _one_clear_error(again, "already holds a run")
    assert _snapshot(run) == before
