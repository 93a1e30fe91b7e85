"""The state of one run: everything a checkpoint holds, as one plain object (no training logic here).

:class:`RunState` is what the loop in ``deep.train`` reads and the step functions of ``deep.methods``
change: the networks and their optimizers, the replay buffer, the RNGs, the counters, the election's
statistics and the logs. :func:`new_state` builds it from a resolved config, :func:`state_dict` /
:func:`load_state` convert it to and from a checkpoint (``deep.checkpoint`` writes it atomically).

Checkpoint layout (format 3): ``config`` (TrainConfig as a dict), ``obs_dim``, ``act_dim``, ``ensemble``
(state dict of ``deep.networks.Ensemble``), ``optimizers`` (actor, critic, alpha[, dpd]), ``buffer``,
``election``, ``rng`` (numpy, python, torch, device), ``step``, ``episode``, ``member_returns``,
``episode_log``, ``eval_log``, ``phase_log``, ``wall_time`` and ``in_progress``: the episode in progress
(:func:`episode_state`: the observation the next action is taken on, the acting member, the episode's start
step, return and length so far, and the simulator's state ``deep.envs.env_state``), so that a resumed run
takes exactly the next step the uninterrupted run would have taken. Older formats are read too: format 2
lacks ``in_progress`` (its resumed run starts a new episode, as that code did), format 1 also ``format``
and ``wall_time``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
import torch

from deep.config import TrainConfig
from deep.election import TeacherElection
from deep.envs import env_dims, env_state, make_env
from deep.networks import Ensemble
from deep.replay import ReplayBuffer
from deep.sac import SACLearner, make_adam

__all__ = ["RunState", "new_state", "state_dict", "load_state", "restore_generator", "restore_progress", "CHECKPOINT_FORMAT", "RESUMABLE_CHANGES", "device_of",
           "check_same_run", "episode_state", "track_losses"]

CHECKPOINT_FORMAT = 3
# settings a resumed run may change; every other setting must equal the checkpoint's
RESUMABLE_CHANGES = ("steps", "out", "progress", "device", "compile", "eval_every", "eval_episodes",
                     "checkpoint_every", "nan_check_every", "tensorboard", "env_workers")


def device_of(name: str) -> torch.device:
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    return device


@dataclass
class RunState:
    """All state of one run. ``cfg`` is resolved (``deep.methods.resolve``); ``frozen`` is the frozen teacher
    (re-read from its file on resume, never checkpointed)."""

    cfg: TrainConfig
    device: torch.device
    env: object
    obs_dim: int
    act_dim: int
    ens: Ensemble
    learner: SACLearner  # the SAC update and its three Adam optimizers
    buffer: ReplayBuffer
    election: TeacherElection
    np_rng: np.random.Generator
    gen: torch.Generator
    dpd_opt: torch.optim.Optimizer | None = None
    frozen: object = None  # deep.teacher_file.FrozenTeacher
    step: int = 0
    episode: int = 0
    wall_time: float = 0.0  # seconds of training so far, summed over resumed sessions
    member_returns: list[list[float]] = field(default_factory=list)
    episode_log: list[dict] = field(default_factory=list)
    eval_log: list[dict] = field(default_factory=list)
    phase_log: list[dict] = field(default_factory=list)
    finite: dict[str, torch.Tensor] = field(default_factory=dict)  # loss name -> "always finite so far" (device flag)
    last_checkpoint_step: int | None = None
    teacher_rollout: object = None  # cached states/returns of the frozen teacher's own evaluation episodes
    # the episode in progress (checkpointed: :func:`episode_state`)
    obs: np.ndarray | None = None  # the observation the next action is taken on
    actor: int = 0
    episode_start: int = 0
    ep_return: float = 0.0
    ep_length: int = 0
    saved_episode: dict | None = None  # a checkpoint's episode in progress, until the loop continues it
    # TensorBoard (deep.tblog; None when off) and the losses it logs at the next coarse interval
    tb: object = None
    keep_losses: bool = False
    last_losses: dict[str, torch.Tensor] = field(default_factory=dict)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        opts = dict(self.learner.optimizers())
        if self.dpd_opt is not None:
            opts["dpd"] = self.dpd_opt
        return opts

    def track(self, losses: dict[str, torch.Tensor]) -> None:
        track_losses(self, losses)


def track_losses(run, losses: dict[str, torch.Tensor]) -> None:
    """Fold the losses' finiteness into device flags, one per loss name (no host sync here); keep a copy of
    them when ``run.keep_losses`` (a step whose losses TensorBoard logs: a copy, because a CUDA-graph replay
    overwrites its outputs in place)."""
    for name, value in losses.items():
        ok = torch.isfinite(value).all()
        run.finite[name] = ok if name not in run.finite else run.finite[name] & ok
        if run.keep_losses:
            run.last_losses[name] = value.detach().clone()


def episode_state(run) -> dict | None:
    """The episode in progress of ``run`` (a RunState or one run of a stack), for its checkpoint."""
    if run.obs is None:
        return None
    return dict(obs=np.array(run.obs, copy=True), actor=int(run.actor), start=int(run.episode_start),
                ep_return=float(run.ep_return), length=int(run.ep_length), env=env_state(run.env))


def new_state(cfg: TrainConfig, *, peer_optimizer: bool, frozen=None) -> RunState:
    """A fresh run: seeded RNGs, the environment, the ensemble (initialised from the seed), empty buffer."""
    device = device_of(cfg.device)
    np_rng = np.random.default_rng(cfg.seed)
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator(device=device)
    gen.manual_seed(cfg.seed)
    env = make_env(cfg.env)
    obs_dim, act_dim = env_dims(env)
    s = cfg.sac
    ens = Ensemble(obs_dim, act_dim, cfg.widths, s.hidden_layers, s.init_alpha, s.log_std_min, s.log_std_max).to(device)
    return RunState(
        cfg=cfg, device=device, env=env, obs_dim=obs_dim, act_dim=act_dim, ens=ens,
        learner=SACLearner(ens, s, gen, cfg.compile),
        buffer=ReplayBuffer(min(s.buffer_size, cfg.steps), obs_dim, act_dim, device),
        election=TeacherElection(cfg.election, cfg.k, cfg.seed, cfg.epsilon, cfg.ucb_c),
        np_rng=np_rng, gen=gen, dpd_opt=make_adam(ens.actor_parameters(), cfg.dpd_lr) if peer_optimizer else None,
        frozen=frozen, member_returns=[[] for _ in range(cfg.k)],
    )


def state_dict(run: RunState) -> dict:
    """The checkpoint of ``run`` (layout in the module docstring)."""
    return dict(
        format=CHECKPOINT_FORMAT, config=run.cfg.to_dict(), obs_dim=run.obs_dim, act_dim=run.act_dim,
        ensemble=run.ens.state_dict(), optimizers={name: opt.state_dict() for name, opt in run.optimizers().items()},
        buffer=run.buffer.state_dict(), election=run.election.state_dict(),
        rng=dict(numpy=run.np_rng.bit_generator.state, python=random.getstate(), torch=torch.get_rng_state(),
                 device=run.gen.get_state()),
        step=run.step, episode=run.episode, wall_time=run.wall_time, member_returns=run.member_returns,
        episode_log=run.episode_log, eval_log=run.eval_log, phase_log=run.phase_log, in_progress=episode_state(run),
    )


def check_same_run(saved: TrainConfig, mine: TrainConfig, where: str) -> None:
    """ValueError naming the first setting that differs between a checkpoint and this run (except
    :data:`RESUMABLE_CHANGES`)."""
    a, b = saved.to_dict(), mine.to_dict()
    for name in a:
        if name in RESUMABLE_CHANGES:
            continue
        if name == "sac":
            diff = [key for key in a["sac"] if a["sac"][key] != b["sac"].get(key)]
            if diff:
                key = diff[0]
                raise ValueError(f"cannot resume {where}: the checkpoint has sac.{key}={a['sac'][key]!r}, this run "
                                 f"{b['sac'][key]!r} (a resumed run keeps its settings; only {', '.join(RESUMABLE_CHANGES)} may change)")
            continue
        if a[name] != b[name]:
            raise ValueError(f"cannot resume {where}: the checkpoint has {name}={a[name]!r}, this run {b[name]!r} "
                             f"(a resumed run keeps its settings; only {', '.join(RESUMABLE_CHANGES)} may change)")


def restore_generator(gen: torch.Generator, saved: torch.Tensor, seed: int, step: int) -> bool:
    """Put ``gen`` back in the saved state; True if it could.

    A checkpoint written on another device type holds the other generator's state (CPU: a Mersenne
    twister, 5056 bytes; CUDA: Philox seed and offset, 16 bytes), which cannot be loaded. Then ``gen`` is
    reseeded from (seed, step) and a warning says so: the resumed run is reproducible (the same
    checkpoint resumed on the same device type draws the same numbers) but its random stream is not the
    one the uninterrupted run would have drawn. Every other part of the state moves across devices.
    """
    try:
        gen.set_state(saved)
        return True
    except RuntimeError:
        import warnings

        fresh = int(np.random.SeedSequence([int(seed), int(step), 0x5EED]).generate_state(1, np.uint64)[0] >> 1)
        gen.manual_seed(fresh)
        warnings.warn(f"the checkpoint's torch generator state was written on another device type ({saved.numel()} bytes; "
                      f"this {gen.device.type} generator has {gen.get_state().numel()}): reseeded from (seed {seed}, step {step})")
        return False


def load_state(run: RunState, state: dict) -> None:
    """Restore ``run`` from checkpoint ``state`` (checked by :func:`check_same_run` first; more steps allowed)."""
    run.ens.load_state_dict(state["ensemble"])
    for name, opt in run.optimizers().items():
        opt.load_state_dict(state["optimizers"][name])
    run.buffer.load_state_dict(state["buffer"])
    run.election.load_state_dict(state["election"])
    run.np_rng.bit_generator.state = state["rng"]["numpy"]
    random.setstate(state["rng"]["python"])
    torch.set_rng_state(state["rng"]["torch"])
    restore_progress(run, state)


def restore_progress(run, state: dict) -> None:
    """A run's device generator, counters, recent returns and logs from its checkpoint ``state`` (shared by a
    single run and each run of a stack)."""
    restore_generator(run.gen, state["rng"]["device"], run.cfg.seed, state["step"])
    run.step, run.episode = state["step"], state["episode"]
    run.wall_time = float(state.get("wall_time", 0.0))
    run.member_returns = state["member_returns"]
    run.episode_log, run.eval_log, run.phase_log = state["episode_log"], state["eval_log"], state["phase_log"]
    run.saved_episode = state.get("in_progress")  # None in a format-2 checkpoint
    run.last_checkpoint_step = run.step
