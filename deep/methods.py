"""The methods of ``distlab train --method``: one table entry each, made of named step functions.

A step function takes the run's state (``deep.state.RunState``) and changes it; the loop in
``deep.train`` calls them in this order at every env step after warm-up:

    update(run)        updates_per_step times: sac_update (SAC, all members) | rule_update (a rule's update
                       from a frozen teacher, every-step schedule)
    peer_step(run)     dpd_step: each DPD peer distils from the other (Lai et al., Alg. 1, lines 5 and 8)
    phase(run, plan)   every I env steps from distill_start: distill_phase (elect a teacher, then N
                       minibatches of plan.phase_step: piekd_distill_step, PIEKD's KL + critic-L2, or a
                       rule_distill_step) | extra_sac_phase (as many SAC updates) | hardcopy_phase

    METHODS = {
        "sac":                  1 member,  sac_update
        "ensemble-sac":         K = 3,     sac_update
        "sac-extra":            1 member,  sac_update, extra_sac_phase
        "ensemble-sac-extra":   K = 3,     sac_update, extra_sac_phase
        "piekd":                K = 3,     sac_update, distill_phase            (Hong et al., Alg. 1)
        "piekd-hardcopy":       K = 3,     sac_update, hardcopy_phase           (Sec. 5.3)
        "piekd-random-teacher": K = 3,     sac_update, distill_phase, random election (Sec. 5.4)
        "dpd":                  K = 2,     sac_update, dpd_step                 (Lai et al., 2020)
    }

:func:`plan_of` turns a resolved config into the :class:`Plan` the loop runs (``--rule`` swaps the
phase's step, a frozen ``--teacher`` with the every-step schedule swaps the update), and
:func:`resolve` checks a config against its method before any work.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import torch

from deep.config import ConfigError, TrainConfig, check_values, parse_widths
from deep.distill import (_ROW_TEACHERS, MemberRules, PhaseContext, Teacher, check_mapping_for_rule, check_rule_supported, control_index_sets,
                          distill_phase, hardcopy, member_rule_losses, phase_batch_count, piekd_distill_step, rule_distill_step,
                          rule_losses, temperature_loss)
from deep.election import recent_performance
from deep.networks import repeat_rows
from deep.rng import randint

__all__ = ["Method", "Plan", "METHODS", "plan_of", "resolve", "method_of", "sac_update", "rule_update", "dpd_step", "learn_step",
           "distill_phase_of_run", "extra_sac_phase", "hardcopy_phase", "WARMUP_ACTOR", "TEACHER_ACTOR",
           "STACKABLE_METHODS", "check_stackable", "stacked_plan_of", "GatheredTeacher", "every_step_rules", "member_rules_of",
           "frozen_teachers", "rule_batch_indices"]

WARMUP_ACTOR = -2  # transitions collected by uniformly random warm-up actions
TEACHER_ACTOR = -1  # transitions collected by a frozen teacher


# ---------------------------------------------------------------------------------------- update steps
def sac_update(run) -> None:
    """One SAC update of every member on its own minibatch of the shared buffer (``deep.sac``)."""
    run.track(run.learner.update(run.buffer.sample(run.cfg.k, run.cfg.sac.batch_size, run.gen)))


def rule_update(run) -> None:
    """Every-step schedule: the rule's update replaces SAC's (frozen teacher, every member a student).

    Critic, actor and temperature steps with SAC's optimizers, then one Polyak step of the targets. The
    rule maps to SAC as ``deep.distill`` says, with the choices of ``cfg.mapping``
    (``deep.config.RuleMapping``). A rule whose actor reads no learned student critic keeps regressing it
    on SAC's target only if its gate reads the student's value (value-gated: V_k); a rule with neither
    (teacher, on-policy; td-teacher-v on the teacher's critic) gets no critic step: that step was ~60 % of
    its update's compute, spent on nothing (on-policy, HalfCheetah, batch 256, one thread: 9.7 -> 3.7 ms
    per update). The temperature takes SAC's step only under ``temperature = "auto"``.

    ``run`` is a single run (one rule, one frozen teacher) or a stack of runs (``deep.seeds``) whose members
    follow different rules from different frozen teachers: ONE batched update in which each member's
    components are per-member data (``deep.distill.MemberRules``, from the registry and the member's
    mapping) and its teacher a row of the stacked frozen teachers (:func:`frozen_teachers`). A member
    without a critic step has critic weight 0 from the first update: zero gradients keep its critic and
    fused Adam's moments at 0 (bit-identical), and the Polyak step of every target, as in the single run,
    leaves its targets equal to its unchanged critic. Only members whose rule ascends a critic under
    ``temperature = "auto"`` step their temperature (the others have weight 0 in its loss).
    """
    cfg, ens, lr = run.cfg, run.ens, run.learner
    table = every_step_rules(run)
    weight = torch.ones(table.k, device=run.device)
    batch = run.buffer.gather(rule_batch_indices(run))
    critic_loss, actor_fn = member_rule_losses(table, ens, frozen_teachers(run), batch, weight, cfg.sac.gamma, run.gen,
                                               _dpd_settings(cfg))
    if critic_loss is not None:
        lr.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        lr.critic_opt.step()
        run.track({"rule_critic": critic_loss.detach()})
    actor_loss, log_prob = actor_fn()
    if actor_loss is not None:
        lr.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        lr.actor_opt.step()
        run.track({"rule_actor": actor_loss.detach()})
    alpha_loss = temperature_loss(table, ens, log_prob, lr.target_entropy)
    if alpha_loss is not None:
        lr.alpha_opt.zero_grad(set_to_none=True)
        alpha_loss.backward()
        lr.alpha_opt.step()
    ens.soft_update_targets(cfg.sac.tau)


def every_step_rules(run) -> MemberRules:
    """The members' rules of ``run``'s every-step update: a stack's own table (``deep.seeds``: each run's rule
    and mapping for its K members), else the run's one rule for its K members."""
    table = getattr(run, "member_rules", None)
    if table is not None:
        return table
    from distlab import rules

    rule = rules.get(run.cfg.rule)
    return MemberRules.uniform(rule, run.cfg.mapping, run.cfg.k, critic_fallback=rule.uses_student_value)


def member_rules_of(configs: list[TrainConfig]) -> MemberRules:
    """:class:`deep.distill.MemberRules` of stacked runs: run s's rule and mapping for its K members."""
    from distlab import rules

    rows = [(rules.get(c.rule), c.mapping) for c in configs for _ in range(c.k)]
    return MemberRules([r for r, _ in rows], [m for _, m in rows], [r.uses_student_value for r, _ in rows])


def frozen_teachers(run) -> Teacher:
    """The frozen teacher of every member: a stack's stacked teachers (``deep.seeds``), else the run's one."""
    teacher = getattr(run, "teacher", None)
    return teacher if teacher is not None else Teacher(run.frozen.ensemble, [0] * run.cfg.k, run.gen)


def rule_batch_indices(run, rule=None) -> torch.Tensor:
    """(K, B) replay indices of a rule's every-step minibatch: uniform over the buffer, except a
    teacher-controlled rule under ``mapping.teacher_warmup = "exclude"``, whose rows are the teacher's
    transitions only (q = pi_t; the uniform warm-up rows never drawn). Same draws as ``buffer.sample``
    otherwise, so the default reproduces earlier runs. A stack (``deep.seeds``) draws run s's K rows from
    its own generator exactly so, in its own block of the stacked buffer."""
    cfg, buf = run.cfg, run.buffer
    runs = getattr(run, "runs", None)
    if runs is not None:
        if not any(_excludes_warmup(r.cfg) for r in runs):
            return buf.sample_indices(cfg.k, cfg.sac.batch_size, run.gen)
        parts = []
        for s, r in enumerate(runs):
            pool = buf.indices_of_actor(s, TEACHER_ACTOR) if _excludes_warmup(r.cfg) else None
            if pool is not None and pool.numel():
                parts.append(pool[randint(pool.numel(), (r.cfg.k, cfg.sac.batch_size), r.gen, run.device)])
            else:
                parts.append(s * buf.capacity + randint(buf.size, (r.cfg.k, cfg.sac.batch_size), r.gen, run.device))
        return torch.cat(parts)
    if _excludes_warmup(cfg, rule):
        pool = buf.indices_of_actor(TEACHER_ACTOR)
        if pool.numel():
            return pool[randint(pool.numel(), (cfg.k, cfg.sac.batch_size), run.gen, run.device)]
    return buf.sample_indices(cfg.k, cfg.sac.batch_size, run.gen)


def _excludes_warmup(cfg: TrainConfig, rule=None) -> bool:
    from distlab import rules

    rule = rules.get(cfg.rule) if rule is None else rule
    return rule.control == "teacher" and cfg.mapping.teacher_warmup == "exclude"


def _dpd_settings(cfg: TrainConfig) -> dict:
    return dict(weight=cfg.dpd_weight, alpha=cfg.dpd_alpha, clip=cfg.dpd_clip)


def dpd_state_indices(run) -> torch.Tensor:
    """(2, dpd_batch) replay indices DPD's peers distil on.

    ``dpd_states="peer"`` (default): peer k distils on states the *other* peer collected (Eq. 11: s ~ the
    peer's policy; the paper's text: "we sample a mini-batch of transitions from the buffer of" the peer),
    among that peer's last ``dpd_recent`` transitions; while the peer has none yet (just after warm-up),
    the last ``dpd_recent`` transitions of anyone. ``"recent"``: the last ``dpd_recent`` transitions of the
    shared buffer for both peers (mostly one actor's, since the acting member changes per episode).
    """
    cfg, buf = run.cfg, run.buffer
    rows = []
    for k in range(2):
        pool = buf.recent_indices_of_actor(1 - k, cfg.dpd_recent) if cfg.dpd_states == "peer" else None
        if pool is None:
            pool = buf.recent_indices(cfg.dpd_recent)
        rows.append(pool[randint(pool.numel(), (cfg.dpd_batch,), run.gen, run.device)])
    return torch.stack(rows)


def dpd_step(run) -> None:
    """DPD (Lai et al., Alg. 1, lines 5 and 8): each peer distils from the other, weighted by xi = V_peer - V_self
    (Eq. 9 indicator or Eq. 11 exp weight; ``deep.distill``), with its own Adam (lr 1e-4, batch 64)."""
    from distlab import rules

    cfg = run.cfg
    teacher = Teacher(run.ens, [1, 0], run.gen)
    weight = torch.ones(cfg.k, device=run.device)
    batch = run.buffer.gather(dpd_state_indices(run))
    _, actor_fn = rule_losses(rules.get("dpd"), run.ens, teacher, batch, weight, cfg.sac.gamma, run.gen, _dpd_settings(cfg),
                              mapping=cfg.mapping)
    loss, _ = actor_fn()
    run.dpd_opt.zero_grad(set_to_none=True)
    loss.backward()
    run.dpd_opt.step()
    run.track({"dpd": loss.detach()})


def learn_step(state, plan) -> None:
    """The method's steps after an env step (``deep.loop.run_loop``, for a single run and for stacked runs alike):
    nothing during warm-up; then ``plan.update`` updates_per_step times, ``plan.peer_step`` (DPD) and, every
    distill_interval env steps from distill_start, ``plan.phase``. ``keep_losses`` asks the update to keep
    its losses for TensorBoard on the NaN-check steps only (where the loop already waits for the device)."""
    cfg = state.cfg
    if state.step < cfg.sac.warmup_steps:
        return
    state.keep_losses = state.tb is not None and state.step % cfg.nan_check_every == 0
    for _ in range(cfg.sac.updates_per_step):
        plan.update(state)
    if plan.peer_step is not None:
        plan.peer_step(state)
    if (plan.phase is not None and state.step >= cfg.distill_start
            and (state.step - cfg.distill_start) % cfg.distill_interval == 0):
        plan.phase(state, plan)
    state.keep_losses = False


# ---------------------------------------------------------------------------------------- phases
def _log_phase(run, kind: str, teacher: int, batches: int, performance=None) -> None:
    row = dict(step=run.step, kind=kind, teacher=int(teacher), batches=int(batches))
    if performance is not None:
        row.update({f"R_{m}": float(performance[m]) for m in range(run.cfg.k)})
    run.phase_log.append(row)


def _phase_size(run) -> int:
    cfg = run.cfg
    return phase_batch_count(cfg.distill_mode, cfg.distill_batches, cfg.distill_epochs, cfg.sac.batch_size, run.buffer.size)


def extra_sac_phase(run, plan) -> None:
    """The *-extra baselines: as many extra SAC updates as a distillation phase has minibatches."""
    n = _phase_size(run)
    for _ in range(n):
        sac_update(run)
    _log_phase(run, "extra", -1, n)


def _elect(run):
    """(teacher member, R_k) for a phase, or None (logged as skipped) while ``best`` has no evidence.

    ``best`` ranks the members by R_k; a member without a training episode since warm-up gives no evidence
    (R_k = -inf), and electing anyway would spread an untrained policy (at distill_start = the end of
    warm-up no member has one). Random and bandit elections do not rank by R_k and run as scheduled.
    """
    performance = recent_performance(run.member_returns, run.cfg.perf_window)
    if run.election.strategy == "best" and not np.isfinite(performance).all():
        _log_phase(run, "skipped", -1, 0, performance)
        return None
    return run.election.elect(performance), performance


def hardcopy_phase(run, plan) -> None:
    """PIEKD (hardcopy), Sec. 5.3: copy the elected teacher's networks, temperature and Adam moments."""
    elected = _elect(run)
    if elected is None:
        return
    teacher, performance = elected
    hardcopy(run.ens, run.learner.optimizers(), teacher, [m for m in range(run.cfg.k) if m != teacher])
    _log_phase(run, "hardcopy", teacher, 0, performance)


def distill_phase_of_run(run, plan) -> None:
    """PIEKD's phase (Alg. 1): elect a teacher t (or take the frozen one), then distil every other member with
    ``plan.phase_step`` on minibatches of the buffer (fresh Adam, lr distill_lr; see ``deep.distill``)."""
    cfg = run.cfg
    if run.frozen is not None:
        teacher_id, source, students, performance = TEACHER_ACTOR, run.frozen.ensemble, list(range(cfg.k)), None
        teacher_of = [0] * cfg.k
    else:
        elected = _elect(run)
        if elected is None:
            return
        teacher_id, performance = elected
        source, students, teacher_of = run.ens, [m for m in range(cfg.k) if m != teacher_id], [teacher_id] * cfg.k
    from distlab import rules

    rule = rules.get(cfg.rule) if cfg.rule else None
    ctx = PhaseContext(run.ens, students, cfg.distill_lr, cfg.sac.gamma, cfg.sac.tau, run.gen, _dpd_settings(cfg),
                       cfg.mapping)
    losses = distill_phase(run.ens, Teacher(source, teacher_of, run.gen), plan.phase_step, run.buffer,
                           control_index_sets(rule, run.buffer, students, teacher_id), ctx, mode=cfg.distill_mode,
                           n_batches=cfg.distill_batches, epochs=cfg.distill_epochs, batch_size=cfg.sac.batch_size)
    for item in losses:
        run.track(item)
    _log_phase(run, "distill", teacher_id, len(losses), performance)


# ---------------------------------------------------------------------------------------- stacked runs (--seeds)
# S independent runs stacked along the member axis (``deep.seeds``): run s owns stacked members
# s K .. s K + K - 1. The update needs no change (``sac_update`` draws each run's minibatch and noise from
# its own generator through ``deep.rng.SeedGenerators``); a phase elects per run (each run has its own
# returns, election and log) and then runs ONE stacked phase in which the students of every run learn.
# A run whose election skipped the phase has weight 0 everywhere and draws no random numbers.

STACKABLE_METHODS = ("sac", "ensemble-sac", "sac-extra", "ensemble-sac-extra", "piekd", "piekd-hardcopy",
                     "piekd-random-teacher")


def check_stackable(cfg: TrainConfig) -> None:
    """ConfigError unless resolved ``cfg`` can run as stacked seeds (``--seeds``), naming what is supported."""
    supported = (f"--seeds supports the methods {', '.join(STACKABLE_METHODS)} (with or without a periodic --rule, "
                 "sampled distillation; a frozen --teacher with a --rule on the every-step schedule); run the others "
                 "one seed at a time with --seed")
    if cfg.method not in STACKABLE_METHODS:
        raise ConfigError(f"--seeds: method {cfg.method!r} is not stacked yet; {supported}")
    if cfg.teacher is not None and cfg.schedule != "every-step":
        raise ConfigError(f"--seeds: a frozen --teacher is stacked only on the every-step schedule, got {cfg.schedule!r}; {supported}")
    if method_of(cfg.method).phase is distill_phase_of_run and cfg.distill_mode != "sampled":
        raise ConfigError(f"--seeds: distill mode {cfg.distill_mode!r} is not stacked yet; {supported}")


class GatheredTeacher(Teacher):
    """The teachers of stacked runs: stacked member ``teacher_of[r]`` teaches row r (each run its own elected
    member). With one width the teacher rows' weights are gathered per row, so the teacher forward costs
    one student forward; with several widths the general path of :class:`deep.distill.Teacher` runs."""

    @torch.no_grad()
    def policy(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.source.grouped:
            return super().policy(obs)
        mean, log_std = self.source.groups[0].actor.forward_rows(obs, self.teacher_of).chunk(2, dim=-1)
        return mean, log_std.clamp(self.source.log_std_min, self.source.log_std_max)

    @torch.no_grad()
    def q(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        if self.source.grouped:
            return super().q(obs, act)
        k, b = obs.shape[:2]
        twins = (2 * self.teacher_of[:, None] + torch.arange(2, device=obs.device)).flatten()
        x = repeat_rows(torch.cat([obs, act], dim=-1), 2)
        return self.source.groups[0].critic.forward_rows(x, twins).view(k, 2, b)


_ROW_TEACHERS.add(GatheredTeacher)


def _stacked_index_sets(rule, buffer, elected, k: int) -> list[torch.Tensor]:
    """Per stacked row, the buffer rows its phase minibatches come from: run s's :func:`control_index_sets`
    (a teacher's own row uses its first student's set, as ``deep.distill`` does); a skipped run's rows
    get its whole buffer (never drawn from)."""
    rows = []
    for s, chosen in enumerate(elected):
        everything = buffer.run_indices(s)
        if chosen is None:
            rows += [everything] * k
            continue
        teacher = chosen[0]
        sets = {}
        for m in range(k):
            if m == teacher:
                continue
            if rule is None:
                sets[m] = everything
                continue
            idx = buffer.indices_of_actor(s, teacher if rule.control == "teacher" else m)
            sets[m] = idx if idx.numel() else everything
        first = next(iter(sets.values()))
        rows += [sets.get(m, first) for m in range(k)]
    return rows


def _stacked_phase_batches(rows: list[torch.Tensor], n_batches: int, batch_size: int, gens):
    """(S K, B) minibatch indices, N times ("sampled" mode): row r drawn from its run's generator in the order
    of a single run (lazily, between the steps, as a single run interleaves them); skipped runs draw nothing."""
    for _ in range(n_batches):
        parts = []
        for r, pool in enumerate(rows):
            gen = gens.of_row(r, len(rows))
            parts.append(pool[:1].expand(batch_size) if gen is None else
                         pool[torch.randint(0, pool.numel(), (batch_size,), device=pool.device, generator=gen)])
        yield torch.stack(parts)


def stacked_distill_phase(stack, plan) -> None:
    """:func:`distill_phase_of_run` for stacked runs: every run elects its own teacher, then one stacked phase."""
    cfg, k = stack.cfg, stack.cfg.k
    elected = [_elect(run) for run in stack.runs]
    active = [chosen is not None for chosen in elected]
    if not any(active):
        return
    teacher_of, students = [], []
    for s, chosen in enumerate(elected):
        if chosen is None:
            teacher_of += [s * k + m for m in range(k)]  # weight 0: taught by itself, changes nothing
            continue
        teacher_of += [s * k + chosen[0]] * k
        students += [s * k + m for m in range(k) if m != chosen[0]]
    from distlab import rules

    rule = rules.get(cfg.rule) if cfg.rule else None
    gens = stack.gen.only(active)
    ctx = PhaseContext(stack.ens, students, cfg.distill_lr, cfg.sac.gamma, cfg.sac.tau, gens, _dpd_settings(cfg),
                       cfg.mapping)
    teacher = GatheredTeacher(stack.ens, teacher_of, gens)
    batches = _stacked_phase_batches(_stacked_index_sets(rule, stack.buffer, elected, k), cfg.distill_batches,
                                     cfg.sac.batch_size, gens)
    losses = [plan.phase_step(stack.ens, teacher, stack.buffer.gather(idx), ctx) for idx in batches]
    stack.ens.soft_update_member_targets(cfg.sac.tau, students)
    for item in losses:
        stack.track(item)
    for run, chosen in zip(stack.runs, elected):
        if chosen is not None:
            _log_phase(run, "distill", chosen[0], len(losses), chosen[1])


def stacked_hardcopy_phase(stack, plan) -> None:
    """:func:`hardcopy_phase` for stacked runs: each run copies its elected teacher into its other members."""
    k = stack.cfg.k
    for s, run in enumerate(stack.runs):
        elected = _elect(run)
        if elected is None:
            continue
        teacher, performance = elected
        hardcopy(stack.ens, stack.learner.optimizers(), s * k + teacher, [s * k + m for m in range(k) if m != teacher])
        _log_phase(run, "hardcopy", teacher, 0, performance)


def stacked_extra_phase(stack, plan) -> None:
    """:func:`extra_sac_phase` for stacked runs (their buffers have one size: one count for all)."""
    n = _phase_size(stack)
    for _ in range(n):
        sac_update(stack)
    for run in stack.runs:
        _log_phase(run, "extra", -1, n)


STACKED_PHASES = {distill_phase_of_run: stacked_distill_phase, hardcopy_phase: stacked_hardcopy_phase,
                  extra_sac_phase: stacked_extra_phase}


def stacked_plan_of(cfg: TrainConfig) -> Plan:
    """The :class:`Plan` of stacked runs of resolved ``cfg`` (``check_stackable`` first)."""
    check_stackable(cfg)
    plan = plan_of(cfg)
    return replace(plan, phase=STACKED_PHASES[plan.phase] if plan.phase is not None else None)


# ---------------------------------------------------------------------------------------- the table
@dataclass(frozen=True)
class Method:
    """One ``--method``: its default ensemble size, K constraint and step functions (module docstring)."""

    default_k: int
    update: Callable = sac_update
    peer_step: Callable | None = None
    phase: Callable | None = None
    members: str = "any"  # "one" (a single agent), "two" (DPD's peers), "any"
    election: str | None = None  # forced election strategy
    summary: str = ""


METHODS: dict[str, Method] = {
    "sac": Method(1, members="one", summary="SAC (Haarnoja et al., 2018b)"),
    "ensemble-sac": Method(3, summary="K independent SAC members sharing one replay buffer"),
    "sac-extra": Method(1, phase=extra_sac_phase, members="one", summary="SAC + as many extra updates as a phase"),
    "ensemble-sac-extra": Method(3, phase=extra_sac_phase, summary="ensemble SAC + extra updates"),
    "piekd": Method(3, phase=distill_phase_of_run, summary="PIEKD (Hong et al., Alg. 1)"),
    "piekd-hardcopy": Method(3, phase=hardcopy_phase, summary="PIEKD with parameter copies (Sec. 5.3)"),
    "piekd-random-teacher": Method(3, phase=distill_phase_of_run, election="random", summary="PIEKD, random teacher (Sec. 5.4)"),
    "dpd": Method(2, peer_step=dpd_step, members="two", summary="dual policy distillation (Lai et al., 2020)"),
}


@dataclass(frozen=True)
class Plan:
    """What the loop runs for one resolved config."""

    update: Callable
    peer_step: Callable | None
    phase: Callable | None
    phase_step: Callable | None
    teacher_acts: bool  # a frozen teacher collects the data (teacher-controlled rule, every-step schedule)


def method_of(name: str) -> Method:
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; valid methods: {', '.join(METHODS)}")
    return METHODS[name]


def plan_of(cfg: TrainConfig) -> Plan:
    """The step functions of resolved ``cfg``: the method's, with ``--rule`` / ``--teacher`` swapped in."""
    from distlab import rules

    method = method_of(cfg.method)
    rule = rules.get(cfg.rule) if cfg.rule else None
    if cfg.schedule == "every-step":  # a rule from a frozen teacher at every gradient step, no phases
        return Plan(rule_update, method.peer_step, None, None, teacher_acts=rule.control == "teacher")
    phase_step = None
    if method.phase is distill_phase_of_run:
        phase_step = rule_distill_step(rule) if rule is not None else piekd_distill_step
    return Plan(method.update, method.peer_step, method.phase, phase_step, teacher_acts=False)


def resolve(cfg: TrainConfig) -> TrainConfig:
    """Fill the method's defaults and check every argument, before any work starts (ConfigError).

    Checks: values (``deep.config.check_values``), env exists (gymnasium registry), method, K >= 1 (K = 1 for
    single-agent methods, K = 2 for dpd, K >= 2 for elected teachers), rule (registry, and every component
    mapped to SAC), election, widths and schedules.
    """
    from distlab import rules

    from deep.envs import check_env_id

    cfg = replace(cfg, widths=parse_widths(cfg.widths))
    check_values(cfg)
    method = method_of(cfg.method)
    try:
        check_env_id(cfg.env)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    k = method.default_k if cfg.k is None else cfg.k
    if k < 1:
        raise ConfigError(f"k must be >= 1 (ensemble size); got {k}")
    if method.members == "one" and k != 1:
        raise ConfigError(f"method {cfg.method!r} is a single agent: k must be 1, got {k} (use ensemble-{cfg.method})")
    if method.members == "two" and k != 2:
        raise ConfigError(f"method 'dpd' distils between two peers: k must be 2, got {k}")
    if method.election and cfg.election not in ("best", method.election):
        raise ConfigError(f"method {cfg.method!r} fixes the election to {method.election!r}; got --election {cfg.election!r}")
    election = method.election or cfg.election
    distills = method.phase is distill_phase_of_run
    if cfg.rule is not None:
        try:
            rule = rules.get(cfg.rule)
            check_rule_supported(rule)
            check_mapping_for_rule(rule, cfg.mapping)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        if not distills:
            raise ConfigError(f"--rule applies to the distillation step of piekd / piekd-random-teacher; method {cfg.method!r} has none")
    if cfg.teacher is not None and not distills:
        raise ConfigError(f"--teacher applies to piekd (distil from a frozen teacher); method {cfg.method!r} has no distillation step")
    if method.phase in (distill_phase_of_run, hardcopy_phase) and cfg.teacher is None and k < 2:
        raise ConfigError(f"method {cfg.method!r} elects a teacher among the members: k must be >= 2, got {k} (or give a frozen --teacher)")
    schedule = cfg.schedule
    if schedule == "auto":
        schedule = "every-step" if (cfg.teacher is not None and cfg.rule is not None) else "periodic"
    if schedule == "every-step" and cfg.rule is None:
        raise ConfigError("schedule 'every-step' needs a --rule (PIEKD's own step is periodic)")
    if schedule == "every-step" and cfg.teacher is None:
        raise ConfigError("schedule 'every-step' distils from a frozen --teacher; an elected member needs 'periodic'")
    widths = cfg.widths if cfg.widths is not None else (cfg.sac.width,) * k
    if len(widths) == 1 and k > 1:
        widths = widths * k
    if len(widths) != k:
        raise ConfigError(f"widths must give one positive width per member (k = {k}); got {cfg.widths}")
    if method.phase is hardcopy_phase and len(set(widths)) > 1:
        raise ConfigError(f"piekd-hardcopy copies parameters: all widths must be equal; got {widths}")
    return replace(cfg, k=k, widths=widths, election=election, schedule=schedule)
