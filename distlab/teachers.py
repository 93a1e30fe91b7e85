"""Teachers: tabular Q-learning, softmax/greedy policies from any Q, and noisy teachers (Fig. 5).

*Distilling Policy Distillation* (Sec. 3.2, App. A.4) distils from teachers trained by Q-learning with
epsilon-greedy exploration (epsilon = 0.1); its Fig. 3 varies the teacher's temperature and its Fig. 5
flips the teacher's most probable action in a fraction of the states.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np

from mdps import MDPBatch, TabularMDP

__all__ = [
    "QLearningConfig",
    "q_learning",
    "q_learning_batch",
    "softmax_policy",
    "greedy_policy",
    "epsilon_greedy_policy",
    "noisy_teacher",
]


@dataclass(frozen=True)
class QLearningConfig:
    """Tabular Q-learning (Watkins, 1989) as the paper's teachers (App. A.4, epsilon = 0.1).

    ``episodes`` sampled from ``mu0``; each runs until the MDP terminates it or ``max_steps``.
    The update is ``Q[s,a] += alpha_n * (r + 1[continued] * max_a' Q[s',a'] - Q[s,a])`` (undiscounted:
    the MDP's termination mass plays the discount), with the polynomial step size
    ``alpha_n = learning_rate / n(s,a)^lr_power`` of the n-th visit to (s, a) (Even-Dar & Mansour, 2003).
    Why not a constant step: in the gridworlds one wasted step costs ~1 % of the value, so the action
    gaps are ~0.1 while a constant-step estimate keeps noise of that size, and its greedy policy then
    loops; the decaying step converges. ``lr_power = 0`` gives the constant step. Ties in the greedy
    action are broken uniformly at random, so an all-zero table performs a random walk.
    """

    episodes: int = 3000
    learning_rate: float = 1.0
    lr_power: float = 0.8
    epsilon: float = 0.1
    max_steps: int = 1000

    def __post_init__(self):
        if self.episodes < 1 or self.max_steps < 1:
            raise ValueError(f"episodes and max_steps must be >= 1; got {self.episodes}, {self.max_steps}")
        if not 0.0 < self.learning_rate <= 1.0:
            raise ValueError(f"learning_rate must be in (0, 1]; got {self.learning_rate}")
        if not 0.0 <= self.lr_power <= 1.0:
            raise ValueError(f"lr_power must be in [0, 1]; got {self.lr_power}")
        if not 0.0 <= self.epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1]; got {self.epsilon}")


@nb.njit(cache=True)
def sample_index(p, u):
    """Index ``i`` with cumulative ``p[:i] <= u < p[:i+1]``; ``len(p)`` if ``u`` is past the total mass."""
    acc = 0.0
    for i in range(p.shape[0]):
        acc += p[i]
        if u < acc:
            return i
    return p.shape[0]


@nb.njit(cache=True)
def _greedy_random_ties(q):
    best = q[0]
    count = 1
    choice = 0
    for a in range(1, q.shape[0]):
        if q[a] > best:
            best = q[a]
            count = 1
            choice = a
        elif q[a] == best:
            count += 1
            if np.random.random() * count < 1.0:  # reservoir sampling among ties
                choice = a
    return choice


@nb.njit(cache=True)
def _q_learning(next_state, next_prob, R, mu0, Q, episodes, lr, lr_power, epsilon, max_steps, seed):
    np.random.seed(seed)
    S, A, K = next_prob.shape
    visits = np.zeros((S, A))
    for _ in range(episodes):
        s = sample_index(mu0, np.random.random())
        if s >= S:
            s = S - 1
        for _ in range(max_steps):
            if np.random.random() < epsilon:
                a = np.random.randint(A)
            else:
                a = _greedy_random_ties(Q[s])
            k = sample_index(next_prob[s, a], np.random.random())
            target = R[s, a]
            if k < K:
                s2 = next_state[s, a, k]
                target += np.max(Q[s2])
            visits[s, a] += 1.0
            Q[s, a] += lr / visits[s, a] ** lr_power * (target - Q[s, a])
            if k >= K:
                break
            s = s2


@nb.njit(cache=True, parallel=True)
def _q_learning_batch(next_state, next_prob, R, mu0, Q, episodes, lr, lr_power, epsilon, max_steps, seeds):
    # Each MDP reseeds its thread's generator: results do not depend on the number of threads.
    for b in nb.prange(next_prob.shape[0]):
        _q_learning(next_state[b], next_prob[b], R[b], mu0[b], Q[b], episodes, lr, lr_power, epsilon, max_steps, seeds[b])


def _seed32(seed: int) -> int:
    return int(np.random.SeedSequence(seed).generate_state(1)[0])


def q_learning(mdp: TabularMDP, config: QLearningConfig = QLearningConfig(), seed: int = 0) -> np.ndarray:
    """Q-table (S, A) learned by epsilon-greedy Q-learning on sampled episodes (see QLearningConfig)."""
    Q = np.zeros((mdp.n_states, mdp.n_actions))
    c = config
    _q_learning(mdp.next_state, mdp.next_prob, mdp.R, mdp.mu0, Q, c.episodes, c.learning_rate, c.lr_power, c.epsilon, c.max_steps, _seed32(seed))
    return Q


def q_learning_batch(batch: MDPBatch, config: QLearningConfig = QLearningConfig(), seed: int = 0) -> np.ndarray:
    """:func:`q_learning` on every MDP of ``batch`` in parallel; MDP ``i`` uses ``seed + i``."""
    Q = np.zeros((len(batch), batch.n_states, batch.n_actions))
    seeds = np.array([_seed32(seed + i) for i in range(len(batch))], dtype=np.int64)
    c = config
    _q_learning_batch(batch.next_state, batch.next_prob, batch.R, batch.mu0, Q, c.episodes, c.learning_rate, c.lr_power, c.epsilon, c.max_steps, seeds)
    return Q


def softmax_policy(Q, temperature: float = 1.0) -> np.ndarray:
    """``pi(a|s) = exp(Q[s,a] / T) / sum_b exp(Q[s,b] / T)``; ``T = 0`` gives :func:`greedy_policy`.

    Works on any leading batch shape (the last axis is the action axis).
    """
    Q = np.asarray(Q, dtype=np.float64)
    if not temperature >= 0.0:
        raise ValueError(f"temperature must be >= 0; got {temperature!r}")
    if temperature == 0.0:
        return greedy_policy(Q)
    z = (Q - Q.max(axis=-1, keepdims=True)) / temperature
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def greedy_policy(Q) -> np.ndarray:
    """One-hot policy on ``argmax_a Q[s, a]`` (the first of tied actions)."""
    Q = np.asarray(Q, dtype=np.float64)
    return np.eye(Q.shape[-1])[np.argmax(Q, axis=-1)]


def epsilon_greedy_policy(Q, epsilon: float = 0.1) -> np.ndarray:
    """``(1 - epsilon) * greedy + epsilon * uniform``: the behaviour of the paper's Q-learning teachers."""
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must be in [0, 1]; got {epsilon!r}")
    Q = np.asarray(Q, dtype=np.float64)
    return (1.0 - epsilon) * greedy_policy(Q) + epsilon / Q.shape[-1]


def noisy_teacher(pi, fraction: float, seed: int = 0, states=None) -> np.ndarray:
    """Flip the most probable action of ``pi`` in ``round(fraction * n)`` of ``n`` candidate states.

    Following Fig. 5 of the taxonomy paper: in each chosen state the probability of the most probable
    action is swapped with that of another action drawn uniformly from the rest, so a deterministic
    teacher deterministically takes a wrong (random) action there. ``states`` (indices or a boolean
    mask) restricts the candidates, e.g. to the states the teacher visits; by default all states.
    Returns a new policy; ``pi`` is unchanged.
    """
    pi = np.array(pi, dtype=np.float64)
    if pi.ndim != 2 or pi.shape[1] < 2:
        raise ValueError(f"pi must be (S, A) with A >= 2 to flip an action; got shape {pi.shape}")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1]; got {fraction!r}")
    S, A = pi.shape
    if states is None:
        candidates = np.arange(S)
    else:
        states = np.asarray(states)
        candidates = np.flatnonzero(states) if states.dtype == bool else states.astype(np.int64)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(candidates, size=int(round(fraction * len(candidates))), replace=False)
    for s in chosen:
        best = int(np.argmax(pi[s]))
        other = int(rng.integers(A - 1))
        other += other >= best  # uniform over the actions other than best
        pi[s, best], pi[s, other] = pi[s, other], pi[s, best]
    return pi
