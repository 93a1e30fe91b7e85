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
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pandas as pd

from distlab import rules

__all__ = ["RULES", "ENVS", "QUALITIES", "Config", "CONFIGS", "cells", "run_cell", "run_group", "group_of", "gpu_share",
           "check_device", "PER_CELL", "shipped_teacher",
           "TEACHERS_DIR", "COLUMNS", "check_rule", "per_env", "CHECKS", "run_check", "mapping_changes",
           "baseline_of", "compare_check", "read_baseline"]


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
    """The scale of the study. ``steps`` env steps per cell, evaluated every ``record_every``; each is one
    number for every env or a tuple of ``(env, value)`` pairs (see :func:`per_env`)."""

    envs: tuple = tuple(ENVS)
    teachers: tuple = QUALITIES
    rules: tuple = RULES
    seeds: tuple = (0, 1, 2)
    steps: int | tuple = 50_000
    record_every: int | tuple = 2_500
    eval_episodes: int = 10
    warmup_steps: int = 1_000
    width: int = 256
    batch_size: int = 256
    # choices of the rule's SAC mapping (deep.config.RuleMapping), as (field, value) pairs; a cell carries
    # only those that differ from the defaults, so the default study's cells keep their names (and results)
    mapping: tuple = ()
    # where the students train: cpu or cuda[:N]; a cell carries ``device`` only when it is not cpu (same names)
    device: str = "cpu"
    # run each env's cells (teachers x rules x seeds) as ONE stacked process (run_group) instead of one
    # process per cell; each cell's table is the same up to float rounding (tests/deep/test_rules_stack.py).
    # Off by default: the committed results were made cell by cell, and chaotic MuJoCo dynamics can amplify
    # rounding differences over long runs.
    stack: bool = False
    # worker processes stepping a process's simulators (deep.env_workers; 0: in the process): a stacked group's
    # many simulators in parallel where the machine has cores to spare. Same numbers; a cell carries it only
    # when not 0 (same names)
    env_workers: int = 0
    # on Ray with a CUDA device, the share of one GPU a group asks for (num_gpus; Ray packs 1 / share groups per GPU)
    gpus_per_group: float = 0.5


def per_env(value, env: str) -> int:
    """``value`` for ``env``: the number itself, or the entry of a tuple of ``(env, value)`` pairs."""
    if isinstance(value, int):
        return value
    table = dict(value)
    if env not in table:
        raise ValueError(f"no per-env value for {env!r}; given for: {', '.join(table)}")
    return int(table[env])


CONFIGS = {
    # tests: the shipped Hopper teacher, a tiny student, a few hundred steps
    "smoke": Config(envs=("Hopper-v5",), teachers=("good",), rules=("teacher", "n-distill+r"), seeds=(0,), steps=300,
                    record_every=150, eval_episodes=2, warmup_steps=150, width=32, batch_size=32),
    # `distlab study mujoco-rules --quick`: one env, two rules, one seed, a few thousand steps
    "quick": Config(envs=("HalfCheetah-v5",), teachers=("good",), rules=("on-policy", "n-distill+r"), seeds=(0,),
                    steps=3_000, record_every=1_500, eval_episodes=10),
    # issue 9's full study, sized to one sitting on the 2-core machine where it was first run (85 min wall
    # there; under the pin on this project's machine a median 79 / 182 CPU-s per HalfCheetah / Hopper cell,
    # 19,018 CPU-s for all 144, REPRODUCTION.md):
    # both envs, both teachers, every rule, 3 seeds. Budgets per env: HalfCheetah 6k env steps (the pilot's
    # on-policy was at 96 % of the good teacher after 5k), Hopper 14k (on-policy was at 73 % of the good
    # teacher after 10k in a one-seed trial). Minibatch 128 instead of SAC's 256: measured 0.58-0.63x the
    # update's CPU time (HalfCheetah, one thread: value-gated+r 18.2 -> 10.5 ms, on-policy+r 13.7 -> 8.7 ms),
    # 85 min instead of ~2.5 h there; every rule, rl included, gets the same batch (CHECKS["batch-256"] varies it).
    "full": Config(steps=(("HalfCheetah-v5", 6_000), ("Hopper-v5", 14_000)),
                   record_every=(("HalfCheetah-v5", 1_000), ("Hopper-v5", 2_000)), batch_size=128),
}

# A sceptic's checks of the full config's budget choices (REPRODUCTION.md, "MuJoCo"): the full config's
# cells and seeds with one knob moved, so each check cell has its counterpart in the full study.
# ``python -m deep.rules_study check NAME`` runs one into ``results/checks/NAME/mujoco-rules/``.
CHECKS = {
    # SAC's minibatch of 256 instead of the study's 128 (HalfCheetah, both teachers, four rules, seeds 0-1)
    "batch-256": replace(CONFIGS["full"], envs=("HalfCheetah-v5",), seeds=(0, 1), batch_size=256,
                         rules=("expected-entropy", "on-policy+r", "value-gated+r", "rl")),
    # 4x the HalfCheetah budget with the imperfect teacher, for the Sec. 4 rules that could pass it, and rl
    "long-imperfect": replace(CONFIGS["full"], envs=("HalfCheetah-v5",), teachers=("imperfect",), seeds=(0, 1),
                              steps=24_000, record_every=2_000,
                              rules=("value-gated+r", "teacher-v-reward", "td-teacher-v", "rl")),
    # The SAC mapping's choices that could flip a verdict (issue 15; deep.config.RuleMapping), each on the
    # full config's good-teacher cells of the rules it touches, seeds 0-1, both envs:
    # n-distill's reward -KL instead of Table 1's -Hx (the teacher's entropy at s' removed) ...
    "nd-kl": replace(CONFIGS["full"], teachers=("good",), seeds=(0, 1), rules=("n-distill", "n-distill+r"),
                     mapping=(("nd_correction", "kl"),)),
    # ... or Table 1's -Hx at a tenth of its weight
    "nd-reward-0.1": replace(CONFIGS["full"], teachers=("good",), seeds=(0, 1), rules=("n-distill", "n-distill+r"),
                             mapping=(("reward_weight", 0.1),)),
    # entropy-regularised without SAC's tuned temperature: alpha kept at 1, or no student-entropy term (Table 1)
    "entreg-fixed": replace(CONFIGS["full"], teachers=("good",), seeds=(0, 1), rules=("entropy-regularised",),
                            mapping=(("temperature", "fixed"),)),
    "entreg-none": replace(CONFIGS["full"], teachers=("good",), seeds=(0, 1), rules=("entropy-regularised",),
                           mapping=(("temperature", "none"),)),
    # td-teacher-v on the teacher's own critic Q_t (the fixed point of its regression) instead of a learned one
    "td-teacher-critic": replace(CONFIGS["full"], teachers=("good",), seeds=(0, 1), rules=("td-teacher-v",),
                                 mapping=(("td_critic", "teacher"),)),
}


def cells(config: Config) -> list[dict]:
    """One cell per env x teacher x rule x seed; each carries everything :func:`run_cell` needs.

    Seed-major order: a run cut short still has every rule, env and teacher of its first seeds."""
    for env in config.envs:
        shipped_teacher(env, config.teachers[0])  # fail before the run, naming the missing file
    mapping = mapping_changes(config.mapping)
    if not (isinstance(config.env_workers, int) and config.env_workers >= 0):
        raise ValueError(f"env_workers must be an integer >= 0 (0: in the process); got {config.env_workers!r}")
    placement = {**check_device(config.device), **({"env_workers": config.env_workers} if config.env_workers else {})}
    return [
        dict(env=env, teacher=quality, rule=rule, seed=int(seed), steps=per_env(config.steps, env),
             record_every=per_env(config.record_every, env), eval_episodes=config.eval_episodes,
             warmup_steps=config.warmup_steps, width=config.width, batch_size=config.batch_size, **mapping, **placement)
        for seed in config.seeds
        for env in config.envs
        for rule in config.rules
        for quality in config.teachers
    ]


def check_device(device: str) -> dict:
    """The cell entry of ``Config.device``: none for cpu (cells keep their names), else ``{"device": ...}``;
    ValueError naming the valid choices."""
    if device == "cpu":
        return {}
    if not (isinstance(device, str) and (device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit()))):
        raise ValueError(f"unknown device {device!r}; valid: cpu, cuda, cuda:N")
    return {"device": device}


# the cell entries in which the cells of one stacked group may differ (deep.seeds.PER_RUN_SETTINGS, in cell terms)
PER_CELL = ("teacher", "rule", "seed")


def group_of(cell: dict) -> str:
    """The stacked group of ``cell`` (``Config.stack``): the cells of one env with the same budgets and sizes."""
    import json

    return json.dumps({k: v for k, v in cell.items() if k not in PER_CELL}, sort_keys=True)


def gpu_share(config: Config) -> float:
    """The GPU share (Ray's ``num_gpus``) a stacked group asks for: ``gpus_per_group`` on CUDA, 0 on CPU."""
    if not config.device.startswith("cuda"):
        return 0.0
    share = config.gpus_per_group
    if not (isinstance(share, (int, float)) and (0 < share <= 1 or (share > 1 and float(share).is_integer()))):
        raise ValueError(f"gpus_per_group must be in (0, 1] or a whole number of GPUs; got {config.gpus_per_group!r}")
    return float(config.gpus_per_group)


def mapping_changes(pairs) -> dict:
    """The (field, value) pairs of ``Config.mapping`` that differ from ``RuleMapping()``'s defaults, as a dict;
    ValueError naming an unknown field or a bad value (``deep.config`` checks)."""
    from dataclasses import fields

    from deep.config import ConfigError, RuleMapping, TrainConfig, check_values, with_overrides

    given = dict(pairs)
    valid = [f.name for f in fields(RuleMapping)]
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise ValueError(f"unknown mapping field(s) {unknown}; valid: {', '.join(valid)}")
    try:
        check_values(with_overrides(TrainConfig(), **{f"mapping.{k}": v for k, v in given.items()}))
    except ConfigError as err:
        raise ValueError(str(err)) from None
    default = RuleMapping()
    return {k: v for k, v in given.items() if getattr(default, k) != v}


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
                       checkpoint_every=cell["steps"], progress=False, device=cell.get("device", "cpu"),
                       env_workers=cell.get("env_workers", 0))
    from dataclasses import fields

    from deep.config import RuleMapping

    mapping = {f"mapping.{f.name}": cell[f.name] for f in fields(RuleMapping) if f.name in cell}
    return with_overrides(base, **{"sac.warmup_steps": cell["warmup_steps"], "sac.width": cell["width"],
                                   "sac.batch_size": cell["batch_size"]}, **mapping)


def _limit_torch_threads() -> None:
    """One torch thread per runner worker when the runner capped the threads (it sets OMP_NUM_THREADS)."""
    import torch

    threads = os.environ.get("OMP_NUM_THREADS")
    if threads and threads.isdigit():
        torch.set_num_threads(int(threads))


def run_cell(cell: dict) -> pd.DataFrame:
    """Train one student (see the module docstring); its evaluations as a tidy table of :data:`COLUMNS`."""
    from deep.train import train

    _limit_torch_threads()
    cfg = train_config(cell)
    return _cell_table(cfg, train(cfg)["eval"])


# a stacked group checkpoints every cell this often (in the runner's work dirs): a killed 100k-step group loses at
# most this many env steps per cell. Each checkpoint holds every cell's replay rows (a HalfCheetah cell at 50k
# steps: ~9 MB), so not at every evaluation.
GROUP_CHECKPOINT_EVERY = 10_000


def run_group(group: list[dict], work_dirs: list | None = None) -> list[pd.DataFrame]:
    """The cells ``group`` of one env (any teachers, rules, mappings and seeds; same budgets and sizes) trained
    as ONE stacked process (``deep.seeds.train_stack``): every cell's student is one member of one batched
    every-step update in which each member follows its own rule from its own frozen teacher
    (``deep.distill.MemberRules``), with its own env, RNG streams and replay rows. Each cell's table is
    :func:`run_cell`'s for that cell, up to float rounding of the batched kernels (``tests/deep/test_rules_stack.py``).

    ``work_dirs`` (the runner's, one per cell): each cell checkpoints there every
    :data:`GROUP_CHECKPOINT_EVERY` env steps, and a rerun after a kill resumes the group from them when every
    cell has a checkpoint at one step (else it starts afresh)."""
    from deep.seeds import resumable, train_stack

    _limit_torch_threads()
    configs = [train_config(cell) for cell in group]
    if work_dirs is not None:
        configs = [replace(cfg, out=str(d), checkpoint_every=min(cfg.steps, GROUP_CHECKPOINT_EVERY))
                   for cfg, d in zip(configs, work_dirs)]
    resume = resumable(work_dirs or [])
    tables = train_stack(configs, resume=resume, overwrite=not resume)
    return [_cell_table(cfg, t["eval"]) for cfg, t in zip(configs, tables)]


def _cell_table(cfg, evals: pd.DataFrame) -> pd.DataFrame:
    """A cell's eval table with its teacher's training steps and recorded return, as :data:`COLUMNS`."""
    from deep.teacher_file import load_teacher

    teacher = load_teacher(cfg.teacher)
    recorded = (teacher.recorded_return or {}).get("mean_return", float("nan"))
    evals = evals.assign(teacher_steps=teacher.steps, teacher_recorded_return=float(recorded))
    return evals.loc[:, list(COLUMNS)].reset_index(drop=True)


def baseline_of(name: str) -> Config:
    """The counterpart of check ``name``: its cells with the mapping's defaults. For the mapping checks these are
    cells of the full config itself (same parameters, hence same cell names: a cell file copied into the full
    study's ``cells/`` is skipped by it)."""
    return replace(CHECKS[name], mapping=())


def run_check(name: str, out: str | Path = "results/checks", workers: int | None = None) -> pd.DataFrame:
    """Run the check ``name`` of :data:`CHECKS` (resumable, like a study) into ``out/name/mujoco-rules/``; a
    mapping check first runs its baseline cells into ``out/baseline/mujoco-rules/`` (shared by the checks:
    each cell runs once)."""
    from distlab.runner import run_grid

    if name not in CHECKS:
        raise ValueError(f"unknown check {name!r}; valid: {', '.join(CHECKS)}")
    config = CHECKS[name]
    if config.mapping:
        base = baseline_of(name)
        run_grid("mujoco-rules", cells(base), run_cell, Path(out) / "baseline", workers=workers,
                 config=dict(study="mujoco-rules", scale=f"baseline of {name}", **asdict(base)))
    return run_grid("mujoco-rules", cells(config), run_cell, Path(out) / name, workers=workers,
                    config=dict(study="mujoco-rules", scale=name, **asdict(config)))


def read_baseline(name: str, out: str | Path = "results/checks") -> pd.DataFrame:
    """The baseline cells of check ``name`` from ``out/baseline`` (written by :func:`run_check`)."""
    from distlab.runner import cell_path

    return pd.concat([pd.read_parquet(cell_path(Path(out) / "baseline", "mujoco-rules", c)) for c in cells(baseline_of(name))],
                     ignore_index=True)


def compare_check(check: pd.DataFrame, baseline: pd.DataFrame) -> pd.DataFrame:
    """Final return / teacher's return per (env, teacher, rule, seed), with the mapping's default (``default``)
    and with the check's choice (``moved``); ``baseline`` may hold more cells (the whole full study)."""
    keys = ["env", "teacher", "rule", "seed"]

    def final(table):
        last = table[table["step"] == table.groupby(keys)["step"].transform("max")]
        return last.assign(normalised=last["mean_return"] / last["teacher_return"]).set_index(keys)["normalised"]

    moved = final(check)
    default = final(baseline).reindex(moved.index)
    return pd.DataFrame({"default": default, "moved": moved}).reset_index()


def _main(argv=None) -> None:
    import argparse
    import time

    parser = argparse.ArgumentParser(prog="python -m deep.rules_study",
                                     description="Run one of the checks of the full mujoco-rules config.")
    parser.add_argument("what", choices=["check"])
    parser.add_argument("name", choices=list(CHECKS))
    parser.add_argument("--out", default="results/checks")
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args(argv)
    began = time.perf_counter()
    table = run_check(args.name, args.out, args.workers)
    print(f"{args.name}: {table[['env', 'teacher', 'rule', 'seed']].drop_duplicates().shape[0]} cells, "
          f"wall {time.perf_counter() - began:.0f} s -> {Path(args.out) / args.name / 'mujoco-rules'}")
    if CHECKS[args.name].mapping:  # final / teacher's return with the default and with the check's choice
        print(compare_check(table, read_baseline(args.name, args.out)).to_string(float_format="%.3f"))


if __name__ == "__main__":
    _main()
