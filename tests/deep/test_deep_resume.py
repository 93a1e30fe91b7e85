"""Bit-identical resume: a run killed after a checkpoint and resumed gives the uninterrupted run's tables.

The checkpoint carries the episode in progress and the simulator (``deep.state.episode_state``,
``deep.envs.env_state``), so every table (eval, episodes, phases; wall times aside) and the final networks
are *equal*, not close: same device, same thread count (one here), same libraries. Every checkpoint below
falls in the middle of an episode (Pendulum's last 200 steps, HalfCheetah's 1000), the case the previous
format lost.
"""

from pathlib import Path

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import torch

from deep.checkpoint import load_checkpoint
from deep.config import TrainConfig, with_overrides
from deep.envs import env_state, make_env, restore_env_state
from deep.seeds import train_seeds
from deep.train import _Killed, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TEACHERS = Path(__file__).resolve().parents[2] / "deep" / "teachers"
TINY = {"sac.width": 16, "sac.batch_size": 16, "sac.warmup_steps": 200, "distill_start": 300, "distill_interval": 150,
        "distill_batches": 5, "eval_episodes": 1, "eval_every": 300, "checkpoint_every": 250, "progress": False,
        "dpd_batch": 16, "dpd_recent": 200, "env": "Pendulum-v1", "steps": 600}


def tiny(**kw) -> TrainConfig:
    return with_overrides(TrainConfig(), **{**TINY, **kw})


def without_wall_times(tables: dict) -> dict:
    return {name: t.drop(columns=[c for c in t.columns if c.startswith("wall_time")]) for name, t in tables.items()}


def assert_same_tables(a: dict, b: dict) -> None:
    a, b = without_wall_times(a), without_wall_times(b)
    assert a.keys() == b.keys()
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], check_exact=True, obj=name)


def assert_same_networks(dir_a, dir_b) -> None:
    a, b = load_checkpoint(dir_a)["ensemble"], load_checkpoint(dir_b)["ensemble"]
    for key in a:
        assert torch.equal(a[key], b[key]), key


def killed_and_resumed(cfg: TrainConfig, out: Path, stop_at: int) -> dict:
    """``cfg`` killed (``stop_at``) after its checkpoint at ``checkpoint_every``, then resumed to the end."""
    cfg = with_overrides(cfg, out=str(out))
    with pytest.raises(_Killed):
        train(cfg, stop_at=stop_at)
    assert load_checkpoint(out)["step"] == cfg.checkpoint_every
    return train(cfg, resume=True)


@pytest.fixture(scope="module")
def pendulum_teacher(tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher")
    train(tiny(method="ensemble-sac", k=2, steps=300, eval_every=300, out=str(out)))
    return f"{out}:1"


@pytest.mark.parametrize("overrides", [
    dict(method="sac"),
    dict(method="piekd", k=2),
    dict(method="dpd"),
], ids=["sac", "piekd", "dpd"])
def test_a_resumed_run_is_the_uninterrupted_run(overrides, tmp_path):
    cfg = tiny(**overrides)
    full = train(with_overrides(cfg, out=str(tmp_path / "full")))
    resumed = killed_and_resumed(cfg, tmp_path / "killed", stop_at=400)  # checkpoint at 250: mid-episode
    assert_same_tables(full, resumed)
    assert_same_networks(tmp_path / "full", tmp_path / "killed")
    if overrides["method"] == "piekd":
        assert resumed["phases"].step.tolist() == [300, 450, 600]


@pytest.mark.parametrize("rule", ["teacher", "on-policy"])
def test_a_resumed_frozen_teacher_rule_run_is_the_uninterrupted_run(rule, pendulum_teacher, tmp_path):
    """``teacher``: the frozen teacher acts (its samples from the run's generator); ``on-policy``: the student."""
    cfg = tiny(method="piekd", k=1, rule=rule, teacher=pendulum_teacher)
    full = train(with_overrides(cfg, out=str(tmp_path / "full")))
    resumed = killed_and_resumed(cfg, tmp_path / "killed", stop_at=400)
    assert_same_tables(full, resumed)
    assert "kl_student_states" in resumed["eval"]


def test_a_resumed_stack_is_the_uninterrupted_stack(tmp_path):
    cfg = tiny(method="piekd-random-teacher", k=2)
    full = train_seeds(with_overrides(cfg, out=str(tmp_path / "full")), [0, 1])
    killed = with_overrides(cfg, out=str(tmp_path / "killed"))
    with pytest.raises(_Killed):
        train_seeds(killed, [0, 1], stop_at=400)
    resumed = train_seeds(killed, [0, 1], resume=True)
    for seed in (0, 1):
        assert_same_tables(full[seed], resumed[seed])
        assert_same_networks(tmp_path / "full" / f"seed_{seed}", tmp_path / "killed" / f"seed_{seed}")


def test_a_resumed_mujoco_rule_run_is_the_uninterrupted_run(tmp_path):
    """HalfCheetah (episodes of 1000 steps: the checkpoint at 150 is mid-episode) from a shipped teacher."""
    cfg = tiny(env="HalfCheetah-v5", method="piekd", k=1, rule="on-policy", teacher=str(TEACHERS / "halfcheetah_good.pt"),
               steps=300, eval_every=300, checkpoint_every=150, **{"sac.warmup_steps": 100})
    full = train(with_overrides(cfg, out=str(tmp_path / "full")))
    resumed = killed_and_resumed(cfg, tmp_path / "killed", stop_at=200)
    assert_same_tables(full, resumed)
    assert_same_networks(tmp_path / "full", tmp_path / "killed")


def _steps(env, actions) -> list:
    out = []
    for a in actions:
        obs, reward, terminated, truncated, _ = env.step(a)
        out.append((obs.copy(), reward, terminated, truncated))
        if terminated or truncated:
            break
    return out


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "HalfCheetah-v5", "Ant-v5"])
def test_a_restored_env_takes_the_same_steps(env_id):
    """Ant reads positions the previous mj_step derived (stale by a substep) before stepping: its integration
    state alone would not do, the saved MjData does. The TimeLimit counter comes back too."""
    env = make_env(env_id)
    env.reset(seed=3)
    rng = np.random.default_rng(0)
    actions = [0.3 * rng.uniform(-1, 1, env.action_space.shape).astype(env.action_space.dtype) for _ in range(60)]
    _steps(env, actions[:30])
    saved = env_state(env)
    expected = _steps(env, actions[30:])
    fresh = make_env(env_id)
    restore_env_state(fresh, saved)
    got = _steps(fresh, actions[30:])
    assert len(got) == len(expected)
    for (o1, r1, *f1), (o2, r2, *f2) in zip(expected, got):
        assert np.array_equal(o1, o2) and r1 == r2 and f1 == f2
    limit = fresh
    while not isinstance(limit, gym.wrappers.TimeLimit):
        limit = limit.env
    assert limit._elapsed_steps == 30 + len(got)
