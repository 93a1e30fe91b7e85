"""The training loop: ensemble SAC with periodic (or per-step) distillation, read top to bottom.

PIEKD, Alg. 1 (Hong et al.), on SAC:

    for each episode: pick the acting member k_e ~ Uniform(K) (uniform random actions during warm-up)
        for each env step: store (s, a, r, s', terminated, k_e) in the shared buffer D;
            after warm-up, one SAC update of every member on its own minibatch of D
            [dpd: one DPD distillation step between the two peers]
            [rule with a frozen teacher, every-step schedule: the rule's update instead of SAC's]
            every I steps from distill_start:  elect a teacher t (R_k = mean of the last M returns, or a
                bandit), then  distil  (piekd)  |  extra SAC updates (the *-extra baselines)  |  copy
                (piekd-hardcopy); with `best`, skipped while a member has no training return since warm-up
            every eval_every steps: 20 deterministic episodes per member -> eval log
            every checkpoint_every steps: NaN/inf check, then an atomic checkpoint
        at the episode's end: append its return to R_{k_e}

Outputs in ``out``: ``eval.parquet`` (step, member, mean/std of deterministic returns, and per step
which member is best and worst), ``episodes.parquet`` (training episodes), ``phases.parquet``
(distillation phases and elected teachers), ``checkpoint.pt``.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from deep.checkpoint import load_checkpoint, load_frozen_teacher, save_checkpoint
from deep.config import TrainConfig, method_spec, resolve
from deep.distill import Teacher, distill_phase, hardcopy, phase_batch_count, rule_losses
from deep.election import TeacherElection, recent_performance
from deep.envs import env_dims, evaluate_policies, make_env, to_env_action
from deep.kl import squashed_sample
from deep.networks import Ensemble
from deep.replay import ReplayBuffer
from deep.sac import SACLearner, make_adam

__all__ = ["train", "run_cell", "TrainingDiverged", "WARMUP_ACTOR", "TEACHER_ACTOR"]

WARMUP_ACTOR = -2  # transitions collected by uniformly random warm-up actions
TEACHER_ACTOR = -1  # transitions collected by a frozen teacher


class TrainingDiverged(FloatingPointError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


class _Killed(RuntimeError):
    """Raised by ``stop_at`` to simulate a killed process (tests)."""


def _device(name: str) -> torch.device:
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    return device


class _Run:
    """All state of one run (what a checkpoint holds)."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.spec = method_spec(cfg.method)
        self.device = _device(cfg.device)
        from distlab import rules

        self.rule = rules.get(cfg.rule) if cfg.rule else None
        self.np_rng = np.random.default_rng(cfg.seed)
        random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(cfg.seed)
        self.env = make_env(cfg.env)
        self.obs_dim, self.act_dim = env_dims(self.env)
        s = cfg.sac
        self.ens = Ensemble(self.obs_dim, self.act_dim, cfg.widths, s.hidden_layers, s.init_alpha, s.log_std_min, s.log_std_max).to(self.device)
        self.learner = SACLearner(self.ens, s, self.gen, cfg.compile)
        self.buffer = ReplayBuffer(min(s.buffer_size, cfg.steps), self.obs_dim, self.act_dim, self.device)
        self.election = TeacherElection(cfg.election, cfg.k, cfg.seed, cfg.epsilon, cfg.ucb_c)
        self.frozen = None
        if cfg.teacher is not None:
            self.frozen, self.frozen_member = load_frozen_teacher(cfg.teacher, self.device, self.obs_dim, self.act_dim)
        self.dpd_opt = make_adam(self.ens.actor_parameters(), cfg.dpd_lr) if self.spec.peer else None
        self.dpd = dict(weight=cfg.dpd_weight, alpha=cfg.dpd_alpha, clip=cfg.dpd_clip)
        self.step = 0
        self.episode = 0
        self.member_returns: list[list[float]] = [[] for _ in range(cfg.k)]
        self.episode_log: list[dict] = []
        self.eval_log: list[dict] = []
        self.phase_log: list[dict] = []
        self.finite: dict[str, torch.Tensor] = {}  # loss name -> "always finite so far" (device flag)
        self.last_checkpoint_step = None

    # ---------------------------------------------------------------- checkpointing
    def state_dict(self) -> dict:
        opts = {name: opt.state_dict() for name, opt in self.learner.optimizers().items()}
        if self.dpd_opt is not None:
            opts["dpd"] = self.dpd_opt.state_dict()
        return dict(
            config=self.cfg.to_dict(), obs_dim=self.obs_dim, act_dim=self.act_dim, ensemble=self.ens.state_dict(),
            optimizers=opts, buffer=self.buffer.state_dict(), election=self.election.state_dict(),
            rng=dict(numpy=self.np_rng.bit_generator.state, python=random.getstate(), torch=torch.get_rng_state(),
                     device=self.gen.get_state()),
            step=self.step, episode=self.episode, member_returns=self.member_returns,
            episode_log=self.episode_log, eval_log=self.eval_log, phase_log=self.phase_log,
        )

    def load_state_dict(self, state: dict) -> None:
        saved = TrainConfig.from_dict(state["config"])
        mine = self.cfg
        for name in ("env", "method", "k", "seed", "steps", "widths", "rule", "teacher", "election", "distill_mode"):
            if getattr(saved, name) != getattr(mine, name):
                raise ValueError(f"cannot resume: checkpoint has {name}={getattr(saved, name)!r}, this run {getattr(mine, name)!r}")
        self.ens.load_state_dict(state["ensemble"])
        for name, opt in self.learner.optimizers().items():
            opt.load_state_dict(state["optimizers"][name])
        if self.dpd_opt is not None:
            self.dpd_opt.load_state_dict(state["optimizers"]["dpd"])
        self.buffer.load_state_dict(state["buffer"])
        self.election.load_state_dict(state["election"])
        self.np_rng.bit_generator.state = state["rng"]["numpy"]
        random.setstate(state["rng"]["python"])
        torch.set_rng_state(state["rng"]["torch"])
        self.gen.set_state(state["rng"]["device"])
        self.step, self.episode = state["step"], state["episode"]
        self.member_returns = state["member_returns"]
        self.episode_log, self.eval_log, self.phase_log = state["episode_log"], state["eval_log"], state["phase_log"]
        self.last_checkpoint_step = self.step

    # ---------------------------------------------------------------- helpers
    def track(self, losses: dict[str, torch.Tensor]) -> None:
        """Fold the losses' finiteness into device flags, one per loss name (no host sync here)."""
        for name, value in losses.items():
            ok = torch.isfinite(value).all()
            self.finite[name] = ok if name not in self.finite else self.finite[name] & ok

    def check_finite(self) -> None:
        if not self.finite:
            return
        names = list(self.finite)
        flags = torch.stack([self.finite[n] for n in names]).cpu().numpy()  # the one host sync per check
        if not flags.all():
            bad = [n for n, ok in zip(names, flags) if not ok]
            where = (f"the last good checkpoint (step {self.last_checkpoint_step}) is kept in {self.cfg.out}"
                     if self.last_checkpoint_step is not None else "no checkpoint had been written yet")
            raise TrainingDiverged(
                f"the {', '.join(bad)} loss became NaN or inf before env step {self.step} "
                f"({self.cfg.method} on {self.cfg.env}, seed {self.cfg.seed}); training stopped, {where}")

    def acting_policy(self) -> int:
        """Who acts this episode: the frozen teacher for a teacher-controlled every-step rule, else a uniform member."""
        if self.cfg.schedule == "every-step" and self.rule.control == "teacher":
            return TEACHER_ACTOR
        return int(self.np_rng.integers(self.cfg.k))

    def act(self, obs: np.ndarray, actor: int) -> np.ndarray:
        if self.step < self.cfg.sac.warmup_steps:
            return self.np_rng.uniform(-1.0, 1.0, self.act_dim)
        x = torch.as_tensor(np.asarray(obs, np.float32).reshape(1, 1, -1), device=self.device)
        with torch.no_grad():
            if actor == TEACHER_ACTOR:
                mean, log_std = self.frozen.policy(x)
                action = squashed_sample(mean, log_std, self.gen)[0][0, 0]
            else:
                action = self.learner.act(x.expand(self.cfg.k, 1, -1), deterministic=False)[actor, 0]
        return action.cpu().numpy()  # the action must reach the simulator: one sync per env step

    # ---------------------------------------------------------------- updates
    def sac_updates(self, n: int) -> None:
        for _ in range(n):
            self.track(self.learner.update(self.buffer.sample(self.cfg.k, self.cfg.sac.batch_size, self.gen)))

    def rule_step(self) -> None:
        """Every-step schedule: the rule's update replaces SAC's (frozen teacher, all members students)."""
        cfg, ens, lr = self.cfg, self.ens, self.learner
        teacher = Teacher(self.frozen, torch.zeros(cfg.k, dtype=torch.long, device=self.device), self.gen)
        weight = torch.ones(cfg.k, device=self.device)
        batch = self.buffer.sample(cfg.k, cfg.sac.batch_size, self.gen)
        critic_loss, actor_fn = rule_losses(self.rule, ens, teacher, batch, weight, cfg.sac.gamma, self.gen, self.dpd, critic_fallback=True)
        lr.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        lr.critic_opt.step()
        actor_loss, log_prob = actor_fn()
        if actor_loss is not None:
            lr.actor_opt.zero_grad(set_to_none=True)
            actor_loss.backward()
            lr.actor_opt.step()
            self.track({"rule_actor": actor_loss.detach()})
        if log_prob is not None:
            alpha_loss = (-ens.log_alpha[:, None] * (log_prob.detach() + lr.target_entropy)).mean(-1).sum()
            lr.alpha_opt.zero_grad(set_to_none=True)
            alpha_loss.backward()
            lr.alpha_opt.step()
        ens.soft_update_targets(cfg.sac.tau)
        self.track({"rule_critic": critic_loss.detach()})

    def dpd_step(self) -> None:
        """DPD (Lai et al., Alg. 1, lines 5 and 8): each peer distils from the other, gated by xi."""
        from distlab import rules

        cfg = self.cfg
        recent = self.buffer.recent_indices(cfg.dpd_recent)
        idx = recent[torch.randint(0, recent.numel(), (cfg.k, cfg.dpd_batch), device=self.device, generator=self.gen)]
        teacher = Teacher(self.ens, torch.tensor([1, 0], device=self.device), self.gen)
        weight = torch.ones(cfg.k, device=self.device)
        _, actor_fn = rule_losses(rules.get("dpd"), self.ens, teacher, self.buffer.gather(idx), weight, cfg.sac.gamma, self.gen, self.dpd)
        loss, _ = actor_fn()
        self.dpd_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.dpd_opt.step()
        self.track({"dpd": loss.detach()})

    def periodic_phase(self) -> None:
        cfg = self.cfg
        kind = self.spec.periodic
        n = phase_batch_count(cfg.distill_mode, cfg.distill_batches, cfg.distill_epochs, cfg.sac.batch_size, self.buffer.size)
        if kind == "extra":
            self.sac_updates(n)
            self.phase_log.append(dict(step=self.step, kind="extra", teacher=-1, batches=n))
            return
        performance = recent_performance(self.member_returns, cfg.perf_window)
        if self.frozen is None and self.election.strategy == "best" and not np.isfinite(performance).all():
            # "best" ranks the members by R_k; a member without a training episode since warm-up gives no
            # evidence (R_k = -inf), and electing anyway would spread an untrained policy (at distill_start =
            # the end of warm-up no member has one). Skip the phase, and say so in the log. (Random and
            # bandit elections do not rank by R_k and run as scheduled.)
            self.phase_log.append(dict(step=self.step, kind="skipped", teacher=-1, batches=0,
                                       **{f"R_{m}": float(performance[m]) for m in range(cfg.k)}))
            return
        if self.frozen is not None:
            teacher_id, source = TEACHER_ACTOR, self.frozen
            students = list(range(cfg.k))
            teacher_of = torch.zeros(cfg.k, dtype=torch.long, device=self.device)
        else:
            teacher_id = self.election.elect(performance)
            source = self.ens
            students = [m for m in range(cfg.k) if m != teacher_id]
            teacher_of = torch.full((cfg.k,), teacher_id, dtype=torch.long, device=self.device)
        if kind == "hardcopy":
            hardcopy(self.ens, self.learner.optimizers(), teacher_id, students)
            n = 0
        else:
            losses = distill_phase(self.ens, Teacher(source, teacher_of, self.gen), self.rule, self.buffer, students, teacher_id,
                                   mode=cfg.distill_mode, n_batches=cfg.distill_batches, epochs=cfg.distill_epochs,
                                   batch_size=cfg.sac.batch_size, lr=cfg.distill_lr, gamma=cfg.sac.gamma, tau=cfg.sac.tau,
                                   generator=self.gen, dpd=self.dpd)
            for item in losses:
                self.track(item)
        self.phase_log.append(dict(step=self.step, kind=kind, teacher=int(teacher_id), batches=n,
                                   **{f"R_{m}": float(performance[m]) for m in range(cfg.k)}))

    # ---------------------------------------------------------------- evaluation and logs
    def evaluate(self) -> None:
        cfg = self.cfg

        def act_fn(obs):
            x = torch.as_tensor(obs, device=self.device)
            return self.learner.act(x, deterministic=True).cpu().numpy()

        returns = evaluate_policies(act_fn, cfg.env, cfg.k, cfg.eval_episodes, seed=10_000 + 1_000 * cfg.seed)
        means = returns.mean(1)
        for m in range(cfg.k):
            self.eval_log.append(dict(step=self.step, member=m, width=cfg.widths[m], mean_return=float(means[m]),
                                      std_return=float(returns[m].std()), episodes=cfg.eval_episodes,
                                      is_best=bool(m == int(np.argmax(means))), is_worst=bool(m == int(np.argmin(means)))))

    def tables(self) -> dict[str, pd.DataFrame]:
        cfg = self.cfg
        ident = dict(env=cfg.env, method=cfg.method, rule=cfg.rule or "", election=cfg.election, k=cfg.k, seed=cfg.seed)
        out = {}
        for name, rows in (("eval", self.eval_log), ("episodes", self.episode_log), ("phases", self.phase_log)):
            table = pd.DataFrame(rows)
            for key, value in ident.items():
                table[key] = value
            out[name] = table
        return out

    def write_tables(self) -> None:
        if self.cfg.out is None:
            return
        from distlab.io import write_parquet

        for name, table in self.tables().items():
            write_parquet(table, Path(self.cfg.out) / f"{name}.parquet", config=self.cfg.to_dict())

    def checkpoint(self) -> None:
        self.check_finite()
        if self.cfg.out is not None:
            save_checkpoint(self.state_dict(), self.cfg.out)
            self.last_checkpoint_step = self.step


def train(cfg: TrainConfig, *, resume: bool = False, stop_at: int | None = None) -> dict[str, pd.DataFrame]:
    """Train ``cfg`` (see the module docstring); return the tables {"eval", "episodes", "phases"}.

    ``resume``: continue from ``cfg.out/checkpoint.pt`` if it exists (else start fresh) to ``cfg.steps``.
    ``stop_at``: stop abruptly (as if killed) once this many env steps are done; for tests.
    Raises ``ValueError`` for invalid arguments before any work, ``TrainingDiverged`` on NaN/inf losses.
    """
    cfg = resolve(cfg)
    if resume and cfg.out is None:
        raise ValueError("--resume needs --out (the run directory holding checkpoint.pt)")
    run = _Run(cfg)
    if resume and (Path(cfg.out) / "checkpoint.pt").exists():
        run.load_state_dict(load_checkpoint(cfg.out, run.device))
    s = cfg.sac
    from tqdm.auto import tqdm

    bar = tqdm(total=cfg.steps, initial=run.step, disable=not cfg.progress, unit="step",
               desc=f"{cfg.method} {cfg.env} s{cfg.seed}", dynamic_ncols=True, mininterval=1.0)
    obs, _ = run.env.reset(seed=int(run.np_rng.integers(2**31)))
    actor = run.acting_policy()
    episode_start, ep_return, ep_length = run.step, 0.0, 0
    t0, s0 = time.perf_counter(), run.step
    try:
        while run.step < cfg.steps:
            action = run.act(obs, actor)
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
                                            episode_return=ep_return, length=ep_length, terminated=bool(terminated)))
                run.episode += 1
                obs, _ = run.env.reset(seed=int(run.np_rng.integers(2**31)))
                actor = run.acting_policy()
                episode_start, ep_return, ep_length = run.step, 0.0, 0
            if run.step >= s.warmup_steps:
                if cfg.schedule == "every-step":
                    for _ in range(s.updates_per_step):
                        run.rule_step()
                else:
                    run.sac_updates(s.updates_per_step)
                if run.spec.peer:
                    run.dpd_step()
                if (run.spec.periodic != "none" and run.step >= cfg.distill_start and cfg.schedule == "periodic"
                        and (run.step - cfg.distill_start) % cfg.distill_interval == 0):
                    run.periodic_phase()
            if run.step % cfg.nan_check_every == 0:
                run.check_finite()
            if run.step % cfg.eval_every == 0 or run.step == cfg.steps:
                run.check_finite()
                run.evaluate()
                run.write_tables()
                latest = [r["mean_return"] for r in run.eval_log if r["step"] == run.step]
                bar.set_postfix(best=f"{max(latest):.1f}", worst=f"{min(latest):.1f}", refresh=False)
            if run.step % cfg.checkpoint_every == 0 or run.step == cfg.steps:
                run.checkpoint()
            if run.step % 100 == 0 or run.step == cfg.steps:
                bar.update(run.step - bar.n)
                bar.set_description(f"{cfg.method} {cfg.env} s{cfg.seed} {(run.step - s0) / (time.perf_counter() - t0):.0f} steps/s", refresh=False)
            if stop_at is not None and run.step >= stop_at:
                raise _Killed(f"stopped at step {run.step} (stop_at)")
    finally:
        bar.close()
        run.env.close()
    run.write_tables()
    return run.tables()


def run_cell(cell: dict) -> pd.DataFrame:
    """A sweep cell -> its eval table (for ``distlab.runner.run_grid``). Keys are TrainConfig fields
    (``sac.<name>`` for SAC settings); ``out`` is set by the sweep to a per-cell run directory."""
    from deep.config import with_overrides

    cfg = with_overrides(TrainConfig(progress=False), **cell)
    table = train(cfg, resume=cfg.out is not None)["eval"]
    return table.drop(columns=[c for c in cell if c in table.columns])  # the runner adds the cell's own columns
