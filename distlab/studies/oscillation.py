"""oscillation: exact dynamics on the counterexample, on-policy distill+R cycles, n-distill+R converges (taxonomy Sec. 3.1, Fig. 2).

Czarnecki et al. (2019), Sec. 3.1, Fig. 2 and App. C: an MDP whose teacher prefers RIGHT in ``s_R``
(loss ``-4 pi_theta(R|s_R)``, no signal elsewhere), with a sigmoid student that shares one parameter
between ``s_L`` and ``s_R``, trained with *true expected* returns (exact dynamics,
``distlab.expected.run_exact``). On-policy distill+R does not follow a gradient field and its policy
oscillates forever; n-distill+R (Theorem 2's correction) is a gradient field and converges.
The paper's loss ``-4 pi_theta(R|s_R)`` is linear in the student's probabilities; it is the reverse
cross-entropy ``Hx(pi_theta || pi)`` against a teacher with ``log(pi(R)/pi(L)) = 4`` (up to a constant),
so the rules run with ``loss="reverse-hx"`` (see ``mdps.counterexample`` for why the forward
cross-entropy would damp the cycle). Recorded: the student's logits and policy (``p_right_0`` =
pi_theta(R|start), ``p_right_1`` = pi_theta(R|s_L) = pi_theta(R|s_R), the tied row), its return and the
distillation loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

RULES = ("on-policy+r", "n-distill+r")


@dataclass(frozen=True)
class Config:
    steps: int = 20_000
    lr: float = 0.1
    record_every: int = 10
    loss: str = "reverse-hx"
    # Initial logits (rows: start, the tied s_L/s_R row, terminals). Uniform (all 0) is the rest point
    # x = y = 1/2 of on-policy distill+R: start off it, at pi_theta(R|s_L) = pi_theta(R|s_R) = 0.73.
    theta0: tuple = ((0.0, 0.0), (0.0, 1.0), (0.0, 0.0))
    rules: tuple = RULES


CONFIGS = {
    "smoke": Config(steps=40, record_every=10),
    "quick": Config(steps=5_000),
    "full": Config(),
}


def cells(config: Config) -> list[dict]:
    return [dict(rule=rule, steps=config.steps, lr=config.lr, record_every=config.record_every, loss=config.loss,
                 theta0=[list(row) for row in config.theta0])
            for rule in config.rules]


def run_cell(cell: dict) -> pd.DataFrame:
    import mdps
    from distlab.expected import run_exact
    from distlab.student import student_policy

    mdp, alias, teacher = mdps.oscillation_counterexample()
    table = run_exact(mdp, cell["rule"], teacher, steps=cell["steps"], lr=cell["lr"], alias=alias,
                      record_every=cell["record_every"], loss=cell["loss"], theta0=np.array(cell["theta0"]))
    theta_cols = sorted(c for c in table.columns if c.startswith("theta_"))
    rows = int(np.max(alias)) + 1
    theta = table[theta_cols].to_numpy().reshape(len(table), rows, -1)
    for r in range(rows):
        # probability of action 1 (RIGHT) in the student's row r (the tied s_L/s_R row is one of them)
        table[f"p_right_{r}"] = [student_policy(th)[r, 1] for th in theta]
    return table
