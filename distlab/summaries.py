"""Per-MDP summaries of generated worlds (the README's first job)."""

from __future__ import annotations

import numpy as np
import pandas as pd

import mdps
from distlab import exact, teachers

__all__ = ["gridworld_summary"]


def gridworld_summary(n: int = 100, size: int = 20, n_actions: int = 4, seed: int = 0) -> pd.DataFrame:
    """One row per random gridworld: layout counts, optimal/uniform/Q-learning-teacher start values.

    The teacher is the paper's: tabular Q-learning with epsilon-greedy exploration (epsilon = 0.1),
    evaluated greedily and epsilon-greedily, exactly.
    """
    batch = mdps.random_gridworlds(n, size=size, n_actions=n_actions, seed=seed)
    V_star, _, _ = exact.optimal_batch(batch)
    V_uniform, _, _ = exact.evaluate_batch(batch, np.full((batch.n_states, batch.n_actions), 1.0 / batch.n_actions))
    Q_teacher = teachers.q_learning_batch(batch, seed=seed)
    V_greedy, _, _ = exact.evaluate_batch(batch, teachers.greedy_policy(Q_teacher))
    V_eps, _, _ = exact.evaluate_batch(batch, teachers.epsilon_greedy_policy(Q_teacher, 0.1))
    start = batch.mu0.argmax(axis=1)
    rows = np.arange(n)
    layouts = np.stack([info["layout"] for info in batch.infos])
    return pd.DataFrame(
        dict(
            seed=[info["seed"] for info in batch.infos],
            walls=(layouts == mdps.gridworld.WALL).sum(axis=(1, 2)),
            terminals=(layouts == mdps.gridworld.TERMINAL).sum(axis=(1, 2)),
            v_optimal=V_star[rows, start],
            v_uniform=V_uniform[rows, start],
            v_teacher_greedy=V_greedy[rows, start],
            v_teacher_eps_greedy=V_eps[rows, start],
        )
    )
