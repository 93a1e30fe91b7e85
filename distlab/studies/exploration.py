"""exploration: greedy, epsilon-greedy and Boltzmann students under on-policy distillation (seed 003, Sec. 3.4).

*Extending single-task policy distillation* (seed 003), Secs. 3.4 and 4.4, compares how the student
explores while it distils on its own trajectories: greedy (argmax of the student), epsilon-greedy and
Boltzmann (softmax of the student's logits at a temperature), against sampling from the student itself
(``"none"``, the taxonomy's on-policy distillation). Here on random 20x20 gridworlds with the paper's
Q-learning teachers (softmax at temperature 0.1), per-step cross-entropy ``Hx(pi || pi_theta)``; the score
function is absent for on-policy distillation, so exploration only changes which states are visited.
Measured: the student's own return and the cross-entropy under its own state distribution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from distlab import teachers
from distlab.studies import _common

# (exploration, epsilon, temperature): the settings compared
STRATEGIES = (("none", 0.0, 1.0), ("greedy", 0.0, 1.0), ("epsilon-greedy", 0.1, 1.0), ("epsilon-greedy", 0.3, 1.0),
              ("boltzmann", 0.0, 0.3), ("boltzmann", 0.0, 3.0))


@dataclass(frozen=True)
class Config:
    n_mdps: int = 300
    chunk: int = 100
    size: int = 20
    steps: int = 30_000
    record_every: int = 250
    lr: float = 0.01
    teacher_temperature: float = 0.1
    strategies: tuple = STRATEGIES
    rule: str = "on-policy"


CONFIGS = {
    "smoke": Config(n_mdps=2, chunk=2, size=8, steps=60, record_every=20),
    "quick": Config(n_mdps=40, chunk=40, steps=5_000, record_every=100),
    "full": Config(),
}


def cells(config: Config) -> list[dict]:
    return [
        dict(first=first, count=count, size=config.size, steps=config.steps, record_every=config.record_every,
             lr=config.lr, teacher_temperature=config.teacher_temperature, exploration=kind,
             epsilon=float(eps), temperature=float(temp), rule=config.rule)
        for kind, eps, temp in config.strategies
        for first, count in _common.chunks(config.n_mdps, config.chunk)
    ]


def run_cell(cell: dict) -> pd.DataFrame:
    from distlab.sampled import train_sampled

    first, count = cell["first"], cell["count"]
    batch = _common.gridworlds(first, count, size=cell["size"])
    pi = teachers.softmax_policy(_common.q_learning_teachers(batch, first), cell["teacher_temperature"])
    curves = train_sampled(
        batch, cell["rule"], pi, steps=cell["steps"], lr=cell["lr"], record_every=cell["record_every"],
        exploration=cell["exploration"], epsilon=cell["epsilon"] if cell["exploration"] == "epsilon-greedy" else 0.1,
        temperature=cell["temperature"], seed=_common.STUDENT_SEED + first,
    )
    per_mdp = pd.DataFrame(dict(mdp=np.arange(count), teacher_return=_common.start_values(batch, pi)))
    table = curves.merge(per_mdp, on="mdp", how="left", validate="many_to_one")
    table["mdp"] += first
    return table
