"""dual: dual policy distillation (DPD) between two tabular learners vs independent learners (DPD Secs. 3-4).

Lai et al. (2020), *Dual Policy Distillation* (seed 002): two learners train on the same environment,
each with its own RL objective plus a distillation loss towards its *peer*, weighted per state by the
peer's advantage ``xi(s) = V_peer(s) - V_self(s)``: ``1[xi > 0]`` (Eq. 9, "indicator") or
``exp(alpha xi)`` (Eq. 11, "exp"). Here both learners are tabular softmax students on random 20x20
gridworlds trained with sampled updates of ``dpd+r`` (REINFORCE on the environment reward plus the
gated cross-entropy ``Hx(pi_peer || pi_theta)`` on their own trajectories, ``distlab.rules``), taking
turns every ``steps_per_round`` steps with the peer (and its exact value) frozen during a turn, as the
alternating updates of the paper's Algorithm 1. Baselines, as in the paper's comparison: two independent
learners (``rl``) with the same steps each, and one ``rl`` learner given twice the steps (x-axis:
environment steps of *all* learners, so the curves compare equal total experience).

The two learners start from different random logits (N(0, ``init_scale``^2)), so they explore
differently; identical learners would have ``xi = 0`` and nothing to share. Recorded per MDP and round:
each learner's exact return.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from distlab import exact
from distlab.studies import _common

METHODS = ("dpd-indicator", "dpd-exp", "independent", "single-double-steps")


@dataclass(frozen=True)
class Config:
    n_mdps: int = 100
    chunk: int = 50
    size: int = 20
    steps: int = 6_000  # per learner
    steps_per_round: int = 100
    lr: float = 0.003
    dpd_alpha: float = 1.0
    init_scale: float = 1.0
    methods: tuple = METHODS


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
    return [
        dict(first=first, count=count, size=config.size, steps=config.steps, steps_per_round=config.steps_per_round,
             lr=config.lr, dpd_alpha=config.dpd_alpha, init_scale=config.init_scale, method=method)
        for method in config.methods
        for first, count in _common.chunks(config.n_mdps, config.chunk)
    ]


def _softmax(theta):
    z = np.exp(theta - theta.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def run_cell(cell: dict) -> pd.DataFrame:
    from distlab.sampled import train_sampled

    first, count, method = cell["first"], cell["count"], cell["method"]
    batch = _common.gridworlds(first, count, size=cell["size"])
    S, A = batch.n_states, batch.n_actions
    rng = np.random.default_rng([_common.STUDENT_SEED, first])
    thetas = [cell["init_scale"] * rng.standard_normal((count, S, A)) for _ in range(2)]
    learners = 1 if method == "single-double-steps" else 2
    rounds = cell["steps"] // cell["steps_per_round"] * (2 if learners == 1 else 1)
    uniform = np.full((count, S, A), 1.0 / A)
    rows = []

    def record(rnd):
        for i in range(learners):
            rows.append(pd.DataFrame(dict(
                mdp=first + np.arange(count), learner=i, round=rnd,
                env_steps=rnd * cell["steps_per_round"] * learners,
                start_value=_common.start_values(batch, _softmax(thetas[i])),
            )))

    record(0)
    for rnd in range(1, rounds + 1):
        for i in range(learners):
            seed = _common.STUDENT_SEED + 1_000_003 * first + 2 * rnd + i
            if method.startswith("dpd"):
                peer = _softmax(thetas[1 - i])
                peer_value, _, _ = exact.evaluate_batch(batch, peer)
                _, thetas[i] = train_sampled(
                    batch, "dpd+r", peer, peers=peer, peer_values=peer_value, steps=cell["steps_per_round"],
                    lr=cell["lr"], record_every=cell["steps_per_round"], theta0=thetas[i], seed=seed,
                    dpd_weight=method.removeprefix("dpd-"), dpd_alpha=cell["dpd_alpha"], return_theta=True,
                )
            else:
                _, thetas[i] = train_sampled(
                    batch, "rl", uniform, steps=cell["steps_per_round"], lr=cell["lr"],
                    record_every=cell["steps_per_round"], theta0=thetas[i], seed=seed, return_theta=True,
                )
        record(rnd)
    return pd.concat(rows, ignore_index=True)
