"""The training loop: ensemble SAC with the step functions of the run's method, read top to bottom.

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

Outputs in ``out``: ``eval.parquet`` (step, member, mean/std of deterministic returns, best/worst member,
env_steps, wall_time_s, compile_mode: the torch.compile mode the update actually ran in; with a frozen teacher also ``kl_student_states``, ``kl_teacher_states`` and
``teacher_return``), ``episodes.parquet`` (with ``wall_time_s`` at the episode's end: ``distlab bench``
measures steps/s between episode ends), ``phases.parquet``, ``checkpoint.pt``.

Run directories (:func:`prepare_run_dir`): a fresh run refuses a directory that already holds a run
unless ``overwrite``; ``resume`` needs a checkpoint there and may extend a finished run to more steps.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from deep.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint, temporary_path
from deep.config import ConfigError, TrainConfig
from deep.envs import evaluate_policies, to_env_action
from deep.kl import gaussian_kl, squashed_sample
from deep.methods import TEACHER_ACTOR, WARMUP_ACTOR, method_of, plan_of, resolve
from deep.state import RunState, check_same_run, load_state, new_state, state_dict
from deep.teacher_file import load_teacher, policy_returns

__all__ = ["train", "run_cell", "append_eval_rows", "TrainingDiverged", "RunDirError", "WARMUP_ACTOR", "TEACHER_ACTOR", "default_run_dir",
           "prepare_run_dir", "RUN_FILES"]

RUN_FILES = (CHECKPOINT_NAME, "eval.parquet", "episodes.parquet", "phases.parquet")


class TrainingDiverged(FloatingPointError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


class RunDirError(ValueError):
    """The run directory does not fit the request (a run there without --resume, no checkpoint to resume)."""


class _Killed(RuntimeError):
    """Raised by ``stop_at`` to simulate a killed process (tests)."""


def default_run_dir(cfg: TrainConfig, root: str | Path = "results/deep") -> Path:
    """``ROOT/ENV_METHOD[_RULE]_sSEED``: where a run without ``--out`` writes."""
    rule = f"_{cfg.rule}" if cfg.rule else ""
    return Path(root) / f"{cfg.env}_{cfg.method}{rule}_s{cfg.seed}"


def prepare_run_dir(out: Path, *, resume: bool, overwrite: bool) -> list[Path]:
    """Refuse what would lose or confuse data (RunDirError); return the files to delete once every other check
    has passed (nothing is touched here).

    Fresh run: ``out`` must not hold a run (its checkpoint or tables) unless ``overwrite``, which then
    deletes them. Resume: ``out`` must hold a checkpoint. Temporary files a kill left behind during a write
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
    doomed = [out / name for name in existing] if not resume else []
    doomed += [temporary_path(out / CHECKPOINT_NAME)] + [p for name in RUN_FILES[1:] for p in out.glob(f".{name}.*.tmp")]
    return [p for p in doomed if p.exists()]


# ---------------------------------------------------------------------------------------- small helpers of the loop
def nonfinite_losses(finite: dict) -> list[str]:
    """The names of the tracked losses that were ever NaN/inf (``finite``: name -> device bool; one host sync)."""
    if not finite:
        return []
    names = list(finite)
    flags = torch.stack([finite[n] for n in names]).cpu().numpy()
    return [n for n, ok in zip(names, flags) if not ok]


def check_finite(run: RunState) -> None:
    """TrainingDiverged naming the loss if any tracked loss was ever NaN/inf (one host sync per check)."""
    bad = nonfinite_losses(run.finite)
    if bad:
        cfg = run.cfg
        where = (f"the last good checkpoint (step {run.last_checkpoint_step}) is kept in {cfg.out}"
                 if run.last_checkpoint_step is not None else "no checkpoint had been written yet")
        raise TrainingDiverged(f"the {', '.join(bad)} loss became NaN or inf before env step {run.step} "
                               f"({cfg.method} on {cfg.env}, seed {cfg.seed}); training stopped, {where}")


def choose_actor(run: RunState, plan) -> int:
    """Who acts this episode: the frozen teacher for a teacher-controlled every-step rule, else a uniform member."""
    return TEACHER_ACTOR if plan.teacher_acts else int(run.np_rng.integers(run.cfg.k))


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
    extra = [{} for _ in range(cfg.k)]
    if with_teacher:
        if run.teacher_rollout is None:
            run.teacher_rollout = policy_returns(run.frozen, cfg.env, cfg.eval_episodes, seed, return_states=True)
        teacher_returns, teacher_states = run.teacher_rollout
        on_teacher = kl_teacher_student(run, teacher_states)
        for m in range(cfg.k):
            extra[m] = dict(kl_student_states=float(kl_teacher_student(run, states[m])[m]),
                            kl_teacher_states=float(on_teacher[m]), teacher_return=float(np.mean(teacher_returns)))
    append_eval_rows(run, returns, extra, run.learner.compile_ran)


def append_eval_rows(run, returns: np.ndarray, extra: list[dict], compile_ran: str) -> None:
    """One eval-log row per member from its deterministic returns (K, episodes) and extra columns."""
    cfg = run.cfg
    means = returns.mean(1)
    for m in range(cfg.k):
        run.eval_log.append(dict(step=run.step, member=m, width=cfg.widths[m], mean_return=float(means[m]),
                                 std_return=float(returns[m].std()), episodes=cfg.eval_episodes,
                                 is_best=bool(m == int(np.argmax(means))), is_worst=bool(m == int(np.argmin(means))),
                                 env_steps=run.step, wall_time_s=float(run.wall_time), compile_mode=compile_ran, **extra[m]))


def tables(run: RunState) -> dict[str, pd.DataFrame]:
    cfg = run.cfg
    ident = dict(env=cfg.env, method=cfg.method, rule=cfg.rule or "", election=cfg.election, k=cfg.k, seed=cfg.seed)
    out = {}
    for name, rows in (("eval", run.eval_log), ("episodes", run.episode_log), ("phases", run.phase_log)):
        table = pd.DataFrame(rows)
        for key, value in ident.items():
            table[key] = value
        out[name] = table
    return out


def write_tables(run: RunState) -> None:
    if run.cfg.out is None:
        return
    from distlab.io import write_parquet

    for name, table in tables(run).items():
        write_parquet(table, Path(run.cfg.out) / f"{name}.parquet", config=run.cfg.to_dict())


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
    for path in doomed:  # every check passed: now (and only now) the directory changes
        path.unlink()
    return run, plan_of(cfg)


def train(cfg: TrainConfig, *, resume: bool = False, overwrite: bool = False, stop_at: int | None = None) -> dict[str, pd.DataFrame]:
    """Train ``cfg`` (see the module docstring); return the tables {"eval", "episodes", "phases"}.

    ``resume``: continue the run in ``cfg.out`` from its checkpoint to ``cfg.steps`` (which may exceed the
    original step count). ``overwrite``: replace a run already in ``cfg.out``. ``stop_at``: stop abruptly
    (as if killed) once this many env steps are done; for tests. Raises ``ConfigError`` / ``RunDirError`` /
    ``CheckpointError`` before any work, ``TrainingDiverged`` on NaN/inf losses.
    """
    run, plan = start(cfg, resume=resume, overwrite=overwrite)
    cfg, s = run.cfg, run.cfg.sac
    from tqdm.auto import tqdm

    bar = tqdm(total=cfg.steps, initial=run.step, disable=not cfg.progress, unit="step",
               desc=f"{cfg.method} {cfg.env} s{cfg.seed}", dynamic_ncols=True, mininterval=1.0)
    obs, _ = run.env.reset(seed=int(run.np_rng.integers(2**31)))
    actor = choose_actor(run, plan)
    episode_start, ep_return, ep_length = run.step, 0.0, 0
    t0, s0, wall0 = time.perf_counter(), run.step, run.wall_time
    try:
        while run.step < cfg.steps:
            # ---- act and store
            action = act(run, obs, actor)
            next_obs, reward, terminated, truncated, _ = run.env.step(to_env_action(action, run.env.action_space))
            warm = run.step < s.warmup_steps
            run.buffer.add(obs, action, float(reward), next_obs, bool(terminated), WARMUP_ACTOR if warm else actor)
            obs = next_obs
            ep_return += float(reward)
            ep_length += 1
            run.step += 1
            if terminated or truncated:
                from_policy = episode_start >= s.warmup_steps
                if from_policy and actor >= 0:
                    run.member_returns[actor].append(ep_return)
                run.episode_log.append(dict(step=run.step, episode=run.episode, actor=actor if from_policy else WARMUP_ACTOR,
                                            episode_return=ep_return, length=ep_length, terminated=bool(terminated),
                                            wall_time_s=wall0 + time.perf_counter() - t0))
                run.episode += 1
                obs, _ = run.env.reset(seed=int(run.np_rng.integers(2**31)))
                actor = choose_actor(run, plan)
                episode_start, ep_return, ep_length = run.step, 0.0, 0
            # ---- learn: the method's steps
            if run.step >= s.warmup_steps:
                for _ in range(s.updates_per_step):
                    plan.update(run)
                if plan.peer_step is not None:
                    plan.peer_step(run)
                if (plan.phase is not None and run.step >= cfg.distill_start
                        and (run.step - cfg.distill_start) % cfg.distill_interval == 0):
                    plan.phase(run, plan)
            # ---- measure, save
            run.wall_time = wall0 + time.perf_counter() - t0
            if run.step % cfg.nan_check_every == 0:
                check_finite(run)
            if run.step % cfg.eval_every == 0 or run.step == cfg.steps:
                check_finite(run)
                evaluate(run)
                write_tables(run)
                latest = [r["mean_return"] for r in run.eval_log if r["step"] == run.step]
                bar.set_postfix(best=f"{max(latest):.1f}", worst=f"{min(latest):.1f}", refresh=False)
            if run.step % cfg.checkpoint_every == 0 or run.step == cfg.steps:
                checkpoint(run)
            if run.step % 100 == 0 or run.step == cfg.steps:
                bar.update(run.step - bar.n)
                bar.set_description(f"{cfg.method} {cfg.env} s{cfg.seed} {(run.step - s0) / (time.perf_counter() - t0):.0f} steps/s", refresh=False)
            if stop_at is not None and run.step >= stop_at:
                raise _Killed(f"stopped at step {run.step} (stop_at)")
    finally:
        bar.close()
        run.env.close()
    write_tables(run)
    return tables(run)


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
