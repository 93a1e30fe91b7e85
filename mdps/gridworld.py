"""Random gridworlds: the MDP distribution of *Distilling Policy Distillation* (Czarnecki et al., 2019).

What the paper says of it (Sec. 3.2 and the list of Appendix A.1/A.2; the appendix's details were not
published with the text): one initial state in the centre of a ``size x size`` grid; after every action
the agent is moved to an absorbing state with probability ``p_end = 0.01`` (finite episodes; in
distlab's convention that mass is simply lost from every row of P); moves off the grid or into a wall
leave the agent in place; moves slip with probability ``slip`` (the intended move with ``1 - slip``,
each of the four directions with ``slip / 4``). Appendix A.2 lists *walls*, *terminating states* and
*rewarding states* as three separate kinds of cell, with no probabilities given.

Cells are scanned row-major from the upper left; each becomes a wall with probability ``p_wall``, else
(with one uniform draw ``u``) a *rewarding terminal* cell (``u < p_terminal``: reward ``reward`` and the
episode ends) or an *unrewarded terminal* cell (``p_terminal <= u < p_terminal + p_unrewarded_terminal``:
the episode ends with reward 0), else an empty cell.

Choices distlab makes where the paper is silent (documented, tested, all arguments):

* **Every terminal cell carries the reward by default** (``p_unrewarded_terminal = 0``). This is a
  *choice*, not the paper's distribution: the paper lists terminating and rewarding states separately.
  It matters for the rules whose objective is a sum along the student's trajectories (n-distill, the
  entropy rules, on-policy distillation's control effect): such sums favour short episodes, and when the
  only way to end an episode early is to reach the reward, that bias is aligned with the reward. With
  ``p_unrewarded_terminal > 0`` ending an episode and collecting the reward are different things, so a
  study can separate the two. With ``p_unrewarded_terminal = 0`` the layouts are bitwise those of
  earlier distlab versions (the split of ``u`` draws no extra random numbers).
* ``p_wall = 0.2``, ``p_terminal = 0.01``, ``slip = 0.1``. With these a 20x20 world has ~80 walls and
  ~3 rewarding cells; an optimal agent from the centre scores about 8-9 of the 10 points, the scale of
  the paper's Fig. 5 (teacher ~7 points with 25 % noise).
* Rewards are attached to states as ``R[s, a] = reward`` for every action in a rewarding cell: the agent
  enters the cell, acts once, collects the reward and the episode ends (``P[s, a, :] = 0``). An
  unrewarded terminal cell ends the episode the same way with ``R[s, a] = 0``.
* Every cell is a state (``S = size**2``, row-major), so all gridworlds of one size share one shape and
  stack into an :class:`~mdps.tabular.MDPBatch`. Walls are dead states: never reached, ``P = 0``,
  ``R = 0``. Row-major numbering keeps ``I - P_pi`` banded (bandwidth ``size``), which the exact solver
  exploits.
* Reachability is *repaired*: non-wall cells that cannot be reached from the start (walls or terminal
  cells cut them off) become walls. If no rewarding cell is reachable the layout is redrawn from the same
  seed's stream, so an MDP is a deterministic function of ``(seed, parameters)``.
* Actions beyond the four moves (``n_actions > 4``, Fig. 4) keep the agent in place deterministically
  (apart from ``p_end``); they never slip.

The four moves are, in action order: up, right, down, left.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from .tabular import MDPBatch, TabularMDP

__all__ = ["random_gridworld", "random_gridworlds", "EMPTY", "WALL", "TERMINAL", "UNREWARDED_TERMINAL", "MOVES"]

EMPTY, WALL, TERMINAL, UNREWARDED_TERMINAL = 0, 1, 2, 3  # TERMINAL: ends the episode with the reward
MOVES = np.array([[-1, 0], [0, 1], [1, 0], [0, -1]], dtype=np.int64)  # up, right, down, left
_BRANCHING = 5  # self + four neighbours
_MAX_REDRAWS = 1000


@nb.njit(cache=True)
def _repair_reachability(layout: np.ndarray, start: int) -> int:
    """Turn unreachable non-wall cells into walls (in place); return the number of reachable rewarding cells.

    Breadth-first search from ``start`` over 4-neighbours; terminal cells (rewarding or not) are reached
    but not expanded (the episode ends there).
    """
    size = layout.shape[0]
    n = size * size
    seen = np.zeros(n, dtype=np.bool_)
    queue = np.empty(n, dtype=np.int64)
    head, tail = 0, 0
    queue[tail] = start
    tail += 1
    seen[start] = True
    terminals = 0
    while head < tail:
        s = queue[head]
        head += 1
        r, c = s // size, s % size
        if layout[r, c] == TERMINAL:
            terminals += 1
            continue
        if layout[r, c] == UNREWARDED_TERMINAL:
            continue
        for d in range(4):
            rr, cc = r + MOVES[d, 0], c + MOVES[d, 1]
            if rr < 0 or rr >= size or cc < 0 or cc >= size:
                continue
            s2 = rr * size + cc
            if seen[s2] or layout[rr, cc] == WALL:
                continue
            seen[s2] = True
            queue[tail] = s2
            tail += 1
    for s in range(n):
        if not seen[s]:
            layout[s // size, s % size] = WALL
    return terminals


def _draw_layout(seed: int, size: int, p_wall: float, p_terminal: float, p_unrewarded_terminal: float) -> tuple[np.ndarray, int]:
    """One layout (size x size int8 codes) from ``seed``; redraws until a rewarding cell is reachable.

    One uniform ``u`` per cell decides its kind: rewarding below ``p_terminal``, unrewarded terminal in
    ``[p_terminal, p_terminal + p_unrewarded_terminal)``; splitting one draw keeps the default layouts
    identical to those drawn before unrewarded terminals existed.
    """
    rng = np.random.default_rng(seed)
    start = (size // 2) * size + size // 2
    for draws in range(1, _MAX_REDRAWS + 1):
        u_wall, u_terminal = rng.random((2, size, size))
        kind = np.where(u_terminal < p_terminal, TERMINAL,
                        np.where(u_terminal < p_terminal + p_unrewarded_terminal, UNREWARDED_TERMINAL, EMPTY))
        layout = np.where(u_wall < p_wall, WALL, kind).astype(np.int8)
        layout.flat[start] = EMPTY
        if _repair_reachability(layout, start) > 0:
            return layout, draws
    raise ValueError(
        f"no gridworld with a reachable terminal cell that carries the reward in {_MAX_REDRAWS} draws (size={size}, "
        f"p_wall={p_wall}, p_terminal={p_terminal}, p_unrewarded_terminal={p_unrewarded_terminal}): raise p_terminal "
        "or lower p_wall / p_unrewarded_terminal"
    )


@nb.njit(cache=True, parallel=True)
def _gridworld_transitions(layouts, n_actions, slip, p_end, reward, next_state, next_prob, R):
    """Fill (B, S, A, 5) sparse transitions and (B, S, A) rewards from (B, size, size) layouts."""
    B, size, _ = layouts.shape
    keep = 1.0 - p_end
    for b in nb.prange(B):
        for s in range(size * size):
            r, c = s // size, s % size
            for a in range(n_actions):
                for k in range(_BRANCHING):
                    next_state[b, s, a, k] = s
                    next_prob[b, s, a, k] = 0.0
                R[b, s, a] = 0.0
            cell = layouts[b, r, c]
            if cell == WALL or cell == UNREWARDED_TERMINAL:  # dead or ending without reward: P = 0, R = 0
                continue
            if cell == TERMINAL:
                for a in range(n_actions):
                    R[b, s, a] = reward
                continue
            for a in range(n_actions):
                if a >= 4:  # extra actions do not move and do not slip
                    next_prob[b, s, a, 0] = keep
                    continue
                for d in range(4):
                    p = slip / 4.0 + (1.0 - slip if d == a else 0.0)
                    rr, cc = r + MOVES[d, 0], c + MOVES[d, 1]
                    blocked = rr < 0 or rr >= size or cc < 0 or cc >= size or layouts[b, rr, cc] == WALL
                    if blocked:
                        next_prob[b, s, a, 0] += keep * p
                    else:
                        next_state[b, s, a, 1 + d] = rr * size + cc
                        next_prob[b, s, a, 1 + d] = keep * p


def _check_parameters(size, n_actions, p_wall, p_terminal, p_unrewarded_terminal, slip, p_end, reward):
    if int(size) != size or size < 3:
        raise ValueError(f"size must be an integer >= 3; got {size!r}")
    if int(n_actions) != n_actions or n_actions < 4:
        raise ValueError(f"n_actions must be an integer >= 4 (four moves plus optional no-ops); got {n_actions!r}")
    for name, value in (("p_wall", p_wall), ("p_terminal", p_terminal), ("p_unrewarded_terminal", p_unrewarded_terminal),
                        ("slip", slip)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be a probability in [0, 1]; got {value!r}")
    if p_terminal + p_unrewarded_terminal > 1.0:
        raise ValueError(f"p_terminal + p_unrewarded_terminal must be <= 1 (they split one draw per cell); got "
                         f"{p_terminal!r} + {p_unrewarded_terminal!r}")
    if not 0.0 < p_end <= 1.0:
        raise ValueError(f"p_end must be in (0, 1] so that episodes end; got {p_end!r}")
    if not np.isfinite(reward):
        raise ValueError(f"reward must be finite; got {reward!r}")


def random_gridworlds(
    n: int,
    size: int = 20,
    n_actions: int = 4,
    seed: int = 0,
    *,
    p_wall: float = 0.2,
    p_terminal: float = 0.01,
    p_unrewarded_terminal: float = 0.0,
    slip: float = 0.1,
    p_end: float = 0.01,
    reward: float = 10.0,
) -> MDPBatch:
    """``n`` random gridworlds as one :class:`MDPBatch`; MDP ``i`` is ``random_gridworld(seed=seed + i)``.

    See the module docstring for the distribution and the choices made where the paper is silent;
    ``p_terminal`` is the probability of a rewarding terminal cell, ``p_unrewarded_terminal`` that of a
    terminal cell without reward (0 by default: a distlab choice, not the paper's).
    """
    _check_parameters(size, n_actions, p_wall, p_terminal, p_unrewarded_terminal, slip, p_end, reward)
    if int(n) != n or n < 1:
        raise ValueError(f"n must be a positive integer; got {n!r}")
    S = size * size
    layouts = np.empty((n, size, size), dtype=np.int8)
    infos = []
    for i in range(n):
        layouts[i], draws = _draw_layout(seed + i, size, p_wall, p_terminal, p_unrewarded_terminal)
        infos.append(
            dict(
                generator="random_gridworld",
                seed=seed + i,
                size=size,
                n_actions=n_actions,
                p_wall=p_wall,
                p_terminal=p_terminal,
                p_unrewarded_terminal=p_unrewarded_terminal,
                slip=slip,
                p_end=p_end,
                reward=reward,
                draws=draws,
                layout=layouts[i],
            )
        )
    next_state = np.empty((n, S, n_actions, _BRANCHING), dtype=np.int32)
    next_prob = np.empty((n, S, n_actions, _BRANCHING))
    R = np.empty((n, S, n_actions))
    _gridworld_transitions(layouts, n_actions, float(slip), float(p_end), float(reward), next_state, next_prob, R)
    mu0 = np.zeros((n, S))
    mu0[:, (size // 2) * size + size // 2] = 1.0
    return MDPBatch(next_state, next_prob, R, mu0, tuple(infos))


def random_gridworld(
    size: int = 20,
    n_actions: int = 4,
    seed: int = 0,
    *,
    p_wall: float = 0.2,
    p_terminal: float = 0.01,
    p_unrewarded_terminal: float = 0.0,
    slip: float = 0.1,
    p_end: float = 0.01,
    reward: float = 10.0,
) -> TabularMDP:
    """One random gridworld (see the module docstring); ``info["layout"]`` holds the cell codes
    (``EMPTY = 0``, ``WALL = 1``, ``TERMINAL = 2`` rewarding, ``UNREWARDED_TERMINAL = 3``), state ``s`` is
    cell ``divmod(s, size)``."""
    return random_gridworlds(
        1, size, n_actions, seed, p_wall=p_wall, p_terminal=p_terminal, p_unrewarded_terminal=p_unrewarded_terminal,
        slip=slip, p_end=p_end, reward=reward,
    )[0]
