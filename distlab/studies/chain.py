"""chain: optimal vs adversarial teachers on the corridor; cloning vs the teacher's value (taxonomy Sec. 4.2, Fig. 6, Fig. 9).

Czarnecki et al. (2019), Sec. 4.2: a corridor of ``2T + 1`` states, start in the middle, reward -1 at
the left end and +1 at the right end. The optimal teacher goes right everywhere, the adversarial one
left. Rules: policy cloning (``teacher``, ``on-policy``, ``n-distill``), ``td-teacher-v`` (TD bootstrapped
from the teacher's value, Prop. 3), ``teacher-v-reward`` (the shaping reward
``r_t + V_pi(s_{t+1}) - V_pi(s_t)``, Sec. 4.2) and ``rl`` (no distillation). The paper's claims: with
the optimal teacher cloning is fastest and teacher-V reward beats rl; with the adversarial teacher
cloning fails, teacher-V reward still learns, TD with the teacher's value improves on the teacher
without solving the task.

Every rule is the registry's (``distlab.rules``; a user-registered rule runs here too) and runs two ways
(``dynamics``):

* ``"sampled"``: ``train_sampled`` with one episode per step and, for the rules with a score term,
  the learned per-state baseline (``baseline="learned"``, a tabular critic trained online with
  ``baseline_lr``), over ``n_seeds`` independent students;
* ``"exact"``: the expected update itself (``distlab.expected.run_exact``) for ``exact_steps`` steps of
  ``exact_lr``, the limit of the sampled learner without noise. It tells a budget artefact from a
  property of the rule. Its table reports ``step`` in sampled-step equivalents, ``exact step x exact_lr /
  lr`` (in the small-step limit one step of ``exact_lr`` moves as far as ``exact_lr / lr`` steps of
  ``lr``), so both dynamics share the figure's axis; a larger ``exact_lr`` reaches the limit in fewer
  (Python-speed) exact steps.

Two choices the paper leaves open, made explicit here:

* Its text on the adversarial teacher's value is garbled ("we set V_bad := V_good, thus creating
  adversarial value function"). Cells carry ``teacher_value``: ``"own"`` (the adversarial policy's own
  exact value) or ``"optimal"`` (the optimal teacher's value, the paper's "V_bad := V_good"); for the
  optimal teacher both are the same and only ``"own"`` runs.
* Teacher-V reward's shaping telescopes: with exact returns its expected update *equals* rl's
  (Prop. 4's shaping adds ``-V_pi(s_t)``, a baseline, and ``V_pi(s_end) = 0``). Under exact dynamics the
  two curves coincide; sampled, they differ only through the variance of their estimators.

The paper uses gamma = 0.99 in its experiments (Sec. 2); the corridor's ``continuation`` = 0.99 is that
discount (without it every interior state of the optimal teacher has value exactly +1 and a TD target
``r + V_pi`` carries no information about direction).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

import mdps
from distlab import exact, rules
from distlab.studies import _common

RULES = ("teacher", "on-policy", "n-distill", "td-teacher-v", "teacher-v-reward", "rl")
TEACHERS = ("optimal", "adversarial")
TEACHER_VALUES = ("own", "optimal")
DYNAMICS = ("sampled", "exact")


@dataclass(frozen=True)
class Config:
    lengths: tuple = (5, 20)
    n_seeds: int = 100
    steps: int = 5_000
    record_points: int = 48
    lr: float = 0.02
    baseline: str = "learned"
    baseline_lr: float = 0.1
    continuation: float = 0.99
    rules: tuple = RULES
    teachers: tuple = TEACHERS
    dynamics: tuple = DYNAMICS
    exact_steps: int = 4_000
    exact_lr: float = 0.1
    exact_record_every: int = 5


CONFIGS = {
    "smoke": Config(lengths=(3,), n_seeds=4, steps=40, record_points=6, exact_steps=40, exact_record_every=10),
    "quick": Config(lengths=(5,), n_seeds=50, steps=2000, record_points=32, exact_steps=1000, exact_record_every=20),
    "full": Config(),
}


def cells(config: Config) -> list[dict]:
    for name in config.rules:
        rules.get(name)  # ValueError listing the registered rules
    for t in config.teachers:
        if t not in TEACHERS:
            raise ValueError(f"unknown chain teacher {t!r}; valid: {', '.join(TEACHERS)}")
    for d in config.dynamics:
        if d not in DYNAMICS:
            raise ValueError(f"unknown dynamics {d!r}; valid: {', '.join(DYNAMICS)}")
    out = []
    for T in config.lengths:
        for teacher in config.teachers:
            for name in config.rules:
                uses_value = rules.get(name).uses_teacher_value
                values = TEACHER_VALUES if (uses_value and teacher == "adversarial") else ("own",) if uses_value else ("none",)
                for value in values:
                    for dynamics in config.dynamics:
                        common = dict(T=int(T), teacher=teacher, rule=name, teacher_value=value, dynamics=dynamics,
                                      lr=config.lr, continuation=config.continuation)
                        if dynamics == "sampled":
                            out.append(dict(common, n_seeds=config.n_seeds, steps=config.steps,
                                            record_points=config.record_points, baseline=config.baseline,
                                            baseline_lr=config.baseline_lr))
                        else:
                            out.append(dict(common, steps=config.exact_steps, exact_lr=config.exact_lr,
                                            record_every=config.exact_record_every))
    return out


def corridor_teacher(mdp, which: str) -> np.ndarray:
    """Deterministic corridor teachers: ``"optimal"`` goes RIGHT everywhere, ``"adversarial"`` LEFT."""
    if which not in TEACHERS:
        raise ValueError(f"unknown chain teacher {which!r}; valid: {', '.join(TEACHERS)}")
    action = mdps.chain.RIGHT if which == "optimal" else mdps.chain.LEFT
    return np.eye(mdp.n_actions)[np.full(mdp.n_states, action)]


def _sampled_curves(mdp, pi, V, cell: dict) -> pd.DataFrame:
    from distlab.sampled import train_sampled

    n = cell["n_seeds"]
    batch = mdps.stack([mdp] * n)  # one corridor per seed: the kernel's MDP axis
    options = {}
    if _common.has_score_term(rules.get(cell["rule"])):  # a baseline acts on the score term only
        options.update(baseline=cell["baseline"], baseline_lr=cell["baseline_lr"])
    curves = train_sampled(
        batch, cell["rule"], np.broadcast_to(pi, (n,) + pi.shape).copy(), steps=cell["steps"], lr=cell["lr"],
        record_steps=_common.log_record_steps(cell["steps"], cell["record_points"]),
        teacher_values=np.broadcast_to(V, (n, mdp.n_states)).copy(), seed=_seed(cell), **options,
    )
    return curves.rename(columns={"mdp": "seed"})


def _exact_curves(mdp, pi, V, cell: dict) -> pd.DataFrame:
    from distlab.expected import run_exact

    table = run_exact(mdp, cell["rule"], pi, steps=cell["steps"], lr=cell["exact_lr"], record_every=cell["record_every"],
                      teacher_value=V)
    # steps in sampled-step equivalents: exact_lr / lr steps of lr per exact step (module docstring)
    equivalent = table["step"].to_numpy() * cell["exact_lr"] / cell["lr"]
    return pd.DataFrame(dict(seed=0, step=equivalent, exact_step=table["step"], start_value=table["student_return"]))


def _seed(cell: dict) -> int:
    return 7919 * cell["T"] + (0 if cell["teacher"] == "optimal" else 1)


def run_cell(cell: dict) -> pd.DataFrame:
    mdp = mdps.chain_corridor(cell["T"], continuation=cell["continuation"])
    pi = corridor_teacher(mdp, cell["teacher"])
    V_own, _, _ = exact.evaluate(mdp, pi)
    V_opt, _, _ = exact.evaluate(mdp, corridor_teacher(mdp, "optimal"))
    V = V_opt if cell["teacher_value"] == "optimal" else V_own
    table = (_sampled_curves if cell["dynamics"] == "sampled" else _exact_curves)(mdp, pi, V, cell)
    start = int(mdp.mu0.argmax())
    table["teacher_return"] = V_own[start]
    table["optimal_return"] = V_opt[start]
    return table
