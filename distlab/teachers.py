"""Teachers: tabular Q-learning, softmax/greedy policies from any Q, noisy teachers and Monte Carlo teacher values.

*Distilling Policy Distillation* (Sec. 3.2, App. A.4) distils from teachers trained by Q-learning with
epsilon-greedy exploration (epsilon = 0.1); its Fig. 3 varies the teacher's temperature and its Fig. 5
flips the teacher's most probable action in a fraction of the states and gives the rules that read the
teacher's value an estimate from 100 sampled episodes (:func:`monte_carlo_values`).

Sampling uses the RNG kit :mod:`distlab.rollout` (one xoshiro256+ stream per MDP), so Q-tables and
value estimates do not depend on the number of threads.
"""

from __future__ import annotations

from dataclasses import dataclass

import warnings

import numba as nb
import numpy as np

from distlab import exact
from distlab.rollout import (
    continuation_cdf,
    draw,
    draw_next,
    generator_states,
    initial_state,
    policy_cdf,
    uniform,
)
from mdps import MDPBatch, TabularMDP, stack

__all__ = [
    "QLearningConfig",
    "q_learning",
    "q_learning_batch",
    "softmax_policy",
    "greedy_policy",
    "epsilon_greedy_policy",
    "noisy_teacher",
    "monte_carlo_values",
    "monte_carlo_values_batch",
    "MC_STARTS",
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
    """Index ``i`` with cumulative ``p[:i] <= u < p[:i+1]``; ``len(p)`` if ``u`` is past the total mass.

    Kept for ``distlab.studies.chain``'s own rollout; distlab's kernels sample with :mod:`distlab.rollout`.
    """
    acc = 0.0
    for i in range(p.shape[0]):
        acc += p[i]
        if u < acc:
            return i
    return p.shape[0]


@nb.njit(cache=True)
def _greedy_random_ties(q, rng):
    """``argmax_a q[a]`` with ties broken uniformly at random (reservoir sampling over the tied actions)."""
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
            if uniform(rng) * count < 1.0:
                choice = a
    return choice


@nb.njit(cache=True)
def _uniform_action(n_actions, rng):
    """An action drawn uniformly from ``0 .. n_actions-1`` (epsilon-greedy exploration)."""
    return min(int(uniform(rng) * n_actions), n_actions - 1)


@nb.njit(cache=True)
def _q_learning(next_state, next_cdf, R, mu0_cdf, Q, episodes, lr, lr_power, epsilon, max_steps, rng):
    S, A, K = next_cdf.shape
    visits = np.zeros((S, A))
    for _ in range(episodes):
        s = initial_state(mu0_cdf, uniform(rng))
        for _ in range(max_steps):
            if uniform(rng) < epsilon:
                a = _uniform_action(A, rng)
            else:
                a = _greedy_random_ties(Q[s], rng)
            k = draw_next(next_cdf, s, a, uniform(rng))
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
def _q_learning_batch(next_state, next_prob, R, mu0, Q, episodes, lr, lr_power, epsilon, max_steps, rngs):
    # MDP b draws only from its own generator rngs[b]: results do not depend on the number of threads.
    for b in nb.prange(next_prob.shape[0]):
        _q_learning(next_state[b], continuation_cdf(next_prob[b]), R[b], np.cumsum(mu0[b]), Q[b], episodes, lr,
                    lr_power, epsilon, max_steps, rngs[b])


def _per_mdp_generators(seed: int, n: int) -> np.ndarray:
    """(n, 4) generator states; MDP ``i`` gets the stream of seed ``seed + i`` (batch == single-MDP call)."""
    return np.concatenate([generator_states(seed + i, 1) for i in range(n)])


def q_learning(mdp: TabularMDP, config: QLearningConfig = QLearningConfig(), seed: int = 0) -> np.ndarray:
    """Q-table (S, A) learned by epsilon-greedy Q-learning on sampled episodes (see QLearningConfig)."""
    Q = np.zeros((mdp.n_states, mdp.n_actions))
    c = config
    _q_learning(mdp.next_state, continuation_cdf(mdp.next_prob), mdp.R, np.cumsum(mdp.mu0), Q, c.episodes,
                c.learning_rate, c.lr_power, c.epsilon, c.max_steps, generator_states(seed, 1)[0])
    return Q


def q_learning_batch(batch: MDPBatch, config: QLearningConfig = QLearningConfig(), seed: int = 0) -> np.ndarray:
    """:func:`q_learning` on every MDP of ``batch`` in parallel; MDP ``i`` uses ``seed + i``."""
    Q = np.zeros((len(batch), batch.n_states, batch.n_actions))
    c = config
    _q_learning_batch(batch.next_state, batch.next_prob, batch.R, batch.mu0, Q, c.episodes, c.learning_rate,
                      c.lr_power, c.epsilon, c.max_steps, _per_mdp_generators(seed, len(batch)))
    return Q


# --- Monte Carlo teacher values (Fig. 5: "V_pi estimated from 100 sampled trajectories") -----------------

MC_STARTS = ("mu0", "all")


@nb.njit(cache=True)
def _accumulate_episode(next_state, next_cdf, R, pi_cdf, s, max_steps, rng, states, rewards, total, visits):
    """Roll out ``pi`` from ``s`` and add every visit's return-to-go to ``total`` / ``visits``.

    Returns 1 if the episode was cut at ``max_steps`` (its returns are then too short), else 0.
    """
    K = next_cdf.shape[2]
    n = 0
    ended = False
    while n < max_steps:
        a = draw(pi_cdf, s, uniform(rng))
        states[n] = s
        rewards[n] = R[s, a]
        n += 1
        k = draw_next(next_cdf, s, a, uniform(rng))
        if k >= K:
            ended = True
            break
        s = next_state[s, a, k]
    G = 0.0
    for t in range(n - 1, -1, -1):  # every visit: G_t = r_t + G_{t+1}, undiscounted (P carries termination)
        G += rewards[t]
        total[states[t]] += G
        visits[states[t]] += 1
    return 0 if ended else 1


@nb.njit(cache=True)
def _monte_carlo_sums(next_state, next_prob, R, mu0, pi, episodes, from_every_state, max_steps, rng, total, visits):
    """Sums of returns and visit counts of ``episodes`` episodes (from ``mu0``, or from every state)."""
    S = next_prob.shape[0]
    next_cdf = continuation_cdf(next_prob)
    pi_cdf = policy_cdf(pi)
    mu0_cdf = np.cumsum(mu0)
    states = np.empty(max_steps, dtype=np.int64)
    rewards = np.empty(max_steps)
    truncated = 0
    if from_every_state:
        for s0 in range(S):
            for _ in range(episodes):
                truncated += _accumulate_episode(next_state, next_cdf, R, pi_cdf, s0, max_steps, rng, states, rewards, total, visits)
    else:
        for _ in range(episodes):
            s0 = initial_state(mu0_cdf, uniform(rng))
            truncated += _accumulate_episode(next_state, next_cdf, R, pi_cdf, s0, max_steps, rng, states, rewards, total, visits)
    return truncated


@nb.njit(cache=True, parallel=True)
def _monte_carlo_sums_batch(next_state, next_prob, R, mu0, pi, episodes, from_every_state, max_steps, rngs, total,
                            visits, truncated):
    # MDP b draws only from its own generator rngs[b]: results do not depend on the number of threads.
    for b in nb.prange(next_prob.shape[0]):
        truncated[b] = _monte_carlo_sums(next_state[b], next_prob[b], R[b], mu0[b], pi[b], episodes, from_every_state,
                                         max_steps, rngs[b], total[b], visits[b])


def _check_monte_carlo_options(episodes, min_visits, starts, fallback, max_steps) -> None:
    for name, value, minimum in (("episodes", episodes, 1), ("min_visits", min_visits, 0), ("max_steps", max_steps, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    if starts not in MC_STARTS:
        raise ValueError(f"unknown starts {starts!r}; valid: {', '.join(map(repr, MC_STARTS))}")
    if isinstance(fallback, bool) or not isinstance(fallback, (int, float, np.number)) or not np.isfinite(fallback):
        raise ValueError(f"fallback must be a finite number; got {fallback!r}")


def _values_from_sums(total, visits, min_visits, fallback) -> np.ndarray:
    """Every-visit mean where a state has ``max(min_visits, 1)`` visits or more, ``fallback`` elsewhere."""
    enough = visits >= max(min_visits, 1)
    return np.where(enough, total / np.maximum(visits, 1), fallback)


def _warn_truncations(truncated: int, max_steps: int) -> None:
    if truncated:
        warnings.warn(f"{truncated} Monte Carlo episode(s) reached max_steps = {max_steps} before ending: their "
                      "returns are truncated (raise max_steps)", stacklevel=3)


def monte_carlo_values(mdp: TabularMDP, pi, episodes: int, seed: int, **options):
    """Every-visit Monte Carlo estimate ``V_hat`` (S,) of ``V_pi`` from ``episodes`` sampled episodes.

    Sutton & Barto (2018, Sec. 5.1): ``V_hat(s) = sum_{t: s_t = s} G_t / N(s)`` with the return-to-go
    ``G_t = sum_{i >= t} r_i`` (undiscounted; the MDP's termination mass plays the discount) over every
    visit of every episode, ``N(s)`` the number of visits. The taxonomy paper's Fig. 5 (Sec. 4) uses 100
    episodes from the start state (``starts="mu0"``). ``starts="all"`` runs ``episodes`` episodes from
    *every* state instead (S x episodes in all), so each state has at least ``episodes`` visits.

    ``min_visits``: states with fewer visits (and unvisited states, always) get ``fallback`` instead of
    their mean. Why the default fallback 0: a state's estimate from a few visits can be far off (the
    return of an episode is 0 or 10 in the gridworlds), and a rule that looks one step ahead on
    ``r + E V_hat(s')`` (``td-teacher-v``) is drawn into a falsely high state; with non-negative rewards 0
    is the lowest possible value, so unreliable states look worst and the student keeps to the
    well-estimated ones (pessimism). Pass another ``fallback`` for other reward ranges.

    Randomness: one xoshiro256+ stream from ``seed`` (:mod:`distlab.rollout`). Episodes longer than
    ``max_steps`` are cut (a warning says how many). With ``return_visits`` also returns ``N`` (S,)
    int64, the visit counts.

    ``options`` (keywords, with their defaults): ``min_visits=0``, ``starts="mu0"``, ``fallback=0.0``,
    ``max_steps=100_000``, ``return_visits=False``; this is :func:`monte_carlo_values_batch` on a batch
    of one MDP, so the two agree by construction.
    """
    pi = exact.check_policy(pi, mdp.n_states, mdp.n_actions)
    out = monte_carlo_values_batch(stack([mdp]), pi[None], episodes, seed, **options)
    return (out[0][0], out[1][0]) if options.get("return_visits") else out[0]


def monte_carlo_values_batch(
    batch: MDPBatch,
    pis,
    episodes: int,
    seed: int,
    *,
    min_visits: int = 0,
    starts: str = "mu0",
    fallback: float = 0.0,
    max_steps: int = 100_000,
    return_visits: bool = False,
):
    """:func:`monte_carlo_values` (B, S) for every MDP of ``batch`` in parallel; MDP ``i`` uses ``seed + i``
    (the options are documented there)."""
    _check_monte_carlo_options(episodes, min_visits, starts, fallback, max_steps)
    B, S, A = len(batch), batch.n_states, batch.n_actions
    pis = np.ascontiguousarray(exact.check_policy(pis, S, A, name="pis"))
    if pis.shape != (B, S, A):
        raise ValueError(f"pis must have shape (B, S, A) = ({B}, {S}, {A}); got {pis.shape}")
    total = np.zeros((B, S))
    visits = np.zeros((B, S), dtype=np.int64)
    truncated = np.zeros(B, dtype=np.int64)
    _monte_carlo_sums_batch(batch.next_state, batch.next_prob, batch.R, batch.mu0, pis, int(episodes), starts == "all",
                            int(max_steps), _per_mdp_generators(seed, B), total, visits, truncated)
    _warn_truncations(int(truncated.sum()), max_steps)
    V_hat = _values_from_sums(total, visits, min_visits, fallback)
    return (V_hat, visits) if return_visits else V_hat


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
