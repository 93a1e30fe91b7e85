"""The finite MDP container every distlab backend walks.

Convention (``shared/DESIGN.md``): ``P[s, a, s']`` is the probability that the episode *continues*
into ``s'`` after taking ``a`` in ``s``; ``1 - sum_s' P[s, a, s']`` is the probability that it ends
there. Terminal states, a per-step termination probability and discounting are all the same thing in
this convention (discounting by gamma is scaling P by gamma). ``R[s, a]`` is the expected reward of
taking ``a`` in ``s`` and ``mu0`` the initial-state distribution.

Transitions are stored sparsely with a fixed branching width ``K``: ``next_state[s, a, k]`` and
``next_prob[s, a, k]`` for ``k < K``. Unused slots have probability 0 and point at ``s`` itself, so a
numba kernel may loop over all ``K`` slots without a branch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["TabularMDP", "MDPBatch", "stack"]

# Rows may exceed 1 by this much from floating-point round-off (e.g. slip probabilities eta/4 summed).
_ROW_SUM_TOLERANCE = 1e-12


def _where(index: tuple[int, ...], names: tuple[str, ...]) -> str:
    return ", ".join(f"{n}={i}" for n, i in zip(names, index))


def _check_finite(name: str, array: np.ndarray, names: tuple[str, ...]) -> None:
    bad = np.argwhere(~np.isfinite(array))
    if bad.size:
        raise ValueError(f"{name} has a non-finite value {array[tuple(bad[0])]} at ({_where(tuple(bad[0]), names)})")


def _validate(next_state: np.ndarray, next_prob: np.ndarray, R: np.ndarray, mu0: np.ndarray) -> None:
    """Raise ``ValueError`` naming the first offending entry of a sparse MDP."""
    if next_state.ndim != 3 or next_prob.shape != next_state.shape:
        raise ValueError(
            f"next_state and next_prob must both have shape (S, A, K); got {next_state.shape} and {next_prob.shape}"
        )
    S, A, _ = next_prob.shape
    if R.shape != (S, A):
        raise ValueError(f"R must have shape (S, A) = ({S}, {A}) to match P; got {R.shape}")
    if mu0.shape != (S,):
        raise ValueError(f"mu0 must have shape (S,) = ({S},) to match P; got {mu0.shape}")
    _check_finite("P", next_prob, ("state", "action", "slot"))
    _check_finite("R", R, ("state", "action"))
    _check_finite("mu0", mu0, ("state",))
    bad = np.argwhere((next_state < 0) | (next_state >= S))
    if bad.size:
        s, a, k = bad[0]
        raise ValueError(f"next-state index {next_state[s, a, k]} out of range [0, {S}) at (state={s}, action={a})")
    bad = np.argwhere((next_prob < 0) | (next_prob > 1))
    if bad.size:
        s, a, k = bad[0]
        raise ValueError(
            f"transition probability {next_prob[s, a, k]} outside [0, 1] at (state={s}, action={a}, "
            f"next_state={next_state[s, a, k]})"
        )
    row_sums = next_prob.sum(axis=2)
    bad = np.argwhere(row_sums > 1 + _ROW_SUM_TOLERANCE)
    if bad.size:
        s, a = bad[0]
        raise ValueError(
            f"continuation probabilities sum to {float(row_sums[s, a])!r} > 1 at (state={s}, action={a}); "
            "rows of P may sum to at most 1 (the rest is the probability of termination)"
        )
    if np.any(mu0 < 0):
        s = int(np.argmax(mu0 < 0))
        raise ValueError(f"mu0 is not a distribution: mu0[{s}] = {mu0[s]} < 0")
    if abs(mu0.sum() - 1.0) > 1e-9:
        raise ValueError(f"mu0 is not a distribution: it sums to {float(mu0.sum())!r}, not 1")


@dataclass(frozen=True, eq=False)
class TabularMDP:
    """A finite episodic MDP in sparse fixed-width form (see the module docstring).

    Attributes:
        next_state: (S, A, K) int32, successor indices; padding slots point at the state itself.
        next_prob: (S, A, K) float64, continuation probabilities; padding slots are 0.
        R: (S, A) float64, expected reward of taking ``a`` in ``s``.
        mu0: (S,) float64, initial-state distribution.
        info: free-form metadata (generator name, parameters, layout); saved with the MDP.
    """

    next_state: np.ndarray
    next_prob: np.ndarray
    R: np.ndarray
    mu0: np.ndarray
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        ns = np.ascontiguousarray(self.next_state, dtype=np.int32)
        npr = np.ascontiguousarray(self.next_prob, dtype=np.float64)
        R = np.ascontiguousarray(self.R, dtype=np.float64)
        mu0 = np.ascontiguousarray(self.mu0, dtype=np.float64)
        _validate(ns, npr, R, mu0)
        for name, value in (("next_state", ns), ("next_prob", npr), ("R", R), ("mu0", mu0)):
            value.flags.writeable = False
            object.__setattr__(self, name, value)

    # ---------------------------------------------------------------- shape
    @property
    def n_states(self) -> int:
        return self.next_prob.shape[0]

    @property
    def n_actions(self) -> int:
        return self.next_prob.shape[1]

    @property
    def branching(self) -> int:
        """The fixed branching width K of the sparse storage."""
        return self.next_prob.shape[2]

    def __repr__(self) -> str:
        kind = self.info.get("generator", "TabularMDP")
        return f"<{kind}: {self.n_states} states, {self.n_actions} actions, branching {self.branching}>"

    # ---------------------------------------------------------------- dense <-> sparse
    @classmethod
    def from_dense(cls, P, R, mu0, info: dict | None = None) -> "TabularMDP":
        """Build from dense ``P`` (S, A, S), ``R`` (S, A) and ``mu0`` (S,).

        The branching width is the largest number of non-zero successors of any (s, a).
        """
        P = np.asarray(P, dtype=np.float64)
        R = np.asarray(R, dtype=np.float64)
        mu0 = np.asarray(mu0, dtype=np.float64)
        if P.ndim != 3 or P.shape[0] != P.shape[2]:
            raise ValueError(f"P must have shape (S, A, S); got {P.shape}")
        S, A, _ = P.shape
        _check_finite("P", P, ("state", "action", "next_state"))
        bad = np.argwhere((P < 0) | (P > 1))
        if bad.size:
            s, a, s2 = bad[0]
            raise ValueError(
                f"transition probability {P[s, a, s2]} outside [0, 1] at (state={s}, action={a}, next_state={s2})"
            )
        nonzero = P > 0
        K = max(1, int(nonzero.sum(axis=2).max(initial=0)))
        # Stable sort puts the non-zero successors first, in increasing state order.
        order = np.argsort(~nonzero, axis=2, kind="stable")[:, :, :K]
        next_prob = np.take_along_axis(P, order, axis=2)
        own = np.broadcast_to(np.arange(S)[:, None, None], (S, A, K))
        next_state = np.where(next_prob > 0, order, own)
        return cls(next_state, next_prob, R, mu0, dict(info or {}))

    def to_dense(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return dense ``(P, R, mu0)`` with ``P`` of shape (S, A, S)."""
        S, A, K = self.next_prob.shape
        P = np.zeros((S, A, S))
        s_idx = np.broadcast_to(np.arange(S)[:, None, None], (S, A, K))
        a_idx = np.broadcast_to(np.arange(A)[None, :, None], (S, A, K))
        np.add.at(P, (s_idx, a_idx, self.next_state), self.next_prob)
        return P, self.R.copy(), self.mu0.copy()

    # ---------------------------------------------------------------- persistence
    def save(self, path: str | Path) -> Path:
        """Write to ``path`` (.npz), atomically: a reader never sees a half-written file."""
        import json
        import os
        import tempfile

        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(".npz")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(
                    f,
                    next_state=self.next_state,
                    next_prob=self.next_prob,
                    R=self.R,
                    mu0=self.mu0,
                    info=np.array(json.dumps(self.info, default=_json_default)),
                )
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | Path) -> "TabularMDP":
        import json

        with np.load(Path(path), allow_pickle=False) as data:
            return cls(data["next_state"], data["next_prob"], data["R"], data["mu0"], json.loads(str(data["info"])))


def _json_default(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in TabularMDP.info")


@dataclass(frozen=True, eq=False)
class MDPBatch:
    """Many MDPs of identical shape (S, A, K) stacked for kernels that run in parallel over MDPs.

    Attributes mirror :class:`TabularMDP` with a leading batch axis B.
    """

    next_state: np.ndarray  # (B, S, A, K) int32
    next_prob: np.ndarray  # (B, S, A, K) float64
    R: np.ndarray  # (B, S, A)
    mu0: np.ndarray  # (B, S)
    infos: tuple = ()

    def __len__(self) -> int:
        return self.next_prob.shape[0]

    def __getitem__(self, i: int) -> TabularMDP:
        info = self.infos[i] if self.infos else {}
        return TabularMDP(self.next_state[i], self.next_prob[i], self.R[i], self.mu0[i], dict(info))

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    @property
    def n_states(self) -> int:
        return self.next_prob.shape[1]

    @property
    def n_actions(self) -> int:
        return self.next_prob.shape[2]


def stack(mdps) -> MDPBatch:
    """Stack MDPs of the same (S, A) into an :class:`MDPBatch` (branching padded to the widest)."""
    mdps = list(mdps)
    if not mdps:
        raise ValueError("stack needs at least one MDP")
    S, A = mdps[0].n_states, mdps[0].n_actions
    for i, m in enumerate(mdps):
        if (m.n_states, m.n_actions) != (S, A):
            raise ValueError(f"MDP {i} has shape ({m.n_states}, {m.n_actions}); expected ({S}, {A}) like MDP 0")
    K = max(m.branching for m in mdps)
    B = len(mdps)
    next_state = np.broadcast_to(np.arange(S, dtype=np.int32)[None, :, None, None], (B, S, A, K)).copy()
    next_prob = np.zeros((B, S, A, K))
    for i, m in enumerate(mdps):
        next_state[i, :, :, : m.branching] = m.next_state
        next_prob[i, :, :, : m.branching] = m.next_prob
    R = np.stack([m.R for m in mdps])
    mu0 = np.stack([m.mu0 for m in mdps])
    return MDPBatch(next_state, next_prob, R, mu0, tuple(m.info for m in mdps))
