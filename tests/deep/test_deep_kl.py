"""Closed-form KL of tanh-squashed Gaussians against Monte Carlo, and the squashed densities."""

import math

import pytest
import torch

from deep.kl import gaussian_kl, squashed_log_prob, squashed_sample


def _params(seed, shape):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64), 0.5 * torch.randn(shape, generator=g, dtype=torch.float64) - 0.3


@pytest.mark.parametrize("act_dim", [1, 3])
def test_closed_form_kl_matches_monte_carlo_on_squashed_actions(act_dim):
    # Monte Carlo of E_{a ~ tanh#N_p}[log pi_p(a) - log pi_q(a)] with the *squashed* densities (Jacobian
    # terms included); the closed form ignores the squashing, which must not matter (KL is invariant).
    mp, lp = _params(0, (4, act_dim))
    mq, lq = _params(1, (4, act_dim))
    n = 200_000
    g = torch.Generator().manual_seed(2)
    u = mp + lp.exp() * torch.randn((n, 4, act_dim), generator=g, dtype=torch.float64)
    a = torch.tanh(u)
    keep = a.abs().amax(-1) < 1 - 1e-9  # float64 tanh saturates only for |u| > ~19: none in practice
    log_p = squashed_log_prob(a, mp, lp, eps=1e-12)
    log_q = squashed_log_prob(a, mq, lq, eps=1e-12)
    diff = torch.where(keep, log_p - log_q, torch.zeros_like(log_p))
    mc = diff.mean(0)
    se = diff.std(0) / math.sqrt(n)
    closed = gaussian_kl(mp, lp, mq, lq)
    assert torch.all((mc - closed).abs() < 5 * se + 1e-3), (mc, closed, se)


def test_kl_is_zero_for_equal_and_positive_otherwise():
    mp, lp = _params(3, (10, 2))
    assert torch.allclose(gaussian_kl(mp, lp, mp, lp), torch.zeros(10, dtype=torch.float64))
    mq, lq = _params(4, (10, 2))
    assert torch.all(gaussian_kl(mp, lp, mq, lq) > 0)


def test_squashed_sample_log_prob_matches_density_and_integrates_to_one():
    mean = torch.tensor([[0.3]], dtype=torch.float64)
    log_std = torch.tensor([[-0.4]], dtype=torch.float64)
    a, logp = squashed_sample(mean.expand(5, 1), log_std.expand(5, 1), torch.Generator().manual_seed(0))
    assert torch.allclose(logp, squashed_log_prob(a, mean, log_std, eps=1e-12), atol=1e-8)
    # the squashed density integrates to 1 over (-1, 1) (trapezoid on a fine grid)
    grid = torch.linspace(-1 + 1e-9, 1 - 1e-9, 400_001, dtype=torch.float64)[:, None]
    dens = squashed_log_prob(grid, mean, log_std, eps=1e-12).exp()
    assert abs(torch.trapezoid(dens, grid[:, 0]).item() - 1.0) < 1e-4
