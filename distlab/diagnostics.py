"""Is an update rule a gradient field? Jacobians, their asymmetry, and the gap to a loss's gradient.

A smooth vector field ``g(theta)`` is the gradient of some function iff its Jacobian is symmetric
(on a simply connected domain). Theorem 1 of *Distilling Policy Distillation* says on-policy distill is
not a gradient field; Theorem 2 that adding the reward ``-l(s_{t+1})`` (n-distill) makes it the
gradient of ``E_{pi_theta}[sum_t l(s_t)]``. Two measurements, on the exact updates of
:mod:`distlab.expected`:

* ``asymmetry(jacobian(...)) = ||J - J^T||_F / ||J||_F``: 0 (to finite-difference precision) for a
  gradient field, clearly positive otherwise;
* ``gradient_gap(...) = ||g - grad J|| / max(||g||, ||grad J||)``: the relative distance between the
  update and the finite-difference gradient of the rule's *candidate objective* (:func:`rule_objective`).

The candidate objective is built from the rule's components, never from its name, so user rules get
one too::

    J(theta) = E_q[ sum_t  w(s_t) l(s_t)  +  c(s_t, a_t) ]

    c = -mask(s) log pi(a|s)       for reward "log-teacher"            (entropy regularised)
      + V_pi(s) 1[t = 1]           for "teacher-v-shaping" (-sum rhat telescopes to V_pi(s_1): a constant)
      - r(s, a)                    for the "+R" flag, and for TD scores (whose target is the return)
      + 0                          for "neg-next-loss", "log-teacher-next": these rewards are the
                                   corrections that make the loss term a gradient (Theorem 2)

with the gate ``w`` held fixed at the given theta and ``q`` the control (which moves with theta when it
is the student). E.g. hx-type rules: ``E_{pi_theta}[sum_t Hx(pi || pi_theta)]``; log-teacher type:
``E_{pi_theta}[sum_t -log pi(a_t|s_t)]``; ``rl``: ``-E_{pi_theta}[sum_t r_t]`` (``rules.Rule.gradient_of``).
"""

from __future__ import annotations

import numpy as np

from distlab.expected import expected_update, rule_objective, update_terms
from mdps import TabularMDP

__all__ = ["rule_objective", "jacobian", "asymmetry", "objective_gradient", "gradient_gap"]


def _perturbations(theta: np.ndarray, eps: float):
    flat = theta.ravel()
    for j in range(flat.size):
        plus, minus = flat.copy(), flat.copy()
        plus[j] += eps
        minus[j] -= eps
        yield j, plus.reshape(theta.shape), minus.reshape(theta.shape)


def jacobian(mdp: TabularMDP, rule, theta, teacher, eps: float = 1e-6, **options) -> np.ndarray:
    """Central-difference Jacobian ``J[i, j] = d g_i / d theta_j`` of the expected update (flattened theta)."""
    theta = np.asarray(theta, dtype=np.float64)
    J = np.empty((theta.size, theta.size))
    for j, plus, minus in _perturbations(theta, eps):
        g_plus = expected_update(mdp, rule, plus, teacher, **options)
        g_minus = expected_update(mdp, rule, minus, teacher, **options)
        J[:, j] = (g_plus - g_minus).ravel() / (2.0 * eps)
    return J


def asymmetry(J) -> float:
    """``||J - J^T||_F / ||J||_F``: 0 for the Jacobian of a gradient field (a Hessian)."""
    J = np.asarray(J, dtype=np.float64)
    if J.ndim != 2 or J.shape[0] != J.shape[1]:
        raise ValueError(f"J must be a square matrix; got shape {J.shape}")
    norm = np.linalg.norm(J)
    return 0.0 if norm == 0.0 else float(np.linalg.norm(J - J.T) / norm)


def objective_gradient(mdp: TabularMDP, rule, theta, teacher, eps: float = 1e-6, **options) -> np.ndarray:
    """Central-difference gradient of :func:`rule_objective`, with the gate held at ``theta``."""
    theta = np.asarray(theta, dtype=np.float64)
    weight = update_terms(mdp, rule, theta, teacher, **options).weight
    grad = np.empty(theta.size)
    for j, plus, minus in _perturbations(theta, eps):
        j_plus = rule_objective(mdp, rule, plus, teacher, fixed_weight=weight, **options)
        j_minus = rule_objective(mdp, rule, minus, teacher, fixed_weight=weight, **options)
        grad[j] = (j_plus - j_minus) / (2.0 * eps)
    return grad.reshape(theta.shape)


def gradient_gap(mdp: TabularMDP, rule, theta, teacher, eps: float = 1e-6, **options) -> float:
    """``||g - grad J|| / max(||g||, ||grad J||)`` between the update and its candidate objective's
    gradient: ~1e-8 (finite-difference precision) for the rules that are gradient fields."""
    g = expected_update(mdp, rule, theta, teacher, **options)
    grad = objective_gradient(mdp, rule, theta, teacher, eps, **options)
    scale = max(np.linalg.norm(g), np.linalg.norm(grad))
    return 0.0 if scale == 0.0 else float(np.linalg.norm(g - grad) / scale)
