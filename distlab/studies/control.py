"""control: teacher- vs student- vs uniform-driven distillation of Q-learning teachers (taxonomy Sec. 3.2, Fig. 3).

Czarnecki et al. (2019), Sec. 3.2: 1k random 20x20 gridworlds, Q-learning teachers (epsilon-greedy
0.1) turned into policies by a softmax at several temperatures, students distilled for 30k steps with
the per-step cross-entropy ``Hx(pi || pi_theta)`` under three control policies ``q``: the teacher, the
student, and the uniform policy. Measured along training (exactly, from expected visits):
``E_z[sum_t Hx(pi(s_t) || pi_theta(s_t))]`` for ``z`` in {teacher, student, uniform} and the student's
return. The paper's claims: student-driven distillation recovers the teacher's return ~3x faster than
teacher-driven and ~10x faster than uniform; its advantage shrinks as the teacher becomes more
entropic (Fig. 3 right: the ratio of areas under the curves against teacher entropy).

What one optimisation step is decides the comparison, and the paper does not say, so both run
(``step_unit``):

* ``"episode"``: one sampled episode of the control policy per step (the update sums over its
  transitions, so a long uniform-random-walk episode, ~74 transitions here against ~8 for teacher- or
  student-driven ones, is a bigger step);
* ``"transitions"``: exactly ``transitions_per_step`` sampled transitions per step, as fixed-length
  unrolls (an episode in progress continues into the next step), the same for every control.
  ``transitions_per_step = 20`` is a documented constant: about two teacher- or student-driven
  episodes of the near-deterministic teachers (10-13 transitions per episode over training, measured
  on the quick config), so 30k steps give every control 600k transitions, more than the ~420k that
  uniform-driven distillation sampled to reach 99 % of the teacher's return in the episode unit. (The
  uniform policy's own mean episode length, ~78, would cost four times as much for every control.)
  ``transitions_n_mdps`` runs this unit on the first MDPs only, to fit the budget.

Every table carries the cumulative ``transitions`` column, so the episode-unit curves can also be read
against sampled transitions. Records sit on a log-spaced step grid (``record_points``), as the
figure's step axis is logarithmic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from distlab import teachers
from distlab.studies import _common

STEP_UNITS = ("episode", "transitions")


@dataclass(frozen=True)
class Config:
    n_mdps: int = 1000
    chunk: int = 125
    size: int = 20
    steps: int = 30_000
    record_points: int = 64  # log-spaced records from step 1 to ``steps`` (plus step 0)
    lr: float = 0.01
    temperatures: tuple = (0.01, 0.1, 1.0)
    controls: tuple = ("teacher", "student", "uniform")
    step_units: tuple = STEP_UNITS
    transitions_per_step: int = 20
    transitions_n_mdps: int | None = 250  # the transitions unit on the first MDPs only (budget); None: all
    rule: str = "on-policy"


CONFIGS = {
    "smoke": Config(n_mdps=3, chunk=3, size=8, steps=60, record_points=8),
    "quick": Config(n_mdps=40, chunk=40, steps=5_000, record_points=40),
    "full": Config(),
}


def cells(config: Config) -> list[dict]:
    for unit in config.step_units:
        if unit not in STEP_UNITS:
            raise ValueError(f"unknown step unit {unit!r}; valid: {', '.join(STEP_UNITS)}")
    out = []
    for unit in config.step_units:
        per_step = dict(transitions_per_step=int(config.transitions_per_step)) if unit == "transitions" else {}
        n_mdps = config.n_mdps
        if unit == "transitions" and config.transitions_n_mdps is not None:
            n_mdps = min(n_mdps, config.transitions_n_mdps)
        for temperature in config.temperatures:
            for control in config.controls:
                for first, count in _common.chunks(n_mdps, config.chunk):
                    out.append(dict(
                        first=first, count=count, size=config.size, steps=config.steps,
                        record_points=config.record_points, lr=config.lr, temperature=float(temperature),
                        control=control, rule=config.rule, step_unit=unit, **per_step,
                    ))
    return out


def run_cell(cell: dict) -> pd.DataFrame:
    """Distil softmax(Q / T) teachers of one chunk of gridworlds under one control policy."""
    from distlab.sampled import train_sampled

    first, count = cell["first"], cell["count"]
    batch = _common.gridworlds(first, count, size=cell["size"])
    Q = _common.q_learning_teachers(batch, first)
    pi = teachers.softmax_policy(Q, cell["temperature"])
    unit = dict(step_unit=cell["step_unit"])
    if cell["step_unit"] == "transitions":
        unit["transitions_per_step"] = cell["transitions_per_step"]
    curves = train_sampled(
        batch, cell["rule"], pi, steps=cell["steps"], lr=cell["lr"],
        record_steps=_common.log_record_steps(cell["steps"], cell["record_points"]),
        control=cell["control"], seed=_common.STUDENT_SEED + first, **unit,
    )
    per_mdp = pd.DataFrame(dict(
        mdp=np.arange(count),
        teacher_return=_common.start_values(batch, pi),
        teacher_entropy=_common.visit_weighted_entropy(batch, pi),
    ))
    table = curves.merge(per_mdp, on="mdp", how="left", validate="many_to_one")
    table["mdp"] += first  # the gridworld's seed: a global MDP index
    return table
