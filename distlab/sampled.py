"""Sampled updates of every rule: numba kernels that roll out the control policy and apply Eq. 1.

*Distilling Policy Distillation* (Czarnecki et al., 2019), Eq. 1, estimated from one episode
``tau = (s_1, a_1, ..., s_T, a_T)`` sampled with the control policy ``q`` from ``mu0``:

    g(tau) = sum_t [ -grad log pi_theta(a_t|s_t) * W_t  +  w(s_t) * grad l(pi_theta, s_t) ]

applied as ``theta <- theta - lr * g``. Its expectation is :func:`distlab.expected.expected_update`,
component by component (tested for every registered rule):

* ``W_t = sum_{i>=t} (rhat_i + r_i * env_reward)`` (score ``"return"``), plus ``r_t + V_pi(s_{t+1})``
  (``"td-teacher-v"``, V_pi = 0 past the end) or ``r_t`` (``"td-v0"``);
* rewards: ``log-teacher`` = m(s_i) log pi(a_i|s_i); ``neg-next-loss`` = -w(s_{i+1}) l(s_{i+1});
  ``log-teacher-next`` = m(s_{i+1}) log pi(a_{i+1}|s_{i+1}) with ``a_{i+1}`` the action taken next;
  ``teacher-v-shaping`` = V_pi(s_{i+1}) - V_pi(s_i); all three "next" terms are 0 past the end;
* ``w(s) = gate(s) * m(s)``: gate 1, ``value`` 1[V_pi(s) > V_theta(s)] (Prop. 2), or ``dpd``
  ``1[xi > 0]`` / ``exp(alpha xi)`` with ``xi = V_peer(s) - V_theta(s)`` (Lai et al., 2020, Eqs. 9, 11),
  held fixed (a stop-gradient weight); ``m`` the per-state ``loss_mask`` (default
  ``mdp.info["loss_mask"]``, else 1);
* ``pi`` in the losses and log-teacher rewards is the distillation target: the teacher (or DPD's peer)
  tempered by ``teacher_temperature``; the control ``"teacher"`` acts with the teacher as given.

Every component is dispatched on a small integer code derived from the :class:`~distlab.rules.Rule`
(its index in ``rules.CONTROLS``, ``LOSSES``, ...), never on the rule's name: a user-registered rule runs
here unchanged.

How the kernels are fast. The student is a tabular softmax over logits ``theta`` (rows x A) with a
state->row alias. Its probabilities (and, only for the losses that read them, log-probabilities) are
cached per row, and the behaviour policy of every state is kept as a sampling CDF, all refreshed only
for the rows an update touched. An action draw is then one uniform number and a branch-free count over
the CDF (random draws make a search loop's exit branch unpredictable). An episode does not build ``g``
step by step: since ``grad log pi(a|s) = e_a - pi_theta(s)`` and a loss gradient depends only on the
state, the episode accumulates per-state sums (the summed weight of the visits, the summed ``W_t`` per
action; ``W_t`` in one backward pass) and turns them into row gradients once, for the states it
visited. On-policy distillation thus costs two uniform draws and a few adds per transition plus one
softmax per visited state and update. No allocation happens inside the loops; trajectories live in
preallocated buffers of ``max_steps`` entries. Episodes are capped at ``max_steps`` transitions (a
truncated episode is treated as ended there; a warning reports how many were).

Determinism (the kit of :mod:`distlab.rollout`). ``prange`` loops run over independent units (MDPs of a batch, or fixed chunks of episodes);
each unit owns a xoshiro256+ generator whose state is derived in Python from the user's seed
(``numpy.random.SeedSequence``), so a result does not depend on the number of threads. (A generator
per unit instead of reseeding numba's ``np.random``: its draws cost ~6 ns, a third of a transition.)
"""

from __future__ import annotations

import math
import warnings

import numba as nb
import numpy as np
import pandas as pd

from distlab import exact, rules
from distlab.rollout import continuation_cdf, draw, draw_next, generator_states, initial_state, uniform
from distlab import student as st
from mdps import MDPBatch, TabularMDP

__all__ = ["sampled_update", "train_sampled", "component_codes", "KERNEL_LOSSES", "METRICS", "DPD_WEIGHTS"]

KERNEL_LOSSES = rules.LOSSES  # every loss of the registry is implemented in the kernels
DPD_WEIGHTS = rules.DPD_WEIGHTS
METRICS = (
    "start_value",  # mu0 @ V_theta
    "hx_teacher",  # E_z[sum_t Hx(pi(s_t) || pi_theta(s_t))] = visits_z @ Hx, z = teacher, student, uniform
    "hx_student",
    "hx_uniform",
    "kl_teacher",  # the same with KL(pi || pi_theta) = Hx - H(pi) (what Fig. 3 of the paper plots)
    "kl_student",
    "kl_uniform",
)
# log pi(a|s) is floored at log(1e-12) in every backend (``student.LOG_FLOOR``): finite for the
# deterministic teachers of Fig. 6.
LOG_FLOOR = st.LOG_FLOOR

# Component codes: the index of each name in the registry's tuples (checked below).
_C_TEACHER, _C_STUDENT, _C_UNIFORM, _C_MIXTURE = range(4)
_X_NONE, _X_GREEDY, _X_EPS_GREEDY, _X_BOLTZMANN = range(4)
_L_NONE, _L_HX, _L_RHX, _L_KL, _L_RKL, _L_MSE, _L_NLL = range(7)
_R_NONE, _R_LOG_TEACHER, _R_NEG_NEXT_LOSS, _R_LOG_TEACHER_NEXT, _R_V_SHAPING = range(5)
_S_RETURN, _S_TD_TEACHER_V, _S_TD_V0 = range(3)
_G_NONE, _G_VALUE, _G_DPD = range(3)
assert rules.CONTROLS == ("teacher", "student", "uniform", "mixture")
assert rules.EXPLORATIONS == ("none", "greedy", "epsilon-greedy", "boltzmann")
assert rules.LOSSES == ("none", "hx", "reverse-hx", "kl", "reverse-kl", "mse-logits", "nll-argmax")
assert rules.REWARDS == ("none", "log-teacher", "neg-next-loss", "log-teacher-next", "teacher-v-shaping")
assert rules.SCORES == ("return", "td-teacher-v", "td-v0") and rules.GATES == ("none", "value", "dpd")


def component_codes(rule: rules.Rule) -> np.ndarray:
    """The kernels' dispatch keys of ``rule``: ``[control, loss, reward, score, gate, env_reward]``."""
    return np.array([
        rules.CONTROLS.index(rule.control),
        rules.LOSSES.index(rule.loss),
        rules.REWARDS.index(rule.reward),
        rules.SCORES.index(rule.score),
        rules.GATES.index(rule.gate),
        int(rule.env_reward),
    ], dtype=np.int64)


# ============================================================================================ kernels
# Small helpers are inlined at numba's IR level: a call between numba functions costs ~20 ns here,
# as much as a whole softmax of a row.

# ---------------------------------------------------------------------------- the student's caches
@nb.njit(cache=True, inline="always")
def _refresh_row(theta, r, probs):
    """Recompute the cached softmax probabilities of row ``r``; return its log-normaliser
    ``log sum_a exp theta[r, a]`` (so the log-softmax needs no second pass of exponentials)."""
    A = theta.shape[1]
    m = theta[r, 0]
    for a in range(1, A):
        m = max(m, theta[r, a])
    total = 0.0
    for a in range(A):
        e = math.exp(theta[r, a] - m)
        probs[r, a] = e
        total += e
    inv_total = 1.0 / total
    for a in range(A):
        probs[r, a] *= inv_total
    return m + math.log(total)


@nb.njit(cache=True, inline="always")
def _refresh_row_and_logp(theta, r, probs, logp):
    """:func:`_refresh_row` plus the cached log-softmax of row ``r`` (for the losses and rewards that read it)."""
    log_total = _refresh_row(theta, r, probs)
    for a in range(theta.shape[1]):
        logp[r, a] = theta[r, a] - log_total


@nb.njit(cache=True, inline="always")
def _behaviour_cdf_into(s, r, control, exploration, theta, probs, teacher, beta, epsilon, inv_temperature,
                        beh_cdf):
    """CDF of the control policy q(.|s) of Eq. 1 (``r`` the student row of ``s``).

    ``q`` = teacher, uniform, the student's behaviour ``b``, or ``beta * teacher + (1 - beta) * b``
    (``student.control_policy``); ``b`` = pi_theta or its exploration (``student.explore``, seed 003
    Sec. 3.4): greedy (uniform over the tied maxima of the logits), epsilon-greedy, or
    softmax(theta / T). Drawing from the mixed distribution is drawing a coin and then a policy.
    """
    A = theta.shape[1]
    acc = 0.0
    if control == _C_TEACHER:
        for a in range(A):
            acc += teacher[s, a]
            beh_cdf[s, a] = acc
    elif control == _C_UNIFORM:
        for a in range(A):
            beh_cdf[s, a] = (a + 1.0) / A
    else:
        w_teacher = beta if control == _C_MIXTURE else 0.0
        w_student = 1.0 - w_teacher
        if exploration == _X_NONE:
            for a in range(A):
                acc += w_student * probs[r, a] + w_teacher * teacher[s, a]
                beh_cdf[s, a] = acc
        else:
            m = theta[r, 0]
            for a in range(1, A):
                m = max(m, theta[r, a])
            if exploration == _X_BOLTZMANN:
                total = 0.0
                for a in range(A):
                    total += math.exp((theta[r, a] - m) * inv_temperature)
                for a in range(A):
                    b = math.exp((theta[r, a] - m) * inv_temperature) / total
                    acc += w_student * b + w_teacher * teacher[s, a]
                    beh_cdf[s, a] = acc
            else:
                n_best = 0
                for a in range(A):
                    n_best += theta[r, a] == m
                eps = epsilon if exploration == _X_EPS_GREEDY else 0.0
                for a in range(A):
                    b = eps / A + ((1.0 - eps) / n_best if theta[r, a] == m else 0.0)
                    acc += w_student * b + w_teacher * teacher[s, a]
                    beh_cdf[s, a] = acc
    beh_cdf[s, A - 1] = 1.0  # round-off must never make an action draw fall off the end


@nb.njit(cache=True, inline="always")
def _refresh_rows(theta, rows_list, n_rows, row_ptr, row_states, control, exploration, teacher, beta, epsilon,
                  inv_temperature, need_logp, probs, logp, beh_cdf):
    """Refresh the caches of the listed rows and the control CDFs of their states (when q reads theta).
    The branch on need_logp stays outside the loops: a branch inside a loop that reads arrays costs numba
    reference counting."""
    if need_logp:
        for j in range(n_rows):
            _refresh_row_and_logp(theta, rows_list[j], probs, logp)
    else:
        for j in range(n_rows):
            _refresh_row(theta, rows_list[j], probs)
    if control == _C_STUDENT or control == _C_MIXTURE:
        for j in range(n_rows):
            r = rows_list[j]
            for i in range(row_ptr[r], row_ptr[r + 1]):
                _behaviour_cdf_into(row_states[i], r, control, exploration, theta, probs, teacher, beta, epsilon,
                                    inv_temperature, beh_cdf)


@nb.njit(cache=True, inline="always")
def _sgd_step_own_rows(theta, g, scale, rows_list, n_rows, row_touched, probs, logp, beh_cdf, with_logp):
    """``theta[r] -= scale * g[r]``, then the row's softmax (and log-softmax when ``with_logp``) and its
    sampling CDF, in one pass: the common case of one row per state and the student itself as control
    (the hot loop of on-policy distillation and n-distill)."""
    A = theta.shape[1]
    for j in range(n_rows):
        r = rows_list[j]
        row_touched[r] = 0
        m = -np.inf
        for a in range(A):
            z = theta[r, a] - scale * g[r, a]
            theta[r, a] = z
            g[r, a] = 0.0
            m = max(m, z)
        total = 0.0
        for a in range(A):
            e = math.exp(theta[r, a] - m)
            probs[r, a] = e
            total += e
        inv_total = 1.0 / total
        acc = 0.0
        for a in range(A):
            p = probs[r, a] * inv_total
            probs[r, a] = p
            acc += p
            beh_cdf[r, a] = acc
        beh_cdf[r, A - 1] = 1.0
        if with_logp:  # a compile-time constant at each call site
            log_total = m + math.log(total)
            for a in range(A):
                logp[r, a] = theta[r, a] - log_total


@nb.njit(cache=True)
def _init_student(theta, alias, control, exploration, teacher, beta, epsilon, inv_temperature, probs, logp,
                  beh_cdf):
    for r in range(theta.shape[0]):
        _refresh_row_and_logp(theta, r, probs, logp)
    for s in range(alias.shape[0]):
        _behaviour_cdf_into(s, alias[s], control, exploration, theta, probs, teacher, beta, epsilon,
                            inv_temperature, beh_cdf)


@nb.njit(cache=True)
def _needs_logp(loss, reward):
    """Whether the per-row log-probabilities are read: by a loss other than hx / kl (whose gradient is
    p - pi), or by the reward neg-next-loss (the loss value)."""
    return (loss != _L_NONE and loss != _L_HX and loss != _L_KL) or reward == _R_NEG_NEXT_LOSS


# ---------------------------------------------------------------------------- per-MDP constant tables
@nb.njit(cache=True)
def _target_tables(target):
    """Per-state constants of the distillation target: log (floored at ``LOG_FLOOR``), centred log,
    argmax (first of ties), entropy (0 log 0 = 0)."""
    S, A = target.shape
    log_t = np.empty((S, A))
    centred = np.empty((S, A))
    argmax_t = np.empty(S, dtype=np.int64)
    entropy = np.empty(S)
    for s in range(S):
        mean = 0.0
        h = 0.0
        best = 0
        for a in range(A):
            p = target[s, a]
            log_t[s, a] = math.log(max(p, LOG_FLOOR))
            mean += log_t[s, a]
            if p > 0.0:
                h -= p * math.log(p)
            if p > target[s, best]:
                best = a
        mean /= A
        for a in range(A):
            centred[s, a] = log_t[s, a] - mean
        argmax_t[s] = best
        entropy[s] = h
    return log_t, centred, argmax_t, entropy


# ---------------------------------------------------------------------------- losses (one state)
@nb.njit(cache=True, inline="always")
def _loss_value(loss, s, r, target, log_t, centred_t, argmax_t, entropy_t, probs, logp):
    """``l(pi_theta, s)`` for the loss code (``student.loss_values``); ``r`` is the student row of s.
    Branch-free in the loss (see :func:`_add_loss_gradient`)."""
    A = probs.shape[1]
    is_hx = 1.0 if loss == _L_HX or loss == _L_KL else 0.0
    is_kl = 1.0 if loss == _L_KL else 0.0
    is_rhx = 1.0 if loss == _L_RHX else 0.0
    is_rkl = 1.0 if loss == _L_RKL else 0.0
    is_mse = 1.0 if loss == _L_MSE else 0.0
    is_nll = 1.0 if loss == _L_NLL else 0.0
    t_logp = 0.0  # sum_a pi(a) log p(a)
    p_logt = 0.0  # sum_a p(a) log pi(a)
    p_logp = 0.0  # sum_a p(a) log p(a)
    mean_logp = 0.0
    for a in range(A):
        t_logp += target[s, a] * logp[r, a]
        p_logt += probs[r, a] * log_t[s, a]
        p_logp += probs[r, a] * logp[r, a]
        mean_logp += logp[r, a]
    mean_logp /= A
    mse = 0.0
    for a in range(A):
        d = logp[r, a] - mean_logp - centred_t[s, a]
        mse += 0.5 * d * d
    return (-is_hx * t_logp - is_kl * entropy_t[s] - is_rhx * p_logt + is_rkl * (p_logp - p_logt) + is_mse * mse
            - is_nll * logp[r, argmax_t[s]])


@nb.njit(cache=True, inline="always")
def _add_loss_gradient(loss, weight, s, r, target, log_t, centred_t, argmax_t, probs, logp, g):
    """``g[r] += weight * dl/dz`` at the logits ``z = theta[r]`` (``student.loss_logit_grads``).

    hx, kl: p - pi.  reverse-hx: p (f - p.f), f = -log pi.  reverse-kl: the same with f = log p - log pi.
    mse-logits: (z - mean z) - (log pi - mean log pi).  nll-argmax: p - e_{argmax pi}.
    Written without branches on the loss: in numba a branch that reads other arrays keeps their
    reference counting in the loop (4x slower).
    """
    A = probs.shape[1]
    is_hx = (1.0 if loss == _L_HX or loss == _L_KL else 0.0)
    is_reverse = (1.0 if loss == _L_RHX or loss == _L_RKL else 0.0)
    is_rkl = (1.0 if loss == _L_RKL else 0.0)
    is_mse = (1.0 if loss == _L_MSE else 0.0)
    is_nll = (1.0 if loss == _L_NLL else 0.0)
    mean_f = 0.0
    mean_logp = 0.0
    for a in range(A):
        mean_f += probs[r, a] * (is_rkl * logp[r, a] - log_t[s, a])
        mean_logp += logp[r, a]
    mean_logp /= A
    best = argmax_t[s]
    for a in range(A):
        p = probs[r, a]
        f = is_rkl * logp[r, a] - log_t[s, a]
        d = (is_hx * (p - target[s, a]) + is_reverse * p * (f - mean_f)
             + is_mse * (logp[r, a] - mean_logp - centred_t[s, a]) + is_nll * (p - (1.0 if a == best else 0.0)))
        g[r, a] += weight * d


# ---------------------------------------------------------------------------- one episode
@nb.njit(cache=True, inline="always")
def _sample_episode(rng, next_state, next_cdf, mu0_cdf, beh_cdf, max_steps, weight, loss_w, touched,
                    touched_list, n_touched, states, actions):
    """Roll out one episode with the control CDF into the ``states`` / ``actions`` buffers; add the loss
    weight of each visit to ``loss_w`` and list the states visited for the first time.
    Returns ``(T, n_touched, truncated)``."""
    K = next_cdf.shape[2]
    s = initial_state(mu0_cdf, uniform(rng))
    T = 0
    while True:
        a = draw(beh_cdf, s, uniform(rng))
        # list s on its first visit (branch-free: visits are random)
        touched_list[n_touched] = s
        n_touched += 1 - touched[s]
        touched[s] = 1
        loss_w[s] += weight[s]  # unconditional: in numba a branch reading arrays costs more than the add
        states[T] = s
        actions[T] = a
        T += 1
        k = draw_next(next_cdf, s, a, uniform(rng))
        if k == K:
            return T, n_touched, False
        if T >= max_steps:
            return T, n_touched, True
        s = next_state[s, a, k]


@nb.njit(cache=True, inline="always")
def _score_weights(T, states, actions, alias, R, reward, score, env_reward, loss, teacher_v, mask, weight,
                   target, log_t, centred_t, argmax_t, entropy_t, probs, logp, score_w):
    """Add ``W_t`` of every step to ``score_w[s_t, a_t]`` (one backward pass over the episode).

    The components enter as 0/1 factors rather than branches (a numba branch that reads arrays costs
    reference counting in the loop); "next" quantities read step ``min(t + 1, T - 1)`` times ``alive``.
    Only the reward neg-next-loss, which evaluates the loss at every step, has its own loop.
    """
    is_log_teacher = 1.0 if reward == _R_LOG_TEACHER else 0.0
    is_log_teacher_next = 1.0 if reward == _R_LOG_TEACHER_NEXT else 0.0
    is_shaping = 1.0 if reward == _R_V_SHAPING else 0.0
    env = 1.0 if env_reward else 0.0
    td = 1.0 if score != _S_RETURN else 0.0
    td_teacher_v = 1.0 if score == _S_TD_TEACHER_V else 0.0
    rhat_return = 0.0  # sum_{i>=t} (rhat_i + r_i * env_reward)
    if reward == _R_NEG_NEXT_LOSS and loss == _L_HX:  # n-distill: Hx(pi || pi_theta) = -sum_a pi log p
        A = probs.shape[1]
        for t in range(T - 1, -1, -1):
            s = states[t]
            a = actions[t]
            s2 = states[min(t + 1, T - 1)]
            alive = 1.0 if t + 1 < T else 0.0
            r2 = alias[s2]
            hx = 0.0
            for b in range(A):
                hx -= target[s2, b] * logp[r2, b]
            rhat_return += env * R[s, a] - alive * weight[s2] * hx
            score_w[s, a] += rhat_return + td * R[s, a] + td_teacher_v * alive * teacher_v[s2]
    elif reward == _R_NEG_NEXT_LOSS:
        for t in range(T - 1, -1, -1):
            s = states[t]
            a = actions[t]
            s2 = states[min(t + 1, T - 1)]
            alive = 1.0 if t + 1 < T else 0.0
            next_loss = weight[s2] * _loss_value(loss, s2, alias[s2], target, log_t, centred_t, argmax_t,
                                                 entropy_t, probs, logp)
            rhat_return += env * R[s, a] - alive * next_loss
            score_w[s, a] += rhat_return + td * R[s, a] + td_teacher_v * alive * teacher_v[s2]
    else:
        for t in range(T - 1, -1, -1):
            s = states[t]
            a = actions[t]
            s2 = states[min(t + 1, T - 1)]
            a2 = actions[min(t + 1, T - 1)]
            alive = 1.0 if t + 1 < T else 0.0
            rhat_return += (is_log_teacher * mask[s] * log_t[s, a] - is_shaping * teacher_v[s] + env * R[s, a]
                            + alive * (is_log_teacher_next * mask[s2] * log_t[s2, a2] + is_shaping * teacher_v[s2]))
            score_w[s, a] += rhat_return + td * R[s, a] + td_teacher_v * alive * teacher_v[s2]


@nb.njit(cache=True, inline="always")
def _states_to_rows(n_touched, touched_list, touched, alias, loss, has_score, loss_w, score_w, target, log_t,
                    centred_t, argmax_t, probs, logp, g, row_touched, row_list):
    """Turn the per-state sums into the row gradient ``g``, reset them, and list the rows touched.

    Score term: ``-sum_t (e_{a_t} - p) W_t = -(w_s - p * sum_a w_s[a])`` with ``w_s = score_w[s]``.
    """
    A = probs.shape[1]
    n_rows = 0
    if loss == _L_HX or loss == _L_KL:  # the common case, p - pi, in its own lean loop
        for j in range(n_touched):
            s = touched_list[j]
            r = alias[s]
            w = loss_w[s]
            for a in range(A):
                g[r, a] += w * (probs[r, a] - target[s, a])
            loss_w[s] = 0.0
            touched[s] = 0
            row_list[n_rows] = r  # list r on its first appearance, branch-free
            n_rows += 1 - row_touched[r]
            row_touched[r] = 1
    else:
        for j in range(n_touched):
            s = touched_list[j]
            r = alias[s]
            _add_loss_gradient(loss, loss_w[s], s, r, target, log_t, centred_t, argmax_t, probs, logp, g)
            loss_w[s] = 0.0
            touched[s] = 0
            row_list[n_rows] = r
            n_rows += 1 - row_touched[r]
            row_touched[r] = 1
    if has_score:  # a separate pass: a branch inside the loop above would slow it down (numba refcounts)
        for j in range(n_touched):
            s = touched_list[j]
            r = alias[s]
            total = 0.0
            for a in range(A):
                total += score_w[s, a]
            for a in range(A):
                g[r, a] -= score_w[s, a] - probs[r, a] * total
                score_w[s, a] = 0.0
    return n_rows


# ---------------------------------------------------------------------------- gates and exact metrics
@nb.njit(cache=True)
def _loss_weights(gate, teacher_v, peer_v, student_v, mask, dpd_exp, dpd_alpha, out):
    """``w(s) = gate(s) * mask(s)``: gate 1, ``1[V_pi > V_theta]``, or DPD's ``w(V_peer - V_theta)``."""
    for s in range(out.shape[0]):
        if gate == _G_VALUE:
            w = 1.0 if teacher_v[s] > student_v[s] else 0.0
        elif gate == _G_DPD:
            xi = peer_v[s] - student_v[s]
            w = math.exp(dpd_alpha * xi) if dpd_exp else (1.0 if xi > 0.0 else 0.0)
        else:
            w = 1.0
        out[s] = w * mask[s]


@nb.njit(cache=True)
def _student_policy_into(probs, alias, pi_theta):
    S, A = pi_theta.shape
    for s in range(S):
        r = alias[s]
        for a in range(A):
            pi_theta[s, a] = probs[r, a]


@nb.njit(cache=True)
def _record_metrics(next_state, next_prob, R, mu0, alias, teacher, teacher_entropy, theta, probs,
                    visits_teacher, visits_uniform, pi_theta, V, Q, visits, out):
    """Exact metrics of the current student (names in ``METRICS``); NaN where the student never ends."""
    S, A = pi_theta.shape
    _student_policy_into(probs, alias, pi_theta)
    ok = exact._evaluate_into(next_state, next_prob, R, mu0, pi_theta, V, Q, visits) < 0
    start = hx_t = hx_s = hx_u = kl_t = kl_s = kl_u = 0.0
    for s in range(S):
        r = alias[s]
        m = theta[r, 0]
        for a in range(1, A):
            m = max(m, theta[r, a])
        total = 0.0
        for a in range(A):
            total += math.exp(theta[r, a] - m)
        log_total = m + math.log(total)
        hx = 0.0
        for a in range(A):
            hx -= teacher[s, a] * (theta[r, a] - log_total)
        kl = hx - teacher_entropy[s]
        start += mu0[s] * V[s]
        hx_t += visits_teacher[s] * hx
        hx_s += visits[s] * hx
        hx_u += visits_uniform[s] * hx
        kl_t += visits_teacher[s] * kl
        kl_s += visits[s] * kl
        kl_u += visits_uniform[s] * kl
    out[0] = start if ok else np.nan
    out[1] = hx_t
    out[2] = hx_s if ok else np.nan
    out[3] = hx_u
    out[4] = kl_t
    out[5] = kl_s if ok else np.nan
    out[6] = kl_u
    return ok


@nb.njit(cache=True)
def _policy_visits(next_state, next_prob, R, mu0, pi):
    """Expected visits of a fixed policy (NaN if it never terminates from some state)."""
    S, A = pi.shape
    V = np.empty(S)
    Q = np.empty((S, A))
    visits = np.empty(S)
    if exact._evaluate_into(next_state, next_prob, R, mu0, pi, V, Q, visits) >= 0:
        visits[:] = np.nan
    return visits


# ---------------------------------------------------------------------------- sampled_update kernel
@nb.njit(cache=True, parallel=True)
def _sampled_update_kernel(next_state, next_prob, R, mu0, alias, theta, teacher, target, teacher_v, mask, weight,
                           codes, exploration, beta, epsilon, inv_temperature, max_steps, chunk_episodes,
                           chunk_seeds, g_sum, g_sumsq, truncations):
    """For each chunk of episodes: the sums of the single-episode updates ``g`` and of their squares."""
    S, A, K = next_prob.shape
    rows = theta.shape[0]
    control, loss, reward, score, env_reward = codes[0], codes[1], codes[2], codes[3], codes[5] != 0
    next_cdf = continuation_cdf(next_prob)
    mu0_cdf = np.cumsum(mu0)
    log_t, centred_t, argmax_t, entropy_t = _target_tables(target)
    probs = np.empty((rows, A))
    logp = np.empty((rows, A))
    beh_cdf = np.empty((S, A))
    _init_student(theta, alias, control, exploration, teacher, beta, epsilon, inv_temperature, probs, logp, beh_cdf)
    has_score = reward != _R_NONE or score != _S_RETURN or env_reward
    for c in nb.prange(chunk_seeds.shape[0]):
        rng = chunk_seeds[c].copy()
        loss_w = np.zeros(S)
        score_w = np.zeros((S, A))
        touched = np.zeros(S, dtype=np.int8)
        touched_list = np.empty(S, dtype=np.int64)
        row_touched = np.zeros(rows, dtype=np.int8)
        row_list = np.empty(rows, dtype=np.int64)
        g = np.zeros((rows, A))
        states = np.empty(max_steps, dtype=np.int64)
        actions = np.empty(max_steps, dtype=np.int64)
        n_trunc = 0
        for _ in range(chunk_episodes[c]):
            T, n_touched, truncated = _sample_episode(rng, next_state, next_cdf, mu0_cdf, beh_cdf, max_steps, weight,
                                                      loss_w, touched, touched_list, 0, states, actions)
            n_trunc += truncated
            if has_score:
                _score_weights(T, states, actions, alias, R, reward, score, env_reward, loss, teacher_v, mask,
                               weight, target, log_t, centred_t, argmax_t, entropy_t, probs, logp, score_w)
            n_rows = _states_to_rows(n_touched, touched_list, touched, alias, loss, has_score, loss_w, score_w,
                                     target, log_t, centred_t, argmax_t, probs, logp, g, row_touched, row_list)
            for j in range(n_rows):
                r = row_list[j]
                for a in range(A):
                    x = g[r, a]
                    g_sum[c, r, a] += x
                    g_sumsq[c, r, a] += x * x
                    g[r, a] = 0.0
                row_touched[r] = 0
        truncations[c] = n_trunc


# ---------------------------------------------------------------------------- the training kernel
@nb.njit(cache=True)
def _train_one(next_state, next_prob, R, mu0, alias, row_ptr, row_states, theta, teacher, target, teacher_v,
               peer_v, mask, codes, exploration, beta, epsilon, inv_temperature, dpd_exp, dpd_alpha, steps, lr,
               episodes_per_step, value_every, max_steps, record_steps, metrics, rng_state):
    """SGD on one MDP: ``steps`` updates ``theta -= lr * mean_e g(tau_e)``; exact metrics at record steps.

    Returns ``(transitions, truncated episodes, failed exact evaluations)``.
    """
    rng = rng_state.copy()
    S, A, K = next_prob.shape
    rows = theta.shape[0]
    control, loss, reward, score, gate = codes[0], codes[1], codes[2], codes[3], codes[4]
    env_reward = codes[5] != 0
    next_cdf = continuation_cdf(next_prob)
    mu0_cdf = np.cumsum(mu0)
    log_t, centred_t, argmax_t, entropy_t = _target_tables(target)
    teacher_entropy = _target_tables(teacher)[3]
    probs = np.empty((rows, A))
    logp = np.empty((rows, A))
    beh_cdf = np.empty((S, A))
    _init_student(theta, alias, control, exploration, teacher, beta, epsilon, inv_temperature, probs, logp, beh_cdf)
    need_logp = _needs_logp(loss, reward)
    # exact evaluation workspace
    pi_theta = np.empty((S, A))
    V = np.zeros(S)
    Q = np.empty((S, A))
    visits = np.empty(S)
    visits_teacher = _policy_visits(next_state, next_prob, R, mu0, teacher)
    visits_uniform = _policy_visits(next_state, next_prob, R, mu0, np.full((S, A), 1.0 / A))
    weight = mask.copy()  # gate * mask; the gate is refreshed every value_every steps
    # episode workspace
    loss_w = np.zeros(S)
    score_w = np.zeros((S, A))
    touched = np.zeros(S, dtype=np.int8)
    touched_list = np.empty(S, dtype=np.int64)
    row_touched = np.zeros(rows, dtype=np.int8)
    row_list = np.empty(rows, dtype=np.int64)
    g = np.zeros((rows, A))
    states = np.empty(max_steps, dtype=np.int64)
    actions = np.empty(max_steps, dtype=np.int64)
    has_score = reward != _R_NONE or score != _S_RETURN or env_reward
    one_row_per_state = rows == S
    for s in range(S):
        one_row_per_state &= alias[s] == s
    fused_update = one_row_per_state and control == _C_STUDENT and exploration == _X_NONE
    n_trunc = 0
    n_failed = 0
    n_transitions = 0
    scale = lr / episodes_per_step
    next_record = 0
    for step in range(steps + 1):
        if next_record < record_steps.shape[0] and record_steps[next_record] == step:
            ok = _record_metrics(next_state, next_prob, R, mu0, alias, teacher, teacher_entropy, theta, probs,
                                 visits_teacher, visits_uniform, pi_theta, V, Q, visits, metrics[next_record])
            n_failed += not ok
            next_record += 1
        if step == steps:
            break
        if gate != _G_NONE and step % value_every == 0:
            _student_policy_into(probs, alias, pi_theta)
            if exact._evaluate_into(next_state, next_prob, R, mu0, pi_theta, V, Q, visits) < 0:
                _loss_weights(gate, teacher_v, peer_v, V, mask, dpd_exp, dpd_alpha, weight)
            else:
                n_failed += 1  # keep the previous gate
        n_touched = 0
        for _ in range(episodes_per_step):
            T, n_touched, truncated = _sample_episode(rng, next_state, next_cdf, mu0_cdf, beh_cdf, max_steps, weight,
                                                      loss_w, touched, touched_list, n_touched, states, actions)
            n_trunc += truncated
            n_transitions += T
            if has_score:
                _score_weights(T, states, actions, alias, R, reward, score, env_reward, loss, teacher_v, mask,
                               weight, target, log_t, centred_t, argmax_t, entropy_t, probs, logp, score_w)
        n_rows = _states_to_rows(n_touched, touched_list, touched, alias, loss, has_score, loss_w, score_w,
                                 target, log_t, centred_t, argmax_t, probs, logp, g, row_touched, row_list)
        if fused_update:
            if need_logp:
                _sgd_step_own_rows(theta, g, scale, row_list, n_rows, row_touched, probs, logp, beh_cdf, True)
            else:
                _sgd_step_own_rows(theta, g, scale, row_list, n_rows, row_touched, probs, logp, beh_cdf, False)
            continue
        for j in range(n_rows):
            r = row_list[j]
            for a in range(A):
                theta[r, a] -= scale * g[r, a]
                g[r, a] = 0.0
            row_touched[r] = 0
        _refresh_rows(theta, row_list, n_rows, row_ptr, row_states, control, exploration, teacher, beta, epsilon,
                      inv_temperature, need_logp, probs, logp, beh_cdf)
    return n_transitions, n_trunc, n_failed


@nb.njit(cache=True, parallel=True)
def _train_batch(next_state, next_prob, R, mu0, alias, row_ptr, row_states, theta, teacher, target, teacher_v,
                 peer_v, mask, codes, exploration, beta, epsilon, inv_temperature, dpd_exp, dpd_alpha, steps, lr,
                 episodes_per_step, value_every, max_steps, record_steps, metrics, seeds, transitions, truncations,
                 failures):
    for b in nb.prange(next_prob.shape[0]):
        n_transitions, n_trunc, n_failed = _train_one(
            next_state[b], next_prob[b], R[b], mu0[b], alias, row_ptr, row_states, theta[b], teacher[b], target[b],
            teacher_v[b], peer_v[b], mask[b], codes, exploration, beta, epsilon, inv_temperature, dpd_exp,
            dpd_alpha, steps, lr, episodes_per_step, value_every, max_steps, record_steps, metrics[b], seeds[b])
        transitions[b] = n_transitions
        truncations[b] = n_trunc
        failures[b] = n_failed


# ============================================================================================ API
def _positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or int(value) != value or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def _alias_map(alias, n_states: int, rows: int) -> np.ndarray:
    """``alias`` as int64 (identity when None), checked against the states and rows."""
    if alias is None:
        if rows != n_states:
            raise ValueError(f"theta has {rows} rows but the MDP has {n_states} states; pass alias (state -> row)")
        return np.arange(n_states, dtype=np.int64)
    alias = st.check_alias(alias, rows)
    if alias.shape != (n_states,):
        raise ValueError(f"alias must have one entry per state ({n_states}); got shape {alias.shape}")
    return np.ascontiguousarray(alias)


def _row_states(alias: np.ndarray, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """The states of each row (CSR: ``row_states[row_ptr[r]:row_ptr[r + 1]]``), to refresh their
    control CDFs when the row changes."""
    row_states = np.argsort(alias, kind="stable").astype(np.int64)
    row_ptr = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(alias, minlength=rows), out=row_ptr[1:])
    return row_ptr, row_states


def _check_logits(theta, shape: tuple[int, ...], name: str) -> np.ndarray:
    """A float64 copy of ``theta`` (the training kernel updates it in place); ``shape`` has ``None`` rows."""
    theta = np.array(theta, dtype=np.float64)
    if theta.ndim != len(shape) or any(n is not None and n != m for n, m in zip(shape, theta.shape)):
        raise ValueError(f"{name} must have shape {tuple('rows' if n is None else n for n in shape)}; got {theta.shape}")
    if not np.isfinite(theta).all():
        raise ValueError(f"{name} has non-finite logits")
    return theta


def _check_values(values, shape: tuple[int, ...], name: str) -> np.ndarray:
    values = np.ascontiguousarray(values, dtype=np.float64)
    if values.shape != shape:
        raise ValueError(f"{name} must have shape {shape}; got {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError(f"{name} has non-finite entries")
    return values


def _loss_mask(loss_mask, info: dict, S: int) -> np.ndarray:
    if loss_mask is None:
        loss_mask = info.get("loss_mask")
    return np.ones(S) if loss_mask is None else _check_values(loss_mask, (S,), "loss_mask")


def _warn_truncations(n: int, episodes: int, max_steps: int) -> None:
    if n:
        warnings.warn(f"{n} of {episodes} episodes reached max_steps={max_steps} and were truncated there "
                      "(a bias: raise max_steps)", stacklevel=3)


def sampled_update(
    mdp: TabularMDP,
    rule,
    theta,
    teacher,
    *,
    episodes: int,
    seed: int,
    alias=None,
    loss: str | None = None,
    control: str | None = None,
    beta: float = 0.5,
    exploration: str = "none",
    epsilon: float = 0.1,
    temperature: float = 1.0,
    teacher_temperature: float = 1.0,
    teacher_value=None,
    student_value=None,
    peer=None,
    peer_value=None,
    dpd_weight: str = "exp",
    dpd_alpha: float = 1.0,
    loss_mask=None,
    max_steps: int = 10_000,
    chunks: int = 64,
) -> tuple[np.ndarray, np.ndarray]:
    """Monte-Carlo estimate of the update direction of Eq. 1: ``(mean_g, stderr_g)``, both like ``theta``.

    ``mean_g`` is the mean of ``episodes`` independent single-episode updates ``g(tau)`` (module
    docstring) at the fixed ``theta``, ``stderr_g`` its elementwise standard error. Its expectation is
    :func:`distlab.expected.expected_update` with the same options (tested for every rule).

    Args:
        rule: a registered name or a :class:`~distlab.rules.Rule`.
        theta: (rows, A) logits; ``alias`` (S,) maps states to rows (default: one row per state).
        teacher: (S, A) teacher policy pi.
        loss, control: swap the rule's loss (any of ``rules.LOSSES``) or control (``rules.CONTROLS``;
            ``"mixture"`` is ``beta * pi + (1 - beta) * pi_theta``).
        exploration: the student's behaviour where the control uses it: ``"greedy"``,
            ``"epsilon-greedy"`` (``epsilon``), ``"boltzmann"`` (``temperature``); the score term keeps
            grad log pi_theta (seed 003, Sec. 3.4; ``student.explore``).
        teacher_temperature: the distillation target is ``pi^(1/T)`` renormalised.
        teacher_value: V_pi (S,); exact by default where the rule needs it.
        student_value: V_theta (S,) for the gates; exact by default.
        peer, peer_value: DPD's peer (the distillation target of a ``"dpd"`` gate; default the teacher)
            and its value (default exact); ``dpd_weight`` ``"exp"`` (``exp(dpd_alpha xi)``) or ``"indicator"``.
        loss_mask: per-state weight of the teacher's signal (default ``mdp.info["loss_mask"]`` or 1).
        max_steps: episode cap (a truncated episode counts as ended; a warning says how many were).
        chunks: independent seeded units of episodes: fixed, so the result is the same on any number
            of threads.
    """
    rule = rules.resolve(
        rule, loss=loss, control=control, exploration=exploration, beta=beta, epsilon=epsilon, temperature=temperature,
        teacher_temperature=teacher_temperature, dpd_weight=dpd_weight, dpd_alpha=dpd_alpha,
    )
    episodes = _positive_int("episodes", episodes)
    max_steps = _positive_int("max_steps", max_steps)
    chunks = min(_positive_int("chunks", chunks), episodes)
    S, A = mdp.n_states, mdp.n_actions
    theta = _check_logits(theta, (None, A), "theta")
    alias = _alias_map(alias, S, theta.shape[0])
    teacher = exact.check_policy(teacher, S, A, name="teacher")
    mask = _loss_mask(loss_mask, mdp.info, S)
    target, teacher_v, peer_v = _targets_and_values(
        rule, teacher, teacher_temperature, teacher_value, peer, peer_value,
        evaluate=lambda pi: exact.evaluate(mdp, pi)[0], shape=(S,))
    weight = mask.copy()
    if rule.gate != "none":
        if student_value is None:
            student_value = exact.evaluate(mdp, st.student_policy(theta, alias))[0]
        student_v = _check_values(student_value, (S,), "student_value")
        _loss_weights(rules.GATES.index(rule.gate), teacher_v, peer_v, student_v, mask, dpd_weight == "exp",
                      float(dpd_alpha), weight)
    chunk_episodes = np.full(chunks, episodes // chunks, dtype=np.int64)
    chunk_episodes[: episodes % chunks] += 1
    g_sum = np.zeros((chunks,) + theta.shape)
    g_sumsq = np.zeros((chunks,) + theta.shape)
    truncations = np.zeros(chunks, dtype=np.int64)
    _sampled_update_kernel(
        mdp.next_state, mdp.next_prob, mdp.R, mdp.mu0, alias, theta, teacher, target, teacher_v, mask, weight,
        component_codes(rule), rules.EXPLORATIONS.index(exploration), float(beta), float(epsilon),
        1.0 / float(temperature), max_steps, chunk_episodes, generator_states(seed, chunks), g_sum, g_sumsq, truncations)
    _warn_truncations(int(truncations.sum()), episodes, max_steps)
    mean = g_sum.sum(axis=0) / episodes
    if episodes == 1:
        return mean, np.full_like(mean, np.nan)
    var = np.maximum(g_sumsq.sum(axis=0) - episodes * mean**2, 0.0) / (episodes - 1)
    return mean, np.sqrt(var / episodes)


def _targets_and_values(rule, teacher, teacher_temperature, teacher_value, peer, peer_value, evaluate, shape):
    """The distillation target (tempered teacher, or DPD's peer), V_pi and V_peer, as the exact backend.

    ``evaluate(pi)`` gives exact values; ``shape`` is (S,) or (B, S). Values that the rule does not read
    are zeros.
    """
    dpd = rule.gate == "dpd"
    if (peer is not None or peer_value is not None) and not dpd:
        raise ValueError(f"peer / peer_value are for rules with gate 'dpd'; rule {rule.name!r} has gate {rule.gate!r}")
    source = teacher
    if dpd and peer is not None:
        source = exact.check_policy(peer, shape[-1], teacher.shape[-1], name="peer")
        if source.shape != teacher.shape:
            raise ValueError(f"peer must have the teachers' shape {teacher.shape}; got {source.shape}")
    target = np.ascontiguousarray(st.tempered_teacher(source, teacher_temperature))
    needs_teacher_v = rule.uses_teacher_value or (dpd and peer is None and peer_value is None)
    teacher_v = np.zeros(shape)
    if needs_teacher_v:
        teacher_v = evaluate(teacher) if teacher_value is None else _check_values(teacher_value, shape, "teacher_value")
    peer_v = np.zeros(shape)
    if dpd:
        if peer_value is not None:
            peer_v = _check_values(peer_value, shape, "peer_value")
        elif peer is not None:
            peer_v = evaluate(source)
        else:
            peer_v = teacher_v
    return target, np.ascontiguousarray(teacher_v), np.ascontiguousarray(peer_v)


def _record_steps(steps: int, record_every: int) -> np.ndarray:
    return np.unique(np.append(np.arange(0, steps + 1, record_every), steps)).astype(np.int64)


def train_sampled(
    batch: MDPBatch,
    rule,
    teachers,
    *,
    steps: int,
    lr: float,
    episodes_per_step: int = 1,
    record_every: int = 100,
    seed: int = 0,
    control: str | None = None,
    loss: str | None = None,
    teacher_values=None,
    theta0=None,
    alias=None,
    peers=None,
    peer_values=None,
    beta: float = 0.5,
    exploration: str = "none",
    epsilon: float = 0.1,
    temperature: float = 1.0,
    teacher_temperature: float = 1.0,
    dpd_weight: str = "exp",
    dpd_alpha: float = 1.0,
    loss_masks=None,
    value_every: int = 10,
    max_steps: int = 10_000,
    return_theta: bool = False,
):
    """Sampled SGD with ``rule`` on every MDP of ``batch``: ``theta <- theta - lr * mean_e g(tau_e)``.

    The whole loop runs in one numba kernel, ``prange`` over MDPs; MDP ``b`` draws from its own seed
    derived from ``seed``, so the result is bitwise identical on any number of threads. Each step
    averages ``episodes_per_step`` single-episode updates at the current theta (module docstring).
    Every ``record_every`` steps (and at steps 0 and ``steps``) it records exact metrics of the current
    student from expected visits (``distlab.exact``): ``start_value = mu0 @ V_theta`` and
    ``hx_z = E_z[sum_t Hx(pi(s_t) || pi_theta(s_t))] = visits_z @ Hx`` for z = teacher, student, uniform
    (``kl_z`` the same with KL), the curves of Fig. 3 of *Distilling Policy Distillation*.

    Args:
        teachers: (B, S, A) teacher policies. ``teacher_values`` (B, S): V_pi, exact by default where
            the rule needs it. ``peers`` / ``peer_values``: DPD's fixed peers (B, S, A) and values (B, S).
        theta0: initial logits, (rows, A) for every MDP or (B, rows, A); zeros (uniform) by default.
        value_every: steps between exact recomputations of V_theta for the gates (``value``, ``dpd``).
        loss_masks: (B, S) per-state weights (default each MDP's ``info["loss_mask"]`` or 1).
        return_theta: also return the final logits (B, rows, A).
        Other options as :func:`sampled_update`.

    Returns:
        a tidy DataFrame with columns ``mdp, step`` and ``METRICS`` (``attrs["transitions"]``: the
        number of sampled transitions), and the final logits when ``return_theta``.
    """
    rule = rules.resolve(
        rule, loss=loss, control=control, exploration=exploration, beta=beta, epsilon=epsilon, temperature=temperature,
        teacher_temperature=teacher_temperature, dpd_weight=dpd_weight, dpd_alpha=dpd_alpha,
    )
    if not isinstance(batch, MDPBatch):
        raise ValueError(f"batch must be an mdps.MDPBatch (see mdps.stack); got {type(batch).__name__}")
    steps = _positive_int("steps", steps, minimum=0)
    record_every = _positive_int("record_every", record_every)
    value_every = _positive_int("value_every", value_every)
    episodes_per_step = _positive_int("episodes_per_step", episodes_per_step)
    max_steps = _positive_int("max_steps", max_steps)
    if not (np.isfinite(lr) and lr >= 0):
        raise ValueError(f"lr must be finite and >= 0; got {lr!r}")
    B, S, A = len(batch), batch.n_states, batch.n_actions
    teachers = exact.check_policy(teachers, S, A, name="teachers")
    if teachers.shape != (B, S, A):
        raise ValueError(f"teachers must have shape (B, S, A) = ({B}, {S}, {A}); got {teachers.shape}")
    if theta0 is None:
        rows = S if alias is None else int(np.max(alias)) + 1
        theta = np.zeros((B, rows, A))
    else:
        theta0 = np.asarray(theta0, dtype=np.float64)
        if theta0.ndim == 2:
            theta0 = np.broadcast_to(theta0, (B,) + theta0.shape)
        theta = _check_logits(theta0, (B, None, A), "theta0")
    alias = _alias_map(alias, S, theta.shape[1])
    infos = batch.infos or ({},) * B
    if loss_masks is None:
        mask = np.stack([_loss_mask(None, info, S) for info in infos])
    else:
        mask = _check_values(loss_masks, (B, S), "loss_masks")
    target, teacher_v, peer_v = _targets_and_values(
        rule, teachers, teacher_temperature, teacher_values, peers, peer_values,
        evaluate=lambda pis: exact.evaluate_batch(batch, pis)[0], shape=(B, S))
    record_steps = _record_steps(steps, record_every)
    metrics = np.full((B, len(record_steps), len(METRICS)), np.nan)
    transitions = np.zeros(B, dtype=np.int64)
    truncations = np.zeros(B, dtype=np.int64)
    failures = np.zeros(B, dtype=np.int64)
    row_ptr, row_states = _row_states(alias, theta.shape[1])
    _train_batch(
        batch.next_state, batch.next_prob, batch.R, batch.mu0, alias, row_ptr, row_states, theta, teachers, target,
        teacher_v, peer_v, mask, component_codes(rule), rules.EXPLORATIONS.index(exploration), float(beta),
        float(epsilon), 1.0 / float(temperature), dpd_weight == "exp", float(dpd_alpha), steps, float(lr),
        episodes_per_step, value_every, max_steps, record_steps, metrics, generator_states(seed, B), transitions, truncations,
        failures)
    _warn_truncations(int(truncations.sum()), B * steps * episodes_per_step, max_steps)
    if failures.any():
        warnings.warn(f"the student never terminates from some state in {int((failures > 0).sum())} MDP(s): their "
                      "student metrics are NaN there and value gates kept their last value", stacklevel=2)
    table = pd.DataFrame({
        "mdp": np.repeat(np.arange(B), len(record_steps)),
        "step": np.tile(record_steps, B),
        **{name: metrics[:, :, i].ravel() for i, name in enumerate(METRICS)},
    })
    table.attrs["transitions"] = int(transitions.sum())
    return (table, theta) if return_theta else table
