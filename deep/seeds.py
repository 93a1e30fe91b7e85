"""Independent runs in one process, stacked on the member axis (``distlab train --seeds``; study cells).

S runs that differ only by their seed share one batched ensemble of S x K members (run s owns stacked
members s K .. s K + K - 1: ``Ensemble(widths * S)``), one set of Adam optimizers (Adam is elementwise,
so one Adam over the stacked parameters is S K independent Adams) and one replay tensor
(``deep.replay.StackedReplayBuffer``: run s owns its own block of rows). Each run keeps everything else
of its own: environment, numpy RNG (env seeds, warm-up actions, acting member), torch generator
(minibatches, noise: ``deep.rng.SeedGenerators`` draws each run's block from its generator), election,
returns, logs. The runs step in lockstep (same step counts, schedules and phase times), so one stacked
SAC update is S runs' updates with ONE forward/backward/Adam step (``deep.methods.sac_update``
unchanged), and a phase is per-run elections followed by one stacked phase (``deep.methods``).

Same numbers as separate runs: run s is initialised from ``torch.manual_seed(seed_s)`` exactly as the
single run (a K-member Ensemble built and copied into its rows) and draws its random numbers from its own
generators in the single run's order, so its updates equal the single run's with that seed up to float
rounding of the batched kernels (``tests/deep/test_seeds.py``).

Stacked cells (:func:`train_stack`, ``deep.rules_study.run_group``): the runs of one stack may also differ in
rule, frozen teacher and rule mapping under the every-step schedule (:data:`PER_RUN_SETTINGS`; env, sizes and
budgets are shared). ``deep.methods.rule_update`` is then ONE batched update in which each member follows its
run's rule (``deep.distill.MemberRules``: per-member coefficients and kinds from the registry) from its run's
teacher (the distinct frozen teachers stacked into one frozen ensemble, :func:`stacked_teachers`); each run
acts (its teacher, for a teacher-controlled rule), evaluates (with its teacher's KL columns) and writes exactly
its single run's tables. One loop (``deep.loop.run_loop``) serves a single run, stacked seeds and stacked cells.

Outputs: ``OUT/seed_N/`` holds exactly a single run's files (tables, and a checkpoint in the single-run
layout of ``deep.state``: the run's rows of every stacked tensor), so figures, ``--resume`` (stacked, or
one seed alone with ``--seed N --out OUT/seed_N``) and the runner treat them alike. A stacked resume reads
every seed's checkpoint; they must be at the same step. Each checkpoint holds its run's episode in progress
and simulator (``deep.state``), so a resumed stack is the uninterrupted one; SIGTERM/SIGINT checkpoint every
run at the current step and raise ``deep.train.Interrupted`` (``deep.train``). TensorBoard: each run's scalars
in ``OUT/seed_N/tb``, the stacked update's losses (summed over every run's members) in ``OUT/tb``.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from deep.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from deep.config import ConfigError, TrainConfig
from deep.election import TeacherElection
from deep.envs import env_dims, evaluate_policies, make_env
from deep.distill import Teacher, restricted
from deep.kl import gaussian_kl, squashed_sample
from deep.loop import Group, run_loop
from deep.methods import TEACHER_ACTOR, WARMUP_ACTOR, GatheredTeacher, member_rules_of, resolve, stacked_plan_of
from deep.networks import Ensemble, repeat_rows
from deep.replay import StackedReplayBuffer
from deep.rng import SeedGenerators
from deep.sac import SACLearner
from deep.state import CHECKPOINT_FORMAT, check_same_run, device_of, episode_state, restore_progress, track_losses
from deep.tblog import open_log

__all__ = ["parse_seeds", "seed_run_dir", "SeedRun", "Stack", "new_stack", "new_stack_of", "run_state_dict", "load_stack", "train_seeds",
           "train_stack", "StackedRuns", "run_seeds_cell", "check_stack_configs", "stacked_teachers", "PER_RUN_SETTINGS"]


def parse_seeds(text: str) -> list[int]:
    """``"0-4"`` -> [0, 1, 2, 3, 4]; ``"0,2,5"`` -> [0, 2, 5]; ConfigError naming --seeds otherwise."""
    text = str(text).strip()
    span = re.fullmatch(r"(\d+)-(\d+)", text)
    try:
        seeds = list(range(int(span[1]), int(span[2]) + 1)) if span else [int(x) for x in text.split(",")]
    except ValueError:
        raise ConfigError(f"--seeds {text!r}: expected a range like 0-4 or a list like 0,1,2 of non-negative integers") from None
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds {text!r}: expected distinct non-negative seeds, e.g. 0-4 or 0,1,2")
    return seeds


def seed_run_dir(out: str | Path, seed: int) -> Path:
    """``OUT/seed_N``: where run ``seed`` of a stacked run writes (a single run's directory)."""
    return Path(out) / f"seed_{seed}"


@dataclass
class SeedRun:
    """What one run of a stack keeps of its own (the attributes ``deep.train`` / ``deep.methods`` read of a run)."""

    cfg: TrainConfig  # the single run's config: seed N, out OUT/seed_N
    env: object
    np_rng: np.random.Generator
    gen: torch.Generator
    election: TeacherElection
    python_state: object  # random.getstate() and torch's global RNG state after this seed's initialisation,
    torch_state: torch.Tensor  # kept for the single-run checkpoint layout (training draws nothing from them)
    step: int = 0
    episode: int = 0
    wall_time: float = 0.0
    member_returns: list[list[float]] = field(default_factory=list)
    episode_log: list[dict] = field(default_factory=list)
    eval_log: list[dict] = field(default_factory=list)
    phase_log: list[dict] = field(default_factory=list)
    last_checkpoint_step: int | None = None
    # the episode in progress (checkpointed, as a single run's: deep.state.episode_state)
    obs: np.ndarray | None = None
    actor: int = 0
    episode_start: int = 0
    ep_return: float = 0.0
    ep_length: int = 0
    saved_episode: dict | None = None
    tb: object = None  # this run's TensorBoard log (deep.tblog), None when off
    plan: object = None  # this run's Plan (who acts: a teacher-controlled rule's frozen teacher)
    frozen: object = None  # this run's frozen teacher (deep.teacher_file.FrozenTeacher), None without one
    teacher_rollout: object = None  # its cached evaluation episodes (deep.train.teacher_columns)


@dataclass
class Stack:
    """S runs stacked: the shared networks, optimizers, replay tensor and step counter, and the runs."""

    cfg: TrainConfig  # the resolved config common to all runs (seed of the first run)
    runs: list[SeedRun]
    device: torch.device
    obs_dim: int
    act_dim: int
    ens: Ensemble
    learner: SACLearner
    buffer: StackedReplayBuffer
    gen: SeedGenerators
    step: int = 0
    wall_time: float = 0.0
    finite: dict[str, torch.Tensor] = field(default_factory=dict)
    last_checkpoint_step: int | None = None
    tb: object = None  # TensorBoard log of the stacked losses (OUT/tb), None when off
    keep_losses: bool = False
    last_losses: dict[str, torch.Tensor] = field(default_factory=dict)
    member_rules: object = None  # every-step runs: each member's rule (deep.distill.MemberRules)
    teacher: object = None  # every-step runs: the stacked frozen teachers, row r taught by its run's teacher

    def track(self, losses: dict[str, torch.Tensor]) -> None:
        """As ``RunState.track``: fold the (summed over runs) losses' finiteness into device flags."""
        track_losses(self, losses)


def _stack_tensors(states: list[dict]) -> dict:
    """Concatenate per-run state dicts along dim 0 (every stacked tensor is S equal blocks in run order)."""
    return {key: torch.cat([s[key] for s in states]) for key in states[0]}


def new_stack(cfg: TrainConfig, seeds: list[int]) -> Stack:
    """Fresh stacked runs of resolved ``cfg``: run s seeded and initialised exactly as the single run ``seed_s``."""
    return new_stack_of([replace(cfg, seed=seed, out=None if cfg.out is None else str(seed_run_dir(cfg.out, seed)))
                         for seed in seeds])


def new_stack_of(configs: list[TrainConfig]) -> Stack:
    """Fresh stacked runs of resolved ``configs`` (one per run; :func:`check_stack_configs`): run s seeded and
    initialised exactly as the single run of ``configs[s]``; every-step runs also get the members' rules
    (``deep.methods.member_rules_of``) and their frozen teachers stacked (:func:`stacked_teachers`)."""
    from deep.teacher_file import load_teacher

    cfg = configs[0]
    device = device_of(cfg.device)
    runs, inits, loaded = [], [], {}
    obs_dim = act_dim = None
    s = cfg.sac
    for cfg_s in configs:
        seed = cfg_s.seed
        np_rng = np.random.default_rng(seed)  # the order of deep.state.new_state
        random.seed(seed)
        torch.manual_seed(seed)
        gen = torch.Generator(device=device)
        gen.manual_seed(seed)
        env = make_env(cfg.env)
        obs_dim, act_dim = env_dims(env)
        single = Ensemble(obs_dim, act_dim, cfg.widths, s.hidden_layers, s.init_alpha, s.log_std_min, s.log_std_max)
        inits.append(single.state_dict())
        frozen = None
        if cfg_s.teacher is not None:
            if cfg_s.teacher not in loaded:
                loaded[cfg_s.teacher] = load_teacher(cfg_s.teacher, cfg.device)
            frozen = loaded[cfg_s.teacher]
            if (frozen.obs_dim, frozen.act_dim) != (obs_dim, act_dim):
                raise ConfigError(f"teacher {cfg_s.teacher} was trained with (obs, act) sizes {(frozen.obs_dim, frozen.act_dim)}; "
                                  f"{cfg.env} has {(obs_dim, act_dim)}")
        runs.append(SeedRun(cfg=cfg_s, env=env, np_rng=np_rng, gen=gen,
                            election=TeacherElection(cfg_s.election, cfg_s.k, seed, cfg_s.epsilon, cfg_s.ucb_c),
                            python_state=random.getstate(), torch_state=torch.get_rng_state(),
                            member_returns=[[] for _ in range(cfg_s.k)], frozen=frozen))
    ens = Ensemble(obs_dim, act_dim, tuple(cfg.widths) * len(configs), s.hidden_layers, s.init_alpha, s.log_std_min, s.log_std_max)
    ens.load_state_dict(_stack_tensors(inits))
    ens = ens.to(device)
    gens = SeedGenerators([run.gen for run in runs])
    stack = Stack(cfg=cfg, runs=runs, device=device, obs_dim=obs_dim, act_dim=act_dim, ens=ens,
                  learner=SACLearner(ens, s, gens, cfg.compile),
                  buffer=StackedReplayBuffer(len(configs), min(s.buffer_size, cfg.steps), obs_dim, act_dim, device), gen=gens)
    if cfg.schedule == "every-step":
        stack.member_rules = member_rules_of(configs)
        stack.teacher = stacked_teachers([run.frozen for run in runs for _ in range(run.cfg.k)], gens)
    return stack


def stacked_teachers(frozen: list, generator) -> Teacher:
    """The frozen teachers of stacked rows (``frozen[r]`` teaches row r) as ONE frozen source evaluated once per
    step: one teacher for every row is that teacher (``deep.distill.Teacher``, as a single run); several are
    stacked into one frozen Ensemble, one member per distinct teacher, whose rows are gathered per row
    (``deep.methods.GatheredTeacher``: one teacher forward costs one student forward)."""
    distinct = list(dict.fromkeys(id(t) for t in frozen))
    sources = [next(t for t in frozen if id(t) == i) for i in distinct]
    teacher_of = [distinct.index(id(t)) for t in frozen]
    if len(sources) == 1:
        return Teacher(sources[0].ensemble, teacher_of, generator)
    first = sources[0].ensemble
    for t in sources[1:]:
        e = t.ensemble
        if (e.depth, e.log_std_min, e.log_std_max) != (first.depth, first.log_std_min, first.log_std_max):
            raise ConfigError(f"stacked teachers need one depth and log-std range: {sources[0].source} has "
                              f"{(first.depth, first.log_std_min, first.log_std_max)}, {t.source} {(e.depth, e.log_std_min, e.log_std_max)}")
    stacked = Ensemble(first.obs_dim, first.act_dim, tuple(t.ensemble.widths[0] for t in sources), first.depth,
                       log_std_min=first.log_std_min, log_std_max=first.log_std_max).to(first.log_alpha.device)
    with torch.no_grad():
        for i, t in enumerate(sources):
            src = t.ensemble.member_tensors(0)
            for name, dst in stacked.member_tensors(i).items():
                dst.copy_(src[name])
    stacked.requires_grad_(False)
    return GatheredTeacher(stacked, teacher_of, generator)


def _run_rows(value, runs: int, index: int):
    """Run ``index``'s block of a stacked state value (tensors with a leading axis; scalars are shared)."""
    if torch.is_tensor(value) and value.dim() > 0:
        return value.chunk(runs)[index].clone()  # clone: a view would save the whole stacked storage
    return value.clone() if torch.is_tensor(value) else value


def _optimizer_rows(state: dict, runs: int, index: int) -> dict:
    return dict(state={i: {key: _run_rows(v, runs, index) for key, v in st.items()} for i, st in state["state"].items()},
                param_groups=state["param_groups"])


def _stack_optimizer_states(states: list[dict]) -> dict:
    first = states[0]
    stacked = {}
    for i, st in first["state"].items():
        stacked[i] = {key: (torch.cat([s["state"][i][key] for s in states]) if torch.is_tensor(v) and v.dim() > 0 else v)
                      for key, v in st.items()}
    return dict(state=stacked, param_groups=first["param_groups"])


def run_state_dict(stack: Stack, index: int) -> dict:
    """Run ``index``'s checkpoint, in the single-run layout of ``deep.state.state_dict``."""
    run, n = stack.runs[index], len(stack.runs)
    return dict(
        format=CHECKPOINT_FORMAT, config=run.cfg.to_dict(), obs_dim=stack.obs_dim, act_dim=stack.act_dim,
        ensemble={key: _run_rows(v, n, index) for key, v in stack.ens.state_dict().items()},
        optimizers={name: _optimizer_rows(opt.state_dict(), n, index) for name, opt in stack.learner.optimizers().items()},
        buffer=stack.buffer.run_state_dict(index), election=run.election.state_dict(),
        rng=dict(numpy=run.np_rng.bit_generator.state, python=run.python_state, torch=run.torch_state, device=run.gen.get_state()),
        step=run.step, episode=run.episode, wall_time=run.wall_time, member_returns=run.member_returns,
        episode_log=run.episode_log, eval_log=run.eval_log, phase_log=run.phase_log, in_progress=episode_state(run),
    )


def resumable(out_dirs: list) -> bool:
    """Whether the stacked runs writing to ``out_dirs`` can be resumed: every directory holds a checkpoint and
    all are at one step (what :func:`load_stack` needs). A stack killed while it wrote its runs' checkpoints,
    one after another, leaves some at the step before; a caller that may start afresh (a sweep or study
    cell) does so then instead of failing. Reads the checkpoints, so call it on a resume only."""
    saved = [Path(d) / CHECKPOINT_NAME for d in out_dirs]
    return bool(saved) and all(p.exists() for p in saved) and len({load_checkpoint(p)["step"] for p in saved}) == 1


def load_stack(stack: Stack, saved: list[dict]) -> None:
    """Restore every run of ``stack`` from its single-run checkpoint (they must be at one step)."""
    steps = {state["step"] for state in saved}
    if len(steps) > 1:
        where = ", ".join(f"{run.cfg.out}: step {state['step']}" for run, state in zip(stack.runs, saved))
        raise ConfigError(f"cannot resume the stacked runs: their checkpoints are at different steps ({where}); "
                          "resume them one seed at a time with --seed N --out OUT/seed_N --resume")
    stack.ens.load_state_dict(_stack_tensors([state["ensemble"] for state in saved]))
    for name, opt in stack.learner.optimizers().items():
        opt.load_state_dict(_stack_optimizer_states([state["optimizers"][name] for state in saved]))
    for i, (run, state) in enumerate(zip(stack.runs, saved)):
        stack.buffer.load_run_state_dict(i, state["buffer"])
        run.election.load_state_dict(state["election"])
        run.np_rng.bit_generator.state = state["rng"]["numpy"]
        run.python_state, run.torch_state = state["rng"]["python"], state["rng"]["torch"]
        restore_progress(run, state)
    stack.step, stack.wall_time = steps.pop(), max(run.wall_time for run in stack.runs)
    stack.last_checkpoint_step = stack.step


# ---------------------------------------------------------------------------------------- stacked runs in the one loop (deep.loop)
# the settings in which the runs of one stack may differ (everything else is shared: env, sizes, budgets, ...)
PER_RUN_SETTINGS = ("seed", "out", "rule", "teacher", "mapping")


def check_stack_configs(configs: list[TrainConfig]) -> None:
    """ConfigError unless resolved ``configs`` can share one stack: each stackable (``check_stackable``), equal in
    every setting but :data:`PER_RUN_SETTINGS` (rule, teacher and mapping may differ only under the every-step
    schedule, where they are per-member data of ``deep.methods.rule_update``), distinct run directories."""
    from deep.methods import check_stackable

    first = configs[0].to_dict()
    for cfg in configs:
        check_stackable(cfg)
        other = cfg.to_dict()
        for name in first:
            if name not in PER_RUN_SETTINGS and first[name] != other[name]:
                raise ConfigError(f"stacked runs must share {name!r} (only {', '.join(PER_RUN_SETTINGS)} may differ); "
                                  f"got {first[name]!r} and {other[name]!r}")
        if configs[0].schedule != "every-step":
            for name in ("rule", "teacher", "mapping"):
                if first[name] != other[name]:
                    raise ConfigError(f"stacked runs may differ in {name!r} only under the every-step schedule (a rule from "
                                      f"a frozen --teacher); schedule {configs[0].schedule!r} got {first[name]!r} and {other[name]!r}")
    outs = [c.out for c in configs if c.out is not None]
    if len(set(outs)) != len(outs):
        raise ConfigError(f"stacked runs need distinct run directories; got {outs}")


def start_stack(cfg: TrainConfig, seeds: list[int], *, resume: bool, overwrite: bool):
    """As ``deep.train.start`` for stacked seeds: every refusal before anything is written."""
    if len(seeds) < 1:
        raise ConfigError("--seeds: give at least one seed")
    if cfg.out is None:
        raise ConfigError("--seeds needs --out (the runs go to OUT/seed_N)")
    configs = [replace(cfg, seed=seed, out=str(seed_run_dir(cfg.out, seed))) for seed in seeds]
    return start_stack_of(configs, resume=resume, overwrite=overwrite, tb_parent=cfg.out)


def start_stack_of(configs: list[TrainConfig], *, resume: bool, overwrite: bool, tb_parent=None):
    """As ``deep.train.start`` for stacked runs of ``configs`` (each run's own config, :func:`check_stack_configs`):
    every refusal before anything is written. ``tb_parent``: where the stacked losses' TensorBoard folder goes."""
    from deep.train import TB_DIR, RunDirError, prepare_run_dir, remove_paths

    if not configs:
        raise ConfigError("a stack needs at least one run")
    configs = [resolve(c) for c in configs]
    check_stack_configs(configs)
    plans = [stacked_plan_of(c) for c in configs]
    saved, doomed = [], []
    for cfg_s in configs:
        if cfg_s.out is None:
            if resume:
                raise ConfigError("--resume needs a run directory (out) for every stacked run")
            continue
        out = Path(cfg_s.out)
        doomed += prepare_run_dir(out, resume=resume, overwrite=overwrite)  # refuses; deletes nothing yet
        if resume:
            state = load_checkpoint(out, "cpu")
            check_same_run(resolve(TrainConfig.from_dict(state["config"])), cfg_s, f"{out}")
            if state["step"] > cfg_s.steps:
                raise RunDirError(f"cannot resume {out}: its checkpoint is at step {state['step']}, beyond --steps {cfg_s.steps}")
            saved.append(state)
    if tb_parent is not None:
        stack_tb = Path(tb_parent) / TB_DIR  # the stacked losses' TensorBoard folder goes with the runs
        if not resume and stack_tb.is_dir():
            doomed.append(stack_tb)
    stack = new_stack_of(configs)
    stack.cfg = replace(stack.cfg, out=None if tb_parent is None else str(tb_parent))  # the stack's own files (tb)
    for run, plan in zip(stack.runs, plans):
        run.plan = plan
    if saved:
        load_stack(stack, saved)
    remove_paths(doomed)  # every check passed for every run: now (and only now) the directories change
    return stack, plans[0]


def _check_finite(stack: Stack) -> None:
    from deep.train import TrainingDiverged, nonfinite_losses

    bad = nonfinite_losses(stack.finite)
    if bad:
        cfg = stack.cfg
        where = (f"the last good checkpoints (step {stack.last_checkpoint_step}) are kept in {cfg.out}/seed_N"
                 if stack.last_checkpoint_step is not None else "no checkpoint had been written yet")
        raise TrainingDiverged(f"the {', '.join(bad)} loss of the stacked runs (seeds {[r.cfg.seed for r in stack.runs]}) "
                               f"became NaN or inf before env step {stack.step} ({cfg.method} on {cfg.env}); "
                               f"training stopped, {where}")


def _act(stack: Stack) -> np.ndarray:
    """Every run's action (S, |A|): uniform during warm-up (each run's numpy RNG), else a sample of each run's
    acting member from ONE batched forward of all S K members (each run's noise from its own generator; a
    run whose frozen teacher acts draws nothing there and samples its teacher, as its single run does)."""
    k = stack.cfg.k
    if stack.step < stack.cfg.sac.warmup_steps:
        return np.stack([run.np_rng.uniform(-1.0, 1.0, stack.act_dim) for run in stack.runs])
    obs = np.stack([np.asarray(run.obs, np.float32).reshape(-1) for run in stack.runs])
    x = torch.as_tensor(obs, device=stack.device)[:, None, :]
    students = [run.actor != TEACHER_ACTOR for run in stack.runs]
    rows = torch.tensor([s * k + max(run.actor, 0) for s, run in enumerate(stack.runs)], device=stack.device)
    with torch.no_grad():
        actions = torch.zeros(len(stack.runs), stack.act_dim, device=stack.device)
        if any(students):
            mean, log_std = stack.ens.policy(repeat_rows(x, k))  # (S K, 1, obs)
            actions = squashed_sample(mean, log_std, restricted(stack.gen, [on for on in students for _ in range(k)]))[0][rows, 0]
        for s, run in enumerate(stack.runs):
            if not students[s]:
                mean, log_std = run.frozen.ensemble.policy(x[s:s + 1])
                actions[s] = squashed_sample(mean, log_std, run.gen)[0][0, 0]
    return actions.cpu().numpy()  # one sync per env step for all runs


def _evaluate(stack: Stack) -> None:
    """Deterministic episodes of every member of every run in ONE lockstep batch (run s's episodes from its own
    evaluation seeds, as its single run) -> each run's eval log."""
    from deep.train import append_eval_rows, teacher_columns

    cfg, k = stack.cfg, stack.cfg.k
    seeds = [10_000 + 1_000 * run.cfg.seed for run in stack.runs for _ in range(k)]

    def act_fn(obs):
        return stack.learner.act(torch.as_tensor(obs, device=stack.device), deterministic=True).cpu().numpy()

    with_teacher = any(run.frozen is not None for run in stack.runs)
    out = evaluate_policies(act_fn, cfg.env, k * len(stack.runs), cfg.eval_episodes, seed=seeds, return_states=with_teacher)
    returns, states = out if with_teacher else (out, None)
    for s, run in enumerate(stack.runs):
        extra = [{} for _ in range(k)]
        if run.frozen is not None:
            extra = teacher_columns(run, states[s * k:(s + 1) * k], lambda x, s=s, run=run: _kl_of_run(stack, s, run, x))
        append_eval_rows(run, returns[s * k:(s + 1) * k], extra, stack.learner.compile_ran)


@torch.no_grad()
def _kl_of_run(stack: Stack, index: int, run: SeedRun, states: np.ndarray) -> np.ndarray:
    """KL(run's teacher || member k) averaged over ``states`` for the K members of run ``index`` (its rows only)."""
    x = torch.as_tensor(states, device=stack.device)[None]
    t_mean, t_log_std = run.frozen.ensemble.policy(x)
    k = run.cfg.k
    kls = [gaussian_kl(t_mean, t_log_std, *stack.ens.member_policy(index * k + m, x)).mean(-1) for m in range(k)]
    return torch.cat(kls).cpu().numpy()


def _checkpoint(stack: Stack) -> None:
    _check_finite(stack)
    for i, run in enumerate(stack.runs):
        if run.cfg.out is not None:  # a study's cell without a run directory keeps no checkpoint (as a single run)
            save_checkpoint(run_state_dict(stack, i), run.cfg.out)
            run.last_checkpoint_step = run.step
    stack.last_checkpoint_step = stack.step


def _log_losses(stack: Stack) -> None:
    """TensorBoard at the NaN check's interval: the stacked losses (OUT/tb) and each run's members' temperatures."""
    if stack.tb is not None and stack.last_losses:
        stack.tb.losses(stack.step, {name: float(value) for name, value in stack.last_losses.items()})
    stack.last_losses = {}
    if any(run.tb is not None for run in stack.runs):
        alphas = stack.ens.log_alpha.exp().reshape(len(stack.runs), -1).tolist()
        for run, run_alphas in zip(stack.runs, alphas):
            if run.tb is not None and stack.step >= stack.cfg.sac.warmup_steps:
                run.tb.alphas(stack.step, run_alphas)


def _open_logs(stack: Stack) -> None:
    cfg = stack.cfg
    stack.tb = open_log(cfg.out, cfg.tensorboard, stack.step)
    for run in stack.runs:
        run.tb = open_log(run.cfg.out, cfg.tensorboard, stack.step)


def _close_logs(stack: Stack) -> None:
    for log in [stack.tb] + [run.tb for run in stack.runs]:
        if log is not None:
            log.close()


def train_seeds(cfg: TrainConfig, seeds: list[int], *, resume: bool = False, overwrite: bool = False,
                stop_at: int | None = None) -> dict[int, dict[str, pd.DataFrame]]:
    """Train ``cfg`` for every seed in ``seeds`` as one stacked process (module docstring); return
    {seed: tables}. Arguments as ``deep.train.train``; ``cfg.out`` is the parent of the ``seed_N`` run dirs."""
    from deep.train import resume_command

    command = resume_command(cfg, seeds)
    stack, plan = start_stack(cfg, seeds, resume=resume, overwrite=overwrite)
    results = _train_stack(stack, plan, command, f"seeds {seeds[0]}..{seeds[-1]}", stop_at)
    return {run.cfg.seed: result for run, result in zip(stack.runs, results)}


def train_stack(configs: list[TrainConfig], *, resume: bool = False, overwrite: bool = False,
                stop_at: int | None = None) -> list[dict[str, pd.DataFrame]]:
    """Train the runs of ``configs`` as one stacked process: each its own config (seed, run directory ``out`` or
    None, and under the every-step schedule its rule, frozen teacher and mapping; everything else shared,
    :func:`check_stack_configs`), each writing exactly its single run's files; return each run's tables."""
    from deep.train import resume_command

    stack, plan = start_stack_of(configs, resume=resume, overwrite=overwrite)
    command = "; ".join(resume_command(run.cfg) for run in stack.runs if run.cfg.out is not None)
    return _train_stack(stack, plan, command, f"{len(stack.runs)} runs", stop_at)


def _train_stack(stack: Stack, plan, command: str, label: str, stop_at: int | None) -> list[dict[str, pd.DataFrame]]:
    """``deep.loop.run_loop`` on the stacked runs (every run one env step per iteration, ONE batched update)."""
    return run_loop(StackedRuns(stack, plan, label), command, stop_at)


@dataclass
class StackedRuns(Group):
    """Stacked runs as the group ``deep.loop.run_loop`` drives: the Stack is the state the loop counts on, its
    runs the runs; its steps are the stacked functions above (one batched forward per act, evaluation, ...)."""

    state: Stack
    plan: object
    label: str

    def __post_init__(self):
        stack = self.state
        self.runs, self.plans = stack.runs, [run.plan for run in stack.runs]
        outs = [run.cfg.out for run in stack.runs if run.cfg.out is not None]
        self.out = stack.cfg.out if stack.cfg.out is not None else (", ".join(outs) or None)  # stacked cells: their own dirs

    def act(self) -> np.ndarray:
        return _act(self.state)

    def store(self, obs: list, actions: np.ndarray, results: list, warm: bool) -> None:
        self.state.buffer.add(np.stack([np.asarray(o, np.float32).reshape(-1) for o in obs]), actions,
                              np.array([r[1] for r in results], np.float32),
                              np.stack([np.asarray(r[0], np.float32).reshape(-1) for r in results]),
                              np.array([r[2] for r in results], np.float32),
                              np.array([WARMUP_ACTOR if warm else run.actor for run in self.runs]))

    def check_finite(self) -> None:
        _check_finite(self.state)

    def log_losses(self) -> None:
        _log_losses(self.state)

    def evaluate(self) -> None:
        _evaluate(self.state)

    def checkpoint(self) -> None:
        _checkpoint(self.state)

    def open_logs(self) -> None:
        _open_logs(self.state)

    def close_logs(self) -> None:
        _close_logs(self.state)


def run_seeds_cell(cell: dict) -> pd.DataFrame:
    """A sweep cell -> its eval table, for sweeps whose cells may hold ``seeds`` (a list: the stacked runs of
    ``deep.seeds``, writing ``out/seed_N``; resumed if :func:`resumable`, else started afresh)
    or a single ``seed`` (:func:`run_cell`). The stacked table has one ``seed`` column like separate cells."""
    from deep.config import with_overrides
    from deep.train import run_cell

    if "seeds" not in cell:
        return run_cell(cell)

    settings = {key: value for key, value in cell.items() if key != "seeds"}
    cfg = with_overrides(TrainConfig(progress=False), **settings)
    resume = resumable([seed_run_dir(cfg.out, seed) for seed in cell["seeds"]])
    results = train_seeds(cfg, list(cell["seeds"]), resume=resume, overwrite=not resume)
    table = pd.concat([results[seed]["eval"] for seed in cell["seeds"]], ignore_index=True)
    return table.drop(columns=[c for c in cell if c in table.columns])
