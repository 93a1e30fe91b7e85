"""dual: dual policy distillation (DPD) between two tabular learners vs independent learners (DPD Secs. 3-4).

Lai et al. (2020), *Dual Policy Distillation* (seed 002): two learners train on the same environment,
each with its own RL objective plus a distillation loss towards its *peer*, weighted per state by the
peer's advantage ``xi(s) = V_peer(s) - V_self(s)``: ``1[xi > 0]`` (Eq. 9, "indicator") or
``exp(alpha xi)`` (Eq. 11, "exp"). Here both learners are tabular softmax students on random 20x20
gridworlds trained with sampled updates of ``dpd+r`` (REINFORCE on the environment reward plus the
gated cross-entropy ``Hx(pi_peer || pi_theta)``, ``distlab.rules``), taking turns every
``steps_per_round`` steps with the peer (and its exact value) frozen during a turn, as the alternating
updates of the paper's Algorithm 1. Baselines, as in the paper's comparison: two independent learners
(``rl``) with the same steps each, and one ``rl`` learner given twice the steps (x-axis: environment
steps of *all* learners, so the curves compare equal total experience).

Two readings of Eq. 11 run side by side:

* the weight: ``dpd-exp`` is the clipped and normalised ``exp(alpha xi)`` (``train_sampled``'s default
  ``dpd_clip``, as the deep backend and the public DPD code do), ``dpd-exp-unclipped`` the paper's
  literal, unbounded ``exp(alpha xi)`` (up to ``e^10`` with rewards of 10);
* the states (``dpd_states``): Eq. 11 takes them from the *peer* (``s ~ pi~``), ``"own"`` from the
  learner's own episodes (what the REINFORCE term samples anyway).

The two learners start from different random logits (N(0, ``init_scale``^2)), so they explore
differently; identical learners would have ``xi = 0`` and nothing to share. Recorded per MDP and round:
each learner's exact return and, for the DPD learners, ``dpd_weight_max`` = ``max_s exp(alpha xi(s))``
over the states the distillation samples (the unclipped weight the literal Eq. 11 would apply).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from distlab import exact, rules
from distlab.studies import _common

METHODS = ("dpd-indicator", "dpd-exp", "dpd-exp-unclipped", "independent", "single-double-steps")
DPD_STATES = ("own", "peer")


@dataclass(frozen=True)
class Config:
    n_mdps: int = 60
    chunk: int = 30
    size: int = 20
    steps: int = 6_000  # per learner
    steps_per_round: int = 100
    lr: float = 0.003
    dpd_alpha: float = 1.0
    init_scale: float = 1.0
    methods: tuple = METHODS
    dpd_states: tuple = DPD_STATES
    dpd_rule: str = "dpd+r"
    rl_rule: str = "rl"


CONFIGS = {
    "smoke": Config(n_mdps=2, chunk=2, size=8, steps=40, steps_per_round=10),
    "quick": Config(n_mdps=20, chunk=20, steps=3000),
    "full": Config(),
}


def cells(config: Config) -> list[dict]:
    if config.steps % config.steps_per_round:
        raise ValueError(f"steps ({config.steps}) must be a multiple of steps_per_round ({config.steps_per_round})")
    for m in config.methods:
        if m not in METHODS:
            raise ValueError(f"unknown method {m!r}; valid: {', '.join(METHODS)}")
    for s in config.dpd_states:
        if s not in DPD_STATES:
            raise ValueError(f"unknown dpd_states {s!r}; valid: {', '.join(DPD_STATES)}")
    rules.get(config.dpd_rule), rules.get(config.rl_rule)
    out = []
    for method in config.methods:
        dpd = method.startswith("dpd")
        for states in config.dpd_states if dpd else ("none",):
            for first, count in _common.chunks(config.n_mdps, config.chunk):
                out.append(dict(
                    first=first, count=count, size=config.size, steps=config.steps,
                    steps_per_round=config.steps_per_round, lr=config.lr, dpd_alpha=config.dpd_alpha,
                    init_scale=config.init_scale, method=method, dpd_states=states,
                    rule=config.dpd_rule if dpd else config.rl_rule,
                ))
    return out


def _softmax(theta):
    z = np.exp(theta - theta.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def _dpd_options(method: str, states: str, alpha: float) -> dict:
    """``train_sampled`` options of a DPD method: the weight of Eq. 9 / 11, clipped or not, and the states."""
    options = dict(dpd_alpha=alpha, dpd_states=states)
    if method == "dpd-indicator":
        options["dpd_weight"] = "indicator"
    else:
        options["dpd_weight"] = "exp"
        if method == "dpd-exp-unclipped":
            options["dpd_clip"] = None  # the paper's literal exp(alpha xi)
    return options


def max_dpd_weight(batch, self_pi, peer_pi, alpha: float, states: str) -> np.ndarray:
    """Per MDP: ``max_s exp(alpha (V_peer(s) - V_self(s)))`` over the states the distillation samples
    (visited by the learner for ``"own"``, by the peer for ``"peer"``); the unclipped Eq. 11 weight."""
    V_self, _, visits_self = exact.evaluate_batch(batch, self_pi)
    V_peer, _, visits_peer = exact.evaluate_batch(batch, peer_pi)
    visits = visits_self if states == "own" else visits_peer
    xi = np.where(visits > 0, V_peer - V_self, -np.inf)
    return np.exp(alpha * xi.max(axis=1))


def run_cell(cell: dict) -> pd.DataFrame:
    from distlab.sampled import train_sampled

    first, count, method = cell["first"], cell["count"], cell["method"]
    batch = _common.gridworlds(first, count, size=cell["size"])
    S, A = batch.n_states, batch.n_actions
    rng = np.random.default_rng([_common.STUDENT_SEED, first])
    thetas = [cell["init_scale"] * rng.standard_normal((count, S, A)) for _ in range(2)]
    dpd = method.startswith("dpd")
    learners = 1 if method == "single-double-steps" else 2
    rounds = cell["steps"] // cell["steps_per_round"] * (2 if learners == 1 else 1)
    uniform = np.full((count, S, A), 1.0 / A)
    rows = []

    def record(rnd):
        for i in range(learners):
            row = dict(mdp=first + np.arange(count), learner=i, round=rnd,
                       env_steps=rnd * cell["steps_per_round"] * learners,
                       start_value=_common.start_values(batch, _softmax(thetas[i])))
            if dpd:
                row["dpd_weight_max"] = max_dpd_weight(batch, _softmax(thetas[i]), _softmax(thetas[1 - i]),
                                                       cell["dpd_alpha"], cell["dpd_states"])
            rows.append(pd.DataFrame(row))

    record(0)
    for rnd in range(1, rounds + 1):
        for i in range(learners):
            seed = _common.STUDENT_SEED + 1_000_003 * first + 2 * rnd + i
            common = dict(steps=cell["steps_per_round"], lr=cell["lr"], record_steps=[0, cell["steps_per_round"]],
                          theta0=thetas[i], seed=seed, return_theta=True)
            if dpd:
                peer = _softmax(thetas[1 - i])
                peer_value, _, _ = exact.evaluate_batch(batch, peer)
                _, thetas[i] = train_sampled(batch, cell["rule"], peer, peers=peer, peer_values=peer_value, **common,
                                             **_dpd_options(method, cell["dpd_states"], cell["dpd_alpha"]))
            else:
                _, thetas[i] = train_sampled(batch, cell["rule"], uniform, **common)
        record(rnd)
    return pd.concat(rows, ignore_index=True)
