"""Exact expected updates of every rule (Eq. 1 of *Distilling Policy Distillation*) and exact dynamics.

For a rule with control ``q``, loss ``l``, reward ``rhat``, score and gate (``distlab.rules``), the
update direction of Eq. 1 is computed exactly from the expected visits ``d_q`` of the control policy
and the Q-values of the rule's reward channel under ``q``::

    g = sum_s d_q(s) [ w(s) dl(s)/dtheta  -  sum_a q(a|s) dlog pi_theta(a|s)/dtheta * W(s, a) ]
      (with DPD's peer states, the loss term's d_q is the peer's d_peer)

    w(s)    = gate(s) * mask(s)                      (gate: 1, value gate, DPD weight; mask: loss_mask)
    W(s, a) = Qhat_q(s, a) + TD(s, a)
    Qhat_q  = rbar + P_q Qhat_q                      (policy evaluation of q with reward rbar)
    rbar(s, a) = E[rhat_i | s_i = s, a_i = a] (+ R(s, a) with the "+R" flag)
    TD(s, a) = R(s, a) + sum_s' P(s'|s,a) V_pi(s')   (score "td-teacher-v"; "td-v0": R(s, a); "return": 0)

``Qhat_q(s, a)`` is the expected return-to-go ``E_q[Rhat_t | s_t = s, a_t = a]``: rewards that look one
step ahead (``rhat_i`` depends on ``s_{i+1}``, ``a_{i+1}``) are folded into the reward of ``(s, a)`` by
taking the expectation over ``s' ~ P(.|s, a)`` and ``a' ~ q(.|s')``, zero past the end of the episode:

    none               rbar = 0
    log-teacher        rbar(s, a) = mask(s) log pi(a|s)
    neg-next-loss      rbar(s, a) = -sum_s' P(s'|s,a) w(s') l(s')
    log-teacher-next   rbar(s, a) =  sum_s' P(s'|s,a) mask(s') sum_a' q(a'|s') log pi(a'|s')
    teacher-v-shaping  rbar(s, a) =  sum_s' P(s'|s,a) V_pi(s') - V_pi(s)

With a softmax student the logit gradients are ``dlog pi_theta(a|s)/dz_s = e_a - pi_theta(.|s)``, so the
per-state score term is ``q(.|s) * W(s, .) - pi_theta(.|s) * <q(.|s), W(s, .)>``; tied states add up
into their shared row of ``theta``.

Choices made here, where Eq. 1 leaves room:

* ``q != pi_theta`` (controls ``teacher``, ``uniform``, ``mixture`` or an exploring student): Eq. 1 is
  taken literally, the expectation under ``q`` with the score ``grad log pi_theta`` (no importance
  weights; footnote 2 of the paper: they degenerate to teacher distill). The rules of interest with a
  non-student control have ``rhat = 0`` and no score term.
* the gate multiplies the loss and is held fixed (not differentiated): a stop-gradient weight, as the
  value gate's indicator and DPD's confidence score ``exp(alpha xi)`` are in the papers. ``V_theta``
  is exact unless ``student_value`` overrides it (``teacher_value``, ``peer_value`` likewise).
* exploration changes the student's behaviour where the control uses it (``student``, ``mixture``);
  the score keeps ``grad log pi_theta`` (as the sampled kernels do).
* ``dpd``: ``xi(s) = V_peer(s) - V_theta(s)`` (Lai et al., 2020, Eqs. 9, 11) and the peer is the
  distillation target (``peer`` defaults to the teacher). The loss term's states come from the peer,
  ``d_peer`` in place of ``d_q`` (Eq. 11, ``s ~ pi~``; ``dpd_states="peer"``, the default) or from the
  control (``"own"``); the score term (``dpd+r``) from the control. The exp weight is clipped at
  ``dpd_clip`` and divided by its mean under those states' visits (``dpd_clip=None``: Eq. 11 as printed).
* ``teacher_temperature`` changes the distillation target (losses, log-teacher rewards) only; the
  teacher as given still acts (control ``teacher``) and its value is computed from it (seed 003 tempers
  the targets of the loss).
* ``loss_mask`` (S,) weights the teacher's policy signal per state: the loss and the log-teacher
  rewards. ``None`` takes ``mdp.info["loss_mask"]`` when the MDP declares one (the Fig. 2
  counterexample does: its teacher gives a signal in s_R only), else ones.
* ``teacher-v-reward``: with exact returns the shaping telescopes, ``sum_{i>=t} V_pi(s_{i+1}) -
  V_pi(s_i) = -V_pi(s_t)``, a baseline with ``sum_a pi_theta(a|s) grad log pi_theta(a|s) V_pi(s) = 0``,
  so its expected update equals ``rl``'s (tested to 1e-10); the rule matters for sampled learners.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from distlab import rules
from distlab import student as st
from distlab.exact import _evaluate_into, check_policy, evaluate
from distlab.options import DATA, UpdateOptions, resolve, split_keywords
from mdps import TabularMDP

__all__ = ["expected_update", "expected_step_reward", "update_terms", "UpdateTerms", "rule_objective", "run_exact"]


# --------------------------------------------------------------------------------------- helpers
def _expect_next(mdp: TabularMDP, f: np.ndarray) -> np.ndarray:
    """``(P f)(s, a) = sum_s' P(s'|s, a) f(s')`` (zero past the end of the episode), (S, A)."""
    return (mdp.next_prob * f[mdp.next_state]).sum(axis=-1)


def _solve(mdp: TabularMDP, q: np.ndarray, reward: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact (V, Q, visits) of control ``q`` for the reward channel ``reward`` (S, A) (banded LU)."""
    S, A = q.shape
    V, Q, visits = np.empty(S), np.empty((S, A)), np.empty(S)
    status = _evaluate_into(mdp.next_state, mdp.next_prob, np.ascontiguousarray(reward), mdp.mu0, np.ascontiguousarray(q), V, Q, visits)
    if status >= 0:
        raise ValueError(f"the control policy never terminates from state {status}: I - P_q is singular (use a control with termination mass)")
    return V, Q, visits


def _check_state_vector(name: str, x, n_states: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.shape != (n_states,):
        raise ValueError(f"{name} must have shape ({n_states},); got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} has a non-finite entry at state {int(np.argmax(~np.isfinite(x)))}")
    return x


@dataclass(frozen=True)
class UpdateTerms:
    """Everything the exact update of one rule at one ``theta`` is made of (all per state)."""

    rule: rules.Rule
    logits: np.ndarray  # (S, A) theta[alias]
    student: np.ndarray  # (S, A) pi_theta
    target: np.ndarray  # (S, A) the distillation target (tempered teacher, or DPD peer)
    control: np.ndarray  # (S, A) q
    weight: np.ndarray  # (S,) w = gate * mask on the loss
    mask: np.ndarray  # (S,) loss_mask
    losses: np.ndarray  # (S,) l(pi_theta(s), target(s))
    loss_grads: np.ndarray  # (S, A) dl/dz_s
    step_reward: np.ndarray  # (S, A) rbar (+ R with "+R"): the reward channel folded into (s, a)
    score_weight: np.ndarray  # (S, A) W = Qhat_q + TD
    visits: np.ndarray  # (S,) d_q
    loss_visits: np.ndarray  # (S,) the visits of the loss's states: d_q, or the peer's (dpd_states="peer")
    return_to_go: np.ndarray  # (S,) E_q[Rhat_t | s_t = s] = sum_a q(a|s) Qhat_q(s, a): the exact baseline
    teacher_value: np.ndarray | None
    student_value: np.ndarray | None

    def logit_grads(self) -> np.ndarray:
        """Per-state ``dg/dz_s`` (S, A), before tied states are summed into their rows."""
        q, W, p = self.control, self.score_weight, self.student
        qW = q * W
        score = qW - p * qW.sum(axis=-1, keepdims=True)
        return (self.loss_visits * self.weight)[:, None] * self.loss_grads - self.visits[:, None] * score


def _control_visits(mdp: TabularMDP, q: np.ndarray) -> np.ndarray:
    return _solve(mdp, q, np.zeros(q.shape))[2]


def _dpd_gate(options: UpdateOptions, xi: np.ndarray, source_visits) -> np.ndarray:
    """DPD's weight of ``xi = V_peer - V_theta`` (Lai et al., 2020): ``1[xi > 0]`` (Eq. 9), ``exp(alpha xi)``
    (Eq. 11, ``dpd_clip=None``), or ``min(exp(alpha xi), clip) / mean`` with the mean under the expected
    visits of the states the loss is taken on (``source_visits()``, normalised), as the deep backend's
    minibatch mean."""
    if options.dpd_weight == "indicator":
        return (xi > 0.0).astype(np.float64)
    gate = np.exp(options.dpd_alpha * xi)
    if options.dpd_clip is None:
        return gate
    gate = np.minimum(gate, options.dpd_clip)
    d = source_visits()
    return gate / max(float(d @ gate / d.sum()), 1e-8)


def update_terms(mdp: TabularMDP, rule, theta, teacher, options: UpdateOptions | None = None, *, fixed_weight=None,
                 **keywords) -> UpdateTerms:
    """The pieces of :func:`expected_update` (see the module docstring). ``fixed_weight`` (S,)
    replaces the gate * mask weight (the diagnostics hold it fixed while differentiating)."""
    options, data = split_keywords("update_terms", options, keywords)
    rule = resolve(rule, options)
    alias, teacher_value, student_value = data.get("alias"), data.get("teacher_value"), data.get("student_value")
    peer, peer_value, loss_mask = data.get("peer"), data.get("peer_value"), data.get("loss_mask")
    S, A = mdp.n_states, mdp.n_actions
    theta = np.asarray(theta, dtype=np.float64)
    if theta.ndim != 2 or theta.shape[1] != A:
        raise ValueError(f"theta must have shape (rows, A={A}); got {theta.shape}")
    alias = st.check_alias(alias, theta.shape[0])
    if alias is None and theta.shape[0] != S:
        raise ValueError(f"theta has {theta.shape[0]} rows but the MDP has {S} states; pass alias (state -> row)")
    if alias is not None and alias.shape != (S,):
        raise ValueError(f"alias must have one entry per state ({S}); got shape {alias.shape}")
    teacher = check_policy(teacher, S, A, "teacher")
    dpd = rule.gate == "dpd"
    if (peer is not None or peer_value is not None) and not dpd:
        raise ValueError(f"peer / peer_value are for rules with gate 'dpd'; rule {rule.name!r} has gate {rule.gate!r}")
    if peer is not None:
        peer = check_policy(peer, S, A, "peer")
    if loss_mask is None:
        loss_mask = mdp.info.get("loss_mask")
    mask = np.ones(S) if loss_mask is None else _check_state_vector("loss_mask", loss_mask, S)

    logits = theta if alias is None else theta[alias]
    pi_theta = st.softmax(logits)
    uses_student = rule.control in ("student", "mixture")
    behaviour = pi_theta
    if uses_student:
        behaviour = st.explore(pi_theta, options.exploration, options.epsilon, options.temperature, theta=theta, alias=alias)
    q = st.control_policy(rule.control, behaviour, teacher, options.beta)
    # DPD's Eq. 11 takes the loss's states from the peer (s ~ pi~; the teacher when no peer is given).
    peer_policy = teacher if peer is None else peer
    peer_states = dpd and options.dpd_states == "peer"
    loss_visits = None
    if peer_states:
        loss_visits = evaluate(mdp, peer_policy)[2]

    # Values, computed exactly only where a component needs them.
    V_teacher = None
    if rule.uses_teacher_value or (dpd and peer is None and peer_value is None):
        V_teacher = evaluate(mdp, teacher)[0] if teacher_value is None else _check_state_vector("teacher_value", teacher_value, S)
    V_theta = None
    if rule.uses_student_value:
        V_theta = evaluate(mdp, pi_theta)[0] if student_value is None else _check_state_vector("student_value", student_value, S)

    source = peer if (dpd and peer is not None) else teacher
    target = st.tempered_teacher(source, options.teacher_temperature)

    if fixed_weight is not None:
        weight = _check_state_vector("fixed_weight", fixed_weight, S)
    else:
        gate = np.ones(S)
        if rule.gate == "value":
            gate = (V_teacher > V_theta).astype(np.float64)
        elif dpd:
            if peer_value is not None:
                V_peer = _check_state_vector("peer_value", peer_value, S)
            elif peer is not None:
                V_peer = evaluate(mdp, peer)[0]
            else:
                V_peer = V_teacher
            gate = _dpd_gate(options, V_peer - V_theta, lambda: loss_visits if peer_states else _control_visits(mdp, q))
        weight = gate * mask

    losses = st.loss_values(rule.loss, target, logits)
    loss_grads = st.loss_logit_grads(rule.loss, target, logits)

    # The reward channel folded into (s, a): rbar (+ R).
    if rule.reward == "none":
        rbar = np.zeros((S, A))
    elif rule.reward == "log-teacher":
        rbar = mask[:, None] * st.log_teacher(target)
    elif rule.reward == "neg-next-loss":
        rbar = -_expect_next(mdp, weight * losses)
    elif rule.reward == "log-teacher-next":
        log_t = st.log_teacher(target)
        rbar = _expect_next(mdp, mask * (q * log_t).sum(axis=-1))
    else:  # teacher-v-shaping
        rbar = _expect_next(mdp, V_teacher) - V_teacher[:, None]
    step_reward = rbar + mdp.R if rule.env_reward else rbar

    return_to_go, Qhat, visits = _solve(mdp, q, step_reward)
    if rule.score == "td-teacher-v":
        W = Qhat + mdp.R + _expect_next(mdp, V_teacher)
    elif rule.score == "td-v0":
        W = Qhat + mdp.R
    else:
        W = Qhat
    return UpdateTerms(rule, logits, pi_theta, target, q, weight, mask, losses, loss_grads, step_reward, W, visits,
                       visits if loss_visits is None else loss_visits, return_to_go, V_teacher, V_theta)


def _rows_sum(per_state: np.ndarray, theta_shape, alias) -> np.ndarray:
    if alias is None:
        return per_state
    g = np.zeros(theta_shape)
    np.add.at(g, np.asarray(alias, dtype=np.int64), per_state)
    return g


# ------------------------------------------------------------------------------------------- API
def expected_update(mdp: TabularMDP, rule, theta, teacher, options: UpdateOptions | None = None,
                    **keywords) -> np.ndarray:
    """The exact update direction ``g`` of Eq. 1 (shape of ``theta``), applied as ``theta -= lr * g``.

    Args:
        mdp: the tabular MDP.
        rule: a registered name (``rules.names()``) or a :class:`rules.Rule`.
        theta: student logits (rows, A).
        teacher: the teacher policy pi (S, A).
        options: an :class:`~distlab.options.UpdateOptions` (loss / control swaps, exploration, temperatures,
            DPD's weight, clip and states; the sampled backend's estimator options are accepted and do
            not change the expectation). Keywords naming its fields override it.
        keywords: the option fields, and the per-MDP data (``distlab.options.DATA``):
            alias: state -> row of theta (None: one row per state);
            teacher_value: V_pi to use instead of the exact one (an estimate, or e.g. the optimal value
                for the adversarial teacher of Fig. 6);
            student_value: V_theta for the value and DPD gates instead of the exact one (e.g. a critic's);
            peer, peer_value: the other policy of ``dpd`` (default: the teacher) and its value;
            loss_mask: per-state weight of the teacher's policy signal (see the module docstring).

    ``teacher-v-reward``: its expected update equals ``rl``'s exactly (the shaping telescopes into a
    baseline, module docstring); ``X+r`` equals ``X`` plus ``rl`` for every X whose control is the student.
    """
    terms = update_terms(mdp, rule, theta, teacher, options, **keywords)
    return _rows_sum(terms.logit_grads(), np.shape(theta), keywords.get("alias"))


def expected_step_reward(mdp: TabularMDP, rule, theta, teacher, options: UpdateOptions | None = None,
                         **keywords) -> np.ndarray:
    """The rule's reward channel folded into (s, a): ``E[rhat_t (+ r_t) | s_t = s, a_t = a]`` (S, A).

    E.g. for ``teacher-v-reward`` this is ``r^V = R(s, a) + sum_s' P(s'|s,a) V_pi(s') - V_pi(s)``, the
    expected shaped reward of Sec. 4.2 (Prop. 4).
    """
    return update_terms(mdp, rule, theta, teacher, options, **keywords).step_reward


def rule_objective(mdp: TabularMDP, rule, theta, teacher, options: UpdateOptions | None = None, *,
                   fixed_weight=None, **keywords) -> float:
    """The candidate objective ``J(theta)`` of ``rule`` (:mod:`distlab.diagnostics` docstring);
    ``fixed_weight`` (S,) overrides the gate * mask loss weight (default: evaluated at this ``theta``).

    ``J = sum_s d_l(s) w(s) l(s) + sum_s d_q(s) sum_a q(a|s) c(s, a)`` (+ ``mu0 @ V_pi`` for
    teacher-v-shaping), ``d_l`` the visits of the loss's states (``UpdateTerms.loss_visits``).
    """
    terms = update_terms(mdp, rule, theta, teacher, options, fixed_weight=fixed_weight, **keywords)
    rule = terms.rule
    S, A = mdp.n_states, mdp.n_actions
    cost = np.zeros((S, A))
    if rule.reward == "log-teacher":
        cost -= terms.mask[:, None] * st.log_teacher(terms.target)
    if rule.env_reward:
        cost -= mdp.R
    if rule.score in ("td-teacher-v", "td-v0"):
        cost -= mdp.R
    value = float(terms.loss_visits @ (terms.weight * terms.losses) + terms.visits @ (terms.control * cost).sum(axis=-1))
    if rule.reward == "teacher-v-shaping":
        value += float(mdp.mu0 @ terms.teacher_value)
    return value


def _record(mdp, theta, alias, teacher, teacher_visits, objective_fn, step, g_norm) -> dict:
    pi_theta = st.student_policy(theta, alias)
    V, _, visits = evaluate(mdp, pi_theta)
    hx = st.loss_values("hx", teacher, st.student_logits(theta, alias))
    row = dict(
        step=step,
        student_return=float(mdp.mu0 @ V),
        hx_student=float(visits @ hx),
        hx_teacher=float(teacher_visits @ hx),
        objective=objective_fn(theta),
        update_norm=g_norm,
    )
    if theta.size <= 16:  # small students (the counterexample): keep the parameters themselves
        for (r, a), value in np.ndenumerate(theta):
            row[f"theta_{r}_{a}"] = float(value)
    return row


def run_exact(
    mdp: TabularMDP,
    rule,
    teacher,
    options: UpdateOptions | None = None,
    *,
    steps: int,
    lr: float,
    theta0=None,
    alias=None,
    record_every: int = 1,
    progress: bool = False,
    **keywords,
) -> pd.DataFrame:
    """Exact dynamics ``theta <- theta - lr * expected_update(...)`` for ``steps`` steps.

    Returns a tidy table, one row per record (step 0, every ``record_every`` steps, and the last):
    ``step``; ``student_return`` = mu0 @ V_theta; ``hx_student`` = E_{pi_theta}[sum_t Hx(pi || pi_theta)]
    and ``hx_teacher`` = E_pi[sum_t Hx(pi || pi_theta)] (the distillation losses under the student's and
    the teacher's trajectories, Fig. 3; NaN if the teacher never ends an episode); ``objective``: the
    rule's candidate objective (:func:`rule_objective`, gates held at the current theta);
    ``update_norm`` = ||g|| of the step taken from the recorded theta (NaN on the last record); and
    ``theta_<row>_<a>`` columns when theta has at most 16 entries. ``theta0`` defaults to zeros (the
    uniform student). ``options`` and ``keywords`` are those of :func:`expected_update`.
    """
    options, data = split_keywords("run_exact", options, keywords, data=tuple(n for n in DATA if n != "alias"))
    if int(steps) != steps or steps < 0:
        raise ValueError(f"steps must be a non-negative integer; got {steps!r}")
    if int(record_every) != record_every or record_every < 1:
        raise ValueError(f"record_every must be a positive integer; got {record_every!r}")
    if not np.isfinite(lr):
        raise ValueError(f"lr must be finite; got {lr!r}")
    rule_ = resolve(rule, options)
    teacher = check_policy(teacher, mdp.n_states, mdp.n_actions, "teacher")
    if theta0 is None:
        rows = mdp.n_states if alias is None else int(np.max(alias)) + 1
        theta0 = np.zeros((rows, mdp.n_actions))
    theta = np.array(theta0, dtype=np.float64)
    # The teacher is fixed: solve for its value once rather than at every step.
    if data.get("teacher_value") is None and (rule_.uses_teacher_value or rule_.gate == "dpd"):
        data["teacher_value"] = evaluate(mdp, teacher)[0]
    if rule_.gate == "dpd" and data.get("peer") is not None and data.get("peer_value") is None:
        data["peer_value"] = evaluate(mdp, data["peer"])[0]
    try:
        teacher_visits = evaluate(mdp, teacher)[2]
    except ValueError:  # a deterministic teacher may never end an episode: no E_pi[...] to record
        teacher_visits = np.full(mdp.n_states, np.nan)

    def objective_fn(th):
        return rule_objective(mdp, rule_, th, teacher, options, alias=alias, **data)

    records = []
    iterator = range(steps + 1)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc=f"run_exact {rule_.name}")
    for step in iterator:
        last = step == steps
        g = None if last else expected_update(mdp, rule_, theta, teacher, options, alias=alias, **data)
        if last or step % record_every == 0:
            g_norm = float("nan") if g is None else float(np.linalg.norm(g))
            records.append(_record(mdp, theta, alias, teacher, teacher_visits, objective_fn, step, g_norm))
        if not last:
            theta -= lr * g
    return pd.DataFrame.from_records(records)
