"""Helpers the studies share: gridworld chunks, Q-learning teachers, exact summaries of policies."""

from __future__ import annotations

import numpy as np

import mdps
from distlab import exact, teachers

# Seed offsets: MDP i is gridworld seed i; its Q-learning teacher and its student use their own streams,
# so every number depends only on (MDP index, study parameters), never on how MDPs are chunked.
TEACHER_SEED = 1_000_000
STUDENT_SEED = 2_000_000
NOISE_SEED = 3_000_000


def chunks(n_mdps: int, chunk: int) -> list[tuple[int, int]]:
    """``(first, count)`` pairs covering MDPs ``0 .. n_mdps-1`` in chunks of at most ``chunk``."""
    if n_mdps < 1 or chunk < 1:
        raise ValueError(f"n_mdps and chunk must be >= 1; got {n_mdps}, {chunk}")
    return [(first, min(chunk, n_mdps - first)) for first in range(0, n_mdps, chunk)]


def gridworlds(first: int, count: int, size: int = 20, n_actions: int = 4) -> mdps.MDPBatch:
    """Random gridworlds with seeds ``first .. first+count-1`` (the paper's Sec. 3.2 distribution)."""
    return mdps.random_gridworlds(count, size=size, n_actions=n_actions, seed=first)


def q_learning_teachers(batch: mdps.MDPBatch, first: int, episodes: int = 3000) -> np.ndarray:
    """Q-tables (B, S, A) of the paper's epsilon-greedy (0.1) Q-learning teachers (App. A.4)."""
    return teachers.q_learning_batch(batch, teachers.QLearningConfig(episodes=episodes), seed=TEACHER_SEED + first)


def start_states(batch: mdps.MDPBatch) -> np.ndarray:
    return batch.mu0.argmax(axis=1)


def start_values(batch: mdps.MDPBatch, pis: np.ndarray) -> np.ndarray:
    """Exact expected return ``mu0 @ V_pi`` of each MDP's policy."""
    V, _, _ = exact.evaluate_batch(batch, pis)
    return np.einsum("bs,bs->b", batch.mu0, V)


def visit_weighted_entropy(batch: mdps.MDPBatch, pis: np.ndarray) -> np.ndarray:
    """``sum_s d_pi(s) H(pi(s)) / sum_s d_pi(s)``: the entropy (nats) of ``pi`` in the states it visits.

    The teacher's determinism as the student sees it (Fig. 3, right): states the teacher never visits
    have all-tied Q-values and a uniform softmax, which would swamp a plain state average.
    """
    _, _, visits = exact.evaluate_batch(batch, pis)
    logp = np.log(np.where(pis > 0, pis, 1.0))
    H = -(pis * logp).sum(axis=-1)
    return (visits * H).sum(axis=1) / visits.sum(axis=1)


def expected_cross_entropy(batch: mdps.MDPBatch, teacher: np.ndarray, student: np.ndarray, under: np.ndarray) -> np.ndarray:
    """``E_z[sum_t Hx(pi(s_t) || pi_theta(s_t))] = sum_s d_z(s) Hx(...)`` for control policy ``z``."""
    _, _, visits = exact.evaluate_batch(batch, under)
    Hx = -(teacher * np.log(np.maximum(student, 1e-300))).sum(axis=-1)
    return (visits * Hx).sum(axis=1)


def log_record_steps(steps: int, points: int) -> np.ndarray:
    """Step 0 and about ``points`` log-spaced steps from 1 to ``steps`` (integers, ``steps`` included).

    The record grid of the studies whose figures have a logarithmic step axis: an exact evaluation per
    record dominated the full control study at a record every 100 steps, and a log axis shows the early
    steps, where curves move fastest, no better with 300 evenly spaced records than with 60 log-spaced ones.
    """
    if int(steps) != steps or steps < 1 or int(points) != points or points < 1:
        raise ValueError(f"steps and points must be positive integers; got {steps!r}, {points!r}")
    grid = np.round(np.geomspace(1, steps, points)).astype(np.int64)
    return np.unique(np.concatenate([[0], grid, [steps]]))


def has_score_term(rule) -> bool:
    """Whether ``rule`` (a :class:`distlab.rules.Rule`) weights a score-function term, the only term a
    baseline acts on: a reward of its own, a TD score, or the environment reward ("+R")."""
    return rule.reward != "none" or rule.score != "return" or rule.env_reward
