"""multi-teacher: a student choosing among teachers of varying quality with a bandit (seed 003, Secs. 3.5, 4.5).

*Extending single-task policy distillation* (seed 003) frames learning from several teachers as a
multi-armed bandit: each round the student picks a teacher (an arm), distils from it, and the bandit's
reward is the return the student then achieves. The seed's teachers were 4 experts, 4 "good" ones
(N(0, 1) noise on their Q-values) and 4 "mediocre" ones (N(0, 2)). Here, on random 20x20 gridworlds:
``len(noise)`` Q-learning teachers per MDP (each trained with its own seed), Gaussian noise of standard
deviation ``noise[k]`` added to teacher k's Q-table, softmax at ``teacher_temperature``. Each round the
student runs ``steps_per_round`` steps of on-policy distillation (sampled) from the chosen teacher; the
bandit's reward is the student's return afterwards divided by the gridworld's reward (10), in [0, 1].

Bandits (``distlab.bandits``, the formulas and their sources): ``random``; ``epsilon-greedy`` (epsilon =
0.1, empirical means); ``ucb1`` (Auer et al., 2002: ``mean_k + sqrt(2 ln n / n_k)``, every arm once
first; rewards are in [0, 1] as UCB1 assumes, so c = scale = 1); ``thompson`` (Gaussian posterior
``N((0.5 + S_k) / (n_k + 1), sigma^2 / (n_k + 1))``: prior mean 0.5, ``sigma = 0.1``).
Measured per round: the chosen teacher, its (exact) return, the student's return, and the pseudo-regret
``max_k V_k - V_chosen`` of choosing that teacher (V: exact teacher returns), cumulated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from distlab import bandits, teachers
from distlab.studies import _common

BANDITS = bandits.STRATEGIES
THOMPSON_PRIOR_MEAN = 0.5  # the middle of the [0, 1] reward range


@dataclass(frozen=True)
class Config:
    n_mdps: int = 200
    chunk: int = 50
    size: int = 20
    noise: tuple = (0.0, 0.0, 1.0, 1.0, 2.0, 2.0)
    teacher_temperature: float = 0.1
    rounds: int = 150
    steps_per_round: int = 20
    lr: float = 0.01
    bandits: tuple = BANDITS
    epsilon: float = 0.1
    thompson_sigma: float = 0.1


CONFIGS = {
    "smoke": Config(n_mdps=2, chunk=2, size=8, noise=(0.0, 2.0), rounds=4, steps_per_round=5),
    "quick": Config(n_mdps=20, chunk=20, rounds=60),
    "full": Config(),
}


def cells(config: Config) -> list[dict]:
    for b in config.bandits:
        if b not in BANDITS:
            raise ValueError(f"unknown bandit {b!r}; valid: {', '.join(BANDITS)}")
    return [
        dict(first=first, count=count, size=config.size, noise=list(config.noise),
             teacher_temperature=config.teacher_temperature, rounds=config.rounds,
             steps_per_round=config.steps_per_round, lr=config.lr, bandit=bandit, epsilon=config.epsilon,
             thompson_sigma=config.thompson_sigma)
        for bandit in config.bandits
        for first, count in _common.chunks(config.n_mdps, config.chunk)
    ]


def noisy_q_teachers(batch, first: int, noise, temperature: float) -> np.ndarray:
    """(B, K, S, A): teacher k = softmax((Q_k + N(0, noise[k]^2)) / T), Q_k Q-learned with its own seed."""
    out = []
    for k, sigma in enumerate(noise):
        Q = teachers.q_learning_batch(batch, seed=_common.TEACHER_SEED + 10_000 * (k + 1) + first)
        rng = np.random.default_rng([_common.NOISE_SEED, first, k])
        out.append(teachers.softmax_policy(Q + sigma * rng.standard_normal(Q.shape), temperature))
    return np.stack(out, axis=1)


def choose_arm(bandit: str, counts, sums, rng, epsilon: float, sigma: float) -> int:
    """The study's bandit decision: ``distlab.bandits.choose_arm`` with Thompson's prior mean 0.5."""
    return bandits.choose_arm(bandit, counts, sums, rng, epsilon=epsilon, sigma=sigma, prior_mean=THOMPSON_PRIOR_MEAN)


def run_cell(cell: dict) -> pd.DataFrame:
    from distlab.sampled import train_sampled

    first, count = cell["first"], cell["count"]
    batch = _common.gridworlds(first, count, size=cell["size"])
    pis = noisy_q_teachers(batch, first, cell["noise"], cell["teacher_temperature"])
    K = pis.shape[1]
    teacher_returns = np.stack([_common.start_values(batch, pis[:, k]) for k in range(K)], axis=1)  # (B, K)
    scale = float(np.abs(batch.R).max())  # the gridworld's reward: bandit rewards in [0, 1]
    rngs = [np.random.default_rng([_common.STUDENT_SEED, first + b, BANDITS.index(cell["bandit"])]) for b in range(count)]
    counts, sums = np.zeros((count, K)), np.zeros((count, K))
    theta = np.zeros((count, batch.n_states, batch.n_actions))
    student_return = _common.start_values(batch, np.full_like(theta, 1.0 / batch.n_actions))
    rows, regret = [], np.zeros(count)
    for rnd in range(cell["rounds"]):
        arms = np.array([choose_arm(cell["bandit"], counts[b], sums[b], rngs[b], cell["epsilon"], cell["thompson_sigma"])
                         for b in range(count)])
        curves, theta = train_sampled(
            batch, "on-policy", pis[np.arange(count), arms], steps=cell["steps_per_round"], lr=cell["lr"],
            record_every=cell["steps_per_round"], theta0=theta, seed=_common.STUDENT_SEED + 100_003 * first + rnd,
            return_theta=True,
        )
        student_return = curves[curves.step == cell["steps_per_round"]].sort_values("mdp")["start_value"].to_numpy()
        reward = np.clip(student_return / scale, 0.0, 1.0)
        counts[np.arange(count), arms] += 1
        sums[np.arange(count), arms] += reward
        chosen = teacher_returns[np.arange(count), arms]
        regret += teacher_returns.max(axis=1) - chosen
        rows.append(pd.DataFrame(dict(
            mdp=first + np.arange(count), round=rnd + 1, step=(rnd + 1) * cell["steps_per_round"], arm=arms,
            arm_noise=np.asarray(cell["noise"])[arms], chosen_teacher_return=chosen,
            best_teacher_return=teacher_returns.max(axis=1), student_return=student_return,
            cumulative_regret=regret.copy(), best_arm_chosen=chosen == teacher_returns.max(axis=1),
        )))
    return pd.concat(rows, ignore_index=True)
