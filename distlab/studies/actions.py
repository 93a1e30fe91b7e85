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

Estimators. The paper does not say how the score-function term was estimated, so the rules with one
(``estimator_rules``) also run with the variance-reduction knobs of ``train_sampled`` beside the
literal Table-1 estimator (``estimators``: name, ``baseline``, ``max_steps``):

* ``literal``: the Monte-Carlo return of Table 1, no baseline, episodes up to 10,000 transitions;
* ``baseline-exact``: minus the current student's exact expected return-to-go of the rule's rhat from
  each state (unbiased; the ideal per-state baseline);
* ``baseline-learned``: minus a tabular critic trained online (unbiased; ``baseline_lr``);
* ``truncated-30``: episodes cut after 30 transitions (biased: a truncated episode counts as ended).

and under *exact dynamics* (``distlab.expected.run_exact``: the expected update itself, no sampling)
on a few MDPs per ``|A|`` (``exact_dynamics``), which separates the rule from its estimator.

Scale: the paper's 1,000 MDPs per ``|A|`` do not fit the budget on 2 shared cores (the per-step cost
grows with ``|A|``, the exact baseline solves for the student's values as it learns, and a 4096-action
20x20 gridworld alone takes ~100 MB); ``Config.mdps_per_actions`` lists the MDPs run per ``|A|``, all
for the paper's 30,000 steps, with the estimator variants up to ``estimator_max_actions``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

import mdps
from distlab import exact, rules, teachers
from distlab.studies import _common

RULES = ("entropy-regularised", "expected-entropy", "on-policy", "n-distill")
# (name, baseline, max_steps)
ESTIMATORS = (("literal", "none", 10_000), ("baseline-exact", "exact", 10_000),
              ("baseline-learned", "learned", 10_000), ("truncated-30", "none", 30))


@dataclass(frozen=True)
class Config:
    # (|A|, number of MDPs, MDPs per cell)
    mdps_per_actions: tuple = ((4, 40, 20), (16, 40, 20), (64, 20, 10), (256, 6, 3), (1024, 2, 1))
    size: int = 20
    steps: int = 30_000
    record_points: int = 48
    lr: float = 1e-3
    epsilon: float = 0.1
    rules: tuple = RULES
    estimators: tuple = ESTIMATORS
    estimator_rules: tuple = ("entropy-regularised", "expected-entropy")
    estimator_max_actions: int = 64  # larger |A|: the literal estimator only (budget)
    baseline_lr: float = 0.1
    # exact dynamics: (|A|, number of MDPs), run for ``exact_steps`` steps of the same lr
    exact_dynamics: tuple = ((4, 2), (16, 3))
    exact_steps: int = 2000
    exact_record_every: int = 10


CONFIGS = {
    "smoke": Config(mdps_per_actions=((4, 2, 2), (16, 2, 2)), size=8, steps=60, record_points=8,
                    exact_dynamics=((4, 1),), exact_steps=20, exact_record_every=10),
    "quick": Config(mdps_per_actions=((4, 20, 20), (16, 20, 20), (64, 10, 10)), steps=5_000, record_points=32,
                    exact_dynamics=((16, 2),), exact_steps=1000),
    "full": Config(),
}


def cells(config: Config) -> list[dict]:
    for name in config.rules:
        rules.get(name)
    names = [e[0] for e in config.estimators]
    out = []
    for A, n, chunk in config.mdps_per_actions:
        for rule in config.rules:
            variants = rule in config.estimator_rules and A <= config.estimator_max_actions
            estimators = config.estimators if variants else config.estimators[:1]
            for estimator, baseline, max_steps in estimators:
                for first, count in _common.chunks(n, chunk):
                    out.append(dict(
                        n_actions=int(A), first=first, count=count, size=config.size, steps=config.steps,
                        record_points=config.record_points, lr=config.lr, epsilon=config.epsilon, rule=rule,
                        dynamics="sampled", estimator=estimator, baseline=baseline, max_steps=int(max_steps),
                        baseline_lr=config.baseline_lr,
                    ))
    if len(set(names)) != len(names):
        raise ValueError(f"estimator names must be unique; got {names}")
    for A, n in config.exact_dynamics:
        for rule in config.estimator_rules:
            for first in range(n):
                out.append(dict(
                    n_actions=int(A), first=first, count=1, size=config.size, steps=config.exact_steps,
                    record_every=config.exact_record_every, lr=config.lr, epsilon=config.epsilon, rule=rule,
                    dynamics="exact", estimator="exact-dynamics",
                ))
    return out


def _teacher(batch, epsilon: float):
    V_star, Q_star, _ = exact.optimal_batch(batch)
    return V_star, teachers.epsilon_greedy_policy(Q_star, epsilon)


def _sampled_curves(batch, pi, cell: dict) -> pd.DataFrame:
    from distlab.sampled import train_sampled

    options = dict(max_steps=cell["max_steps"])
    if _common.has_score_term(rules.get(cell["rule"])):  # a baseline acts on the score term only
        options.update(baseline=cell["baseline"], baseline_lr=cell["baseline_lr"])
    with warnings.catch_warnings():
        if cell["estimator"].startswith("truncated"):  # truncation is the point of this estimator
            warnings.filterwarnings("ignore", message=".*reached max_steps.*")
        return train_sampled(
            batch, cell["rule"], pi, steps=cell["steps"], lr=cell["lr"],
            record_steps=_common.log_record_steps(cell["steps"], cell["record_points"]),
            seed=_common.STUDENT_SEED + cell["first"], **options,
        )


def _exact_curves(batch, pi, cell: dict) -> pd.DataFrame:
    from distlab.expected import run_exact

    table = run_exact(batch[0], cell["rule"], pi[0], steps=cell["steps"], lr=cell["lr"],
                      record_every=cell["record_every"])
    return pd.DataFrame(dict(mdp=0, step=table["step"], start_value=table["student_return"],
                             hx_student=table["hx_student"], hx_teacher=table["hx_teacher"]))


def run_cell(cell: dict) -> pd.DataFrame:
    first, count = cell["first"], cell["count"]
    batch = mdps.random_gridworlds(count, size=cell["size"], n_actions=cell["n_actions"], seed=first)
    V_star, pi = _teacher(batch, cell["epsilon"])
    curves = _sampled_curves(batch, pi, cell) if cell["dynamics"] == "sampled" else _exact_curves(batch, pi, cell)
    start = _common.start_states(batch)
    per_mdp = pd.DataFrame(dict(
        mdp=np.arange(count),
        teacher_return=_common.start_values(batch, pi),
        optimal_return=V_star[np.arange(count), start],
    ))
    table = curves.merge(per_mdp, on="mdp", how="left", validate="many_to_one")
    table["mdp"] += first
    return table
