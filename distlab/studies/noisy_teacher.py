"""noisy-teacher: distilling a Q-learning teacher whose argmax is flipped in a fraction of states (taxonomy Sec. 4, Fig. 5).

Czarnecki et al. (2019), Sec. 4 and Fig. 5: a deterministic (greedy) Q-learning teacher has its most
probable action flipped in 0-50 % of the states it visits; the teacher's value ``V_pi`` is estimated by
Monte Carlo from 100 sampled trajectories (the paper's setting, ``value="mc100"``) or computed exactly
(``value="exact"``). Rules: policy cloning (``teacher``, ``on-policy``, ``n-distill``), their "+R"
versions, value-gated distillation + R (Prop. 2), TD bootstrapped from the teacher's value
(``td-teacher-v``, Prop. 3) and from zero (``td-v0``). The paper's claims at 25 % noise: cloning
saturates around 2-4 points, +R around 6.5, value gating recovers the teacher's ~7.

The Monte Carlo estimate: 100 episodes from the start state under the noisy teacher; ``V_hat(s)`` is the
every-visit average of the return that follows ``s``; states the 100 episodes never reach get 0 (the
estimator has seen nothing there, and 0 is the value a state has before any reward).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np
import pandas as pd

from distlab import exact, rules, teachers
from distlab.studies import _common
from distlab.teachers import sample_index

FIGURE = "fig5_noisy_teacher"

RULES = ("teacher", "on-policy", "n-distill", "on-policy+r", "n-distill+r", "value-gated+r", "td-teacher-v", "td-v0", "rl")
VALUE_ESTIMATES = ("mc100", "exact")


@dataclass(frozen=True)
class Config:
    n_mdps: int = 300
    chunk: int = 100
    size: int = 20
    steps: int = 30_000
    record_every: int = 250
    lr: float = 0.001
    noise: tuple = (0.0, 0.25, 0.5)
    rules: tuple = RULES
    values: tuple = VALUE_ESTIMATES
    mc_episodes: int = 100


CONFIGS = {
    "smoke": Config(n_mdps=3, chunk=3, size=8, steps=60, record_every=20, noise=(0.0, 0.25), mc_episodes=10),
    "quick": Config(n_mdps=20, chunk=20, steps=5_000, record_every=100, noise=(0.25,)),
    "full": Config(),
}


def cells(config: Config) -> list[dict]:
    for name in config.rules:
        rules.get(name)
    for v in config.values:
        if v not in VALUE_ESTIMATES:
            raise ValueError(f"unknown teacher value estimate {v!r}; valid: {', '.join(VALUE_ESTIMATES)}")
    out = []
    for name in config.rules:
        # Rules that never read the teacher's value run once (value="none").
        values = config.values if rules.get(name).uses_teacher_value else ("none",)
        for value in values:
            for noise in config.noise:
                for first, count in _common.chunks(config.n_mdps, config.chunk):
                    out.append(dict(
                        first=first, count=count, size=config.size, steps=config.steps,
                        record_every=config.record_every, lr=config.lr, rule=name, noise=float(noise),
                        value=value, mc_episodes=config.mc_episodes,
                    ))
    return out


@nb.njit(cache=True)
def _monte_carlo_values(next_state, next_prob, R, mu0, pi, episodes, max_steps, seed, V_hat):
    """Every-visit Monte Carlo estimate of V_pi from ``episodes`` episodes started from ``mu0``."""
    np.random.seed(seed)
    S, A, K = next_prob.shape
    total = np.zeros(S)
    count = np.zeros(S)
    states = np.empty(max_steps, dtype=np.int64)
    rewards = np.empty(max_steps)
    for _ in range(episodes):
        s = min(sample_index(mu0, np.random.random()), S - 1)
        n = 0
        while n < max_steps:
            a = min(sample_index(pi[s], np.random.random()), A - 1)
            states[n] = s
            rewards[n] = R[s, a]
            n += 1
            k = sample_index(next_prob[s, a], np.random.random())
            if k >= K:
                break
            s = next_state[s, a, k]
        G = 0.0
        for t in range(n - 1, -1, -1):
            G += rewards[t]
            total[states[t]] += G
            count[states[t]] += 1.0
    for s in range(S):
        V_hat[s] = total[s] / count[s] if count[s] > 0 else 0.0


def monte_carlo_values(mdp, pi, episodes: int, seed: int, max_steps: int = 100_000) -> np.ndarray:
    """``V_hat`` (S,) of ``pi`` from ``episodes`` sampled episodes (see the module docstring)."""
    V_hat = np.zeros(mdp.n_states)
    _monte_carlo_values(mdp.next_state, mdp.next_prob, mdp.R, mdp.mu0, np.ascontiguousarray(pi), episodes, max_steps, seed, V_hat)
    return V_hat


def noisy_teachers(batch, first: int, noise: float) -> np.ndarray:
    """Greedy Q-learning teachers with the argmax flipped in ``noise`` of the states each one visits."""
    pi = teachers.greedy_policy(_common.q_learning_teachers(batch, first))
    _, _, visits = exact.evaluate_batch(batch, pi)
    return np.stack([
        teachers.noisy_teacher(pi[b], noise, seed=_common.NOISE_SEED + first + b, states=visits[b] > 0)
        for b in range(len(batch))
    ])


def run_cell(cell: dict) -> pd.DataFrame:
    from distlab.sampled import train_sampled

    first, count = cell["first"], cell["count"]
    batch = _common.gridworlds(first, count, size=cell["size"])
    pi = noisy_teachers(batch, first, cell["noise"])
    V_exact, _, _ = exact.evaluate_batch(batch, pi)
    if cell["value"] == "mc100" or cell["value"] == "mc":
        V = np.stack([monte_carlo_values(batch[b], pi[b], cell["mc_episodes"], seed=_common.NOISE_SEED + first + b) for b in range(count)])
    else:
        V = V_exact
    curves = train_sampled(
        batch, cell["rule"], pi, steps=cell["steps"], lr=cell["lr"], record_every=cell["record_every"],
        teacher_values=V, seed=_common.STUDENT_SEED + first,
    )
    start = _common.start_states(batch)
    per_mdp = pd.DataFrame(dict(
        mdp=np.arange(count),
        teacher_return=V_exact[np.arange(count), start],
        teacher_value_estimate=V[np.arange(count), start],
    ))
    table = curves.merge(per_mdp, on="mdp", how="left", validate="many_to_one")
    table["mdp"] += first
    return table
