"""The one training loop of ``deep``: a single run (``deep.train``), stacked seeds and stacked study cells
(``deep.seeds``) all run :func:`run_loop`; what differs between them is the :class:`Group` it drives.

    every run of the group continues its episode (a resumed run exactly where it stopped)
    for each env step (every run one step, in lockstep):
        act: each run's action (uniform during warm-up; its acting member, or its frozen teacher)
        step each run's env (here, or in env_workers processes), store the transitions, each run's episode bookkeeping (:func:`record_step`)
        learn_step (``deep.methods``): the method's steps, ONE (batched) update for the whole group
        every nan_check_every steps: NaN/inf check, TensorBoard losses
        every eval_every steps and at the end: deterministic evaluation, each run's tables
        every checkpoint_every steps and at the end: NaN/inf check, each run's checkpoint
        on SIGTERM/SIGINT (:class:`StopSignals`): checkpoint and tables at this step, then :class:`Interrupted`

A group is a RunState with its plan (``deep.train.SingleRun``: the run is its own only run) or a stack of
runs sharing one batched ensemble (``deep.seeds.StackedRuns``); each run keeps its own env, RNGs, episode,
logs and tables, so a run's files are the same whichever group trained it.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from deep.config import ConfigError, TrainConfig
from deep.envs import env_state, restore_env_state, to_env_action
from deep.methods import TEACHER_ACTOR, WARMUP_ACTOR, learn_step

__all__ = ["Group", "run_loop", "StopSignals", "Interrupted", "interrupted", "Progress", "nonfinite_losses", "new_episode",
           "continue_episode", "record_step", "choose_actor", "tables", "write_tables", "step_envs", "start_env_workers"]


class Group:
    """What :func:`run_loop` drives. Attributes: ``state``, what ``learn_step`` updates and the loop counts on
    (``cfg``, ``step``, ``wall_time``, ``tb``, ``last_checkpoint_step``: a ``deep.state.RunState`` or a
    ``deep.seeds.Stack``); ``runs``, the runs (each with ``cfg``, ``env``, ``np_rng``, the episode in progress,
    ``tb`` and logs; a RunState is its own only run); ``plans``, each run's ``deep.methods.Plan`` (who acts);
    ``plan``, the group's (its learn steps); ``label`` for the progress bar; ``out``, where a stopped group's
    checkpoints are (None: nowhere). The methods are the steps that differ between a single run and a stack."""

    state: object
    runs: list
    plans: list
    plan: object
    label: str
    out: object

    def act(self) -> np.ndarray:
        """Every run's action, (runs, |A|)."""
        raise NotImplementedError

    def store(self, obs: list, actions: np.ndarray, results: list, warm: bool) -> None:
        """Add every run's transition (``obs[i]``, ``actions[i]``, ``results[i]`` = env.step's tuple) to the replay."""
        raise NotImplementedError

    def check_finite(self) -> None:
        """``deep.train.TrainingDiverged`` if a tracked loss was ever NaN/inf (one host sync)."""
        raise NotImplementedError

    def log_losses(self) -> None:
        """TensorBoard at the NaN check's interval: the losses kept at this step and the temperatures."""
        raise NotImplementedError

    def evaluate(self) -> None:
        """Deterministic episodes of every member -> each run's eval log."""
        raise NotImplementedError

    def checkpoint(self) -> None:
        """NaN/inf check, then each run's checkpoint (runs with a directory), ``last_checkpoint_step`` set."""
        raise NotImplementedError

    def open_logs(self) -> None:
        raise NotImplementedError

    def close_logs(self) -> None:
        raise NotImplementedError


def step_envs(runs: list, actions: np.ndarray, workers=None) -> list:
    """One env step of every run (its action mapped onto its env's action box): env.step's tuples; one after
    another here, or by the runs' ``workers`` (``deep.env_workers.EnvWorkers``) in parallel."""
    env_actions = [to_env_action(a, run.env.action_space) for run, a in zip(runs, actions)]
    if workers is not None:
        return workers.step(env_actions)
    return [run.env.step(a) for run, a in zip(runs, env_actions)]


def start_env_workers(runs: list, cfg: TrainConfig):
    """``cfg.env_workers`` processes take over the runs' simulators, each started in its run's exact state
    (``deep.envs.env_state``, as a resume does), so the run continues as it would have in this process."""
    from deep.env_workers import EnvWorkers

    states = [env_state(run.env) for run in runs]
    if any(state is None for state in states):
        raise ConfigError(f"env_workers: the simulator state of {cfg.env} cannot be saved (deep.envs.env_state), so it "
                          "cannot move to a worker; use env_workers 0")
    spaces = (runs[0].env.observation_space, runs[0].env.action_space)
    workers = EnvWorkers(cfg.env, states, cfg.env_workers, spaces)
    for run, env in zip(runs, workers.envs()):
        run.env.close()
        run.env = env
    return workers


def run_loop(group: Group, command: str, stop_at: int | None = None) -> list[dict[str, pd.DataFrame]]:
    """Train ``group`` to ``cfg.steps`` (the module docstring); return each run's tables. ``command`` is the
    one that resumes the group (the :class:`Interrupted` line); ``stop_at``: stop abruptly, as if killed, once
    this many env steps are done (tests)."""
    state, runs = group.state, group.runs
    cfg = state.cfg
    bar = Progress(cfg, state.step, f"{cfg.method} {cfg.env} {group.label}")
    group.open_logs()
    for run, plan in zip(runs, group.plans):
        continue_episode(run, plan)
    workers = start_env_workers(runs, cfg) if cfg.env_workers else None
    t0, s0, wall0 = time.perf_counter(), state.step, state.wall_time
    try:
        with StopSignals() as stop:
            while state.step < cfg.steps:
                # ---- act and store (every run one env step)
                actions = group.act()
                obs = [run.obs for run in runs]
                results = step_envs(runs, actions, workers)
                group.store(obs, actions, results, warm=state.step < cfg.sac.warmup_steps)
                state.step += 1
                wall = wall0 + time.perf_counter() - t0
                for run, plan, (next_obs, reward, terminated, truncated, _) in zip(runs, group.plans, results):
                    run.step = state.step
                    record_step(run, plan, next_obs, reward, terminated, truncated, wall)
                learn_step(state, group.plan)  # ---- learn: the method's steps, all runs at once
                # ---- measure, save
                state.wall_time = wall0 + time.perf_counter() - t0
                for run in runs:
                    run.wall_time = state.wall_time
                if state.step % cfg.nan_check_every == 0:
                    group.check_finite()
                    group.log_losses()
                if state.step % cfg.eval_every == 0 or state.step == cfg.steps:
                    group.check_finite()
                    group.evaluate()
                    for run in runs:
                        write_tables(run)
                    bar.evaluated([r["mean_return"] for run in runs for r in run.eval_log if r["step"] == state.step])
                if state.step % cfg.checkpoint_every == 0 or state.step == cfg.steps:
                    group.checkpoint()
                if state.step % 100 == 0 or state.step == cfg.steps:
                    rate = (state.step - s0) / (time.perf_counter() - t0)  # each run's env steps per second
                    bar.advance(state.step, len(runs) * rate)
                    for run in runs:
                        if run.tb is not None:
                            run.tb.speed(state.step, rate)
                if stop.signum is not None:
                    stop_here(group, stop.signum, command)
                if stop_at is not None and state.step >= stop_at:
                    raise _Killed(f"stopped at step {state.step} (stop_at)")
    finally:
        bar.close()
        for run in runs:
            run.env.close()
        group.close_logs()
    for run in runs:
        write_tables(run)
    return [tables(run) for run in runs]


def stop_here(group: Group, signum: int, command: str) -> None:
    """After a signal: every run's checkpoint at this step (unless just written) and tables, then Interrupted."""
    if group.state.last_checkpoint_step != group.state.step:
        group.checkpoint()
    for run in group.runs:
        write_tables(run)
    raise interrupted(signum, group.state.step, group.out, command)


class _Killed(RuntimeError):
    """Raised by ``stop_at`` to simulate a killed process (tests)."""


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGINT stopped the run at a safe point; a checkpoint at that step was written first.

    A KeyboardInterrupt, not an Exception: code that catches Exception to record a failed cell and go on
    (a study's runner) must stop, as the user asked. The message is one line ending in the command that
    resumes the run; ``exit_code`` is the shell's convention for death by that signal (128 + its number).
    """

    def __init__(self, message: str, signum: int = signal.SIGTERM, step: int = 0):
        super().__init__(message)
        self.signum, self.step = int(signum), int(step)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopSignals:
    """While a run trains, SIGTERM and SIGINT only ask it to stop (``signum``), so that the loop can finish
    the current env step and checkpoint; a second signal acts as without this handler (stops at once, the
    last checkpoint stays). Installed only in the main thread (Python allows no handler elsewhere), and the
    previous handlers come back on exit."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.signum is None:
            self.signum = signum
            return
        self._restore()
        signal.raise_signal(signum)

    def _restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        self._previous = {}

    def __exit__(self, *exc) -> None:
        self._restore()


def interrupted(signum: int, step: int, out, command: str) -> Interrupted:
    """The exception (and its one line) of a run stopped by ``signum`` at ``step``."""
    name = signal.Signals(signum).name
    if out is None:
        return Interrupted(f"interrupted by {name} at env step {step}; nothing saved (the run has no --out)", signum, step)
    return Interrupted(f"interrupted by {name} at env step {step}, checkpoint written in {out}; resume with: {command}",
                       signum, step)


class Progress:
    """The progress bar: env steps done, ONE rate (env steps per second, measured by the loop, the number
    TensorBoard's charts/SPS gets too) and the last evaluation's best and worst member. tqdm's own rate is
    left out of the bar: it counts loop iterations, which are not env steps for stacked runs."""

    FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]"

    def __init__(self, cfg: TrainConfig, initial: int, desc: str):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=cfg.steps, initial=initial, disable=not cfg.progress, unit="step", desc=desc,
                        dynamic_ncols=True, mininterval=1.0, bar_format=self.FORMAT)
        self.rate, self.evaluation = "", ""

    def evaluated(self, mean_returns) -> None:
        self.evaluation = f"best {max(mean_returns):.1f}, worst {min(mean_returns):.1f}"
        self._show()

    def advance(self, step: int, env_steps_per_s: float) -> None:
        self.bar.update(step - self.bar.n)
        self.rate = f"{env_steps_per_s:.0f} env steps/s"
        self._show()

    def _show(self) -> None:
        self.bar.set_postfix_str(", ".join(part for part in (self.rate, self.evaluation) if part), refresh=False)

    def close(self) -> None:
        self.bar.close()


def nonfinite_losses(finite: dict) -> list[str]:
    """The names of the tracked losses that were ever NaN/inf (``finite``: name -> device bool; one host sync)."""
    if not finite:
        return []
    names = list(finite)
    flags = torch.stack([finite[n] for n in names]).cpu().numpy()
    return [n for n, ok in zip(names, flags) if not ok]


def new_episode(run, plan) -> None:
    """Reset the env (seed from the run's numpy RNG) and pick the episode's actor (a RunState or one run of a stack)."""
    run.obs, _ = run.env.reset(seed=int(run.np_rng.integers(2**31)))
    run.actor = choose_actor(run, plan)
    run.episode_start, run.ep_return, run.ep_length = run.step, 0.0, 0


def continue_episode(run, plan) -> None:
    """Where the loop starts: the checkpoint's episode in progress exactly where it stopped (simulator, env
    RNG, time-limit counter, observation, actor, return and length so far), else a new episode (a fresh
    run, a format-2 checkpoint, or an env whose simulator state cannot be saved: ``deep.envs.env_state``)."""
    saved, run.saved_episode = run.saved_episode, None
    if saved is None or saved["env"] is None:
        if saved is not None:
            import warnings

            warnings.warn(f"{run.cfg.env}: its simulator state is not in the checkpoint; the resumed run starts a new episode")
        new_episode(run, plan)
        return
    restore_env_state(run.env, saved["env"])
    run.obs, run.actor, run.episode_start = saved["obs"], saved["actor"], saved["start"]
    run.ep_return, run.ep_length = saved["ep_return"], saved["length"]


def record_step(run, plan, next_obs, reward: float, terminated: bool, truncated: bool, wall: float) -> None:
    """After an env step of ``run`` (``run.step`` already counts it): the episode's bookkeeping; at its end the
    episode log row (and its return for the election, if a member acted after warm-up) and a new episode."""
    run.obs = next_obs
    run.ep_return += float(reward)
    run.ep_length += 1
    if not (terminated or truncated):
        return
    from_policy = run.episode_start >= run.cfg.sac.warmup_steps
    if from_policy and run.actor >= 0:
        run.member_returns[run.actor].append(run.ep_return)
    row = dict(step=run.step, episode=run.episode, actor=run.actor if from_policy else WARMUP_ACTOR,
               episode_return=run.ep_return, length=run.ep_length, terminated=bool(terminated), wall_time_s=wall)
    run.episode_log.append(row)
    if run.tb is not None:
        run.tb.episode(row)
    run.episode += 1
    new_episode(run, plan)


def choose_actor(run, plan) -> int:
    """Who acts this episode: the frozen teacher for a teacher-controlled every-step rule, else a uniform member."""
    return TEACHER_ACTOR if plan.teacher_acts else int(run.np_rng.integers(run.cfg.k))


def tables(run) -> dict[str, pd.DataFrame]:
    cfg = run.cfg
    ident = dict(env=cfg.env, method=cfg.method, rule=cfg.rule or "", election=cfg.election, k=cfg.k, seed=cfg.seed)
    out = {}
    for name, rows in (("eval", run.eval_log), ("episodes", run.episode_log), ("phases", run.phase_log)):
        table = pd.DataFrame(rows)
        for key, value in ident.items():
            table[key] = value
        out[name] = table
    return out


def write_tables(run) -> None:
    if run.cfg.out is None:
        return
    from distlab.io import write_parquet

    for name, table in tables(run).items():
        write_parquet(table, Path(run.cfg.out) / f"{name}.parquet", config=run.cfg.to_dict())
