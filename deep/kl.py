"""Tanh-squashed diagonal Gaussian policies: sampling, log-densities and KL divergences.

SAC's policy is ``a = tanh(u)``, ``u ~ N(mean, diag(std^2))`` (Haarnoja et al., 2018a, App. C). Its
log-density is the Gaussian's minus the log-Jacobian of tanh:

    log pi(a|s) = log N(u; mean, std) - sum_i log(1 - tanh(u_i)^2),
    log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u))   (numerically stable form).

KL divergence is invariant under a bijection applied to both distributions (the Jacobians cancel in the
density ratio), so for two squashed Gaussians of the same state

    KL(tanh#N_p || tanh#N_q) = KL(N_p || N_q)
        = sum_i [ log(std_q/std_p) + (std_p^2 + (mean_p - mean_q)^2) / (2 std_q^2) - 1/2 ],

in closed form. (Entropies and cross-entropies are *not* invariant: they keep the Jacobian term and are
estimated by Monte Carlo where a rule needs them.)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from deep.rng import normal

__all__ = ["gaussian_kl", "tanh_log_det", "squashed_log_prob", "squashed_sample", "LOG_2PI"]

LOG_2PI = math.log(2.0 * math.pi)


def gaussian_kl(mean_p: torch.Tensor, log_std_p: torch.Tensor, mean_q: torch.Tensor, log_std_q: torch.Tensor) -> torch.Tensor:
    """KL(N_p || N_q) of diagonal Gaussians, summed over the last (action) axis: closed form above."""
    var_ratio = torch.exp(2.0 * (log_std_p - log_std_q))
    mean_term = (mean_p - mean_q).square() * torch.exp(-2.0 * log_std_q)
    return (log_std_q - log_std_p + 0.5 * (var_ratio + mean_term) - 0.5).sum(-1)


def tanh_log_det(u: torch.Tensor) -> torch.Tensor:
    """sum_i log(1 - tanh(u_i)^2), the log-Jacobian of the squashing, in its stable form."""
    return (2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))).sum(-1)


def gaussian_log_prob(u: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log N(u; mean, diag(exp(log_std)^2)), summed over the action axis."""
    z = (u - mean) * torch.exp(-log_std)
    return (-0.5 * z.square() - log_std - 0.5 * LOG_2PI).sum(-1)


def squashed_log_prob(action: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """log pi(a|s) of an action in (-1, 1) (clamped away from +-1 so that atanh stays finite)."""
    a = action.clamp(-1.0 + eps, 1.0 - eps)
    u = torch.atanh(a)
    return gaussian_log_prob(u, mean, log_std) - tanh_log_det(u)


def squashed_sample(mean: torch.Tensor, log_std: torch.Tensor, generator: torch.Generator | None = None):
    """Reparameterised sample ``a = tanh(mean + std * eps)`` and its log-density (SAC's actor sample)."""
    noise = normal(mean.shape, generator, mean.device, mean.dtype)  # deep.rng: also stacked runs' generators
    u = mean + torch.exp(log_std) * noise
    log_prob = gaussian_log_prob(u, mean, log_std) - tanh_log_det(u)
    return torch.tanh(u), log_prob
