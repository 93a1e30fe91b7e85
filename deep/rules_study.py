"""mujoco-rules: the taxonomy's update rules on MuJoCo: a fresh SAC student distils a frozen shipped teacher.

Czarnecki et al. (2019) compare the distillation rules of their Table 1 on tabular MDPs; this study asks
the same questions on HalfCheetah-v5 and Hopper-v5. A fresh student (one SAC member, K = 1) learns from
a frozen teacher shipped in ``deep/teachers/`` (a *good* one and an *imperfect* one, an earlier checkpoint
of the same SAC run) with each rule of :data:`RULES`, through the every-step schedule of ``deep.methods``
(``rule_update``: the rule's critic/actor update replaces SAC's at every env step; the teacher acts for
the teacher-controlled rule ``teacher``, the student for every other rule; the component mapping is in
``deep.distill``). ``rl`` is SAC from scratch through the same update (the teacher is measured, never
used). Every ``record_every`` env steps the student is evaluated: mean deterministic return over
``eval_episodes`` episodes, KL(teacher || student) averaged over the student's evaluation states and
over the teacher's own deterministic episodes, env steps, wall time; every row also carries the
teacher's return on the same episode seeds (the figure's teacher line).

Cells = env x teacher (good / imperfect) x rule x seed. Warm-up: the student starts learning after
``warmup_steps`` uniformly random actions (default 1,000 instead of SAC's 10,000, for every rule,
``rl`` included): a frozen teacher already knows what to do, so a long uniform warm-up spends the budget
on data the rule does not need; 1,000 steps (one HalfCheetah episode) still fill several minibatches
and give the critic some action coverage before the first update.

Cells are resumable at cell granularity (the runner skips finished cells); a cell killed mid-way
restarts (the run keeps no checkpoint: a full cell's replay buffer is not worth writing).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from distlab import rules

__all__ = ["RULES", "ENVS", "QUALITIES", "Config", "CONFIGS", "PILOT", "cells", "run_cell", "shipped_teacher",
           "TEACHERS_DIR", "COLUMNS", "check_rule"]


# The rules of issue 9 (Table 1 of the taxonomy paper and Sec. 4), in the figure's order; ``rl`` last.
RULES = ("teacher", "on-policy", "entropy-regularised", "n-distill", "expected-entropy", "on-policy+r",
         "n-distill+r", "expected-entropy+r", "value-gated+r", "teacher-v-reward", "td-teacher-v", "rl")
ENVS = {"HalfCheetah-v5": "halfcheetah", "Hopper-v5": "hopper"}  # env id -> file stem in deep/teachers/
QUALITIES = ("good", "imperfect")
TEACHERS_DIR = Path(__file__).resolve().parent / "teachers"

# The tidy columns of every cell's table (besides the cell's own parameters).
COLUMNS = ("step", "env_steps", "wall_time_s", "mean_return", "std_return", "episodes", "kl_student_states",
           "kl_teacher_states", "teacher_return", "teacher_steps", "teacher_recorded_return")


def shipped_teacher(env: str, quality: str) -> Path:
    """The shipped teacher file ``deep/teachers/<env stem>_<quality>.pt``; ValueError naming the valid choices."""
    if env not in ENVS:
        raise ValueError(f"no shipped teacher for env {env!r}; valid: {', '.join(ENVS)}")
    if quality not in QUALITIES:
        raise ValueError(f"unknown teacher quality {quality!r}; valid: {', '.join(QUALITIES)}")
    path = TEACHERS_DIR / f"{ENVS[env]}_{quality}.pt"
    if not path.exists():
        raise FileNotFoundError(f"shipped teacher {path} is missing (see deep/teachers/README.md for how it is made)")
    return path


@dataclass(frozen=True)
class Config:
    """The scale of the study. ``steps`` env steps per cell, evaluated every ``record_every``."""

    envs: tuple = tuple(ENVS)
    teachers: tuple = QUALITIES
    rules: tuple = RULES
    seeds: tuple = (0, 1, 2)
    steps: int = 50_000
    record_every: int = 2_500
    eval_episodes: int = 10
    warmup_steps: int = 1_000
    width: int = 256
    batch_size: int = 256


CONFIGS = {
    # tests: the shipped Hopper teacher, a tiny student, a few hundred steps
    "smoke": Config(envs=("Hopper-v5",), teachers=("good",), rules=("teacher", "n-distill+r"), seeds=(0,), steps=300,
                    record_every=150, eval_episodes=2, warmup_steps=150, width=32, batch_size=32),
    # `distlab study mujoco-rules --quick`: one env, two rules, one seed, a few thousand steps
    "quick": Config(envs=("HalfCheetah-v5",), teachers=("good",), rules=("on-policy", "n-distill+r"), seeds=(0,),
                    steps=3_000, record_every=1_500, eval_episodes=10),
    # issue 9's full study: both envs, both teachers, every rule, 3 seeds, 50k steps (the pilot's best rule,
    # on-policy, was at 96 % of the good HalfCheetah teacher after 5k; SAC alone passes the imperfect
    # teacher's ~1,100 by ~30k). Measured CPU costs (process time, 1 thread, HalfCheetah): 10-18 ms per
    # update by rule (mean 14.9), 0.2 ms per env step, 0.8 s per 10-episode evaluation -> ~760 CPU-s per
    # cell, 144 cells ~30 CPU-hours: ~15 h on 2 idle cores (--workers 2), ~2 h on 16.
    "full": Config(),
}

# The pilot that fitted this session's shared 2-core machine (REPRODUCTION.md, "MuJoCo"; 75 min wall):
# run with ``distlab.runner.run_grid("mujoco-rules", cells(PILOT), run_cell, "results/pilot", ...)``.
PILOT = Config(envs=("HalfCheetah-v5",), teachers=QUALITIES,
               rules=("teacher", "on-policy", "rl", "value-gated+r", "td-teacher-v", "n-distill+r", "on-policy+r",
                      "teacher-v-reward"),
               seeds=(0, 1), steps=5_000, record_every=1_250, eval_episodes=10)


def cells(config: Config) -> list[dict]:
    """One cell per env x teacher x rule x seed; each carries everything :func:`run_cell` needs."""
    for env in config.envs:
        shipped_teacher(env, config.teachers[0])  # fail before the run, naming the missing file
    return [
        dict(env=env, teacher=quality, rule=rule, seed=int(seed), steps=config.steps, record_every=config.record_every,
             eval_episodes=config.eval_episodes, warmup_steps=config.warmup_steps, width=config.width,
             batch_size=config.batch_size)
        for env in config.envs
        for rule in config.rules  # rule-major: a run cut short still has both teachers of its first rules
        for quality in config.teachers
        for seed in config.seeds
    ]


def check_rule(name: str) -> None:
    """Any rule of the registry runs here (:data:`RULES` is only the default list; a user-registered rule
    runs unchanged), except those the frozen-teacher schedule cannot express: DPD's gate needs a second
    *learning* peer (``--method dpd``), and a component without a SAC mapping is refused by the backend."""
    from deep.distill import check_rule_supported

    rule = rules.get(name)  # ValueError naming the registered rules
    if rule.gate == "dpd":
        raise ValueError(f"rule {name!r} (DPD's disadvantage gate) needs two learning peers, not a frozen teacher: "
                         f"run `distlab train --method dpd`; mujoco-rules runs e.g. {', '.join(RULES)}")
    check_rule_supported(rule)


def train_config(cell: dict):
    """The ``deep`` training config of one cell: K = 1 student of ``--method piekd`` with a frozen teacher and
    ``--rule`` (the every-step schedule), no checkpoints (cells are the unit of resumption)."""
    from deep.config import TrainConfig, with_overrides

    check_rule(cell["rule"])
    base = TrainConfig(env=cell["env"], method="piekd", k=1, rule=cell["rule"], seed=cell["seed"], steps=cell["steps"],
                       teacher=str(shipped_teacher(cell["env"], cell["teacher"])), schedule="every-step",
                       eval_every=cell["record_every"], eval_episodes=cell["eval_episodes"], out=None,
                       checkpoint_every=cell["steps"], progress=False)
    return with_overrides(base, **{"sac.warmup_steps": cell["warmup_steps"], "sac.width": cell["width"],
                                   "sac.batch_size": cell["batch_size"]})


def _limit_torch_threads() -> None:
    """One torch thread per runner worker when the runner capped the threads (it sets OMP_NUM_THREADS)."""
    import torch

    threads = os.environ.get("OMP_NUM_THREADS")
    if threads and threads.isdigit():
        torch.set_num_threads(int(threads))


def run_cell(cell: dict) -> pd.DataFrame:
    """Train one student (see the module docstring); its evaluations as a tidy table of :data:`COLUMNS`."""
    from deep.teacher_file import load_teacher
    from deep.train import train

    _limit_torch_threads()
    cfg = train_config(cell)
    teacher = load_teacher(cfg.teacher)
    evals = train(cfg)["eval"]
    recorded = (teacher.recorded_return or {}).get("mean_return", float("nan"))
    evals = evals.assign(teacher_steps=teacher.steps, teacher_recorded_return=float(recorded))
    return evals.loc[:, list(COLUMNS)].reset_index(drop=True)
