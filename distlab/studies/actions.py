"""actions: entropy-regularised vs expected-entropy vs on-policy vs n-distill as |A| grows from 4 to 4096 (taxonomy Sec. 3.3, Fig. 4).

Czarnecki et al. (2019), Sec. 3.3 and Fig. 4: random gridworlds with ``|A|`` actions, 4 of which move
the agent; the others leave it in place and "simply make exploration hard". Entropy-regularised
distillation (the teacher's log-probability as a reward only) estimates its gradient with the score
function, whose variance grows with ``|A|``; the paper reports that it collapses as ``|A|`` grows while
expected-entropy regularised distillation (the same objective, with the current step's term taken in
expectation as a loss) keeps the speed of on-policy distillation.

The teacher (distlab's choice; the paper's appendix with its details was not published): the optimal
policy of each MDP made epsilon-greedy with epsilon = 0.1 over *all* ``|A|`` actions, the behaviour of
the paper's Q-learning teachers without the Q-learning (tabular Q-learning cannot learn a 4096-action
world in a feasible number of episodes). Its probabilities are all positive, so ``log pi`` is finite.

Scale: the paper's 1,000 MDPs per ``|A|`` do not fit the ~30 min budget on 2 cores (the per-step cost
grows with ``|A|`` and a 4096-action 20x20 gridworld alone takes ~100 MB); the full config runs 200 MDPs
for ``|A|`` <= 16 down to 4 for 4096, all for the paper's 30,000 steps (``Config.mdps_per_actions``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

import mdps
from distlab import exact, teachers
from distlab.studies import _common

RULES = ("entropy-regularised", "expected-entropy", "on-policy", "n-distill")


@dataclass(frozen=True)
class Config:
    # (|A|, number of MDPs, MDPs per cell)
    mdps_per_actions: tuple = ((4, 200, 100), (16, 200, 100), (64, 100, 50), (256, 30, 15), (1024, 10, 5), (4096, 4, 2))
    size: int = 20
    steps: int = 30_000
    record_every: int = 250
    lr: float = 1e-3
    epsilon: float = 0.1
    rules: tuple = RULES


CONFIGS = {
    "smoke": Config(mdps_per_actions=((4, 2, 2), (16, 2, 2)), size=8, steps=60, record_every=20),
    "quick": Config(mdps_per_actions=((4, 20, 20), (64, 10, 10), (1024, 4, 4)), steps=5_000, record_every=100),
    "full": Config(),
}


def cells(config: Config) -> list[dict]:
    return [
        dict(n_actions=int(A), first=first, count=count, size=config.size, steps=config.steps,
             record_every=config.record_every, lr=config.lr, epsilon=config.epsilon, rule=rule)
        for A, n, chunk in config.mdps_per_actions
        for rule in config.rules
        for first, count in _common.chunks(n, chunk)
    ]


def run_cell(cell: dict) -> pd.DataFrame:
    from distlab.sampled import train_sampled

    first, count = cell["first"], cell["count"]
    batch = mdps.random_gridworlds(count, size=cell["size"], n_actions=cell["n_actions"], seed=first)
    V_star, Q_star, _ = exact.optimal_batch(batch)
    pi = teachers.epsilon_greedy_policy(Q_star, cell["epsilon"])
    curves = train_sampled(
        batch, cell["rule"], pi, steps=cell["steps"], lr=cell["lr"], record_every=cell["record_every"],
        seed=_common.STUDENT_SEED + first,
    )
    start = _common.start_states(batch)
    per_mdp = pd.DataFrame(dict(
        mdp=np.arange(count),
        teacher_return=_common.start_values(batch, pi),
        optimal_return=V_star[np.arange(count), start],
    ))
    table = curves.merge(per_mdp, on="mdp", how="left", validate="many_to_one")
    table["mdp"] += first
    return table
