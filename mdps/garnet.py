"""Garnet MDPs (Archibald et al., 1995; Bhatnagar et al., 2009): random sparse MDPs with b successors."""

from __future__ import annotations

import numpy as np

from .tabular import TabularMDP

__all__ = ["garnet"]


def garnet(
    n_states: int,
    n_actions: int,
    branching: int,
    seed: int = 0,
    *,
    continuation: float = 0.95,
    reward_scale: float = 1.0,
) -> TabularMDP:
    """A Garnet MDP ``G(n_states, n_actions, branching)``.

    For every (s, a): ``branching`` *distinct* successors drawn uniformly without replacement; their
    probabilities are uniform on the simplex, drawn as the gaps between ``branching - 1`` sorted uniform
    cut points of [0, 1]; then all are scaled by ``continuation`` so that every step ends the episode
    with probability ``1 - continuation`` (the discount, in distlab's convention) and values are finite.
    Rewards ``R[s, a] ~ reward_scale * N(0, 1)``; ``mu0`` is uniform over states.
    """
    for name, value, low in (("n_states", n_states, 1), ("n_actions", n_actions, 1), ("branching", branching, 1)):
        if int(value) != value or value < low:
            raise ValueError(f"{name} must be a positive integer; got {value!r}")
    if branching > n_states:
        raise ValueError(f"branching={branching} cannot exceed n_states={n_states} (successors are distinct)")
    if not 0.0 < continuation < 1.0:
        raise ValueError(f"continuation must be in (0, 1) so that values are finite; got {continuation!r}")
    rng = np.random.default_rng(seed)
    S, A, b = n_states, n_actions, branching
    # b distinct successors per (s, a): the first b of a random permutation (argsort of uniforms).
    successors = np.argsort(rng.random((S, A, S)), axis=2)[:, :, :b]
    cuts = np.sort(rng.random((S, A, b - 1)), axis=2)
    weights = np.diff(np.concatenate([np.zeros((S, A, 1)), cuts, np.ones((S, A, 1))], axis=2), axis=2)
    R = reward_scale * rng.standard_normal((S, A))
    mu0 = np.full(S, 1.0 / S)
    info = dict(generator="garnet", n_states=S, n_actions=A, branching=b, seed=seed, continuation=continuation)
    return TabularMDP(successors.astype(np.int32), continuation * weights, R, mu0, info)
