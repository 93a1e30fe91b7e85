"""Multi-armed bandits for choosing a teacher: one set of formulas for the tabular study and the deep elections.

Seed 003 (*Extending single-task policy distillation*, Sec. 3.5 "multi-teacher policy distillation")
frames learning from several teachers as a bandit: the arms are the teachers, the reward is what the
student achieves after learning from the chosen one; it names random, epsilon-greedy, UCB1 and Thompson
sampling. Users: ``distlab.studies.multi_teacher`` (rewards in [0, 1]) and ``deep.election`` (rewards
are return changes, so it passes their spread as ``scale``). An arm's state is its pull count n_i and
reward sum S_i; n = sum_i n_i; ties go to the lowest index.

* ``random``: i ~ Uniform(K).
* ``epsilon-greedy``: with probability epsilon (and while nothing has been pulled) i ~ Uniform(K), else
  argmax_i mean_i, mean_i = S_i / n_i (0 for an arm never pulled). One uniform draw decides, every call.
* ``ucb1`` (Auer, Cesa-Bianchi & Fischer, 2002, Fig. 1): every arm once, then
  argmax_i  mean_i + c * scale * sqrt(2 ln n / n_i).  Auer's UCB1 is c = scale = 1 for rewards in [0, 1];
  ``scale`` rescales the bonus to rewards of another range.
* ``thompson``: Gaussian Thompson sampling (Agrawal & Goyal, 2013, "Further optimal regret bounds for
  Thompson sampling", Gaussian priors): prior N(mu_0, sigma^2) per arm and Gaussian rewards of std sigma
  give the conjugate posterior N((mu_0 + S_i) / (n_i + 1), sigma^2 / (n_i + 1)); draw theta_i from it,
  argmax_i theta_i (Agrawal & Goyal: mu_0 = 0, sigma = 1).

numpy only (core module: no deep / torch import).
"""

from __future__ import annotations

import numpy as np

__all__ = ["STRATEGIES", "empirical_means", "ucb1_scores", "thompson_posterior", "thompson_draw", "choose_arm"]

STRATEGIES = ("random", "epsilon-greedy", "ucb1", "thompson")


def empirical_means(counts, sums) -> np.ndarray:
    """mean_i = S_i / n_i, 0 for an arm never pulled."""
    counts, sums = np.asarray(counts, dtype=float), np.asarray(sums, dtype=float)
    return np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)


def ucb1_scores(counts, sums, c: float = 1.0, scale: float = 1.0) -> np.ndarray:
    """UCB1 indices mean_i + c * scale * sqrt(2 ln n / n_i) (Auer et al., 2002); +inf for an arm never pulled."""
    counts = np.asarray(counts, dtype=float)
    n = counts.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        bonus = np.sqrt(2.0 * np.log(max(n, 1.0)) / counts)
    return np.where(counts > 0, empirical_means(counts, sums) + c * scale * bonus, np.inf)


def thompson_posterior(counts, sums, sigma: float = 1.0, prior_mean: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) of the conjugate Gaussian posterior of each arm: ((mu_0 + S_i) / (n_i + 1), sigma / sqrt(n_i + 1))."""
    counts, sums = np.asarray(counts, dtype=float), np.asarray(sums, dtype=float)
    return (prior_mean + sums) / (counts + 1.0), sigma / np.sqrt(counts + 1.0)


def thompson_draw(counts, sums, rng: np.random.Generator, sigma: float = 1.0, prior_mean: float = 0.0) -> np.ndarray:
    """One posterior sample theta_i per arm (one standard normal draw per arm, in arm order)."""
    mean, std = thompson_posterior(counts, sums, sigma, prior_mean)
    return mean + std * rng.standard_normal(len(mean))


def choose_arm(strategy: str, counts, sums, rng: np.random.Generator, *, epsilon: float = 0.1, c: float = 1.0,
               scale: float = 1.0, sigma: float = 1.0, prior_mean: float = 0.0) -> int:
    """The arm ``strategy`` pulls next, given pull counts and reward sums (formulas in the module docstring)."""
    counts = np.asarray(counts)
    k = len(counts)
    if strategy == "random":
        return int(rng.integers(k))
    if strategy == "epsilon-greedy":
        if rng.random() < epsilon or counts.sum() == 0:
            return int(rng.integers(k))
        return int(np.argmax(empirical_means(counts, sums)))
    if strategy == "ucb1":
        return int(np.argmax(ucb1_scores(counts, sums, c, scale)))
    if strategy == "thompson":
        return int(np.argmax(thompson_draw(counts, sums, rng, sigma, prior_mean)))
    raise ValueError(f"unknown bandit {strategy!r}; valid: {', '.join(STRATEGIES)}")
