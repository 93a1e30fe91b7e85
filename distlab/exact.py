"""Exact values, visitation and optimal control on tabular MDPs (the ground truth of distlab).

For a policy ``pi`` (S x A, rows summing to 1) and distlab's convention (``shared/DESIGN.md``):

    V      = (I - P_pi)^-1 r_pi            value of each state, undiscounted episodic return
    Q      = R + P V                        Q[s, a] = R[s, a] + sum_s' P[s, a, s'] V[s']
    visits = (I - P_pi)^-T mu0              expected visits per episode, so mu0 @ V == visits @ r_pi

``I - P_pi`` is weakly row-diagonally dominant (rows of ``P_pi`` sum to at most 1), so Gaussian
elimination needs no pivoting and keeps its fill inside the band of the sparsity pattern. The solver
builds ``I - P_pi`` directly in band storage from the sparse transitions and factors it once for both
solves: O(S * bandwidth^2) work, e.g. 400 x 20^2 for a 20x20 gridworld instead of the 400^3 / 3 of a
dense solve. There is no dense S x S matrix on this path. A (near) zero pivot means that the policy
never terminates from some state (``I - P_pi`` is singular) and is reported as a ``ValueError``.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from mdps import MDPBatch, TabularMDP

__all__ = ["evaluate", "evaluate_batch", "optimal", "optimal_batch", "check_policy", "q_values"]

_PIVOT_FLOOR = 1e-13
_POLICY_ATOL = 1e-8


# ---------------------------------------------------------------------------------------------- kernels
@nb.njit(cache=True)
def _bandwidth(next_state, next_prob, pi):
    S, A, K = next_prob.shape
    bw = 0
    for s in range(S):
        for a in range(A):
            if pi[s, a] == 0.0:
                continue
            for k in range(K):
                if next_prob[s, a, k] > 0.0:
                    d = abs(next_state[s, a, k] - s)
                    if d > bw:
                        bw = d
    return bw


@nb.njit(cache=True)
def _evaluate_into(next_state, next_prob, R, mu0, pi, V, Q, visits):
    """Solve for V, Q and visits of ``pi``; return -1 on success, else the state of a zero pivot."""
    S, A, K = next_prob.shape
    bw = _bandwidth(next_state, next_prob, pi)
    W = 2 * bw + 1
    band = np.zeros((S, W))  # band[i, j - i + bw] = (I - P_pi)[i, j]
    r_pi = np.zeros(S)
    for s in range(S):
        band[s, bw] += 1.0
        for a in range(A):
            p = pi[s, a]
            if p == 0.0:
                continue
            r_pi[s] += p * R[s, a]
            for k in range(K):
                q = next_prob[s, a, k]
                if q > 0.0:
                    band[s, next_state[s, a, k] - s + bw] -= p * q
    # In-place LU without pivoting: unit-lower L below the diagonal, U on and above it.
    for k in range(S):
        pivot = band[k, bw]
        if pivot < _PIVOT_FLOOR:
            return k
        hi = min(S, k + bw + 1)
        for i in range(k + 1, hi):
            lik = band[i, k - i + bw]
            if lik == 0.0:
                continue
            lik /= pivot
            band[i, k - i + bw] = lik
            for j in range(k + 1, hi):
                band[i, j - i + bw] -= lik * band[k, j - k + bw]
    # V: L y = r_pi, then U V = y.
    for i in range(S):
        acc = r_pi[i]
        for j in range(max(0, i - bw), i):
            acc -= band[i, j - i + bw] * V[j]
        V[i] = acc
    for i in range(S - 1, -1, -1):
        acc = V[i]
        for j in range(i + 1, min(S, i + bw + 1)):
            acc -= band[i, j - i + bw] * V[j]
        V[i] = acc / band[i, bw]
    # visits: (LU)^T d = mu0, i.e. U^T z = mu0 (forward), then L^T d = z (backward).
    for i in range(S):
        acc = mu0[i]
        for j in range(max(0, i - bw), i):
            acc -= band[j, i - j + bw] * visits[j]
        visits[i] = acc / band[i, bw]
    for i in range(S - 1, -1, -1):
        acc = visits[i]
        for j in range(i + 1, min(S, i + bw + 1)):
            acc -= band[j, i - j + bw] * visits[j]
        visits[i] = acc
    _q_into(next_state, next_prob, R, V, Q)
    return -1


@nb.njit(cache=True)
def _q_into(next_state, next_prob, R, V, Q):
    S, A, K = next_prob.shape
    for s in range(S):
        for a in range(A):
            acc = R[s, a]
            for k in range(K):
                acc += next_prob[s, a, k] * V[next_state[s, a, k]]
            Q[s, a] = acc


@nb.njit(cache=True, parallel=True)
def _evaluate_batch(next_state, next_prob, R, mu0, pi, V, Q, visits, status):
    for b in nb.prange(next_prob.shape[0]):
        status[b] = _evaluate_into(next_state[b], next_prob[b], R[b], mu0[b], pi[b], V[b], Q[b], visits[b])


@nb.njit(cache=True)
def _policy_iteration(next_state, next_prob, R, mu0, V, Q, visits, max_iterations):
    """Howard's policy iteration from the uniform policy with exact (banded LU) evaluation.

    Improvement switches an action only when it is better by more than a relative 1e-12, so the
    iteration cannot cycle between tied actions. Returns (greedy actions, iterations, status).
    """
    S, A, _ = next_prob.shape
    pi = np.full((S, A), 1.0 / A)
    actions = np.full(S, -1, dtype=np.int64)
    for it in range(1, max_iterations + 1):
        status = _evaluate_into(next_state, next_prob, R, mu0, pi, V, Q, visits)
        if status >= 0:
            return actions, it, status
        changed = False
        for s in range(S):
            best = 0
            for a in range(1, A):
                if Q[s, a] > Q[s, best]:
                    best = a
            current = actions[s]
            if current < 0 or Q[s, best] > Q[s, current] + 1e-12 * max(1.0, abs(Q[s, current])):
                if current != best:
                    changed = True
                actions[s] = best
        if not changed and it > 1:
            return actions, it, -1
        for s in range(S):
            for a in range(A):
                pi[s, a] = 0.0
            pi[s, actions[s]] = 1.0
    return actions, max_iterations, -2


@nb.njit(cache=True, parallel=True)
def _optimal_batch(next_state, next_prob, R, mu0, V, Q, visits, actions, status, max_iterations):
    for b in nb.prange(next_prob.shape[0]):
        acts, _, st = _policy_iteration(next_state[b], next_prob[b], R[b], mu0[b], V[b], Q[b], visits[b], max_iterations)
        actions[b] = acts
        status[b] = st


# ---------------------------------------------------------------------------------------------- API
def check_policy(pi, n_states: int, n_actions: int, name: str = "pi") -> np.ndarray:
    """Return ``pi`` as a contiguous float64 array of shape (..., S, A), or raise ``ValueError`` naming
    the offending state (and batch index, for a stack of policies)."""
    pi = np.ascontiguousarray(pi, dtype=np.float64)
    if pi.shape[-2:] != (n_states, n_actions):
        raise ValueError(f"{name} must have shape (S, A) = ({n_states}, {n_actions}); got {pi.shape}")

    def where(index) -> str:
        *batch, s = (int(i) for i in index)
        return f"{name}{batch if batch else ''} state {s}"

    bad = np.argwhere(~np.isfinite(pi).all(axis=-1))
    if bad.size:
        raise ValueError(f"{where(bad[0])} has a non-finite probability: {pi[tuple(bad[0])]}")
    bad = np.argwhere((pi < 0).any(axis=-1))
    if bad.size:
        raise ValueError(f"{where(bad[0])} has a negative probability: {pi[tuple(bad[0])]}")
    sums = pi.sum(axis=-1)
    bad = np.argwhere(np.abs(sums - 1.0) > _POLICY_ATOL)
    if bad.size:
        raise ValueError(f"rows of {name} must sum to 1; {where(bad[0])} sums to {float(sums[tuple(bad[0])])!r}")
    return pi


def _raise_nonterminating(state: int, what: str) -> None:
    raise ValueError(
        f"{what} never terminates from state {state}: I - P_pi is singular there (add termination mass, "
        "e.g. a discount or p_end, or use a policy that reaches a terminal state)"
    )


def evaluate(mdp: TabularMDP, pi) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact ``(V, Q, visits)`` of policy ``pi`` on ``mdp`` (equations in the module docstring)."""
    pi = check_policy(pi, mdp.n_states, mdp.n_actions)
    S, A = pi.shape
    V, Q, visits = np.empty(S), np.empty((S, A)), np.empty(S)
    status = _evaluate_into(mdp.next_state, mdp.next_prob, mdp.R, mdp.mu0, pi, V, Q, visits)
    if status >= 0:
        _raise_nonterminating(status, "the policy")
    return V, Q, visits


def q_values(mdp: TabularMDP, V: np.ndarray) -> np.ndarray:
    """``Q[s, a] = R[s, a] + sum_s' P[s, a, s'] V[s']`` for any state function ``V`` (e.g. a teacher's)."""
    V = np.ascontiguousarray(V, dtype=np.float64)
    if V.shape != (mdp.n_states,):
        raise ValueError(f"V must have shape ({mdp.n_states},); got {V.shape}")
    Q = np.empty((mdp.n_states, mdp.n_actions))
    _q_into(mdp.next_state, mdp.next_prob, mdp.R, V, Q)
    return Q


def evaluate_batch(batch: MDPBatch, pis) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`evaluate` for every MDP of ``batch`` in parallel; ``pis`` is (B, S, A) or one (S, A) policy."""
    B, S, A = len(batch), batch.n_states, batch.n_actions
    pis = np.asarray(pis, dtype=np.float64)
    if pis.shape == (S, A):
        pis = np.broadcast_to(pis, (B, S, A))
    if pis.shape != (B, S, A):
        raise ValueError(f"pis must have shape (B, S, A) = ({B}, {S}, {A}) or (S, A); got {pis.shape}")
    pis = check_policy(pis, S, A, name="pis")
    V, Q, visits = np.empty((B, S)), np.empty((B, S, A)), np.empty((B, S))
    status = np.empty(B, dtype=np.int64)
    _evaluate_batch(batch.next_state, batch.next_prob, batch.R, batch.mu0, pis, V, Q, visits, status)
    for b in np.flatnonzero(status >= 0):
        _raise_nonterminating(int(status[b]), f"the policy of MDP {b}")
    return V, Q, visits


def _greedy(actions: np.ndarray, n_actions: int) -> np.ndarray:
    return np.eye(n_actions)[actions]


def optimal(mdp: TabularMDP, max_iterations: int = 1000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Optimal ``(V_star, Q_star, pi_star)`` by policy iteration with exact evaluation.

    Policy iteration stops when no action improves, at which point ``V_star`` is the exact value of a
    deterministic policy and satisfies the Bellman optimality equation to solver precision (far below
    1e-10 relative; tested). ``pi_star`` is the greedy one-hot policy. Requires that the uniform policy
    terminates from every state (true of every generator in :mod:`mdps`).
    """
    S, A = mdp.n_states, mdp.n_actions
    V, Q, visits = np.empty(S), np.empty((S, A)), np.empty(S)
    actions, _, status = _policy_iteration(mdp.next_state, mdp.next_prob, mdp.R, mdp.mu0, V, Q, visits, max_iterations)
    if status == -2:
        raise RuntimeError(f"policy iteration did not converge in {max_iterations} iterations")
    if status >= 0:
        _raise_nonterminating(int(status), "a policy met during policy iteration")
    return V, Q, _greedy(actions, A)


def optimal_batch(batch: MDPBatch, max_iterations: int = 1000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`optimal` for every MDP of ``batch`` in parallel: ``(V_star, Q_star, pi_star)`` stacked."""
    B, S, A = len(batch), batch.n_states, batch.n_actions
    V, Q, visits = np.empty((B, S)), np.empty((B, S, A)), np.empty((B, S))
    actions = np.empty((B, S), dtype=np.int64)
    status = np.empty(B, dtype=np.int64)
    _optimal_batch(batch.next_state, batch.next_prob, batch.R, batch.mu0, V, Q, visits, actions, status, max_iterations)
    for b in np.flatnonzero(status != -1):
        if status[b] == -2:
            raise RuntimeError(f"policy iteration did not converge in {max_iterations} iterations on MDP {b}")
        _raise_nonterminating(int(status[b]), f"a policy met during policy iteration on MDP {b}")
    return V, Q, _greedy(actions, A)

