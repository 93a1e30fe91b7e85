"""Rollout machinery of the sampled backend: the student's caches, episodes and unrolls, the drivers.

The rule components (losses, rewards, scores, gates) are in :mod:`distlab.components`, the RNG and
sampling kit in :mod:`distlab.rollout`, the Python API in :mod:`distlab.sampled`.

How the kernels are fast. The student is a tabular softmax over logits ``theta`` (rows x A) with a
state->row alias. Its probabilities (and, only for the losses that read them, log-probabilities) are
cached per row, and the behaviour policy of every state is kept as a sampling CDF, all refreshed only
for the rows an update touched. An action draw is one uniform number and a branch-free count over the
CDF. A step does not build ``g`` transition by transition: since ``grad log pi(a|s) = e_a -
pi_theta(s)`` and a loss gradient depends only on the state, it accumulates per-state sums (the summed
loss weight of the visits, the summed ``W_t - b(s_t)`` per action; ``W_t`` in one backward pass) and
turns them into row gradients once, for the states it visited. On-policy distillation thus costs two
uniform draws and a few adds per transition plus one softmax per visited state and update. No
allocation happens inside the loops; trajectories live in preallocated buffers.

What one step consumes (``step_unit``): ``episodes_per_step`` whole episodes from ``mu0`` (capped at
``max_steps``), or an unroll of exactly ``N`` transitions that continues the episode in progress (a new
one starts from ``mu0`` when one ends). An unroll is cut into per-episode segments; the last segment's
return is cut at the unroll's end, where the state ``s_N`` is known: the last reward's "next" part is
taken at ``s_N`` (``components.tail_reward``) and the return is bootstrapped with the baseline's
``b(s_N)`` when a baseline is used (with ``"exact"`` this keeps the score term unbiased), else cut.

With ``dpd_states="peer"`` the loss term is taken on the peer's own trajectories (a separate stream,
its transitions counted too) and the score term on the control's.

Determinism: ``prange`` loops run over independent units (MDPs of a batch, or fixed chunks of
samples), each with its own xoshiro256+ generator (:mod:`distlab.rollout`), so a result does not
depend on the number of threads.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from distlab.components import (
    C_MIXTURE, C_STUDENT, C_TEACHER, C_UNIFORM, G_DPD, G_NONE, L_HX, L_KL, R_NONE, S_RETURN, S_TD_TEACHER_V,
    X_BOLTZMANN, X_EPS_GREEDY, X_NONE, add_loss_gradient, loss_weights, needs_logp, score_weights,
    step_reward_into, tail_reward, target_tables,
)
from distlab.exact import _evaluate_into
from distlab.rollout import continuation_cdf, draw, draw_next, initial_state, policy_cdf, softmax_row, uniform

BASELINE_NONE, BASELINE_EXACT, BASELINE_LEARNED = range(3)  # indices in options.BASELINES
N_METRICS = 7  # len(sampled.METRICS)


# ---------------------------------------------------------------------------- the student's caches
@nb.njit(cache=True, inline="always")
def refresh_row(theta, r, probs):
    """Recompute the cached softmax of row ``r``; return its log-normaliser."""
    return softmax_row(theta, r, probs)


@nb.njit(cache=True, inline="always")
def refresh_row_and_logp(theta, r, probs, logp):
    """:func:`refresh_row` plus the cached log-softmax of row ``r`` (for the losses and rewards that read it)."""
    log_total = softmax_row(theta, r, probs)
    for a in range(theta.shape[1]):
        logp[r, a] = theta[r, a] - log_total


@nb.njit(cache=True, inline="always")
def behaviour_cdf_into(s, r, control, exploration, theta, probs, teacher, beta, epsilon, inv_temperature, scratch,
                       beh_cdf):
    """CDF of the control policy q(.|s) of Eq. 1 (``r`` the student row of ``s``).

    ``q`` = teacher, uniform, the student's behaviour ``b``, or ``beta * teacher + (1 - beta) * b``
    (``student.control_policy``); ``b`` = pi_theta or its exploration (``student.explore``, seed 003
    Sec. 3.4): greedy (uniform over the tied maxima of the logits), epsilon-greedy, or
    softmax(theta / T). Drawing from the mixed distribution is drawing a coin and then a policy.
    """
    A = theta.shape[1]
    acc = 0.0
    if control == C_TEACHER:
        for a in range(A):
            acc += teacher[s, a]
            beh_cdf[s, a] = acc
    elif control == C_UNIFORM:
        for a in range(A):
            beh_cdf[s, a] = (a + 1.0) / A
    else:
        w_teacher = beta if control == C_MIXTURE else 0.0
        w_student = 1.0 - w_teacher
        if exploration == X_NONE:
            for a in range(A):
                acc += w_student * probs[r, a] + w_teacher * teacher[s, a]
                beh_cdf[s, a] = acc
        elif exploration == X_BOLTZMANN:
            for a in range(A):
                scratch[0, a] = theta[r, a] * inv_temperature
            softmax_row(scratch, 0, scratch)
            for a in range(A):
                acc += w_student * scratch[0, a] + w_teacher * teacher[s, a]
                beh_cdf[s, a] = acc
        else:
            m = theta[r, 0]
            for a in range(1, A):
                m = max(m, theta[r, a])
            n_best = 0
            for a in range(A):
                n_best += theta[r, a] == m
            eps = epsilon if exploration == X_EPS_GREEDY else 0.0
            for a in range(A):
                b = eps / A + ((1.0 - eps) / n_best if theta[r, a] == m else 0.0)
                acc += w_student * b + w_teacher * teacher[s, a]
                beh_cdf[s, a] = acc
    beh_cdf[s, A - 1] = 1.0  # round-off must never make an action draw fall off the end


@nb.njit(cache=True, inline="always")
def refresh_rows(theta, rows_list, n_rows, row_ptr, row_states, control, exploration, teacher, beta, epsilon,
                 inv_temperature, need_logp, scratch, probs, logp, beh_cdf):
    """Refresh the caches of the listed rows and the control CDFs of their states (when q reads theta).
    The branch on need_logp stays outside the loops (numba reference counting, components docstring)."""
    if need_logp:
        for j in range(n_rows):
            refresh_row_and_logp(theta, rows_list[j], probs, logp)
    else:
        for j in range(n_rows):
            refresh_row(theta, rows_list[j], probs)
    if control == C_STUDENT or control == C_MIXTURE:
        for j in range(n_rows):
            r = rows_list[j]
            for i in range(row_ptr[r], row_ptr[r + 1]):
                behaviour_cdf_into(row_states[i], r, control, exploration, theta, probs, teacher, beta, epsilon,
                                   inv_temperature, scratch, beh_cdf)


@nb.njit(cache=True, inline="always")
def sgd_step_own_rows(theta, g, scale, rows_list, n_rows, row_touched, probs, logp, beh_cdf, with_logp):
    """``theta[r] -= scale * g[r]``, then the row's softmax (and log-softmax when ``with_logp``) and its
    sampling CDF: the common case of one row per state and the student itself as control (the hot loop
    of on-policy distillation and n-distill)."""
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
        log_total = softmax_row(theta, r, probs, beh_cdf, m)
        if with_logp:  # a compile-time constant at each call site
            for a in range(A):
                logp[r, a] = theta[r, a] - log_total


@nb.njit(cache=True)
def init_student(theta, alias, control, exploration, teacher, beta, epsilon, inv_temperature, probs, logp, beh_cdf):
    scratch = np.empty((1, theta.shape[1]))
    for r in range(theta.shape[0]):
        refresh_row_and_logp(theta, r, probs, logp)
    for s in range(alias.shape[0]):
        behaviour_cdf_into(s, alias[s], control, exploration, theta, probs, teacher, beta, epsilon, inv_temperature,
                           scratch, beh_cdf)


@nb.njit(cache=True)
def control_policy_into(beh_cdf, q):
    """The control policy ``q`` (S, A) from its sampling CDFs."""
    S, A = q.shape
    for s in range(S):
        previous = 0.0
        for a in range(A):
            q[s, a] = beh_cdf[s, a] - previous
            previous = beh_cdf[s, a]


@nb.njit(cache=True)
def student_policy_into(probs, alias, pi_theta):
    S, A = pi_theta.shape
    for s in range(S):
        r = alias[s]
        for a in range(A):
            pi_theta[s, a] = probs[r, a]


# ---------------------------------------------------------------------------- episodes and unrolls
@nb.njit(cache=True, inline="always")
def sample_episode(rng, next_state, next_cdf, mu0_cdf, beh_cdf, max_steps, weight, loss_w, touched, touched_list,
                   n_touched, states, actions):
    """Roll out one episode with the CDF ``beh_cdf`` into the ``states`` / ``actions`` buffers; add the
    loss weight of each visit to ``loss_w`` and list the states visited for the first time.
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
def sample_unroll(rng, next_state, next_cdf, mu0_cdf, beh_cdf, max_steps, N, carry, c, weight, loss_w, touched,
                  touched_list, n_touched, states, actions, ends):
    """Roll out exactly ``N`` transitions, continuing the episode in ``carry[c]`` (its state, -1 for a new
    episode) and ``carry[c + 1]`` (its length so far); ``ends[t] = 1`` where an episode ended (or hit
    ``max_steps``) after transition t. Loss weights and touched states as :func:`sample_episode`.
    Returns ``(n_touched, truncated episodes)``; ``carry`` holds the state after the unroll."""
    K = next_cdf.shape[2]
    s = carry[c]
    length = carry[c + 1]
    n_trunc = 0
    for t in range(N):
        if s < 0:
            s = initial_state(mu0_cdf, uniform(rng))
            length = 0
        a = draw(beh_cdf, s, uniform(rng))
        touched_list[n_touched] = s
        n_touched += 1 - touched[s]
        touched[s] = 1
        loss_w[s] += weight[s]
        states[t] = s
        actions[t] = a
        length += 1
        k = draw_next(next_cdf, s, a, uniform(rng))
        if k == K:
            ends[t] = 1
            s = -1
        elif length >= max_steps:
            ends[t] = 1
            s = -1
            n_trunc += 1
        else:
            ends[t] = 0
            s = next_state[s, a, k]
    carry[c] = s
    carry[c + 1] = length
    return n_touched, n_trunc


@nb.njit(cache=True, inline="always")
def apply_baseline(T, states, actions, returns, baseline_v, learned, baseline_lr, score_w, baseline_sum):
    """Subtract ``b(s_t)`` from each step's score weight (and sum it per state, for the correction of
    :func:`states_to_rows`); then, for the learned critic, ``b(s_t) += lr (Rhat_t - b(s_t))`` (every-visit
    Monte Carlo, after the whole segment used the old ``b``: the baseline never sees its own sample)."""
    for t in range(T):
        s = states[t]
        b = baseline_v[s]
        score_w[s, actions[t]] -= b
        baseline_sum[s] += b
    if learned:
        for t in range(T):
            s = states[t]
            baseline_v[s] += baseline_lr * (returns[t] - baseline_v[s])


@nb.njit(cache=True, inline="always")
def episode_scores(T, states, actions, alias, R, reward, score, env_reward, loss, teacher_v, mask, weight, target,
                   log_t, centred_t, argmax_t, entropy_t, probs, logp, baseline_code, baseline_lr, baseline_v,
                   baseline_sum, returns, score_w):
    """Score weights of one whole episode, minus the baseline (and the learned critic's update)."""
    score_weights(T, states, actions, alias, R, reward, score, env_reward, loss, teacher_v, mask, weight, target,
                  log_t, centred_t, argmax_t, entropy_t, probs, logp, 0.0, returns, score_w)
    if baseline_code != BASELINE_NONE:
        apply_baseline(T, states, actions, returns, baseline_v, baseline_code == BASELINE_LEARNED, baseline_lr,
                       score_w, baseline_sum)


@nb.njit(cache=True)
def unroll_scores(N, tail, states, actions, ends, alias, R, reward, score, env_reward, loss, teacher_v, mask,
                  weight, target, log_t, centred_t, argmax_t, entropy_t, probs, logp, beh_cdf, baseline_code,
                  baseline_lr, baseline_v, baseline_sum, returns, score_w):
    """Score weights of an unroll, one episode segment at a time (backwards), minus the baseline. The
    last segment goes on into ``tail`` (>= 0) unless its episode ended: its return starts from the last
    reward's "next" part at ``tail`` plus ``b(tail)`` when there is a baseline (the bootstrap), and
    td-teacher-v's target reads ``V_pi(tail)``."""
    baseline_on = baseline_code != BASELINE_NONE
    hi = N
    while hi > 0:
        lo = hi - 1
        while lo > 0 and ends[lo - 1] == 0:
            lo -= 1
        init = 0.0
        cut = hi == N and tail >= 0
        if cut:
            init = tail_reward(reward, loss, tail, alias, teacher_v, mask, weight, target, log_t, centred_t,
                               argmax_t, entropy_t, probs, logp, beh_cdf)
            if baseline_on:
                init += baseline_v[tail]
        score_weights(hi - lo, states[lo:hi], actions[lo:hi], alias, R, reward, score, env_reward, loss, teacher_v,
                      mask, weight, target, log_t, centred_t, argmax_t, entropy_t, probs, logp, init,
                      returns[lo:hi], score_w)
        if cut and score == S_TD_TEACHER_V:
            score_w[states[N - 1], actions[N - 1]] += teacher_v[tail]
        hi = lo
    if baseline_on:
        apply_baseline(N, states, actions, returns, baseline_v, baseline_code == BASELINE_LEARNED, baseline_lr,
                       score_w, baseline_sum)


@nb.njit(cache=True, inline="always")
def states_to_rows(n_touched, touched_list, touched, alias, loss, has_score, correct_baseline, loss_w, score_w,
                   baseline_sum, beh_cdf, target, log_t, centred_t, argmax_t, probs, logp, g, row_touched, row_list):
    """Turn the per-state sums into the row gradient ``g``, reset them, and list the rows touched.

    Score term: ``-sum_t (e_{a_t} - p) (W_t - b_t) = -(w_s - p * sum_a w_s[a])`` with ``w_s = score_w[s]``.
    A baseline is unbiased only where the control is the student (``E_q[e_a - p] = q - p``); elsewhere
    (``correct_baseline``) the exact correction ``-(q(s) - p(s)) sum_t b(s_t)`` restores the expectation.
    """
    A = probs.shape[1]
    n_rows = 0
    if loss == L_HX or loss == L_KL:  # the common case, p - pi, in its own lean loop
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
            add_loss_gradient(loss, loss_w[s], s, r, target, log_t, centred_t, argmax_t, probs, logp, g)
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
        if correct_baseline:
            for j in range(n_touched):
                s = touched_list[j]
                r = alias[s]
                previous = 0.0
                for a in range(A):
                    q = beh_cdf[s, a] - previous
                    previous = beh_cdf[s, a]
                    g[r, a] -= (q - probs[r, a]) * baseline_sum[s]
                baseline_sum[s] = 0.0
        else:
            for j in range(n_touched):
                baseline_sum[touched_list[j]] = 0.0
    return n_rows


# ---------------------------------------------------------------------------- exact quantities
@nb.njit(cache=True)
def record_metrics(next_state, next_prob, R, mu0, alias, teacher, teacher_entropy, theta, probs, visits_teacher,
                   visits_uniform, pi_theta, V, Q, visits, scratch, out):
    """Exact metrics of the current student (``sampled.METRICS``); NaN where the student never ends."""
    S, A = pi_theta.shape
    student_policy_into(probs, alias, pi_theta)
    ok = _evaluate_into(next_state, next_prob, R, mu0, pi_theta, V, Q, visits) < 0
    start = hx_t = hx_s = hx_u = kl_t = kl_s = kl_u = 0.0
    for s in range(S):
        r = alias[s]
        log_total = softmax_row(theta, r, scratch)
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
def policy_visits(next_state, next_prob, R, mu0, pi):
    """Expected visits of a fixed policy (NaN if it never terminates from some state)."""
    S, A = pi.shape
    V = np.empty(S)
    Q = np.empty((S, A))
    visits = np.empty(S)
    if _evaluate_into(next_state, next_prob, R, mu0, pi, V, Q, visits) >= 0:
        visits[:] = np.nan
    return visits


@nb.njit(cache=True)
def exact_baseline_into(reward, loss, env_reward, next_state, next_prob, R, mu0, alias, teacher_v, mask, weight,
                        target, log_t, centred_t, argmax_t, entropy_t, probs, logp, beh_cdf, q, step_reward, Q,
                        visits, out):
    """``out(s) = E_q[Rhat_t | s_t = s]``, the exact expected return-to-go of the rule's reward under the
    current control (policy evaluation of q with :func:`components.step_reward_into`). False (``out``
    unchanged) if the control never ends an episode from some state."""
    control_policy_into(beh_cdf, q)
    step_reward_into(reward, loss, env_reward, next_state, next_prob, R, alias, teacher_v, mask, weight, target,
                     log_t, centred_t, argmax_t, entropy_t, probs, logp, q, step_reward)
    b = np.empty(out.shape[0])
    if _evaluate_into(next_state, next_prob, step_reward, mu0, q, b, Q, visits) >= 0:
        return False
    out[:] = b
    return True


# ---------------------------------------------------------------------------- sampled_update kernel
@nb.njit(cache=True, parallel=True)
def sampled_update_kernel(next_state, next_prob, R, mu0, alias, theta, teacher, peer_pi, target, teacher_v, mask,
                          weight, baseline_v0, codes, exploration, beta, epsilon, inv_temperature, max_steps,
                          transitions_mode, N, peer_states, baseline_code, baseline_lr, chunk_units, chunk_seeds,
                          g_sum, g_sumsq, truncations, transitions):
    """For each chunk of samples (episodes, or consecutive unrolls of one stream): the sums of the
    single-sample updates ``g`` and of their squares, at the fixed ``theta``."""
    S, A, K = next_prob.shape
    rows = theta.shape[0]
    control, loss, reward, score, env_reward = codes[0], codes[1], codes[2], codes[3], codes[5] != 0
    next_cdf = continuation_cdf(next_prob)
    peer_cdf = policy_cdf(peer_pi)
    mu0_cdf = np.cumsum(mu0)
    log_t, centred_t, argmax_t, entropy_t = target_tables(target)
    probs = np.empty((rows, A))
    logp = np.empty((rows, A))
    beh_cdf = np.empty((S, A))
    init_student(theta, alias, control, exploration, teacher, beta, epsilon, inv_temperature, probs, logp, beh_cdf)
    has_score = reward != R_NONE or score != S_RETURN or env_reward
    correct = baseline_code != BASELINE_NONE and not (control == C_STUDENT and exploration == X_NONE)
    buffer = max(max_steps, N)
    episodes_per_sample = 1
    for c in nb.prange(chunk_seeds.shape[0]):
        rng = chunk_seeds[c].copy()
        carry = np.array([-1, 0, -1, 0], dtype=np.int64)
        baseline_v = baseline_v0.copy()
        zero_weight = np.zeros(S)
        control_weight = zero_weight if peer_states else weight  # DPD's peer states: no loss on the control's
        loss_w = np.zeros(S)
        score_w = np.zeros((S, A))
        baseline_sum = np.zeros(S)
        touched = np.zeros(S, dtype=np.int8)
        touched_list = np.empty(S, dtype=np.int64)
        row_touched = np.zeros(rows, dtype=np.int8)
        row_list = np.empty(rows, dtype=np.int64)
        g = np.zeros((rows, A))
        states = np.empty(buffer, dtype=np.int64)
        actions = np.empty(buffer, dtype=np.int64)
        ends = np.zeros(buffer, dtype=np.int8)
        returns = np.empty(buffer)
        n_trunc = 0
        n_transitions = 0
        for _ in range(chunk_units[c]):
            n_touched = 0
            # one sample is what a training step consumes (see train_one)
            if transitions_mode:
                if peer_states:  # DPD's loss on the peer's states: a stream of its own
                    n_touched, tr = sample_unroll(
                        rng, next_state, next_cdf, mu0_cdf, peer_cdf, max_steps, N, carry, 2, weight, loss_w, touched,
                        touched_list, n_touched, states, actions, ends)
                    n_transitions += N
                    n_trunc += tr
                if has_score or not peer_states:
                    n_touched, tr = sample_unroll(
                        rng, next_state, next_cdf, mu0_cdf, beh_cdf, max_steps, N, carry, 0, control_weight, loss_w,
                        touched, touched_list, n_touched, states, actions, ends)
                    n_transitions += N
                    n_trunc += tr
                    if has_score:
                        unroll_scores(
                            N, carry[0], states, actions, ends, alias, R, reward, score, env_reward, loss, teacher_v,
                            mask, weight, target, log_t, centred_t, argmax_t, entropy_t, probs, logp, beh_cdf,
                            baseline_code, baseline_lr, baseline_v, baseline_sum, returns, score_w)
            else:
                for _ in range(episodes_per_sample):
                    if peer_states:
                        T, n_touched, truncated = sample_episode(
                            rng, next_state, next_cdf, mu0_cdf, peer_cdf, max_steps, weight, loss_w, touched,
                            touched_list, n_touched, states, actions)
                        n_transitions += T
                        n_trunc += truncated
                    if has_score or not peer_states:
                        T, n_touched, truncated = sample_episode(
                            rng, next_state, next_cdf, mu0_cdf, beh_cdf, max_steps, control_weight, loss_w, touched,
                            touched_list, n_touched, states, actions)
                        n_transitions += T
                        n_trunc += truncated
                        if has_score:
                            episode_scores(
                                T, states, actions, alias, R, reward, score, env_reward, loss, teacher_v, mask, weight,
                                target, log_t, centred_t, argmax_t, entropy_t, probs, logp, baseline_code, baseline_lr,
                                baseline_v, baseline_sum, returns, score_w)
            n_rows = states_to_rows(n_touched, touched_list, touched, alias, loss, has_score, correct, loss_w,
                                    score_w, baseline_sum, beh_cdf, target, log_t, centred_t, argmax_t, probs, logp,
                                    g, row_touched, row_list)
            for j in range(n_rows):
                r = row_list[j]
                for a in range(A):
                    x = g[r, a]
                    g_sum[c, r, a] += x
                    g_sumsq[c, r, a] += x * x
                    g[r, a] = 0.0
                row_touched[r] = 0
        truncations[c] = n_trunc
        transitions[c] = n_transitions


# ---------------------------------------------------------------------------- the training kernel
@nb.njit(cache=True)
def train_one(next_state, next_prob, R, mu0, alias, row_ptr, row_states, theta, teacher, peer_pi, target, teacher_v,
              peer_v, mask, codes, exploration, beta, epsilon, inv_temperature, dpd_exp, dpd_alpha, dpd_clip,
              peer_states, transitions_mode, N, baseline_code, baseline_lr, steps, lr, episodes_per_step,
              value_every, max_steps, record_steps, metrics, record_transitions, rng_state):
    """SGD on one MDP: ``steps`` updates ``theta -= lr * g``; ``g`` is the mean of the single-episode
    updates of a step's episodes, or the update of its unroll (summed over its transitions, as an
    episode's is); exact metrics at record steps.

    Returns ``(transitions, truncated episodes, failed exact evaluations)``.
    """
    rng = rng_state.copy()
    S, A, K = next_prob.shape
    rows = theta.shape[0]
    control, loss, reward, score, gate = codes[0], codes[1], codes[2], codes[3], codes[4]
    env_reward = codes[5] != 0
    next_cdf = continuation_cdf(next_prob)
    peer_cdf = policy_cdf(peer_pi)
    mu0_cdf = np.cumsum(mu0)
    log_t, centred_t, argmax_t, entropy_t = target_tables(target)
    teacher_entropy = target_tables(teacher)[3]
    probs = np.empty((rows, A))
    logp = np.empty((rows, A))
    beh_cdf = np.empty((S, A))
    scratch = np.empty((1, A))  # one row: Boltzmann exploration's tempered softmax
    scores_scratch = np.empty((rows, A))  # record_metrics' log-normalisers
    init_student(theta, alias, control, exploration, teacher, beta, epsilon, inv_temperature, probs, logp, beh_cdf)
    need_logp = needs_logp(loss, reward)
    # exact evaluation workspace
    pi_theta = np.empty((S, A))
    q = np.empty((S, A))
    step_reward = np.empty((S, A))
    V = np.zeros(S)
    Q = np.empty((S, A))
    visits = np.empty(S)
    V_q = np.empty(S)
    visits_q = np.empty(S)
    visits_teacher = policy_visits(next_state, next_prob, R, mu0, teacher)
    visits_uniform = policy_visits(next_state, next_prob, R, mu0, np.full((S, A), 1.0 / A))
    normalise_dpd = gate == G_DPD and dpd_exp and dpd_clip > 0.0
    visits_peer = policy_visits(next_state, next_prob, R, mu0, peer_pi) if normalise_dpd and peer_states else visits
    weight = mask.copy()  # gate * mask; the gate is refreshed every value_every steps
    baseline_v = np.zeros(S)
    # step workspace
    zero_weight = np.zeros(S)
    loss_w = np.zeros(S)
    score_w = np.zeros((S, A))
    baseline_sum = np.zeros(S)
    touched = np.zeros(S, dtype=np.int8)
    touched_list = np.empty(S, dtype=np.int64)
    row_touched = np.zeros(rows, dtype=np.int8)
    row_list = np.empty(rows, dtype=np.int64)
    g = np.zeros((rows, A))
    buffer = max(max_steps, N)
    states = np.empty(buffer, dtype=np.int64)
    actions = np.empty(buffer, dtype=np.int64)
    ends = np.zeros(buffer, dtype=np.int8)
    returns = np.empty(buffer)
    carry = np.array([-1, 0, -1, 0], dtype=np.int64)
    has_score = reward != R_NONE or score != S_RETURN or env_reward
    student_is_control = control == C_STUDENT and exploration == X_NONE
    correct = baseline_code != BASELINE_NONE and not student_is_control
    one_row_per_state = rows == S
    for s in range(S):
        one_row_per_state &= alias[s] == s
    fused_update = one_row_per_state and student_is_control
    n_trunc = 0
    n_failed = 0
    n_transitions = 0
    scale = lr if transitions_mode else lr / episodes_per_step
    next_record = 0
    control_weight = zero_weight if peer_states else weight  # DPD's peer states: no loss on the control's
    for step in range(steps + 1):
        if next_record < record_steps.shape[0] and record_steps[next_record] == step:
            ok = record_metrics(next_state, next_prob, R, mu0, alias, teacher, teacher_entropy, theta, probs,
                                visits_teacher, visits_uniform, pi_theta, V, Q, visits, scores_scratch,
                                metrics[next_record])
            record_transitions[next_record] = n_transitions
            n_failed += not ok
            next_record += 1
        if step == steps:
            break
        if step % value_every == 0:
            if gate != G_NONE:
                student_policy_into(probs, alias, pi_theta)
                if _evaluate_into(next_state, next_prob, R, mu0, pi_theta, V, Q, visits) < 0:
                    source = visits_peer if peer_states else visits
                    if normalise_dpd and not peer_states and not student_is_control:
                        control_policy_into(beh_cdf, q)
                        if _evaluate_into(next_state, next_prob, R, mu0, q, V_q, Q, visits_q) >= 0:
                            visits_q[:] = np.nan  # never ends: the weight stays unnormalised
                        source = visits_q
                    loss_weights(gate, teacher_v, peer_v, V, mask, dpd_exp, dpd_alpha, dpd_clip, source, weight)
                else:
                    n_failed += 1  # keep the previous gate
            if baseline_code == BASELINE_EXACT:
                n_failed += not exact_baseline_into(
                    reward, loss, env_reward, next_state, next_prob, R, mu0, alias, teacher_v, mask, weight, target,
                    log_t, centred_t, argmax_t, entropy_t, probs, logp, beh_cdf, q, step_reward, Q, visits_q,
                    baseline_v)
        n_touched = 0
        # What one step consumes (module docstring): with DPD's peer states, a stream of the peer's for the
        # loss and one of the control's for the score. Written out here (and in sampled_update_kernel) rather
        # than in one helper: a call with more than 30 arguments compiles to a *args call, which numba can
        # neither inline nor make cheap (~0.7 us a step of reference counting, a third of on-policy's time).
        if transitions_mode:
            if peer_states:  # DPD's loss on the peer's states: a stream of its own
                n_touched, tr = sample_unroll(
                    rng, next_state, next_cdf, mu0_cdf, peer_cdf, max_steps, N, carry, 2, weight, loss_w, touched,
                    touched_list, n_touched, states, actions, ends)
                n_transitions += N
                n_trunc += tr
            if has_score or not peer_states:
                n_touched, tr = sample_unroll(
                    rng, next_state, next_cdf, mu0_cdf, beh_cdf, max_steps, N, carry, 0, control_weight, loss_w,
                    touched, touched_list, n_touched, states, actions, ends)
                n_transitions += N
                n_trunc += tr
                if has_score:
                    unroll_scores(
                        N, carry[0], states, actions, ends, alias, R, reward, score, env_reward, loss, teacher_v, mask,
                        weight, target, log_t, centred_t, argmax_t, entropy_t, probs, logp, beh_cdf, baseline_code,
                        baseline_lr, baseline_v, baseline_sum, returns, score_w)
        else:
            for _ in range(episodes_per_step):
                if peer_states:
                    T, n_touched, truncated = sample_episode(
                        rng, next_state, next_cdf, mu0_cdf, peer_cdf, max_steps, weight, loss_w, touched,
                        touched_list, n_touched, states, actions)
                    n_transitions += T
                    n_trunc += truncated
                if has_score or not peer_states:
                    T, n_touched, truncated = sample_episode(
                        rng, next_state, next_cdf, mu0_cdf, beh_cdf, max_steps, control_weight, loss_w, touched,
                        touched_list, n_touched, states, actions)
                    n_transitions += T
                    n_trunc += truncated
                    if has_score:
                        episode_scores(
                            T, states, actions, alias, R, reward, score, env_reward, loss, teacher_v, mask, weight,
                            target, log_t, centred_t, argmax_t, entropy_t, probs, logp, baseline_code, baseline_lr,
                            baseline_v, baseline_sum, returns, score_w)
        n_rows = states_to_rows(n_touched, touched_list, touched, alias, loss, has_score, correct, loss_w, score_w,
                                baseline_sum, beh_cdf, target, log_t, centred_t, argmax_t, probs, logp, g,
                                row_touched, row_list)
        if fused_update:
            if need_logp:
                sgd_step_own_rows(theta, g, scale, row_list, n_rows, row_touched, probs, logp, beh_cdf, True)
            else:
                sgd_step_own_rows(theta, g, scale, row_list, n_rows, row_touched, probs, logp, beh_cdf, False)
            continue
        for j in range(n_rows):
            r = row_list[j]
            for a in range(A):
                theta[r, a] -= scale * g[r, a]
                g[r, a] = 0.0
            row_touched[r] = 0
        refresh_rows(theta, row_list, n_rows, row_ptr, row_states, control, exploration, teacher, beta, epsilon,
                     inv_temperature, need_logp, scratch, probs, logp, beh_cdf)
    return n_transitions, n_trunc, n_failed


@nb.njit(cache=True, parallel=True)
def train_batch(next_state, next_prob, R, mu0, alias, row_ptr, row_states, theta, teacher, peer_pi, target,
                teacher_v, peer_v, mask, codes, exploration, beta, epsilon, inv_temperature, dpd_exp, dpd_alpha,
                dpd_clip, peer_states, transitions_mode, N, baseline_code, baseline_lr, steps, lr, episodes_per_step,
                value_every, max_steps, record_steps, metrics, record_transitions, seeds, transitions, truncations,
                failures):
    for b in nb.prange(next_prob.shape[0]):
        n_transitions, n_trunc, n_failed = train_one(
            next_state[b], next_prob[b], R[b], mu0[b], alias, row_ptr, row_states, theta[b], teacher[b], peer_pi[b],
            target[b], teacher_v[b], peer_v[b], mask[b], codes, exploration, beta, epsilon, inv_temperature, dpd_exp,
            dpd_alpha, dpd_clip, peer_states, transitions_mode, N, baseline_code, baseline_lr, steps, lr,
            episodes_per_step, value_every, max_steps, record_steps, metrics[b], record_transitions[b], seeds[b])
        transitions[b] = n_transitions
        truncations[b] = n_trunc
        failures[b] = n_failed
