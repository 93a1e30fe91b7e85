"""SAC pieces: the critic target's bootstrap mask, truncation vs termination in stored data, compile fallback."""

import warnings

import pytest
import torch

from deep.checkpoint import load_checkpoint
from deep.config import SACConfig, TrainConfig, with_overrides
from deep.networks import Ensemble
from deep.replay import Batch
from deep.sac import SACLearner, sac_critic_target
from deep.train import train


def test_critic_target_bootstraps_only_when_not_terminated():
    torch.manual_seed(0)
    ens = Ensemble(3, 1, (8, 8))
    obs = torch.randn(2, 4, 3)
    batch = Batch(obs, torch.zeros(2, 4, 1), torch.ones(2, 4), torch.randn(2, 4, 3), torch.tensor([[0.0, 1, 0, 1]] * 2))
    y = sac_critic_target(ens, batch, 0.9, torch.Generator().manual_seed(1))
    assert torch.allclose(y[:, 1], torch.ones(2)) and torch.allclose(y[:, 3], torch.ones(2))  # y = r at a terminal
    # elsewhere y = r + gamma (min_j Q'(s', a') - alpha log pi(a'|s')) with the same noise
    from deep.kl import squashed_sample

    g = torch.Generator().manual_seed(1)
    mean, log_std = ens.policy(batch.next_obs)
    a, logp = squashed_sample(mean, log_std, g)
    v = ens.target_q(batch.next_obs, a).min(1).values - ens.log_alpha.exp()[:, None] * logp
    assert torch.allclose(y[:, [0, 2]], (1 + 0.9 * v)[:, [0, 2]], atol=1e-6)


@pytest.mark.parametrize("env,expect_terminal", [("Pendulum-v1", False), ("Hopper-v5", True)])
def test_only_terminations_are_stored_as_terminal(env, expect_terminal, tmp_path):
    # warm-up covers the whole run: random actions, no updates; Pendulum only truncates (200 steps),
    # a randomly acting Hopper falls (terminates) within tens of steps
    cfg = with_overrides(TrainConfig(env=env, method="sac", steps=600, out=str(tmp_path), eval_every=10**6, eval_episodes=1,
                                     progress=False), **{"sac.warmup_steps": 600, "sac.width": 8})
    episodes = train(cfg)["episodes"]
    stored = load_checkpoint(tmp_path)["buffer"]["terminated"]
    assert int(stored.sum()) == int(episodes.terminated.sum())
    assert (episodes.terminated.any()) == expect_terminal
    if not expect_terminal:
        assert len(episodes) == 3  # three truncated episodes, none stored as terminal


def test_compile_failure_falls_back_to_eager(monkeypatch):
    def broken_compile(fn, mode=None):
        def call(*args):
            raise RuntimeError("no compiler here")
        return call

    monkeypatch.setattr(torch, "compile", broken_compile)
    gen = torch.Generator().manual_seed(0)
    learner = SACLearner(Ensemble(3, 1, (8,)), SACConfig(batch_size=4), gen, compile_mode="default")
    batch = Batch(torch.randn(1, 4, 3), torch.rand(1, 4, 1), torch.randn(1, 4), torch.randn(1, 4, 3), torch.zeros(1, 4))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        losses = learner.update(batch)
    assert any("running eagerly" in str(w.message) for w in caught)
    assert set(losses) == {"critic", "actor", "alpha"} and all(torch.isfinite(v) for v in losses.values())
    learner.update(batch)  # later calls go straight to eager
