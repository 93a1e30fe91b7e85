"""Shipped teachers: export -> evaluate reproduces the recorded return; the file is small and holds no buffer;
it loads as a frozen --teacher; checkpoints of the code before the restructure (commit cd3ecdc) export too;
a frozen-teacher run records KL(teacher || student) on both state distributions."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch.distributions import Normal, kl_divergence
from typer.testing import CliRunner

from distlab.cli import app
from deep.checkpoint import load_checkpoint, save_atomic
from deep.config import TrainConfig, with_overrides
from deep.envs import evaluate_policies
from deep.networks import Ensemble
from deep.teacher_file import load_teacher
from deep.train import train

OLD_CHECKPOINT = Path(__file__).parent / "data" / "checkpoint_cd3ecdc_pendulum.pt"  # written by the code at cd3ecdc
TINY = {"sac.width": 16, "sac.batch_size": 16, "sac.warmup_steps": 200, "eval_episodes": 2, "checkpoint_every": 10_000,
        "progress": False}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher") / "run"
    train(with_overrides(TrainConfig(env="Pendulum-v1", method="ensemble-sac", k=2, steps=500, eval_every=500, out=str(out)), **TINY))
    return out


def _export(source, out, episodes=3, seed=5):
    result = CliRunner().invoke(app, ["export-teacher", str(source), "--out", str(out), "--episodes", str(episodes), "--seed", str(seed)])
    assert result.exit_code == 0, result.output
    return json.loads(result.output.strip().splitlines()[-1])


def _evaluate(*args):
    result = CliRunner().invoke(app, ["evaluate", *[str(a) for a in args]])
    assert result.exit_code == 0, result.output
    return json.loads(result.output.strip().splitlines()[-1])


def test_stochastic_evaluation_is_seeded_and_tends_to_the_deterministic_one(teacher_run, tmp_path, monkeypatch):
    """--stochastic acts with tanh(mean + std * eps): reproducible for a seed, not the deterministic return, and
    equal to it when the policy's std is shrunk to ~1e-13 (the independent check of the sampling path)."""
    from deep import teacher_file

    path = tmp_path / "teacher.pt"
    _export(f"{teacher_run}:0", path)
    deterministic = _evaluate("--policy", path, "--episodes", 2, "--seed", 3)
    sampled = [_evaluate("--policy", path, "--episodes", 2, "--seed", 3, "--stochastic") for _ in range(2)]
    assert sampled[0]["actions"] == "sampled" and deterministic["actions"] == "deterministic"
    assert sampled[0]["mean_return"] == sampled[1]["mean_return"] != deterministic["mean_return"]
    teacher = load_teacher(str(path))
    teacher.ensemble.log_std_min, teacher.ensemble.log_std_max = -31.0, -30.0  # the policy's own clamp: std ~ 1e-13
    shrunk = teacher_file.policy_returns(teacher, teacher.env, 2, 3, stochastic=True)
    assert np.allclose(shrunk, teacher_file.policy_returns(teacher, teacher.env, 2, 3), rtol=0, atol=1e-6)


def test_export_then_evaluate_reproduces_the_recorded_return(teacher_run, tmp_path):
    path = tmp_path / "teacher.pt"
    line = _export(f"{teacher_run}:1", path)
    assert line["member"] == 1 and line["episodes"] == 3 and line["seed"] == 5 and line["steps"] == 500
    again = _evaluate("--policy", path, "--episodes", 3, "--seed", 5)
    assert again["mean_return"] == line["mean_return"] == again["recorded_return"]
    assert again["std_return"] == line["std_return"] and again["episodes"] == 3
    default = _evaluate("--policy", path)  # defaults: the recorded episodes and seed
    assert default["mean_return"] == line["mean_return"]
    other = _evaluate("--policy", path, "--episodes", 2, "--seed", 0)
    assert other["episodes"] == 2 and other["mean_return"] != line["mean_return"]
    # the return is the member's own deterministic return, measured independently from the run's networks
    state = load_checkpoint(teacher_run)
    ens = Ensemble(3, 1, (16, 16))
    ens.load_state_dict(state["ensemble"])
    with torch.no_grad():
        ref = evaluate_policies(lambda o: torch.tanh(ens.policy(torch.as_tensor(o).expand(2, -1, -1))[0]).numpy()[1:2],
                                "Pendulum-v1", 1, 3, seed=5)
    assert np.isclose(ref.mean(), line["mean_return"], rtol=1e-5)


def test_the_file_holds_networks_and_facts_but_no_buffer(teacher_run, tmp_path):
    path = tmp_path / "teacher.pt"
    _export(teacher_run, path)  # no member: the best at the last evaluation
    data = torch.load(path, weights_only=False)
    assert {"buffer", "optimizers", "rng", "episode_log"}.isdisjoint(data)
    assert data["format"] == "distlab-teacher" and data["env"] == "Pendulum-v1" and (data["obs_dim"], data["act_dim"]) == (3, 1)
    assert data["width"] == 16 and data["hidden_layers"] == 2 and data["steps"] == 500
    evals = pd.read_parquet(teacher_run / "eval.parquet")
    assert data["member"] == int(evals.loc[evals.mean_return.idxmax(), "member"])
    assert {"actor", "critic", "target_critic"} <= {key.split(".")[2] for key in data["networks"] if key.startswith("groups")}
    assert "log_alpha" in data["networks"]
    params = sum(v.numel() * v.element_size() for v in data["networks"].values())
    assert path.stat().st_size < params + 20_000  # the parameters and a little metadata
    assert not list(tmp_path.glob("*.tmp"))


def test_a_halfcheetah_sized_teacher_is_a_few_megabytes(tmp_path):
    cfg = with_overrides(TrainConfig(env="HalfCheetah-v5", method="sac", k=1), widths=(256,))
    ens = Ensemble(17, 6, (256,))
    save_atomic(dict(config=cfg.to_dict(), obs_dim=17, act_dim=6, ensemble=ens.state_dict(), step=0, eval_log=[]), tmp_path / "checkpoint.pt")
    line = _export(tmp_path, tmp_path / "cheetah.pt", episodes=1, seed=0)
    print(f"2 x 256 HalfCheetah-v5 teacher file: {line['bytes']} bytes")
    assert line["bytes"] < 3_000_000


def test_a_checkpoint_of_the_code_before_the_restructure_exports(tmp_path):
    old = torch.load(OLD_CHECKPOINT, weights_only=False)
    assert "format" not in old and "buffer" in old  # the cd3ecdc layout
    path = tmp_path / "old.pt"
    line = _export(OLD_CHECKPOINT, path, episodes=2, seed=0)
    best = max((r for r in old["eval_log"] if r["step"] == 400), key=lambda r: r["mean_return"])["member"]
    assert line["member"] == best and line["steps"] == 400
    teacher = load_teacher(str(path))
    full = Ensemble(3, 1, (8, 8))
    full.load_state_dict(old["ensemble"])
    for name, value in full.member_tensors(best).items():
        assert torch.equal(teacher.ensemble.member_tensors(0)[name], value), name
    assert _evaluate("--policy", path)["mean_return"] == line["mean_return"]


def test_a_teacher_file_is_a_frozen_teacher_and_kl_is_recorded(teacher_run, tmp_path):
    path = tmp_path / "teacher.pt"
    _export(f"{teacher_run}:0", path, episodes=2, seed=0)
    out = tmp_path / "student"
    tables = train(with_overrides(TrainConfig(env="Pendulum-v1", method="piekd", rule="n-distill", k=1, teacher=str(path),
                                              steps=400, eval_every=200, out=str(out)), **TINY))
    ev = tables["eval"]
    assert ev.step.tolist() == [200, 400] and set(tables["episodes"].actor) == {-2, 0}
    assert (ev.env_steps == ev.step).all() and (np.diff(ev.wall_time_s) > 0).all()
    assert (ev[["kl_student_states", "kl_teacher_states"]] >= 0).all().all()
    assert ev.teacher_return.nunique() == 1
    # independent check of the last row: torch.distributions' KL of the pre-tanh Gaussians on the states of
    # the student's and the teacher's deterministic episodes (seed 10000, as the run's evaluation)
    teacher = load_teacher(str(path)).ensemble
    student = Ensemble(3, 1, (16,))
    student.load_state_dict(load_checkpoint(out)["ensemble"])

    def visited(net):
        with torch.no_grad():
            act = lambda o: torch.tanh(net.policy(torch.as_tensor(o))[0]).numpy()  # noqa: E731
            return torch.as_tensor(evaluate_policies(act, "Pendulum-v1", 1, 2, seed=10_000, return_states=True)[1][0])[None]

    def kl(states):
        with torch.no_grad():
            (tm, ts), (sm, ss) = teacher.policy(states), student.policy(states)
            return kl_divergence(Normal(tm, ts.exp()), Normal(sm, ss.exp())).sum(-1).mean().item()

    last = ev.iloc[-1]
    assert np.isclose(last.kl_student_states, kl(visited(student)), rtol=1e-4)
    assert np.isclose(last.kl_teacher_states, kl(visited(teacher)), rtol=1e-4)
    assert pd.read_parquet(out / "eval.parquet").kl_teacher_states.tolist() == ev.kl_teacher_states.tolist()


def test_a_teacher_for_another_environment_is_refused(teacher_run, tmp_path):
    path = tmp_path / "teacher.pt"
    _export(teacher_run, path, episodes=1)
    result = CliRunner().invoke(app, ["train", "--env", "HalfCheetah-v5", "--method", "piekd", "--k", "1", "--rule", "teacher",
                                      "--teacher", str(path), "--out", str(tmp_path / "r"), "--no-progress"])
    assert result.exit_code == 2 and "(obs, act) sizes (3, 1)" in result.output
    assert not (tmp_path / "r").exists()
    bad = CliRunner().invoke(app, ["evaluate", "--policy", str(path), "--env", "HalfCheetah-v5"])
    assert bad.exit_code == 1 and "sizes" in bad.output
