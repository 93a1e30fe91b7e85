"""Distillation steps inside ensemble SAC: PIEKD's step, the taxonomy rules of ``distlab.rules``, DPD.

Every step is computed for all K members at once; a per-member weight w_k (1 for students, 0 for the
teacher and for members that do not learn) multiplies each member's loss, so non-students get exactly
zero gradient. Members of one every-step update may follow different rules from different teachers: each
rule component below is then per-member data (:class:`MemberRules`, derived from the registry and each
member's ``RuleMapping``); one rule for every member is the special case, computed operation for operation
as before.

PIEKD's step (Hong et al., Eqs. 1-2), the default of ``--method piekd``:

    L_pi = E_{s~D} KL(pi_t(.|s) || pi_k(.|s))           (closed form, deep.kl)
    L_Q  = E_{(s,a)~D} sum_j (Q_t,j(s,a) - Q_k,j(s,a))^2  (twin critics matched pairwise)

A taxonomy rule (Czarnecki et al., 2019, Eq. 1 and Table 1) as a SAC update of the student
-----------------------------------------------------------------------------------------
SAC's reparameterised actor gradient through a learned critic plays the role of Eq. 1's score-function
term ``-grad log pi_theta(a|s) * Rhat``: the critic estimates the return of the rule's reward. A rule's
components map to SAC as follows (``pi_t`` teacher, ``pi_k`` student, ``V_x(s) = min_j Q_x,j(s,a) -
alpha_x log pi_x(a|s), a ~ pi_x(s)``, one sample):

* control q (which data the losses and targets are evaluated on):
  ``"teacher"``: transitions the teacher collected; ``"student"``: transitions the student collected.
  With an elected teacher (periodic schedule) these are the replay transitions whose recorded ``actor``
  is that member (the whole buffer if it has none yet); with a frozen teacher (every-step schedule) q is
  who *acts* in the environment: the teacher for control ``"teacher"``, the members otherwise.
* loss l(pi_t(s), pi_k(s)) added to the actor loss, weighted by the gate:
  ``"kl"`` KL(pi_t || pi_k) closed form; ``"hx"`` = KL + H(pi_t) (H by one teacher sample; same
  gradient as KL); ``"reverse-kl"`` KL(pi_k || pi_t) closed form; ``"reverse-hx"`` = -E_{a~pi_k} log
  pi_t(a|s) (one reparameterised student sample); ``"mse-logits"`` 1/2 ||mean_k - mean_t||^2 + 1/2
  ||log_std_k - log_std_t||^2 (the Gaussian's parameters are its "logits"); ``"nll-argmax"``
  -log pi_k(tanh(mean_t) | s) (the teacher's deterministic action).
* reward rhat(s, a, s') added to the critic target y = c_env r + rhat + gamma (1 - term) B(s'):
  ``"log-teacher"`` log pi_t(a|s) of the replay action; ``"neg-next-loss"`` -(1 - term) l(pi_t(s'),
  pi_k(s')) (l = the rule's loss); ``"log-teacher-next"`` (1 - term) log pi_t(a'|s'), a' ~ pi_k(s');
  ``"teacher-v-shaping"`` gamma (1 - term) V_t(s') - V_t(s) (discounted potential shaping).
* score: ``"return"`` B = V_k(s') (the student's target critics: SAC); ``"td-teacher-v"`` B = V_t(s')
  (bootstrap from the teacher's value, Sec. 4.1); ``"td-v0"`` B = 0. The td scores weight the score by
  ``r_t + V(s_{t+1})``, so c_env = 1 for them. Their critic is the student's, learned on that target
  (``mapping.td_critic = "learned"``), or the teacher's own min_j Q_t,j (``"teacher"``: the fixed point of
  the same regression, given). Their "+r" adds the rl direction (the student's own SAC target); with one
  learned critic (``mapping.td_plus_r = "average"``) distlab trains on the averaged bootstrap
  B = (V_t(s') + V_k(s')) / 2, which is NOT the two directions added: the critic's fixed point is
  Q = r + gamma V_t / 2 + gamma V_Q / 2, so the student's own value is discounted at gamma / 2.
  ``"separate"`` keeps one critic per direction (the teacher's Q_t and the student's SAC critic on
  r + gamma V_k) and the actor ascends their mean: the two directions added, up to a factor 2.
* env_reward ("+R"): c_env = 1.
* weights (``deep.config.RuleMapping``): the loss enters the actor loss times ``loss_weight``, rhat the
  critic target times ``reward_weight``, r times ``env_reward_weight`` (c_env); all 1 by default (Eq. 1).
* temperature: the student's alpha in every value and actor term of a rule is its own, tuned by SAC
  (``temperature = "auto"``), kept at ``sac.init_alpha`` (``"fixed"``) or 0 (``"none"``: Table 1's
  objective, no student-entropy term). n-distill's reward uses the rule's loss (Hx, Table 1) or its KL
  (``nd_correction = "kl"``: without the teacher's entropy at s').
* gate w(s) multiplying the loss: ``"value"`` 1[V_t(s) > V_k(s)] (Prop. 2; soft values, or hard ones
  min_j Q_j(s, a) under ``mapping.value_gate = "hard"``); ``"dpd"`` with xi = V_t(s) -
  V_k(s): 1[xi > 0] (DPD Eq. 9) or exp(alpha xi) clipped above at ``dpd_clip`` and divided by its batch
  mean. The paper's Eq. 11 weights by exp(alpha xi) alone (no clipping, no normalisation); the public DPD
  code (dpd_ddpg/ddpg.py) clips exp(alpha (Q_peer - Q_self)) to [0.01, 100] and divides by the batch
  *sum*; distlab clips above only and divides by the batch mean (the sum times the batch size, so the
  loss keeps the scale of an unweighted mean).

The student's actor loss is ``[rl] (alpha log pi_k(a~|s) - Q(s, a~)) + loss_weight w(s) l(s)`` (Q: the
critic the actor ascends, :func:`actor_critic`; min_j Q_k,j by default) where
[rl] = 1 when the critic carries a return (c_env = 1 or rhat != 0); otherwise the rule is pure imitation
(the actor follows only the loss, e.g. ``teacher``, ``on-policy``, ``value-gated``). The critic regresses
on y when [rl]; otherwise, under the every-step schedule it keeps learning SAC's target (the value gate
needs V_k), and under the periodic schedule it is left alone. The temperature is not changed by a
periodic phase.

Per rule (Table 1), therefore: ``teacher``: imitate (KL/Hx) on teacher-collected states.
``on-policy``: the same on student-collected states. ``entropy-regularised``: critic target log
pi_t(a|s), actor = SAC on that critic. ``n-distill``: Hx loss + critic target -Hx at s'.
``expected-entropy``: reverse cross-entropy loss + critic target log pi_t(a'|s'). ``value-gated``:
gated Hx imitation. ``teacher-v-reward``: SAC with shaped reward r + gamma V_t(s') - V_t(s).
``td-teacher-v``: SAC whose critic bootstraps from V_t. ``td-v0``: critic target r. ``rl``: SAC.
``dpd``: DPD-gated Hx imitation. ``X+r``: the same plus the environment reward.
"""

from __future__ import annotations

import functools

import torch

from deep.config import RuleMapping
from deep.kl import gaussian_kl, gaussian_log_prob, squashed_log_prob, squashed_sample, tanh_log_det
from deep.networks import Ensemble, repeat_rows
from deep.replay import Batch, ReplayBuffer
from deep.rng import SeedGenerators, normal, randint
from deep.sac import critic_regression_loss, make_adam, sac_actor_terms, sac_critic_target, soft_value

__all__ = ["Teacher", "policy_loss", "check_rule_supported", "piekd_losses", "rule_losses", "distill_phase",
           "rule_critic_target", "actor_critic", "check_mapping_for_rule", "student_alpha", "next_loss_name",
           "piekd_distill_step", "rule_distill_step", "PhaseContext", "phase_batch_count", "hardcopy",
           "control_index_sets", "SUPPORTED_COMPONENTS", "MemberRules", "member_rule_losses", "members_critic_target",
           "temperature_loss", "restricted"]

# The components of distlab.rules this backend maps to SAC (see the module docstring).
SUPPORTED_COMPONENTS = {
    "control": ("teacher", "student"),
    "loss": ("none", "hx", "reverse-hx", "kl", "reverse-kl", "mse-logits", "nll-argmax"),
    "reward": ("none", "log-teacher", "neg-next-loss", "log-teacher-next", "teacher-v-shaping"),
    "score": ("return", "td-teacher-v", "td-v0"),
    "gate": ("none", "value", "dpd"),
}


def check_rule_supported(rule) -> None:
    """ValueError naming every component of ``rule`` that has no SAC mapping here."""
    bad = [f"{field}={getattr(rule, field)!r}" for field, ok in SUPPORTED_COMPONENTS.items() if getattr(rule, field) not in ok]
    if bad:
        raise ValueError(f"rule {rule.name!r} uses component(s) the deep backend does not implement: {', '.join(bad)}; "
                         f"supported: " + "; ".join(f"{f}: {', '.join(v)}" for f, v in SUPPORTED_COMPONENTS.items()))


class Teacher:
    """The teacher of each student: member ``teacher_of[k]`` of ``source`` teaches student k.

    ``source`` is the ensemble itself (elected member, DPD peers) or a frozen 1-member Ensemble (an
    exported teacher; ``teacher_of`` all 0). Everything is evaluated without gradient on the students'
    own states (K, B). Only the teaching members run: one teacher for every student (PIEKD, a frozen
    teacher) runs that member alone on the K*B states; peers teaching each other (DPD, a permutation)
    run the ensemble once on permuted inputs; any other assignment runs the source on all K*B states.
    """

    def __init__(self, source: Ensemble, teacher_of, generator: torch.Generator):
        self.source, self.gen = source, generator
        self.assignment = [int(t) for t in (teacher_of.tolist() if torch.is_tensor(teacher_of) else teacher_of)]
        device = next(source.parameters()).device
        self.teacher_of = torch.tensor(self.assignment, dtype=torch.long, device=device)
        k = len(self.assignment)
        self.single = self.assignment[0] if len(set(self.assignment)) == 1 else None
        self.permutation = self.single is None and source.k == k and sorted(self.assignment) == list(range(k))
        if self.permutation:
            inverse = [0] * k
            for student, teacher in enumerate(self.assignment):
                inverse[teacher] = student
            self.inverse = torch.tensor(inverse, dtype=torch.long, device=device)
        self.cols = torch.arange(k, device=device)

    def _flat(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(1, -1, x.shape[-1])

    @torch.no_grad()
    def policy(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, b = obs.shape[:2]
        if self.single is not None:
            mean, log_std = self.source.member_policy(self.single, self._flat(obs))
            return mean.view(k, b, -1), log_std.view(k, b, -1)
        if self.permutation:
            mean, log_std = self.source.policy(obs[self.inverse])
            return mean[self.teacher_of], log_std[self.teacher_of]
        x = self._flat(obs).expand(self.source.k, -1, -1)
        mean, log_std = self.source.policy(x)
        a = mean.shape[-1]
        return mean.view(-1, k, b, a)[self.teacher_of, self.cols], log_std.view(-1, k, b, a)[self.teacher_of, self.cols]

    @torch.no_grad()
    def q(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """Teacher twin Q-values (K, 2, B)."""
        return self.q_differentiable(obs, act)

    def q_differentiable(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """:meth:`q` with the graph kept, so that a student's actor can ascend the teacher's critic through its
        action (``RuleMapping.td_critic = "teacher"``); the teacher's parameters are never stepped by it."""
        k, b = obs.shape[:2]
        if self.single is not None:
            q = self.source.member_q(self.single, self._flat(obs), self._flat(act))  # (1, 2, K*B)
            return q.view(2, k, b).transpose(0, 1)
        if self.permutation:
            return self.source.q(obs[self.inverse], act[self.inverse])[self.teacher_of]
        q = self.source.q(self._flat(obs).expand(self.source.k, -1, -1), self._flat(act).expand(self.source.k, -1, -1))
        return q.view(-1, 2, k, b)[self.teacher_of, :, self.cols]

    @torch.no_grad()
    def alpha(self) -> torch.Tensor:
        return self.source.log_alpha.exp()[self.teacher_of]

    @torch.no_grad()
    def value(self, obs: torch.Tensor, soft=True, generator=None) -> torch.Tensor:
        """V_t(s) = min_j Q_t,j(s, a) - alpha_t log pi_t(a|s), a ~ pi_t(s); (K, B). ``soft=False``: the hard
        value min_j Q_t,j(s, a) of the same sample (no entropy term); a (K,) bool tensor chooses per row.
        ``generator``: where the sample comes from (default the teacher's; a rule update of stacked members
        passes its runs' generators, restricted to the rows that need the value: ``MemberRules``)."""
        mean, log_std = self.policy(obs)
        act, log_prob = squashed_sample(mean, log_std, self.gen if generator is None else generator)
        value = self.q(obs, act).min(dim=1).values
        if torch.is_tensor(soft):
            return torch.where(soft[:, None], value - self.alpha()[:, None] * log_prob, value)
        return value - self.alpha()[:, None] * log_prob if soft else value


# teachers that can be split by rows (``Teacher(source, assignment[rows], ...)``); deep.methods adds GatheredTeacher
_ROW_TEACHERS: set = {Teacher}


def policy_loss(name: str, t_mean, t_log_std, s_mean, s_log_std, generator: torch.Generator) -> torch.Tensor:
    """The per-state loss l(pi_t(s), pi_k(s)) named ``name`` (see the module docstring); (K, B)."""
    if name == "none":
        return torch.zeros(s_mean.shape[:-1], device=s_mean.device)
    if name == "kl":
        return gaussian_kl(t_mean, t_log_std, s_mean, s_log_std)
    if name == "hx":
        with torch.no_grad():
            _, t_log_prob = squashed_sample(t_mean, t_log_std, generator)
        return gaussian_kl(t_mean, t_log_std, s_mean, s_log_std) - t_log_prob
    if name == "reverse-kl":
        return gaussian_kl(s_mean, s_log_std, t_mean, t_log_std)
    if name == "reverse-hx":
        noise = normal(s_mean.shape, generator, s_mean.device)  # deep.rng: also stacked runs' generators
        u = s_mean + torch.exp(s_log_std) * noise  # a = tanh(u), so atanh(a) = u exactly
        return -(gaussian_log_prob(u, t_mean, t_log_std) - tanh_log_det(u))
    if name == "mse-logits":
        return 0.5 * ((s_mean - t_mean).square().sum(-1) + (s_log_std - t_log_std).square().sum(-1))
    if name == "nll-argmax":
        return -(gaussian_log_prob(t_mean, s_mean, s_log_std) - tanh_log_det(t_mean))
    raise ValueError(f"unknown loss {name!r}; valid: {', '.join(SUPPORTED_COMPONENTS['loss'])}")


def piekd_losses(ens: Ensemble, teacher: Teacher, batch: Batch, weight: torch.Tensor):
    """PIEKD Eqs. 1-2: (policy KL loss, critic L2 loss), each summed over members with ``weight``."""
    t_mean, t_log_std = teacher.policy(batch.obs)
    s_mean, s_log_std = ens.policy(batch.obs)
    actor_loss = (weight * gaussian_kl(t_mean, t_log_std, s_mean, s_log_std).mean(-1)).sum()
    critic_loss = critic_regression_loss(ens.q(batch.obs, batch.act), teacher.q(batch.obs, batch.act), weight)
    return actor_loss, critic_loss


def student_alpha(ens: Ensemble, mapping) -> torch.Tensor:
    """The student's temperature (K,) in a rule's values and actor: its own (auto, fixed) or 0 (none).
    ``mapping``: one ``RuleMapping`` for every member, or a :class:`MemberRules` (each member its own)."""
    modes = mapping.temperature if isinstance(mapping, MemberRules) else (mapping.temperature,)
    none = [mode == "none" for mode in modes]
    if all(none):
        return torch.zeros_like(ens.log_alpha)
    if not any(none):
        return ens.log_alpha.exp()
    return torch.where(_rows_mask(none, ens.log_alpha.device), 0.0, ens.log_alpha.exp())


# ---------------------------------------------------------------------------------------- rules as data
def _rows_mask(rows, device) -> torch.Tensor:
    """A (K,) bool tensor of ``rows`` on ``device``, made once per pattern (cached: a host->device copy at every
    update would make a CUDA update wait for the host). Never modified in place by its users."""
    return _cached_tensor(tuple(bool(r) for r in rows), torch.bool, str(device))


@functools.lru_cache(maxsize=512)
def _cached_tensor(values: tuple, dtype, device: str) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype, device=device)


def restricted(generator, rows):
    """``generator`` drawing only for the members flagged in ``rows`` (the others draw nothing and get zeros).

    All rows: the generator itself. Stacked runs (``deep.rng.SeedGenerators``): the runs whose rows are
    flagged (a run's members share its rule, so its rows are all flagged or none). A single generator serves
    only all rows (one run follows one rule): ValueError otherwise."""
    rows = list(rows)
    if all(rows):
        return generator
    if isinstance(generator, SeedGenerators):
        per = generator.rows_per_run(len(rows))
        active = []
        for s, on in enumerate(generator.active):
            block = rows[s * per:(s + 1) * per]
            if len(set(block)) > 1:
                raise ValueError(f"the members {s * per}..{(s + 1) * per - 1} of stacked run {s} follow different "
                                 "rules; every member of one run follows the run's rule")
            active.append(on and block[0])
        return generator.only(active)
    raise ValueError("members that follow different rules need one generator per run (deep.rng.SeedGenerators); "
                     f"got one {type(generator).__name__} for rows {rows}")


def _per_kind(kinds, compute: dict, like: torch.Tensor, generator=None, default: float = 0.0):
    """Row k of ``compute[kinds[k]](g)`` (``default`` for a kind without an entry), each kind evaluated once,
    on every row, with ``g`` = ``generator`` restricted to that kind's rows (:func:`restricted`; None when no
    generator is given: a selection that draws nothing). One kind for every member: that kind's value itself
    (a single rule's update, operation for operation)."""
    distinct = list(dict.fromkeys(kinds))
    if len(distinct) == 1:
        fn = compute.get(distinct[0])
        return default if fn is None else fn(generator)
    out = torch.full_like(like, default)
    for kind in distinct:
        fn = compute.get(kind)
        if fn is None:
            continue
        rows = [x == kind for x in kinds]
        value = fn(None if generator is None else restricted(generator, rows))
        out = torch.where(_rows_mask(rows, like.device)[:, None], value, out)
    return out


# ``RuleMapping.nd_correction = "kl"``: a cross-entropy loss in the next-state reward becomes its KL (the same
# minus the teacher's entropy, which the student's actions do not change).
KL_OF_CROSS_ENTROPY = {"hx": "kl", "reverse-hx": "reverse-kl"}


def next_loss_name(rule, mapping: RuleMapping) -> str:
    """The loss l in the reward -l(pi_t(s'), pi_k(s')) (``neg-next-loss``): the rule's own (Hx if it has none),
    or its KL under ``nd_correction = "kl"``."""
    name = rule.loss if rule.loss != "none" else "hx"
    return KL_OF_CROSS_ENTROPY.get(name, name) if mapping.nd_correction == "kl" else name


def _reward_kind(rule, mapping: RuleMapping) -> str:
    """The rule's reward component with the choice it depends on (``neg-next-loss:LOSS``)."""
    return f"neg-next-loss:{next_loss_name(rule, mapping)}" if rule.reward == "neg-next-loss" else rule.reward


def _bootstrap_kind(rule, mapping: RuleMapping) -> str:
    """B(s') of :func:`rule_critic_target`: the student's own target value (``return`` score, or the return
    direction under ``td_plus_r = "separate"``), the teacher's value or 0 (td scores), averaged with the
    student's (``+student``) for "+r" on a td score with one critic (``td_plus_r = "average"``)."""
    if rule.score == "return" or (rule.env_reward and mapping.td_plus_r == "separate"):
        return "student"
    td = "teacher" if rule.score == "td-teacher-v" else "zero"
    return td + "+student" if rule.env_reward else td


class MemberRules:
    """The rule of every member of one batched update as per-member data, derived from the registry.

    Member k follows ``rules[k]`` (a ``distlab.rules.Rule``) with the choices ``mappings[k]``
    (``deep.config.RuleMapping``); ``critic_fallback[k]``: regress its critic on SAC's target when its actor
    reads no learned critic (``rule_update``: a gate that reads V_k). Each component of the module docstring
    becomes one entry per member, computed from the rule's fields by the functions a single rule uses
    (:func:`actor_critic`, :func:`next_loss_name`, ...), never restated:

    * ``critic``: ``"rule"`` (regress on :func:`rule_critic_target`'s y), ``"sac"`` (SAC's y = r + gamma V_k(s'):
      c_env 1, no reward, the student's bootstrap) or None (no critic step: weight 0 from the first update, so
      its critic and Adam moments never move, and its targets, Polyak-averaged towards an equal critic, neither);
    * ``c_env``, ``reward_weight``, ``loss_weight``: the coefficients of y = c_env r + w_rhat rhat + gamma (1 -
      term) B(s') and of the loss; ``boot``: B's kind (:func:`_bootstrap_kind`); ``reward``: rhat's kind;
    * ``actor``: the critic the actor ascends (none, student, teacher, mean); ``loss``; ``gate`` (none when the
      rule has no loss: the gate weights the loss) and ``soft_gate``; ``temperature``; ``alpha_step``: whether
      the temperature takes SAC's step (``auto`` and an actor that ascends a critic, whose log pi it reads).

    The batched update evaluates each component once, on the rows of the members that use it (their
    weights gathered from the stacked networks, ``_Rows``: a component costs what those members' own updates
    spend on it, not K members' worth; measured by ``distlab bench deep``, ``rules_update_stacked``), in the
    single rule's order (bootstrap: teacher's value then the student's; reward; critic; actor terms; gate:
    teacher then student; loss), drawing random numbers only for those rows (:func:`restricted`): every run
    of a stack draws exactly what it draws alone. When every member follows one rule the entries collapse to that rule's Python numbers
    and the update is the single rule's, operation for operation (bit-identical).
    """

    def __init__(self, rules, mappings, critic_fallback=False, *, rule_target: bool = False):
        self.rules, self.mappings = tuple(rules), tuple(mappings)
        k = self.k = len(self.rules)
        if len(self.mappings) != k:
            raise ValueError(f"{len(self.mappings)} mappings for {k} members")
        fallback = tuple(critic_fallback) if isinstance(critic_fallback, (list, tuple)) else (bool(critic_fallback),) * k
        if len(fallback) != k:
            raise ValueError(f"{len(fallback)} critic_fallback flags for {k} members")
        pairs = list(zip(self.rules, self.mappings))
        self.actor = tuple(actor_critic(r, m) for r, m in pairs)
        self.critic = tuple("rule" if (a in ("student", "mean") or rule_target) else ("sac" if f else None)
                            for a, f in zip(self.actor, fallback))
        rule_rows = [(r, m, c) for (r, m), c in zip(pairs, self.critic)]
        self.c_env = tuple((m.env_reward_weight if (r.env_reward or r.score != "return") else 0.0) if c == "rule"
                           else (1.0 if c == "sac" else 0.0) for r, m, c in rule_rows)
        self.boot = tuple(_bootstrap_kind(r, m) if c == "rule" else ("student" if c == "sac" else "zero") for r, m, c in rule_rows)
        self.reward = tuple(_reward_kind(r, m) if c == "rule" else "none" for r, m, c in rule_rows)
        self.reward_weight = tuple(m.reward_weight for m in self.mappings)
        self.loss = tuple(r.loss for r in self.rules)
        self.loss_weight = tuple(m.loss_weight for m in self.mappings)
        self.gate = tuple(r.gate if r.loss != "none" else "none" for r in self.rules)
        self.soft_gate = tuple(m.value_gate == "soft" for m in self.mappings)
        self.temperature = tuple(m.temperature for m in self.mappings)
        self.alpha_step = tuple(a != "none" and m.temperature == "auto" for a, m in zip(self.actor, self.mappings))
        self.fallback, self.rule_target = fallback, rule_target
        self._views: dict = {}

    def subset(self, rows: list[int]) -> MemberRules:
        """The table of members ``rows`` only."""
        return MemberRules([self.rules[i] for i in rows], [self.mappings[i] for i in rows], [self.fallback[i] for i in rows],
                           rule_target=self.rule_target)

    @classmethod
    def uniform(cls, rule, mapping: RuleMapping, k: int, critic_fallback: bool = False) -> MemberRules:
        """Every one of ``k`` members follows ``rule`` with ``mapping``."""
        return cls((rule,) * k, (mapping,) * k, critic_fallback)

    def coefficient(self, values, device):
        """The per-member numbers ``values`` as the single rule's Python number when they are all equal (so a
        single rule's update multiplies as it always did), else a (K, 1) tensor."""
        if len(set(values)) == 1:
            return values[0]
        return _cached_tensor(tuple(float(v) for v in values), torch.float32, str(device))[:, None]

    @property
    def uniform_rule(self) -> bool:
        return len(set(zip(self.rules, self.mappings))) == 1


class _Rows:
    """Members ``index`` (a long tensor) of a single-width ``Ensemble`` as an ensemble of their own: every layer's
    weights gathered per row (the gradient flows back into the stacked parameters, 0 for the other rows), so a
    component that only some members use runs on those members only."""

    def __init__(self, ens, index: torch.Tensor):
        base = ens.base if isinstance(ens, _Rows) else ens
        self.base, self.index = base, (ens.index[index] if isinstance(ens, _Rows) else index)
        self.k, self.grouped, self.obs_dim, self.act_dim = len(self.index), False, base.obs_dim, base.act_dim
        self.twins = (2 * self.index[:, None] + torch.arange(2, device=self.index.device)).flatten()

    @property
    def log_alpha(self) -> torch.Tensor:
        return self.base.log_alpha[self.index]

    def policy(self, obs: torch.Tensor):
        mean, log_std = self.base.groups[0].actor.forward_rows(obs, self.index).chunk(2, dim=-1)
        return mean, log_std.clamp(self.base.log_std_min, self.base.log_std_max)

    def _q(self, obs, act, target: bool) -> torch.Tensor:
        g = self.base.groups[0]
        x = repeat_rows(torch.cat([obs, act], dim=-1), 2)
        return (g.target_critic if target else g.critic).forward_rows(x, self.twins).view(self.k, 2, obs.shape[1])

    def q(self, obs, act) -> torch.Tensor:
        return self._q(obs, act, target=False)

    def target_q(self, obs, act) -> torch.Tensor:
        return self._q(obs, act, target=True)


class _Context:
    """What every component of a rule update reads: the members' table, student, teachers, minibatch, generator,
    the students' temperatures (K,), discount and DPD settings; :meth:`rows` gives the same for some members."""

    def __init__(self, table, ens, teacher, batch, generator, alpha, gamma, dpd):
        self.table, self.ens, self.teacher, self.batch, self.gen = table, ens, teacher, batch, generator
        self.alpha, self.gamma, self.dpd = alpha, gamma, dpd

    def rows(self, flags) -> tuple[_Context, torch.Tensor] | None:
        """(the context of the flagged members, their indices), or None where they cannot be split off (an
        ensemble of several widths, a single generator, a teacher that is not row-wise): then the component
        runs on every row, drawing for the flagged rows only."""
        if (self.ens.grouped or not isinstance(self.gen, SeedGenerators) or type(self.teacher) not in _ROW_TEACHERS):
            return None
        restricted(self.gen, flags)  # checks: a run's members share a rule
        idx = [i for i, f in enumerate(flags) if f]
        key = (tuple(idx), id(self.ens), id(self.teacher))
        cached = self.table._views.get(key)
        device = self.alpha.device
        per = self.gen.rows_per_run(len(flags))
        runs = sorted({i // per for i in idx})
        gen = SeedGenerators([self.gen.generators[r] for r in runs], [self.gen.active[r] for r in runs])
        if cached is None:
            index = _cached_tensor(tuple(idx), torch.long, str(device))
            teacher = type(self.teacher)(self.teacher.source, [self.teacher.assignment[i] for i in idx], gen)
            cached = self.table._views[key] = (self.table.subset(idx), _Rows(self.ens, index), teacher, index)
        table, ens, teacher, index = cached
        teacher.gen = gen
        batch = Batch(*(x[index] for x in self.batch))
        return _Context(table, ens, teacher, batch, gen, self.alpha[index], self.gamma, self.dpd), index


def _on_rows(ctx: _Context, flags, fn, default: float = 0.0):
    """``fn(context)`` for the members flagged in ``flags`` only, as (K, B) tensors (a tuple of them if ``fn``
    returns one) with ``default`` in the other rows. Every member flagged: ``fn(ctx)`` itself (a single rule's
    update, operation for operation)."""
    flags = list(flags)
    if all(flags):
        return fn(ctx)
    split = ctx.rows(flags)
    mask = _rows_mask(flags, ctx.alpha.device)[:, None]
    if split is None:
        full = ctx.__class__(ctx.table, ctx.ens, ctx.teacher, ctx.batch, restricted(ctx.gen, flags), ctx.alpha, ctx.gamma, ctx.dpd)
        out = fn(full)
        return tuple(torch.where(mask, o, default) for o in out) if isinstance(out, tuple) else torch.where(mask, out, default)
    sub, index = split
    out = fn(sub)

    def scatter(value):
        return torch.full((len(flags), *value.shape[1:]), default, dtype=value.dtype, device=value.device).index_copy(0, index, value)

    return tuple(scatter(o) for o in out) if isinstance(out, tuple) else scatter(out)


def _gate(ctx: _Context) -> torch.Tensor | float:
    """w(s) per member (module docstring): 1 without a gate; xi = V_t(s) - V_k(s) (soft or hard values) ->
    1[xi > 0] (value gate, DPD's indicator) or DPD's clipped, batch-normalised exp(alpha xi)."""
    gated = [g != "none" for g in ctx.table.gate]
    if not any(gated):
        return 1.0
    return _on_rows(ctx, gated, _gate_values, default=1.0)


def _gate_values(ctx: _Context) -> torch.Tensor:
    table, dpd, obs = ctx.table, ctx.dpd, ctx.batch.obs
    with torch.no_grad():
        soft = table.soft_gate[0] if len(set(table.soft_gate)) == 1 else _rows_mask(table.soft_gate, ctx.alpha.device)
        if torch.is_tensor(soft):
            alpha = torch.where(soft, ctx.alpha, 0.0)
        else:
            alpha = ctx.alpha if soft else torch.zeros_like(ctx.alpha)
        xi = ctx.teacher.value(obs, soft=soft, generator=ctx.gen) - soft_value(ctx.ens, obs, ctx.gen, alpha=alpha)  # teacher (peer) minus self

        def indicator(_):
            return (xi > 0).float()

        def exp_weight(_):
            w = torch.exp(dpd.get("alpha", 1.0) * xi).clamp(max=dpd.get("clip", 10.0))
            return w / w.mean(-1, keepdim=True).clamp_min(1e-8)

        kinds = ["none" if g == "none" else ("indicator" if g == "value" or dpd.get("weight", "exp") == "indicator" else "exp")
                 for g in table.gate]
        return _per_kind(kinds, {"indicator": indicator, "exp": exp_weight}, xi, default=1.0)


def _reward_term(kind: str, teacher: Teacher, ens: Ensemble, batch: Batch, gamma: float, generator) -> torch.Tensor | float:
    """rhat(s, a, s') of reward component ``kind`` (:func:`_reward_kind`; no gradient), before its weight."""
    if kind == "none":
        return 0.0
    with torch.no_grad():
        alive = 1.0 - batch.terminated
        if kind == "log-teacher":
            t_mean, t_log_std = teacher.policy(batch.obs)
            return squashed_log_prob(batch.act, t_mean, t_log_std)
        if kind.startswith("neg-next-loss:"):
            t_mean, t_log_std = teacher.policy(batch.next_obs)
            s_mean, s_log_std = ens.policy(batch.next_obs)
            return -alive * policy_loss(kind.split(":", 1)[1], t_mean, t_log_std, s_mean, s_log_std, generator)
        if kind == "log-teacher-next":
            s_mean, s_log_std = ens.policy(batch.next_obs)
            next_act, _ = squashed_sample(s_mean, s_log_std, generator)
            t_mean, t_log_std = teacher.policy(batch.next_obs)
            return alive * squashed_log_prob(next_act, t_mean, t_log_std)
        if kind == "teacher-v-shaping":
            return gamma * alive * teacher.value(batch.next_obs, generator=generator) - teacher.value(batch.obs, generator=generator)
    raise ValueError(f"unknown reward {kind!r}; valid: {', '.join(SUPPORTED_COMPONENTS['reward'])}")


def _rule_reward(rule, teacher: Teacher, ens: Ensemble, batch: Batch, gamma: float, generator,
                 mapping: RuleMapping) -> torch.Tensor | float:
    """rhat(s, a, s') of the rule (no gradient), before its weight; see the module docstring."""
    return _reward_term(_reward_kind(rule, mapping), teacher, ens, batch, gamma, generator)


def _bootstrap(ctx: _Context) -> torch.Tensor:
    """B(s') per member (:func:`_bootstrap_kind`): the teacher's value first, then the student's target value,
    each for the rows that use it, as a single rule draws them."""
    kinds, batch = ctx.table.boot, ctx.batch
    uses_teacher = [k.startswith("teacher") for k in kinds]
    uses_student = [k.endswith("student") for k in kinds]
    teacher_v = (_on_rows(ctx, uses_teacher, lambda c: c.teacher.value(c.batch.next_obs, generator=c.gen))
                 if any(uses_teacher) else None)
    student_v = (_on_rows(ctx, uses_student, lambda c: soft_value(c.ens, c.batch.next_obs, c.gen, target=True, alpha=c.alpha))
                 if any(uses_student) else None)
    return _per_kind(kinds, {
        "student": lambda _: student_v,
        "teacher": lambda _: teacher_v,
        "zero": lambda _: torch.zeros_like(batch.rew),
        "teacher+student": lambda _: 0.5 * (teacher_v + student_v),  # "+r" on a td score, one critic (module docstring)
        "zero+student": lambda _: 0.5 * (torch.zeros_like(batch.rew) + student_v),
    }, batch.rew)


def _critic_target(ctx: _Context) -> torch.Tensor:
    with torch.no_grad():
        table, batch, device = ctx.table, ctx.batch, ctx.batch.rew.device
        boot = _bootstrap(ctx)
        kinds = table.reward
        if len(set(kinds)) == 1:
            reward = _reward_term(kinds[0], ctx.teacher, ctx.ens, batch, ctx.gamma, ctx.gen)
        else:
            reward = torch.zeros_like(batch.rew)
            for kind in dict.fromkeys(kinds):
                if kind == "none":
                    continue
                flags = [x == kind for x in kinds]
                value = _on_rows(ctx, flags, lambda c, kind=kind: _reward_term(kind, c.teacher, c.ens, c.batch, c.gamma, c.gen))
                reward = torch.where(_rows_mask(flags, device)[:, None], value, reward)
        rhat = table.coefficient(table.reward_weight, device) * reward
        return table.coefficient(table.c_env, device) * batch.rew + rhat + ctx.gamma * (1.0 - batch.terminated) * boot


def members_critic_target(table: MemberRules, teacher: Teacher, ens: Ensemble, batch: Batch, gamma: float,
                          generator) -> torch.Tensor:
    """y = c_env r + w_rhat rhat + gamma (1 - term) B(s') for every member (K, B), no gradient; the members'
    coefficients and kinds from ``table`` (:class:`MemberRules`; SAC's target for its ``"sac"`` rows)."""
    return _critic_target(_Context(table, ens, teacher, batch, generator, student_alpha(ens, table), gamma, {}))


def rule_critic_target(rule, teacher: Teacher, ens: Ensemble, batch: Batch, gamma: float, generator,
                       mapping: RuleMapping) -> torch.Tensor:
    """y = c_env r + w_rhat rhat + gamma (1 - term) B(s') (module docstring); (K, B), no gradient.

    B: the student's own target soft value for the ``return`` score and for the return direction of a td
    score's "+r" under ``td_plus_r = "separate"``; V_t(s') (or 0) for a td score, averaged with the
    student's own under ``td_plus_r = "average"`` when "+r"."""
    table = MemberRules((rule,) * ens.k, (mapping,) * ens.k, rule_target=True)
    return members_critic_target(table, teacher, ens, batch, gamma, generator)


def actor_critic(rule, mapping: RuleMapping) -> str:
    """The critic the student's actor ascends: ``none`` (pure imitation), ``student`` (its own, learned on
    :func:`rule_critic_target`), ``teacher`` (the teacher's min_j Q_t,j: ``td_critic = "teacher"``) or
    ``mean`` (their mean: "+r" on a td score with ``td_plus_r = "separate"``)."""
    if not rule_uses_return(rule):
        return "none"
    if rule.score == "td-teacher-v" and mapping.td_critic == "teacher":
        return "mean" if rule.env_reward else "teacher"
    return "student"


def check_mapping_for_rule(rule, mapping: RuleMapping) -> None:
    """ValueError for a mapping the rule cannot run with (the per-rule half of ``deep.config`` checks)."""
    if (rule.score == "td-teacher-v" and rule.env_reward and mapping.td_critic == "teacher"
            and mapping.td_plus_r == "average"):
        raise ValueError(f"rule {rule.name!r} with mapping.td_critic 'teacher' needs mapping.td_plus_r 'separate' (the "
                         "teacher's Q_t for the td direction, the student's SAC critic for the return); 'average' "
                         "averages the bootstraps of ONE learned critic (mapping.td_critic 'learned')")


def rule_uses_return(rule) -> bool:
    """[rl]: whether the student's critic carries a return (env reward, a td score or a rule reward)."""
    return rule.env_reward or rule.score != "return" or rule.reward != "none"


def _actor_critic_fn(table: MemberRules, ens: Ensemble, teacher: Teacher):
    """The critic Q(s, a) (K, B) each member's actor ascends (:func:`actor_critic`); None: the student's own
    min_j Q_k,j for every member (``deep.sac.sac_actor_terms``' default)."""

    def teacher_critic(obs, act):
        return teacher.q_differentiable(obs, act).min(dim=1).values

    def mean_critic(obs, act):
        return 0.5 * (ens.q(obs, act).min(dim=1).values + teacher_critic(obs, act))

    kinds = [a for a in table.actor if a != "none"]
    if len(set(kinds)) == 1:
        return {"student": None, "teacher": teacher_critic, "mean": mean_critic}[kinds[0]]

    def mixed(obs, act):
        own = ens.q(obs, act).min(dim=1).values
        theirs = teacher_critic(obs, act)
        return _per_kind(table.actor, {"student": lambda _: own, "teacher": lambda _: theirs,
                                       "mean": lambda _: 0.5 * (own + theirs)}, own)

    return mixed


def member_rule_losses(table: MemberRules, ens: Ensemble, teacher: Teacher, batch: Batch, weight: torch.Tensor,
                       gamma: float, generator, dpd: dict | None = None):
    """(critic loss or None, a function computing (actor loss or None, log pi or None) after the critic step)
    of members that follow the rules of ``table`` (:class:`MemberRules`), summed over members with ``weight``.

    The actor loss is computed after the critic's optimizer step, as in SAC, so the returned closure must be
    called then. Each component runs on the members that use it (``_on_rows``: their rows of the stacked
    networks, gathered): a member without a critic step gets an exact zero critic gradient, a member that
    neither ascends a critic nor has a loss contributes 0 to the actor loss.
    """
    ctx = _Context(table, ens, teacher, batch, generator, student_alpha(ens, table), gamma, dpd or {})
    device = batch.rew.device
    steps = [c is not None for c in table.critic]
    critic_loss = None
    if any(steps):
        if all(steps):
            critic_loss = critic_regression_loss(ens.q(batch.obs, batch.act), _critic_target(ctx), weight)
        else:
            split = ctx.rows(steps)
            if split is None:
                critic_loss = critic_regression_loss(ens.q(batch.obs, batch.act), _critic_target(ctx),
                                                     weight * _rows_mask(steps, device))
            else:
                sub, index = split
                critic_loss = critic_regression_loss(sub.ens.q(sub.batch.obs, sub.batch.act), _critic_target(sub), weight[index])

    def actor_terms(c):
        return sac_actor_terms(c.ens, c.batch.obs, c.gen, alpha=c.alpha, critic=_actor_critic_fn(c.table, c.ens, c.teacher))

    def imitation(c):
        t_mean, t_log_std = c.teacher.policy(c.batch.obs)
        s_mean, s_log_std = c.ens.policy(c.batch.obs)
        gate = _gate(c)
        loss = _per_kind(c.table.loss, {name: (lambda g, name=name: policy_loss(name, t_mean, t_log_std, s_mean, s_log_std, g))
                                        for name in set(c.table.loss) if name != "none"}, c.batch.rew, c.gen)
        return c.table.coefficient(c.table.loss_weight, device) * gate * loss

    def actor_loss():
        per_state = 0.0
        log_prob = None
        ascends = [a != "none" for a in table.actor]
        if any(ascends):
            terms, log_prob = _on_rows(ctx, ascends, actor_terms)
            per_state = terms
        has_loss = [loss != "none" for loss in table.loss]
        if any(has_loss):
            per_state = per_state + _on_rows(ctx, has_loss, imitation)
        if isinstance(per_state, float):  # no member has a return or a loss: nothing to learn
            return None, log_prob
        return (weight * per_state.mean(-1)).sum(), log_prob

    return critic_loss, actor_loss


def temperature_loss(table: MemberRules, ens: Ensemble, log_prob, target_entropy: float):
    """SAC's temperature loss E[-log alpha (log pi + target_entropy)] summed over the members whose
    ``alpha_step`` is set (others: weight 0, an exact zero gradient); None when no member steps it."""
    steps = table.alpha_step
    if log_prob is None or not any(steps):
        return None
    per_member = (-ens.log_alpha[:, None] * (log_prob.detach() + target_entropy)).mean(-1)
    return per_member.sum() if all(steps) else (_rows_mask(steps, per_member.device) * per_member).sum()


def rule_losses(rule, ens: Ensemble, teacher: Teacher, batch: Batch, weight: torch.Tensor, gamma: float,
                generator: torch.Generator, dpd: dict | None = None, critic_fallback: bool = False,
                mapping: RuleMapping | None = None):
    """(critic loss or None, a function computing (actor loss, log pi) after the critic step) of ``rule`` for
    every member: :func:`member_rule_losses` with one rule.

    The actor loss is computed after the critic's optimizer step, as in SAC, so the returned closure
    must be called then. ``critic_fallback``: when the actor reads no learned student critic, still
    regress it on SAC's target (a value gate reads V_k). ``mapping``: ``deep.config.RuleMapping``.
    """
    table = MemberRules.uniform(rule, mapping or RuleMapping(), ens.k, critic_fallback)
    return member_rule_losses(table, ens, teacher, batch, weight, gamma, generator, dpd)


def control_index_sets(rule, buffer: ReplayBuffer, students: list[int], teacher_actor: int) -> dict[int, torch.Tensor]:
    """For each student, the replay indices its losses are evaluated on (control component).

    PIEKD's step (``rule=None``) uses the whole buffer. A set that would be empty falls back to the
    whole buffer (e.g. at the first phase, when only warm-up data exist).
    """
    everything = torch.arange(buffer.size, device=buffer.device)
    sets = {}
    for k in students:
        if rule is None:
            sets[k] = everything
            continue
        idx = buffer.indices_of_actor(teacher_actor if rule.control == "teacher" else k)
        sets[k] = idx if idx.numel() else everything
    return sets


def _block_starts(n: int, batch_size: int) -> list[int]:
    """Starts of the full contiguous blocks of the public PIEKD code (``train_bc_batch``):
    ``range(n - batch_size)[::batch_size]``; the partial block at the end is dropped (and so is the last full
    one when n is a multiple of the batch, as there). A set smaller than a batch gives one wrapped block."""
    return list(range(0, n - batch_size, batch_size)) or [0]


def _phase_batches(sets: dict[int, torch.Tensor], k: int, mode: str, n_batches: int, epochs: int, batch_size: int,
                   generator: torch.Generator):
    """(K, B) index tensors: N random batches ("sampled"), or for ``epochs`` epochs the contiguous blocks of
    each student's set in a freshly shuffled order ("faithful", as the public PIEKD code)."""
    any_set = next(iter(sets.values()))
    rows = [sets.get(m, any_set) for m in range(k)]
    if mode == "sampled":
        for _ in range(n_batches):
            yield torch.stack([r[randint(r.numel(), (batch_size,), generator, r.device)] for r in rows])
        return
    offsets = torch.arange(batch_size, device=any_set.device)
    starts = [torch.tensor(_block_starts(r.numel(), batch_size), device=any_set.device) for r in rows]
    longest = max(len(s) for s in starts)
    for _ in range(epochs):
        order = [s[torch.randperm(len(s), device=s.device, generator=generator)] for s in starts]
        for i in range(longest):  # a student with fewer blocks cycles through its shuffled order
            yield torch.stack([r[(o[i % len(o)] + offsets) % r.numel()] for r, o in zip(rows, order)])


def phase_batch_count(mode: str, n_batches: int, epochs: int, batch_size: int, size: int) -> int:
    """How many minibatches a phase uses over the whole buffer (the "extra" methods match it with SAC updates)."""
    return n_batches if mode == "sampled" else epochs * len(_block_starts(size, batch_size))


class PhaseContext:
    """What every distillation step of a phase shares: fresh optimizers, discount, Polyak rate, RNG, DPD settings."""

    def __init__(self, ens: Ensemble, students: list[int], lr: float, gamma: float, tau: float, generator: torch.Generator,
                 dpd: dict | None = None, mapping: RuleMapping | None = None):
        self.students, self.gamma, self.tau, self.gen, self.dpd = students, gamma, tau, generator, dpd or {}
        self.mapping = mapping or RuleMapping()
        device = ens.log_alpha.device
        self.weight = torch.zeros(ens.k, device=device)
        self.weight[students] = 1.0
        self.actor_opt = make_adam(ens.actor_parameters(), lr)
        self.critic_opt = make_adam(ens.critic_parameters(), lr)


def piekd_distill_step(ens: Ensemble, teacher: Teacher, batch: Batch, ctx: PhaseContext) -> dict[str, torch.Tensor]:
    """PIEKD's distillation step (Hong et al., Eqs. 1-2): KL(pi_t || pi_k) + sum_j (Q_t,j - Q_k,j)^2 on one minibatch.

    The critics regress on the teacher's critics (no bootstrap), so no target network is involved here;
    the students' targets take one soft update at the end of the phase (see :func:`distill_phase`).
    """
    actor_loss, critic_loss = piekd_losses(ens, teacher, batch, ctx.weight)
    ctx.critic_opt.zero_grad(set_to_none=True)
    ctx.actor_opt.zero_grad(set_to_none=True)
    (actor_loss + critic_loss).backward()  # disjoint parameters: one backward serves both
    ctx.critic_opt.step()
    ctx.actor_opt.step()
    return {"distill_actor": actor_loss.detach(), "distill_critic": critic_loss.detach()}


def rule_distill_step(rule):
    """The distillation step of a taxonomy ``rule`` (module docstring) as a phase step.

    A rule whose critic carries a return bootstraps from the students' own target critics, so those take
    one Polyak step per minibatch (the students' only: the teacher is never changed by a phase).
    """

    def step(ens: Ensemble, teacher: Teacher, batch: Batch, ctx: PhaseContext) -> dict[str, torch.Tensor]:
        critic_loss, actor_fn = rule_losses(rule, ens, teacher, batch, ctx.weight, ctx.gamma, ctx.gen, ctx.dpd,
                                            mapping=ctx.mapping)
        losses = {}
        if critic_loss is not None:
            ctx.critic_opt.zero_grad(set_to_none=True)
            critic_loss.backward()
            ctx.critic_opt.step()
            ens.soft_update_member_targets(ctx.tau, ctx.students)
            losses["distill_critic"] = critic_loss.detach()
        actor_loss, _ = actor_fn()
        if actor_loss is not None:
            ctx.actor_opt.zero_grad(set_to_none=True)
            actor_loss.backward()
            ctx.actor_opt.step()
            losses["distill_actor"] = actor_loss.detach()
        return losses

    step.__name__ = step.__qualname__ = f"rule_distill_step[{rule.name}]"
    return step


def distill_phase(ens: Ensemble, teacher: Teacher, step, buffer: ReplayBuffer, index_sets: dict[int, torch.Tensor],
                  ctx: PhaseContext, *, mode: str, n_batches: int, epochs: int, batch_size: int) -> list[dict[str, torch.Tensor]]:
    """One distillation phase: ``step`` (:func:`piekd_distill_step` or a :func:`rule_distill_step`) on each
    minibatch of the students' index sets, with the phase's fresh Adam optimizers (as the public PIEKD
    code), then one soft update of the students' target critics (the public code's ``sync_target_network``
    after distilling into an agent; chainerrl's SAC syncs softly, with tau). Non-students, the teacher
    among them, have weight 0: zero gradient, so the fresh Adams leave them bit-identical, and their
    target critics are not touched."""
    losses = [step(ens, teacher, buffer.gather(idx), ctx)
              for idx in _phase_batches(index_sets, ens.k, mode, n_batches, epochs, batch_size, ctx.gen)]
    ens.soft_update_member_targets(ctx.tau, ctx.students)
    return losses


@torch.no_grad()
def hardcopy(ens: Ensemble, optimizers: dict[str, torch.optim.Optimizer], teacher: int, students: list[int]) -> None:
    """PIEKD (hardcopy), Sec. 5.3: copy the teacher's networks, temperature and Adam moments into students."""
    gi_t, row_t = ens.locate(teacher)
    for s in students:
        gi_s, row_s = ens.locate(s)
        if gi_s != gi_t:
            raise ValueError(f"hardcopy needs equal widths; members {teacher} and {s} differ")
        g = ens.groups[gi_t]
        for net, per in ((g.actor, 1), (g.critic, 2), (g.target_critic, 2)):
            src = slice(per * row_t, per * row_t + per)
            dst = slice(per * row_s, per * row_s + per)
            for p in net.parameters():
                p.data[dst] = p.data[src]
                for opt in optimizers.values():
                    for key, val in opt.state.get(p, {}).items():
                        if torch.is_tensor(val) and val.dim() > 0 and val.shape == p.shape:
                            val[dst] = val[src]
        ens.log_alpha.data[s] = ens.log_alpha.data[teacher]
        state = optimizers["alpha"].state.get(ens.log_alpha, {})
        for key, val in state.items():
            if torch.is_tensor(val) and val.dim() > 0:
                val[s] = val[teacher]
