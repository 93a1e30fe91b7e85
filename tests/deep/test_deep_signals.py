"""SIGTERM / SIGINT: a deep run (single, stacked seeds, a study cell) checkpoints the step it is at, stops
with one line naming the command that resumes it, and the resumed run is the uninterrupted one.

The signals are real: sent by another process to ``distlab train``, or raised by the process itself in
the middle of an env step (``signal.raise_signal`` from inside the loop), so the handler, the safe point
and the checkpoint are the production ones.
"""

import os
import pickle
import shlex
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

import deep.loop
from deep.checkpoint import load_checkpoint
from deep.config import TrainConfig, with_overrides
from deep.seeds import run_seeds_cell, train_seeds
from deep.train import Interrupted, run_cell, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = {"env": "Pendulum-v1", "method": "sac", "sac.width": 8, "sac.batch_size": 8, "sac.warmup_steps": 100, "steps": 400,
        "eval_every": 200, "eval_episodes": 1, "progress": False}


def tiny(**kw) -> TrainConfig:
    return with_overrides(TrainConfig(), **{**TINY, **kw})


def without_wall_times(table: pd.DataFrame) -> pd.DataFrame:
    return table.drop(columns=[c for c in table.columns if c.startswith("wall_time")]).reset_index(drop=True)


def signal_during_step(monkeypatch, module, step: int, runs: int = 1, signum=signal.SIGTERM) -> None:
    """Raise ``signum`` in this process while env step ``step`` is being taken (its first env's action)."""
    calls = {"n": 0}
    original = module.to_env_action

    def wrapped(action, space):
        calls["n"] += 1
        if calls["n"] == (step - 1) * runs + 1:
            signal.raise_signal(signum)
        return original(action, space)

    monkeypatch.setattr(module, "to_env_action", wrapped)


@pytest.mark.slow  # ~35 s: two start-ups of the CLI (torch, gymnasium) under load
def test_sigterm_to_distlab_train_checkpoints_and_the_printed_command_resumes(tmp_path):
    """A run far below checkpoint_every (10k) used to leave nothing; now SIGTERM from another process leaves
    a resumable run, and the printed command, run as printed, finishes it."""
    out = tmp_path / "run"
    args = ["train", "--env", "Pendulum-v1", "--method", "sac", "--sac-width", "8", "--sac-batch-size", "8",
            "--sac-warmup-steps", "100", "--steps", "600", "--eval-every", "100", "--eval-episodes", "1", "--no-progress",
            "--out", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "distlab", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    deadline = time.monotonic() + 180
    while not (out / "eval.parquet").exists():  # the first evaluation (step 100): training has started
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert sum("interrupted" in line for line in lines) == 1 and lines[-1].startswith("interrupted by SIGTERM at env step ")
    step = load_checkpoint(out)["step"]
    assert 100 <= step < 600 and f"env step {step}," in lines[-1]
    command = shlex.split(lines[-1].split("resume with: ", 1)[1])
    assert command[:2] == ["distlab", "train"] and command[-3:] == ["--resume", "--out", str(out)]
    done = subprocess.run([sys.executable, "-m", "distlab", *command[1:]], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert load_checkpoint(out)["step"] == 600
    assert sorted(pd.read_parquet(out / "eval.parquet").step) == list(range(100, 601, 100))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_at_any_step_checkpoints_that_step_and_the_resumed_run_is_the_uninterrupted_one(signum, monkeypatch, tmp_path):
    cfg = tiny(out=str(tmp_path / "killed"))
    full = train(with_overrides(cfg, out=str(tmp_path / "full")))
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    signal_during_step(monkeypatch, deep.loop, 233, signum=signum)  # not a checkpoint or evaluation step
    with pytest.raises(Interrupted) as stopped:
        train(cfg)
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before  # handlers given back
    err = stopped.value
    assert err.step == 233 and err.exit_code == 128 + signum and "\n" not in str(err)
    assert str(err).endswith(f"--resume --out {tmp_path / 'killed'}") and "distlab train --env Pendulum-v1" in str(err)
    assert load_checkpoint(tmp_path / "killed")["step"] == 233
    monkeypatch.undo()
    resumed = train(cfg, resume=True)
    for name in full:
        pd.testing.assert_frame_equal(without_wall_times(full[name]), without_wall_times(resumed[name]), check_exact=True)


def test_a_signal_stops_stacked_runs_with_every_seed_checkpointed(monkeypatch, tmp_path):
    cfg = tiny(method="ensemble-sac", k=2, out=str(tmp_path / "killed"))
    full = train_seeds(with_overrides(cfg, out=str(tmp_path / "full")), [0, 1])
    signal_during_step(monkeypatch, deep.loop, 251, runs=2)
    with pytest.raises(Interrupted) as stopped:
        train_seeds(cfg, [0, 1])
    assert "--seeds 0,1 --resume --out" in str(stopped.value)
    assert [load_checkpoint(tmp_path / "killed" / f"seed_{s}")["step"] for s in (0, 1)] == [251, 251]
    monkeypatch.undo()
    resumed = train_seeds(cfg, [0, 1], resume=True)
    for seed in (0, 1):
        pd.testing.assert_frame_equal(without_wall_times(full[seed]["eval"]), without_wall_times(resumed[seed]["eval"]),
                                      check_exact=True)


@pytest.mark.parametrize("stacked", [False, True], ids=["run_cell", "run_seeds_cell"])
def test_a_signal_stops_a_study_cell_and_the_rerun_cell_resumes_it(stacked, monkeypatch, tmp_path):
    cell = {"env": "Pendulum-v1", "method": "sac", "sac.width": 8, "sac.batch_size": 8, "sac.warmup_steps": 100,
            "steps": 300, "eval_every": 150, "eval_episodes": 1}
    cell = dict(cell, seeds=[0, 1]) if stacked else dict(cell, seed=0)
    run = run_seeds_cell if stacked else run_cell
    full = run(dict(cell, out=str(tmp_path / "full")))
    signal_during_step(monkeypatch, deep.loop, 222, runs=2 if stacked else 1)
    with pytest.raises(Interrupted):
        run(dict(cell, out=str(tmp_path / "killed")))
    monkeypatch.undo()
    resumed = run(dict(cell, out=str(tmp_path / "killed")))  # a rerun of the study resumes the cell
    pd.testing.assert_frame_equal(without_wall_times(full), without_wall_times(resumed), check_exact=True)


def test_interrupted_stops_code_that_catches_exception_and_survives_a_process_pool():
    """A study's runner that records a failed cell (``except Exception``) must not go on to the next cell; a
    pool worker sends the exception back pickled."""
    err = Interrupted("interrupted by SIGINT at env step 7, ...", signal.SIGINT, 7)
    assert not isinstance(err, Exception) and isinstance(err, KeyboardInterrupt)
    back = pickle.loads(pickle.dumps(err))
    assert (str(back), back.signum, back.step, back.exit_code) == (str(err), signal.SIGINT, 7, 130)
