"""The rule components of the sampled backend: losses, rewards and scores, gates (numba, inlined).

A :class:`~distlab.rules.Rule` is dispatched on small integer codes (its components' indices in
``rules.CONTROLS``, ``LOSSES``, ...), never on its name, so a user-registered rule runs in the kernels
unchanged. Each function here is one component of Eq. 1 of *Distilling Policy Distillation*
(Czarnecki et al., 2019):

    g(tau) = sum_t [ -grad log pi_theta(a_t|s_t) * (W_t - b(s_t))  +  w(s_t) * grad l(pi_theta, s_t) ]

* losses ``l`` and their logit gradients (:func:`loss_value`, :func:`add_loss_gradient`; the same
  equations as ``distlab.student``);
* the score weight ``W_t``: the return of the rule's reward ``rhat`` and the TD targets
  (:func:`score_weights`, one backward pass), the reward channel folded into (s, a) for the exact
  baseline (:func:`step_reward_into`, the kernel twin of ``distlab.expected.update_terms``);
* gates ``w(s)`` (:func:`loss_weights`: value gate, DPD's weights with clipping and normalisation).

Why these are written the way they are: a call between numba functions costs ~20 ns (as much as a
softmax of a row), so everything called per transition is ``inline="always"``; and a branch inside a
loop that reads arrays makes numba keep their reference counting in the loop (~4x slower), so the
components enter the hot loops as 0/1 factors, with branches only outside loops.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from distlab import rules
from distlab.student import LOG_FLOOR

__all__ = ["component_codes", "target_tables", "loss_value", "add_loss_gradient", "needs_logp", "score_weights",
           "tail_reward", "step_reward_into", "loss_weights"]

# Component codes: the index of each name in the registry's tuples (checked below).
C_TEACHER, C_STUDENT, C_UNIFORM, C_MIXTURE = range(4)
X_NONE, X_GREEDY, X_EPS_GREEDY, X_BOLTZMANN = range(4)
L_NONE, L_HX, L_RHX, L_KL, L_RKL, L_MSE, L_NLL = range(7)
R_NONE, R_LOG_TEACHER, R_NEG_NEXT_LOSS, R_LOG_TEACHER_NEXT, R_V_SHAPING = range(5)
S_RETURN, S_TD_TEACHER_V, S_TD_V0 = range(3)
G_NONE, G_VALUE, G_DPD = range(3)
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


# ---------------------------------------------------------------------------- per-MDP constant tables
@nb.njit(cache=True)
def target_tables(target):
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


@nb.njit(cache=True)
def needs_logp(loss, reward):
    """Whether the per-row log-probabilities are read: by a loss other than hx / kl (whose gradient is
    p - pi), or by the reward neg-next-loss (the loss value)."""
    return (loss != L_NONE and loss != L_HX and loss != L_KL) or reward == R_NEG_NEXT_LOSS


# ---------------------------------------------------------------------------- losses (one state)
@nb.njit(cache=True, inline="always")
def loss_value(loss, s, r, target, log_t, centred_t, argmax_t, entropy_t, probs, logp):
    """``l(pi_theta, s)`` for the loss code (``student.loss_values``); ``r`` is the student row of s.
    Branch-free in the loss (module docstring)."""
    A = probs.shape[1]
    is_hx = 1.0 if loss == L_HX or loss == L_KL else 0.0
    is_kl = 1.0 if loss == L_KL else 0.0
    is_rhx = 1.0 if loss == L_RHX else 0.0
    is_rkl = 1.0 if loss == L_RKL else 0.0
    is_mse = 1.0 if loss == L_MSE else 0.0
    is_nll = 1.0 if loss == L_NLL else 0.0
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
def add_loss_gradient(loss, weight, s, r, target, log_t, centred_t, argmax_t, probs, logp, g):
    """``g[r] += weight * dl/dz`` at the logits ``z = theta[r]`` (``student.loss_logit_grads``).

    hx, kl: p - pi.  reverse-hx: p (f - p.f), f = -log pi.  reverse-kl: the same with f = log p - log pi.
    mse-logits: (z - mean z) - (log pi - mean log pi).  nll-argmax: p - e_{argmax pi}.
    """
    A = probs.shape[1]
    is_hx = (1.0 if loss == L_HX or loss == L_KL else 0.0)
    is_reverse = (1.0 if loss == L_RHX or loss == L_RKL else 0.0)
    is_rkl = (1.0 if loss == L_RKL else 0.0)
    is_mse = (1.0 if loss == L_MSE else 0.0)
    is_nll = (1.0 if loss == L_NLL else 0.0)
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


# ---------------------------------------------------------------------------- rewards and scores
@nb.njit(cache=True, inline="always")
def score_weights(T, states, actions, alias, R, reward, score, env_reward, loss, teacher_v, mask, weight,
                  target, log_t, centred_t, argmax_t, entropy_t, probs, logp, init_return, returns, score_w):
    """Add ``W_t`` of every step of one episode segment to ``score_w[s_t, a_t]`` (one backward pass);
    write the return part ``Rhat_t`` to ``returns[t]`` (the learned baseline's target).

    ``W_t = Rhat_t + TD_t``: ``Rhat_t = init_return + sum_{t <= i < T} (rhat_i + r_i * env_reward)`` and
    ``TD_t = r_t + V_pi(s_{t+1})`` (``"td-teacher-v"``), ``r_t`` (``"td-v0"``) or 0 (``"return"``).
    Rewards: ``log-teacher`` m(s_i) log pi(a_i|s_i); ``neg-next-loss`` -w(s_{i+1}) l(s_{i+1});
    ``log-teacher-next`` m(s_{i+1}) log pi(a_{i+1}|s_{i+1}); ``teacher-v-shaping`` V_pi(s_{i+1}) - V_pi(s_i).
    The segment's last step has no "next" terms here (an ended episode: 0 past the end); a segment cut
    by an unroll passes them, and the bootstrap, in ``init_return`` (:func:`tail_reward`).

    "Next" quantities read step ``min(t + 1, T - 1)`` times ``alive``; only neg-next-loss, which
    evaluates the loss at every step, has its own loop.
    """
    is_log_teacher = 1.0 if reward == R_LOG_TEACHER else 0.0
    is_log_teacher_next = 1.0 if reward == R_LOG_TEACHER_NEXT else 0.0
    is_shaping = 1.0 if reward == R_V_SHAPING else 0.0
    env = 1.0 if env_reward else 0.0
    td = 1.0 if score != S_RETURN else 0.0
    td_teacher_v = 1.0 if score == S_TD_TEACHER_V else 0.0
    rhat_return = init_return  # sum_{i>=t} (rhat_i + r_i * env_reward)
    if reward == R_NEG_NEXT_LOSS and loss == L_HX:  # n-distill: Hx(pi || pi_theta) = -sum_a pi log p
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
            returns[t] = rhat_return
            score_w[s, a] += rhat_return + td * R[s, a] + td_teacher_v * alive * teacher_v[s2]
    elif reward == R_NEG_NEXT_LOSS:
        for t in range(T - 1, -1, -1):
            s = states[t]
            a = actions[t]
            s2 = states[min(t + 1, T - 1)]
            alive = 1.0 if t + 1 < T else 0.0
            next_loss = weight[s2] * loss_value(loss, s2, alias[s2], target, log_t, centred_t, argmax_t,
                                                entropy_t, probs, logp)
            rhat_return += env * R[s, a] - alive * next_loss
            returns[t] = rhat_return
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
            returns[t] = rhat_return
            score_w[s, a] += rhat_return + td * R[s, a] + td_teacher_v * alive * teacher_v[s2]


@nb.njit(cache=True)
def tail_reward(reward, loss, s2, alias, teacher_v, mask, weight, target, log_t, centred_t, argmax_t, entropy_t,
                probs, logp, beh_cdf):
    """The "next" part of the reward of a segment's last step when the episode goes on into ``s2`` (an
    unroll cut it): ``-w(s2) l(s2)``, ``V_pi(s2)``, or ``m(s2) sum_a q(a|s2) log pi(a|s2)`` for
    log-teacher-next (its next action is not drawn yet: its expectation under the control ``q``)."""
    if reward == R_NEG_NEXT_LOSS:
        return -weight[s2] * loss_value(loss, s2, alias[s2], target, log_t, centred_t, argmax_t, entropy_t, probs,
                                        logp)
    if reward == R_V_SHAPING:
        return teacher_v[s2]
    if reward == R_LOG_TEACHER_NEXT:
        acc = 0.0
        previous = 0.0
        for a in range(beh_cdf.shape[1]):
            acc += (beh_cdf[s2, a] - previous) * log_t[s2, a]
            previous = beh_cdf[s2, a]
        return mask[s2] * acc
    return 0.0


@nb.njit(cache=True)
def step_reward_into(reward, loss, env_reward, next_state, next_prob, R, alias, teacher_v, mask, weight, target,
                     log_t, centred_t, argmax_t, entropy_t, probs, logp, q, out):
    """The reward channel folded into (s, a), ``E[rhat_t (+ r_t) | s_t = s, a_t = a]`` (S, A), for the
    control ``q`` (S, A): the kernel twin of ``distlab.expected.update_terms``' ``step_reward`` (module
    docstring of ``distlab.expected``). Policy evaluation of ``q`` with it gives the exact baseline."""
    S, A, K = next_prob.shape
    per_state = np.zeros(S)  # the "next" part as a function of s' (0 for the other rewards)
    for s in range(S):
        if reward == R_NEG_NEXT_LOSS:
            per_state[s] = -weight[s] * loss_value(loss, s, alias[s], target, log_t, centred_t, argmax_t,
                                                   entropy_t, probs, logp)
        elif reward == R_LOG_TEACHER_NEXT:
            acc = 0.0
            for a in range(A):
                acc += q[s, a] * log_t[s, a]
            per_state[s] = mask[s] * acc
        elif reward == R_V_SHAPING:
            per_state[s] = teacher_v[s]
    for s in range(S):
        for a in range(A):
            x = 0.0
            for k in range(K):
                x += next_prob[s, a, k] * per_state[next_state[s, a, k]]
            if reward == R_LOG_TEACHER:
                x += mask[s] * log_t[s, a]
            elif reward == R_V_SHAPING:
                x -= teacher_v[s]
            if env_reward:
                x += R[s, a]
            out[s, a] = x


# ---------------------------------------------------------------------------- gates
@nb.njit(cache=True)
def loss_weights(gate, teacher_v, peer_v, student_v, mask, dpd_exp, dpd_alpha, dpd_clip, source_visits, out):
    """``w(s) = gate(s) * mask(s)``: gate 1, ``1[V_pi > V_theta]`` (Prop. 2), or DPD's weight of
    ``xi = V_peer - V_theta`` (Lai et al., 2020, Eqs. 9, 11).

    DPD's exp weight with ``dpd_clip > 0``: ``min(exp(alpha xi), clip) / mean``, the mean of the clipped
    weight under the expected visits ``source_visits`` of the policy whose states the loss is taken on
    (the deep backend's minibatch mean, in expectation). ``dpd_clip <= 0``: Eq. 11's ``exp(alpha xi)``.
    """
    S = out.shape[0]
    for s in range(S):
        if gate == G_VALUE:
            w = 1.0 if teacher_v[s] > student_v[s] else 0.0
        elif gate == G_DPD:
            xi = peer_v[s] - student_v[s]
            if dpd_exp:
                w = math.exp(dpd_alpha * xi)
                if dpd_clip > 0.0:
                    w = min(w, dpd_clip)
            else:
                w = 1.0 if xi > 0.0 else 0.0
        else:
            w = 1.0
        out[s] = w
    if gate == G_DPD and dpd_exp and dpd_clip > 0.0:
        total = 0.0
        mass = 0.0
        for s in range(S):
            total += source_visits[s] * out[s]
            mass += source_visits[s]
        mean = total / mass
        if math.isfinite(mean):  # NaN visits: a source that never ends; keep the clipped weight
            mean = max(mean, 1e-8)
            for s in range(S):
                out[s] /= mean
    for s in range(S):
        out[s] *= mask[s]
