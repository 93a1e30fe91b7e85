"""control: teacher- vs student- vs uniform-driven distillation of Q-learning teachers (taxonomy Sec. 3.2, Fig. 3).

Czarnecki et al. (2019), Sec. 3.2: 1k random 20x20 gridworlds, Q-learning teachers (epsilon-greedy
0.1) turned into policies by a softmax at several temperatures, students distilled for 30k steps with
the per-step cross-entropy ``Hx(pi || pi_theta)`` under three control policies ``q``: the teacher, the
student, and the uniform policy. Measured along training (exactly, from expected visits):
``E_z[sum_t Hx(pi(s_t) || pi_theta(s_t))]`` for ``z`` in {teacher, student, uniform} and the student's
return. The paper's claims: student-driven distillation recovers the teacher's return ~3x faster than
teacher-driven and ~10x faster than uniform; its advantage shrinks as the teacher becomes more
entropic (Fig. 3 right: the ratio of areas under the curves against teacher entropy).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from distlab import teachers
from distlab.studies import _common


@dataclass(frozen=True)
class Config:
    n_mdps: int = 1000
    chunk: int = 125
    size: int = 20
    steps: int = 30_000
    record_every: int = 100
    lr: float = 0.01
    temperatures: tuple = (0.01, 0.1, 1.0)
    controls: tuple = ("teacher", "student", "uniform")


CONFIGS = {
    "smoke": Config(n_mdps=3, chunk=3, size=8, steps=60, record_every=20),
    "quick": Config(n_mdps=40, chunk=40, steps=5_000, record_every=50),
    "full": Config(),
}


def cells(config: Config) -> list[dict]:
    return [
        dict(first=first, count=count, size=config.size, steps=config.steps, record_every=config.record_every,
             lr=config.lr, temperature=float(temperature), control=control)
        for temperature in config.temperatures
        for control in config.controls
        for first, count in _common.chunks(config.n_mdps, config.chunk)
    ]


def run_cell(cell: dict) -> pd.DataFrame:
    """Distil softmax(Q / T) teachers of one chunk of gridworlds under one control policy."""
    from distlab.sampled import train_sampled

    first, count = cell["first"], cell["count"]
    batch = _common.gridworlds(first, count, size=cell["size"])
    Q = _common.q_learning_teachers(batch, first)
    pi = teachers.softmax_policy(Q, cell["temperature"])
    curves = train_sampled(
        batch, "on-policy", pi, steps=cell["steps"], lr=cell["lr"], record_every=cell["record_every"],
        control=cell["control"], seed=_common.STUDENT_SEED + first,
    )
    per_mdp = pd.DataFrame(dict(
        mdp=np.arange(count),
        teacher_return=_common.start_values(batch, pi),
        teacher_entropy=_common.visit_weighted_entropy(batch, pi),
    ))
    table = curves.merge(per_mdp, on="mdp", how="left", validate="many_to_one")
    table["mdp"] += first  # the gridworld's seed: a global MDP index
    return table
