"""The corridor of *Distilling Policy Distillation*, Sec. 4.2 (Fig. 6 and appendix Fig. 9)."""

from __future__ import annotations

import numpy as np

from .tabular import TabularMDP

__all__ = ["chain_corridor", "LEFT", "RIGHT"]

LEFT, RIGHT = 0, 1


def chain_corridor(T: int = 5, continuation: float = 1.0) -> TabularMDP:
    """A corridor of ``2T + 1`` states; the agent starts in the middle (state ``T``).

    Actions: ``LEFT = 0`` and ``RIGHT = 1`` move deterministically one cell. Both ends are terminal
    states with the reward inside (as the green states of the paper's figures): acting in the left end
    ``0`` yields -1, in the right end ``2T`` yields +1, and the episode ends. ``continuation`` < 1 adds a
    per-step termination (discount) mass; the paper's corridor is undiscounted (1.0), and every policy
    whose student is a softmax (all actions possible) ends with probability 1.

    The optimal policy goes right everywhere: ``V*(T) = +1`` when ``continuation = 1``.
    """
    if int(T) != T or T < 1:
        raise ValueError(f"T must be a positive integer (the corridor has 2T+1 states); got {T!r}")
    if not 0.0 < continuation <= 1.0:
        raise ValueError(f"continuation must be in (0, 1]; got {continuation!r}")
    S = 2 * T + 1
    P = np.zeros((S, 2, S))
    R = np.zeros((S, 2))
    for s in range(1, S - 1):
        P[s, LEFT, s - 1] = continuation
        P[s, RIGHT, s + 1] = continuation
    R[0, :] = -1.0
    R[S - 1, :] = +1.0
    mu0 = np.zeros(S)
    mu0[T] = 1.0
    return TabularMDP.from_dense(P, R, mu0, info=dict(generator="chain_corridor", T=T, continuation=continuation))
