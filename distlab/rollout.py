"""The RNG and sampling kit that every numba rollout of distlab uses.

One convention for randomness: each independent unit of a ``prange`` loop (an MDP of a batch, a chunk
of episodes, a seed of a study) owns a xoshiro256+ generator (Blackman & Vigna, 2018) of 4 uint64 words,
whose state is derived in Python from the user's seed by :func:`generator_states`
(``numpy.random.SeedSequence``). A result therefore does not depend on the number of threads, and a
draw costs ~1 ns (numba's ``np.random`` costs ~6 ns, a third of a sampled transition).

One convention for sampling: distributions are kept as CDFs (``policy_cdf``, ``continuation_cdf``,
``np.cumsum(mu0)``) and an index is drawn with one uniform number and a branch-free count
(:func:`draw`, :func:`draw_next`): random draws make a search loop's exit branch unpredictable.
``P[s, a, :]`` sums to at most 1; a draw past its total mass (:func:`draw_next` returns ``K``) is the
episode ending (the convention of :mod:`mdps.tabular`).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

__all__ = [
    "generator_states",
    "uniform",
    "draw",
    "draw_next",
    "initial_state",
    "continuation_cdf",
    "policy_cdf",
    "softmax_row",
]

_U11, _U17, _U45, _U64_45 = np.uint64(11), np.uint64(17), np.uint64(45), np.uint64(64 - 45)
_TWO_M53 = 1.0 / 9007199254740992.0


def generator_states(seed, n: int) -> np.ndarray:
    """``n`` independent xoshiro256+ states, (n, 4) uint64, derived from the user's ``seed``: one per unit."""
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    states = np.random.SeedSequence(int(seed)).generate_state(4 * n, dtype=np.uint64).reshape(n, 4)
    states[:, 0] |= np.uint64(1)  # xoshiro's state must not be all zero
    return states


@nb.njit(cache=True, inline="always")
def uniform(rng):
    """A uniform double in [0, 1) from the top 53 bits of xoshiro256+; advances ``rng`` (4 uint64)."""
    s0, s1, s2, s3 = rng[0], rng[1], rng[2], rng[3]
    result = s0 + s3
    t = s1 << _U17
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = (s3 << _U45) | (s3 >> _U64_45)
    rng[0], rng[1], rng[2], rng[3] = s0, s1, s2, s3
    return float(result >> _U11) * _TWO_M53


@nb.njit(cache=True, inline="always")
def draw(cdf, s, u):
    """Index ``i`` with ``cdf[s, i-1] <= u < cdf[s, i]``, counted without branches (the last entry of
    a row is never compared: it is 1 up to round-off, and an index past the end is not an action)."""
    i = 0
    for j in range(cdf.shape[1] - 1):
        i += u >= cdf[s, j]
    return i


@nb.njit(cache=True, inline="always")
def draw_next(next_cdf, s, a, u):
    """The slot ``k`` of the next state of (s, a) drawn with ``u``; ``K`` means the episode ends."""
    k = 0
    for j in range(next_cdf.shape[2]):
        k += u >= next_cdf[s, a, j]
    return k


@nb.njit(cache=True, inline="always")
def initial_state(mu0_cdf, u):
    """Binary search of the initial-state CDF (S can be large and mu0 a point mass)."""
    lo, hi = 0, mu0_cdf.shape[0] - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if u < mu0_cdf[mid]:
            hi = mid
        else:
            lo = mid + 1
    return lo


@nb.njit(cache=True)
def continuation_cdf(next_prob):
    """Cumulative sums over the last axis of an (S, A, K) table: the continuation CDF of each (s, a)."""
    S, A, K = next_prob.shape
    out = np.empty((S, A, K))
    for s in range(S):
        for a in range(A):
            acc = 0.0
            for k in range(K):
                acc += next_prob[s, a, k]
                out[s, a, k] = acc
    return out


@nb.njit(cache=True)
def policy_cdf(pi):
    """Per-state action CDFs of ``pi`` (S, A); the last entry of each row is set to 1 exactly."""
    S, A = pi.shape
    out = np.empty((S, A))
    for s in range(S):
        acc = 0.0
        for a in range(A):
            acc += pi[s, a]
            out[s, a] = acc
        out[s, A - 1] = 1.0
    return out


@nb.njit(cache=True, inline="always")
def softmax_row(logits, r, out, cdf=None, row_max=None):
    """``out[r] = softmax(logits[r])`` for one row of a matrix, shifted by the maximum; returns the
    log-normaliser ``log sum_a exp logits[r, a]`` (so a log-softmax needs no second pass of
    exponentials). ``out`` may be ``logits`` itself. With ``cdf`` (a matrix like ``out``) it also writes
    the row's sampling CDF in the same pass (last entry exactly 1, see :func:`draw`); ``row_max`` is
    ``max_a logits[r, a]`` when the caller already has it (the SGD step computes it while updating).

    The one softmax of the numba kernels (``distlab.student.softmax`` is NumPy's). It takes a matrix
    and a row index rather than a row view (a view costs two atomic reference-count updates, as much as
    the softmax of a short row), and fuses the CDF and the maximum because separate passes cost ~10 % of
    on-policy distillation.
    """
    A = logits.shape[1]
    if row_max is None:
        m = logits[r, 0]
        for a in range(1, A):
            m = max(m, logits[r, a])
    else:
        m = row_max
    total = 0.0
    for a in range(A):
        e = math.exp(logits[r, a] - m)
        out[r, a] = e
        total += e
    inv_total = 1.0 / total
    if cdf is None:
        for a in range(A):
            out[r, a] *= inv_total
    else:
        acc = 0.0
        for a in range(A):
            p = out[r, a] * inv_total
            out[r, a] = p
            acc += p
            cdf[r, a] = acc
        cdf[r, A - 1] = 1.0
    return m + math.log(total)
