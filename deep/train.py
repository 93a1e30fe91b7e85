"""One run: ensemble SAC with the step functions of the run's method (the loop itself is ``deep.loop``'s).

PIEKD, Alg. 1 (Hong et al.), on SAC; ``plan`` holds the method's steps (``deep.methods``):

    for each episode: pick the acting member k_e ~ Uniform(K) (the frozen teacher for a teacher-controlled
                      every-step rule; uniform random actions during warm-up)
        for each env step: store (s, a, r, s', terminated, k_e) in the shared buffer D;
            after warm-up:  plan.update (SAC | a rule's update), updates_per_step times
                            plan.peer_step (DPD)
                            every I steps from distill_start: plan.phase (elect + distil | extra | copy)
            every eval_every steps: deterministic episodes per member -> eval log (+ KL to a frozen teacher)
            every checkpoint_every steps: NaN/inf check, then an atomic checkpoint
        at the episode's end: append its return to R_{k_e}

Signals: SIGTERM and SIGINT (Ctrl-C) stop the run at the end of the current env step (its updates, phase
and evaluation done), write a checkpoint at that step and raise :class:`Interrupted`, whose one-line message
is the ``distlab train ... --resume --out DIR`` command that continues it; a second signal stops at once.
A resumed run continues the episode in progress (``deep.state``), so it is the uninterrupted run.

Outputs in ``out``: ``eval.parquet`` (step, member, mean/std of deterministic returns, best/worst member,
env_steps, wall_time_s, compile_mode: the torch.compile mode the update actually ran in; with a frozen teacher also ``kl_student_states``, ``kl_teacher_states`` and
``teacher_return``), ``episodes.parquet`` (with ``wall_time_s`` at the episode's end: ``distlab bench``
measures steps/s between episode ends), ``phases.parquet``, ``checkpoint.pt``, and with the ``distlab[tb]``
extra TensorBoard scalars in ``tb/`` (``deep.tblog``).

Run directories (:func:`prepare_run_dir`): a fresh run refuses a directory that already holds a run
unless ``overwrite``; ``resume`` needs a checkpoint there and may extend a finished run to more steps.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from deep.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint, temporary_path
from deep.config import ConfigError, TrainConfig
from deep.envs import evaluate_policies
from deep.kl import gaussian_kl, squashed_sample
from deep.loop import (Group, Interrupted, Progress, StopSignals, _Killed, choose_actor, continue_episode, interrupted,
                       new_episode, nonfinite_losses, record_step, run_loop, tables, write_tables)
from deep.methods import TEACHER_ACTOR, WARMUP_ACTOR, method_of, plan_of, resolve
from deep.state import RunState, check_same_run, load_state, new_state, state_dict
from deep.tblog import open_log
from deep.teacher_file import load_teacher, policy_returns

__all__ = ["train", "run_cell", "append_eval_rows", "TrainingDiverged", "RunDirError", "Interrupted", "WARMUP_ACTOR", "TEACHER_ACTOR",
           "default_run_dir", "prepare_run_dir", "remove_paths", "RUN_FILES", "TB_DIR", "resume_command", "StopSignals", "Progress", "new_episode",
           "record_step", "continue_episode", "teacher_columns", "SingleRun", "interrupted", "nonfinite_losses", "choose_actor",
           "tables", "write_tables", "_Killed"]

RUN_FILES = (CHECKPOINT_NAME, "eval.parquet", "episodes.parquet", "phases.parquet")
TB_DIR = "tb"  # TensorBoard's folder (deep.tblog): replaced with the run by --overwrite, kept by --resume


class TrainingDiverged(FloatingPointError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


class RunDirError(ValueError):
    """The run directory does not fit the request (a run there without --resume, no checkpoint to resume)."""


def resume_command(cfg: TrainConfig, seeds: list[int] | None = None) -> str:
    """The ``distlab train`` command that resumes the run of ``cfg`` (the config as given, before
    ``resolve``): every setting that differs from its default (a resumed run must keep its settings),
    ``--seeds`` for stacked runs, then ``--resume --out DIR``."""
    parts = ["distlab", "train", *_changed_flags(cfg, TrainConfig(), "--")]
    if seeds is not None:
        parts += ["--seeds", ",".join(map(str, seeds))]
    return " ".join(parts + ["--resume", "--out", shlex.quote(str(cfg.out))])


def _changed_flags(obj, default, prefix: str) -> list[str]:
    """``distlab train``'s options for the fields of ``obj`` that differ from ``default`` (a nested group
    such as ``sac`` gives ``--sac-NAME``, as ``deep.cli`` names them)."""
    out = []
    for f in fields(obj):
        value, ref = getattr(obj, f.name), getattr(default, f.name)
        flag = prefix + f.name.replace("_", "-")
        if is_dataclass(value):
            out += _changed_flags(value, ref, flag + "-")
        elif f.name == "out" or value is None or value == ref:
            continue
        elif isinstance(value, bool):
            out.append(flag if value else "--no-" + flag[2:])
        else:
            out += [flag, shlex.quote(",".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value))]
    return out


def default_run_dir(cfg: TrainConfig, root: str | Path = "results/deep") -> Path:
    """``ROOT/ENV_METHOD[_RULE]_sSEED``: where a run without ``--out`` writes."""
    rule = f"_{cfg.rule}" if cfg.rule else ""
    return Path(root) / f"{cfg.env}_{cfg.method}{rule}_s{cfg.seed}"


def prepare_run_dir(out: Path, *, resume: bool, overwrite: bool) -> list[Path]:
    """Refuse what would lose or confuse data (RunDirError); return the files to delete once every other check
    has passed (nothing is touched here).

    Fresh run: ``out`` must not hold a run (its checkpoint or tables) unless ``overwrite``, which then
    deletes them and their TensorBoard folder. Resume: ``out`` must hold a checkpoint. Temporary files a kill left behind during a write
    (``checkpoint.pt.tmp``, the tables' ``.NAME.XXXX.tmp``) are deleted in both cases: they are never read.
    """
    if resume and overwrite:
        raise ConfigError("--resume continues the run in --out, --overwrite replaces it: give one of them")
    existing = [name for name in RUN_FILES if (out / name).exists()]
    if resume:
        if not out.is_dir():
            raise RunDirError(f"cannot resume: run directory {out} does not exist")
        if CHECKPOINT_NAME not in existing:
            raise RunDirError(f"cannot resume: {out} has no {CHECKPOINT_NAME}"
                              + (f" (it holds {', '.join(existing)}: a run killed before its first checkpoint; "
                                 "start it again with --overwrite)" if existing else " (empty or not a run directory)"))
    elif existing and not overwrite:
        raise RunDirError(f"{out} already holds a run ({', '.join(existing)}); continue it with --resume, "
                          "replace it with --overwrite, or choose another --out")
    doomed = [out / name for name in existing + [TB_DIR]] if not resume else []
    doomed += [temporary_path(out / CHECKPOINT_NAME)] + [p for name in RUN_FILES[1:] for p in out.glob(f".{name}.*.tmp")]
    return [p for p in doomed if p.exists()]


def remove_paths(paths: list[Path]) -> None:
    """Delete the files (and the TensorBoard folder) :func:`prepare_run_dir` named."""
    import shutil

    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


# ---------------------------------------------------------------------------------------- small helpers of the loop
def check_finite(run: RunState) -> None:
    """TrainingDiverged naming the loss if any tracked loss was ever NaN/inf (one host sync per check)."""
    bad = nonfinite_losses(run.finite)
    if bad:
        cfg = run.cfg
        where = (f"the last good checkpoint (step {run.last_checkpoint_step}) is kept in {cfg.out}"
                 if run.last_checkpoint_step is not None else "no checkpoint had been written yet")
        raise TrainingDiverged(f"the {', '.join(bad)} loss became NaN or inf before env step {run.step} "
                               f"({cfg.method} on {cfg.env}, seed {cfg.seed}); training stopped, {where}")


def log_losses(run, ens) -> None:
    """TensorBoard: the losses kept at this step (summed over members) and every member's temperature
    (one host sync, at the coarse interval of the NaN check)."""
    if run.tb is None or not run.last_losses:
        return
    run.tb.losses(run.step, {name: float(value) for name, value in run.last_losses.items()})
    run.last_losses = {}
    run.tb.alphas(run.step, ens.log_alpha.exp().tolist())


def act(run: RunState, obs: np.ndarray, actor: int) -> np.ndarray:
    if run.step < run.cfg.sac.warmup_steps:
        return run.np_rng.uniform(-1.0, 1.0, run.act_dim)
    x = torch.as_tensor(np.asarray(obs, np.float32).reshape(1, 1, -1), device=run.device)
    with torch.no_grad():
        if actor == TEACHER_ACTOR:
            mean, log_std = run.frozen.ensemble.policy(x)
            action = squashed_sample(mean, log_std, run.gen)[0][0, 0]
        else:
            action = run.learner.act(x.expand(run.cfg.k, 1, -1), deterministic=False)[actor, 0]
    return action.cpu().numpy()  # the action must reach the simulator: one sync per env step


@torch.no_grad()
def kl_teacher_student(run: RunState, states: np.ndarray) -> np.ndarray:
    """Mean over ``states`` (N, obs) of KL(pi_teacher(s) || pi_k(s)) for every member k, closed form (``deep.kl``)."""
    x = torch.as_tensor(states, device=run.device)[None]
    t_mean, t_log_std = run.frozen.ensemble.policy(x)
    s_mean, s_log_std = run.ens.policy(x.expand(run.cfg.k, -1, -1))
    return gaussian_kl(t_mean, t_log_std, s_mean, s_log_std).mean(-1).cpu().numpy()


def evaluate(run: RunState) -> None:
    """Deterministic episodes of every member (lockstep, one batched forward per step) -> eval log rows.

    With a frozen teacher also KL(teacher || member) averaged over the member's evaluation states and over
    the states of the teacher's own deterministic episodes (same seeds; computed once per run and cached).
    """
    cfg = run.cfg
    seed = 10_000 + 1_000 * cfg.seed

    def act_fn(obs):
        return run.learner.act(torch.as_tensor(obs, device=run.device), deterministic=True).cpu().numpy()

    with_teacher = run.frozen is not None
    out = evaluate_policies(act_fn, cfg.env, cfg.k, cfg.eval_episodes, seed=seed, return_states=with_teacher)
    returns, states = out if with_teacher else (out, None)
    extra = teacher_columns(run, states, lambda x: kl_teacher_student(run, x)) if with_teacher else [{} for _ in range(cfg.k)]
    append_eval_rows(run, returns, extra, run.learner.compile_ran)


def teacher_columns(run, states: list, kl) -> list[dict]:
    """The frozen teacher's eval columns of each member of ``run`` (a RunState or one run of a stack):
    KL(teacher || member) on the member's own evaluation states ``states[m]`` and on the teacher's
    deterministic episodes (same seeds, rolled out once per run and cached), and the teacher's return.
    ``kl(states)``: KL(teacher || member k) for every member k of the run, averaged over ``states`` (K,)."""
    cfg = run.cfg
    if run.teacher_rollout is None:
        run.teacher_rollout = policy_returns(run.frozen, cfg.env, cfg.eval_episodes, 10_000 + 1_000 * cfg.seed, return_states=True)
    teacher_returns, teacher_states = run.teacher_rollout
    on_teacher = kl(teacher_states)
    return [dict(kl_student_states=float(kl(states[m])[m]), kl_teacher_states=float(on_teacher[m]),
                 teacher_return=float(np.mean(teacher_returns))) for m in range(cfg.k)]


def append_eval_rows(run, returns: np.ndarray, extra: list[dict], compile_ran: str) -> None:
    """One eval-log row per member from its deterministic returns (K, episodes) and extra columns."""
    cfg = run.cfg
    means = returns.mean(1)
    rows = [dict(step=run.step, member=m, width=cfg.widths[m], mean_return=float(means[m]),
                 std_return=float(returns[m].std()), episodes=cfg.eval_episodes,
                 is_best=bool(m == int(np.argmax(means))), is_worst=bool(m == int(np.argmin(means))),
                 env_steps=run.step, wall_time_s=float(run.wall_time), compile_mode=compile_ran, **extra[m])
            for m in range(cfg.k)]
    run.eval_log.extend(rows)
    if run.tb is not None:
        run.tb.evaluation(rows)


def checkpoint(run: RunState) -> None:
    check_finite(run)
    if run.cfg.out is not None:
        save_checkpoint(state_dict(run), run.cfg.out)
        run.last_checkpoint_step = run.step


# ---------------------------------------------------------------------------------------- the run
def start(cfg: TrainConfig, *, resume: bool = False, overwrite: bool = False) -> tuple[RunState, object]:
    """Resolve ``cfg``, check the run directory, build (or restore) the state: everything before step one.

    Every refusal (ConfigError, RunDirError, CheckpointError) comes before anything is written.
    """
    cfg = resolve(cfg)
    if resume and cfg.out is None:
        raise ConfigError("--resume needs --out (the run directory holding checkpoint.pt)")
    saved, doomed = None, []
    if cfg.out is not None:
        out = Path(cfg.out)
        doomed = prepare_run_dir(out, resume=resume, overwrite=overwrite)
        if resume:
            saved = load_checkpoint(out, "cpu")
            check_same_run(resolve(TrainConfig.from_dict(saved["config"])), cfg, f"{out}")
            if saved["step"] > cfg.steps:
                raise RunDirError(f"cannot resume {out}: its checkpoint is at step {saved['step']}, beyond --steps {cfg.steps}")
    frozen = load_teacher(cfg.teacher, cfg.device) if cfg.teacher is not None else None
    run = new_state(cfg, peer_optimizer=method_of(cfg.method).peer_step is not None, frozen=frozen)
    if frozen is not None and (frozen.obs_dim, frozen.act_dim) != (run.obs_dim, run.act_dim):
        raise ConfigError(f"teacher {cfg.teacher} was trained with (obs, act) sizes {(frozen.obs_dim, frozen.act_dim)}; "
                          f"{cfg.env} has {(run.obs_dim, run.act_dim)}")
    if saved is not None:
        load_state(run, saved)
    remove_paths(doomed)  # every check passed: now (and only now) the directory changes
    return run, plan_of(cfg)


def train(cfg: TrainConfig, *, resume: bool = False, overwrite: bool = False, stop_at: int | None = None) -> dict[str, pd.DataFrame]:
    """Train ``cfg`` (see the module docstring); return the tables {"eval", "episodes", "phases"}.

    ``resume``: continue the run in ``cfg.out`` from its checkpoint to ``cfg.steps`` (which may exceed the
    original step count). ``overwrite``: replace a run already in ``cfg.out``. ``stop_at``: stop abruptly
    (as if killed) once this many env steps are done; for tests. Raises ``ConfigError`` / ``RunDirError`` /
    ``CheckpointError`` before any work, ``TrainingDiverged`` on NaN/inf losses, ``Interrupted`` after a
    SIGTERM/SIGINT (checkpoint written).
    """
    command = resume_command(cfg)
    run, plan = start(cfg, resume=resume, overwrite=overwrite)
    return run_loop(SingleRun(run, plan), command, stop_at)[0]


@dataclass
class SingleRun(Group):
    """One run as the group ``deep.loop.run_loop`` drives: the RunState is the state the loop counts on and
    its own only run; its steps are the functions above."""

    state: RunState
    plan: object

    def __post_init__(self):
        run = self.state
        self.runs, self.plans = [run], [self.plan]
        self.label, self.out = f"s{run.cfg.seed}", run.cfg.out

    def act(self) -> np.ndarray:
        run = self.state
        return act(run, run.obs, run.actor)[None]

    def store(self, obs: list, actions: np.ndarray, results: list, warm: bool) -> None:
        run = self.state
        next_obs, reward, terminated, _, _ = results[0]
        run.buffer.add(obs[0], actions[0], float(reward), next_obs, bool(terminated), WARMUP_ACTOR if warm else run.actor)

    def check_finite(self) -> None:
        check_finite(self.state)

    def log_losses(self) -> None:
        log_losses(self.state, self.state.ens)

    def evaluate(self) -> None:
        evaluate(self.state)

    def checkpoint(self) -> None:
        checkpoint(self.state)

    def open_logs(self) -> None:
        run = self.state
        run.tb = open_log(run.cfg.out, run.cfg.tensorboard, run.step)

    def close_logs(self) -> None:
        if self.state.tb is not None:
            self.state.tb.close()


def run_cell(cell: dict) -> pd.DataFrame:
    """A sweep cell -> its eval table (for ``distlab.runner.run_grid``). Keys are TrainConfig fields
    (``sac.<name>`` for SAC settings); ``out`` is set by the sweep to a per-cell run directory, resumed if it
    holds a checkpoint (a killed cell) and started afresh otherwise (partial tables of a cell killed before
    its first checkpoint are replaced)."""
    from deep.config import with_overrides

    cfg = with_overrides(TrainConfig(progress=False), **cell)
    resume = cfg.out is not None and (Path(cfg.out) / CHECKPOINT_NAME).exists()
    table = train(cfg, resume=resume, overwrite=not resume and cfg.out is not None)["eval"]
    return table.drop(columns=[c for c in cell if c in table.columns])  # the runner adds the cell's own columns
