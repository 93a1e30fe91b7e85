"""Exact expected updates against a dense re-derivation of Eq. 1, finite-difference gradients of the
rules' losses, and the identities of the taxonomy (X+r = X + rl, teacher-v-reward = rl)."""

from dataclasses import replace

import numpy as np
import pytest
from scipy.special import log_softmax

import mdps
from distlab import exact, rules
from distlab.expected import expected_step_reward, expected_update, run_exact
from distlab.teachers import epsilon_greedy_policy, softmax_policy

S, A = 8, 3


def garnet(seed):
    return mdps.garnet(S, A, 3, seed=seed)


def random_teacher(seed, S=S, A=A):
    return np.random.default_rng(seed).dirichlet(np.ones(A), size=S)


def random_theta(seed, rows=S):
    return np.random.default_rng(100 + seed).normal(size=(rows, A))


# ----------------------------------------------------------------------------------- dense reference
def dense_values(P, R, mu0, pi):
    M = np.eye(len(mu0)) - np.einsum("sa,sat->st", pi, P)
    V = np.linalg.solve(M, (pi * R).sum(1))
    return V, np.linalg.solve(M.T, mu0)


def dense_update(mdp, rule, theta, teacher, dpd_weight="exp", dpd_alpha=1.0, dpd_clip=10.0, dpd_states="peer"):
    """Eq. 1 re-derived with dense matrices and explicit loops, for rules with the hx / reverse-hx /
    no loss and a teacher or student control (the registered rules). DPD: the peer is ``teacher``; its
    loss states are the peer's (``"peer"``) or the control's, the exp weight clipped and divided by its
    mean under those states' visits (Lai et al., 2020, Eq. 11 and the deep backend)."""
    rule = rules.get(rule)
    P, R, mu0 = mdp.to_dense()
    nS, nA = R.shape
    p = np.exp(log_softmax(theta, axis=1))
    q = teacher if rule.control == "teacher" else p
    V_t, _ = dense_values(P, R, mu0, teacher)
    V_s, _ = dense_values(P, R, mu0, p)
    log_t = np.log(teacher)
    if rule.loss == "hx":
        loss, dloss = -(teacher * np.log(p)).sum(1), p - teacher
    elif rule.loss == "reverse-hx":
        loss = -(p * log_t).sum(1)
        dloss = np.array([[p[s, k] * (-log_t[s, k] - loss[s]) for k in range(nA)] for s in range(nS)])
    else:
        loss, dloss = np.zeros(nS), np.zeros((nS, nA))
    gate = {"none": np.ones(nS), "value": (V_t > V_s) * 1.0}.get(rule.gate)
    _, d_q = dense_values(P, R, mu0, q)
    d_loss = d_q
    if rule.gate == "dpd":
        if dpd_states == "peer":
            _, d_loss = dense_values(P, R, mu0, teacher)
        gate = (V_t - V_s > 0) * 1.0 if dpd_weight == "indicator" else np.exp(dpd_alpha * (V_t - V_s))
        if dpd_weight == "exp" and dpd_clip is not None:
            gate = np.minimum(gate, dpd_clip)
            gate = gate / (d_loss @ gate / d_loss.sum())
    rc = np.zeros((nS, nA))
    for s in range(nS):
        for a in range(nA):
            for s2 in range(nS):
                if rule.reward == "neg-next-loss":
                    rc[s, a] -= P[s, a, s2] * gate[s2] * loss[s2]
                elif rule.reward == "log-teacher-next":
                    rc[s, a] += P[s, a, s2] * sum(q[s2, a2] * log_t[s2, a2] for a2 in range(nA))
                elif rule.reward == "teacher-v-shaping":
                    rc[s, a] += P[s, a, s2] * V_t[s2]
            if rule.reward == "log-teacher":
                rc[s, a] += log_t[s, a]
            if rule.reward == "teacher-v-shaping":
                rc[s, a] -= V_t[s]
            if rule.env_reward:
                rc[s, a] += R[s, a]
    Vhat, d = dense_values(P, rc, mu0, q)
    W = rc + P @ Vhat
    if rule.score == "td-teacher-v":
        W = W + R + P @ V_t
    elif rule.score == "td-v0":
        W = W + R
    g = np.zeros((nS, nA))
    for s in range(nS):
        score = sum(q[s, a] * W[s, a] * (np.eye(nA)[a] - p[s]) for a in range(nA))
        g[s] = d_loss[s] * gate[s] * dloss[s] - d[s] * score
    return g


@pytest.mark.parametrize("name", rules.names())
def test_expected_update_matches_dense_reference(name):
    mdp, teacher, theta = garnet(1), random_teacher(2), random_theta(3)
    g = expected_update(mdp, name, theta, teacher)
    ref = dense_update(mdp, name, theta, teacher)
    np.testing.assert_allclose(g, ref, rtol=1e-9, atol=1e-10 * np.abs(ref).max())


def test_dpd_indicator_weight_and_alpha():
    mdp, teacher, theta = garnet(4), random_teacher(5), random_theta(6)
    for kw in (dict(dpd_weight="indicator"), dict(dpd_weight="exp", dpd_alpha=0.3)):
        np.testing.assert_allclose(expected_update(mdp, "dpd", theta, teacher, **kw), dense_update(mdp, "dpd", theta, teacher, **kw), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ["dpd", "dpd+r"])
@pytest.mark.parametrize("dpd_states", ["own", "peer"])
@pytest.mark.parametrize("dpd_clip", [None, 10.0, 1.2])
def test_dpd_states_and_clip_match_dense_reference(name, dpd_states, dpd_clip):
    """Eq. 11 with the peer's states (s ~ pi~) or the learner's own, unclipped or clipped and
    normalised (a clip of 1.2 binds: alpha = 3 spreads the weights)."""
    mdp, teacher, theta = garnet(4), random_teacher(5), random_theta(6)
    kw = dict(dpd_alpha=3.0, dpd_clip=dpd_clip, dpd_states=dpd_states)
    ref = dense_update(mdp, name, theta, teacher, **kw)
    np.testing.assert_allclose(expected_update(mdp, name, theta, teacher, **kw), ref, rtol=1e-9, atol=1e-12 * np.abs(ref).max())
    if dpd_clip == 1.2:  # the clip changes the update (it binds)
        assert np.abs(ref - dense_update(mdp, name, theta, teacher, **dict(kw, dpd_clip=None))).max() > 1e-3


def test_dpd_peer_states_differ_from_own_states():
    mdp, teacher, theta = garnet(4), random_teacher(5), random_theta(6)
    own = expected_update(mdp, "dpd", theta, teacher, dpd_states="own")
    assert np.abs(own - expected_update(mdp, "dpd", theta, teacher, dpd_states="peer")).max() > 1e-3


def test_dpd_clip_none_with_own_states_is_eq_11_on_the_learners_states():
    """The form before issue 8: exp(alpha xi) unclipped, d_q of the student (an independent formula)."""
    mdp, teacher, theta = garnet(4), random_teacher(5), random_theta(6)
    P, R, mu0 = mdp.to_dense()
    p = np.exp(log_softmax(theta, axis=1))
    V_t, _ = dense_values(P, R, mu0, teacher)
    V_s, d = dense_values(P, R, mu0, p)
    expected = (d * np.exp(V_t - V_s))[:, None] * (p - teacher)
    np.testing.assert_allclose(expected_update(mdp, "dpd", theta, teacher, dpd_clip=None, dpd_states="own"), expected, rtol=1e-10)


def test_dpd_distils_the_peer_with_the_peers_value():
    mdp, teacher, peer, theta = garnet(4), random_teacher(5), random_teacher(7), random_theta(6)
    V_peer = exact.evaluate(mdp, peer)[0]
    np.testing.assert_allclose(
        expected_update(mdp, "dpd", theta, teacher, peer=peer),
        dense_update(mdp, "dpd", theta, peer),  # the peer in the teacher's role
        rtol=1e-9, atol=1e-12,
    )
    np.testing.assert_allclose(expected_update(mdp, "dpd", theta, teacher, peer=peer, peer_value=V_peer), expected_update(mdp, "dpd", theta, teacher, peer=peer), rtol=1e-12)


# --------------------------------------------------------------------- gradients of the rules' losses
def objective(mdp, theta, teacher, kind):
    """Exact objectives by dense solves: the Loss column of Table 1."""
    P, R, mu0 = mdp.to_dense()
    p = np.exp(log_softmax(theta, axis=1))
    V, d = dense_values(P, R, mu0, p)
    if kind == "hx":  # E_pi_theta[sum_t Hx(pi(s_t) || pi_theta(s_t))]
        return d @ -(teacher * np.log(p)).sum(1)
    if kind == "log-teacher":  # E_pi_theta[sum_t -log pi(a_t|s_t)]
        return d @ -(p * np.log(teacher)).sum(1)
    return -(mu0 @ V)  # minus the return


def fd_gradient(f, theta, eps=1e-6):
    g = np.zeros_like(theta)
    for idx in np.ndindex(theta.shape):
        e = np.zeros_like(theta)
        e[idx] = eps
        g[idx] = (f(theta + e) - f(theta - e)) / (2 * eps)
    return g


GRADIENT_RULES = [("n-distill", "hx"), ("expected-entropy", "log-teacher"), ("entropy-regularised", "log-teacher"), ("rl", "return"), ("teacher-v-reward", "return")]


@pytest.mark.parametrize("name, kind", GRADIENT_RULES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradient_rules_are_the_gradients_of_their_losses(name, kind, seed):
    mdp, teacher, theta = garnet(seed), random_teacher(seed + 10), random_theta(seed)
    g = expected_update(mdp, name, theta, teacher)
    fd = fd_gradient(lambda th: objective(mdp, th, teacher, kind), theta)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-7 * np.abs(fd).max())


def test_teacher_distill_is_the_gradient_of_the_loss_under_the_teacher():
    mdp, teacher, theta = garnet(3), random_teacher(4), random_theta(5)
    P, R, mu0 = mdp.to_dense()
    _, d_teacher = dense_values(P, R, mu0, teacher)
    fd = fd_gradient(lambda th: d_teacher @ -(teacher * log_softmax(th, axis=1)).sum(1), theta)
    np.testing.assert_allclose(expected_update(mdp, "teacher", theta, teacher), fd, rtol=1e-6, atol=1e-9)


def test_plus_r_is_the_rule_plus_rl():
    mdp, teacher, theta = garnet(5), random_teacher(6), random_theta(7)
    rl = expected_update(mdp, "rl", theta, teacher)
    plus_r = [n for n in rules.names() if n.endswith("+r")]
    assert len(plus_r) == 8
    for name in plus_r:
        base = expected_update(mdp, name.removesuffix("+r"), theta, teacher)
        np.testing.assert_allclose(expected_update(mdp, name, theta, teacher), base + rl, rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("make", [lambda: garnet(8), lambda: mdps.random_gridworld(size=8, seed=3)], ids=["garnet", "gridworld"])
def test_teacher_v_reward_equals_rl_exactly(make):
    mdp = make()
    rng = np.random.default_rng(0)
    teacher = random_teacher(1, mdp.n_states, mdp.n_actions)
    for _ in range(3):
        theta = rng.normal(size=(mdp.n_states, mdp.n_actions))
        rl = expected_update(mdp, "rl", theta, teacher)
        tv = expected_update(mdp, "teacher-v-reward", theta, teacher)
        assert np.abs(tv - rl).max() < 1e-10 * max(1.0, np.abs(rl).max())
    # ... for any teacher value, e.g. the adversarial teacher with an optimal value (Fig. 6).
    tv = expected_update(mdp, "teacher-v-reward", theta, teacher, teacher_value=exact.optimal(mdp)[0])
    assert np.abs(tv - rl).max() < 1e-10 * max(1.0, np.abs(rl).max())


def test_teacher_v_reward_step_reward_is_the_shaped_reward():
    mdp, teacher, theta = garnet(2), random_teacher(3), random_theta(4)
    P, R, mu0 = mdp.to_dense()
    V_t, _ = dense_values(P, R, mu0, teacher)
    np.testing.assert_allclose(expected_step_reward(mdp, "teacher-v-reward", theta, teacher), R + P @ V_t - V_t[:, None], rtol=1e-12, atol=1e-12)


def test_teacher_value_override_reaches_the_td_target():
    mdp, teacher, theta = garnet(2), random_teacher(3), random_theta(4)
    V_star = exact.optimal(mdp)[0]
    P, R, mu0 = mdp.to_dense()
    p = np.exp(log_softmax(theta, axis=1))
    _, d = dense_values(P, R, mu0, p)
    W = R + P @ V_star
    ref = -d[:, None] * (p * W - p * (p * W).sum(1, keepdims=True))
    np.testing.assert_allclose(expected_update(mdp, "td-teacher-v", theta, teacher, teacher_value=V_star), ref, rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------------------------ options
def test_value_gate_reads_the_student_value_override():
    mdp, teacher, theta = garnet(3), random_teacher(4), random_theta(5)
    V_t = exact.evaluate(mdp, teacher)[0]
    open_gate = expected_update(mdp, "value-gated+r", theta, teacher, student_value=V_t - 1.0)
    np.testing.assert_allclose(open_gate, expected_update(mdp, "on-policy+r", theta, teacher), rtol=1e-12)
    closed = expected_update(mdp, "value-gated+r", theta, teacher, student_value=V_t + 1.0)
    np.testing.assert_allclose(closed, expected_update(mdp, "rl", theta, teacher), rtol=1e-12)


def test_tied_rows_get_the_sum_of_their_states_updates():
    """Chain rule: with alias, g[row] = sum over the states of the row of the untied update."""
    mdp, teacher = garnet(6), random_teacher(7)
    alias = np.array([0, 1, 2, 0, 1, 2, 3, 3])
    theta = random_theta(8, rows=4)
    for name in ("on-policy+r", "n-distill", "expected-entropy+r", "value-gated+r", "dpd"):
        g = expected_update(mdp, name, theta, teacher, alias=alias)
        untied = expected_update(mdp, name, theta[alias], teacher)
        ref = np.stack([untied[alias == r].sum(0) for r in range(4)])
        np.testing.assert_allclose(g, ref, rtol=1e-12, atol=1e-14, err_msg=name)


def test_controls_and_exploration_change_the_sampling_policy():
    """on-policy with q = mixture / uniform / exploring student: sum_s d_q(s) (pi_theta - pi)(s)."""
    mdp, teacher, theta = garnet(9), random_teacher(10), random_theta(11)
    P, R, mu0 = mdp.to_dense()
    p = np.exp(log_softmax(theta, axis=1))
    greedy = np.eye(A)[theta.argmax(1)]
    cases = [
        (dict(control="uniform"), np.full((S, A), 1 / A)),
        (dict(control="mixture", beta=0.3), 0.3 * teacher + 0.7 * p),
        (dict(control="teacher"), teacher),
        (dict(exploration="epsilon-greedy", epsilon=0.2), 0.8 * greedy + 0.2 / A),
        (dict(exploration="boltzmann", temperature=2.0), np.exp(log_softmax(theta / 2, axis=1))),
        (dict(control="mixture", beta=0.5, exploration="greedy"), 0.5 * teacher + 0.5 * greedy),
    ]
    for options, q in cases:
        _, d = dense_values(P, R, mu0, q)
        np.testing.assert_allclose(expected_update(mdp, "on-policy", theta, teacher, **options), d[:, None] * (p - teacher), rtol=1e-10, atol=1e-13, err_msg=str(options))


def test_loss_swap_temperature_and_mask():
    mdp, teacher, theta = garnet(1), random_teacher(2), random_theta(3)
    P, R, mu0 = mdp.to_dense()
    p = np.exp(log_softmax(theta, axis=1))
    _, d = dense_values(P, R, mu0, p)
    np.testing.assert_allclose(expected_update(mdp, "on-policy", theta, teacher, loss="kl"), d[:, None] * (p - teacher), rtol=1e-10)
    sharp = teacher**4 / (teacher**4).sum(1, keepdims=True)
    np.testing.assert_allclose(expected_update(mdp, "on-policy", theta, teacher, teacher_temperature=0.25), d[:, None] * (p - sharp), rtol=1e-10)
    mask = (np.arange(S) % 2).astype(float)
    np.testing.assert_allclose(expected_update(mdp, "on-policy", theta, teacher, loss_mask=mask), (mask * d)[:, None] * (p - teacher), rtol=1e-10, atol=1e-15)
    # n-distill with a mask and the swapped KL loss is still the gradient of its (masked) loss.
    kl = lambda th: dense_values(P, R, mu0, np.exp(log_softmax(th, axis=1)))[1] @ (mask * (teacher * (np.log(teacher) - log_softmax(th, axis=1))).sum(1))
    np.testing.assert_allclose(expected_update(mdp, "n-distill", theta, teacher, loss="kl", loss_mask=mask), fd_gradient(kl, theta), rtol=1e-6, atol=1e-9)


def test_mdp_can_declare_its_loss_mask():
    mdp, teacher, theta = garnet(1), random_teacher(2), random_theta(3)
    mask = np.zeros(S)
    mask[2] = 1.0
    declared = mdps.TabularMDP(mdp.next_state, mdp.next_prob, mdp.R, mdp.mu0, info=dict(loss_mask=mask.tolist()))
    g = expected_update(declared, "on-policy", theta, teacher)
    assert np.abs(g[np.arange(S) != 2]).max() == 0.0 and np.abs(g[2]).max() > 0
    np.testing.assert_allclose(expected_update(declared, "on-policy", theta, teacher, loss_mask=np.ones(S)), expected_update(mdp, "on-policy", theta, teacher))


@pytest.mark.parametrize("options, match", [
    (dict(loss="l2"), "unknown loss 'l2'; valid: none, hx"),
    (dict(control="expert"), "unknown control 'expert'; valid: teacher, student, uniform, mixture"),
    (dict(exploration="ucb"), "unknown exploration 'ucb'; valid: none, greedy, epsilon-greedy, boltzmann"),
    (dict(dpd_weight="softmax"), "unknown dpd_weight 'softmax'; valid: exp, indicator"),
    (dict(loss_mask=np.ones(3)), r"loss_mask must have shape \(8,\)"),
    (dict(alias=np.zeros(5, dtype=int)), "alias must have one entry per state"),
    (dict(control="teacher", exploration="greedy"), "exploration='greedy' changes the student's behaviour, but the control is 'teacher'"),
])
def test_bad_options_raise_before_work(options, match):
    with pytest.raises(ValueError, match=match):
        expected_update(garnet(0), "on-policy", np.zeros((S, A)) if "alias" not in options else np.zeros((1, A)), random_teacher(0), **options)


def test_bad_rule_theta_and_teacher():
    mdp, teacher = garnet(0), random_teacher(0)
    with pytest.raises(ValueError, match="unknown rule 'kickstart'; valid rules: teacher, on-policy"):
        expected_update(mdp, "kickstart", np.zeros((S, A)), teacher)
    with pytest.raises(ValueError, match="theta has 5 rows but the MDP has 8 states"):
        expected_update(mdp, "on-policy", np.zeros((5, A)), teacher)
    with pytest.raises(ValueError, match="rows of teacher must sum to 1"):
        expected_update(mdp, "on-policy", np.zeros((S, A)), teacher * 2)


@pytest.mark.parametrize("name, loss", [("entropy-regularised+r", None), ("expected-entropy", None), ("on-policy", "reverse-hx")])
def test_deterministic_teachers_use_the_floored_log(name, loss):
    """log pi = log max(pi, 1e-12): the same update as a teacher whose zeros are 1e-12."""
    mdp, theta = garnet(0), random_theta(0)
    teacher = epsilon_greedy_policy(random_teacher(1), 0.0)  # one-hot
    g = expected_update(mdp, name, theta, teacher, loss=loss)
    assert np.isfinite(g).all()
    rule = replace(rules.get(name), loss=loss or rules.get(name).loss)
    np.testing.assert_allclose(g, dense_update(mdp, rule, theta, np.maximum(teacher, 1e-12)), rtol=1e-8, atol=1e-10)


def test_exact_does_not_forward_upward():
    """The one-way structure: exact (the truth) knows nothing of the rules or the expected updates."""
    assert not hasattr(exact, "expected_update")


def test_options_object_and_keywords_are_the_same_update():
    from distlab.options import UpdateOptions

    mdp, teacher, theta = garnet(0), random_teacher(0), random_theta(0)
    opts = UpdateOptions(control="mixture", beta=0.3, teacher_temperature=0.5)
    np.testing.assert_array_equal(expected_update(mdp, "n-distill+r", theta, teacher, opts),
                                  expected_update(mdp, "n-distill+r", theta, teacher, control="mixture", beta=0.3, teacher_temperature=0.5))
    # keywords override the object
    np.testing.assert_array_equal(expected_update(mdp, "n-distill+r", theta, teacher, opts, beta=1.0),
                                  expected_update(mdp, "n-distill+r", theta, teacher, control="mixture", beta=1.0, teacher_temperature=0.5))
    with pytest.raises(TypeError, match="unknown keyword 'temprature'; valid: options loss, control"):
        expected_update(mdp, "on-policy", theta, teacher, temprature=2.0)


# ------------------------------------------------------------------------------------ run_exact
def test_run_exact_iterates_and_records():
    mdp = garnet(3)
    teacher = softmax_policy(exact.optimal(mdp)[1], 1.0)
    lr, steps = 0.5, 7
    df = run_exact(mdp, "n-distill+r", teacher, steps=steps, lr=lr, record_every=3)
    assert list(df.step) == [0, 3, 6, 7]
    assert {"student_return", "hx_student", "hx_teacher", "objective", "update_norm"} <= set(df.columns)
    theta = np.zeros((S, A))
    for k in range(steps):
        theta = theta - lr * expected_update(mdp, "n-distill+r", theta, teacher)
    P, R, mu0 = mdp.to_dense()
    p = np.exp(log_softmax(theta, axis=1))
    V, d = dense_values(P, R, mu0, p)
    last = df.iloc[-1]
    assert last.student_return == pytest.approx(mu0 @ V, rel=1e-10)
    assert last.hx_student == pytest.approx(d @ -(teacher * np.log(p)).sum(1), rel=1e-10)
    _, d_t = dense_values(P, R, mu0, teacher)
    assert last.hx_teacher == pytest.approx(d_t @ -(teacher * np.log(p)).sum(1), rel=1e-10)
    # n-distill+r's objective is E[sum Hx] - return.
    assert last.objective == pytest.approx(last.hx_student - last.student_return, rel=1e-10)
    # The objective decreases along small gradient steps.
    assert np.all(np.diff(df.objective) < 0)
    # Small students keep their parameters (theta has 24 entries here: no columns).
    assert not any(c.startswith("theta_") for c in df.columns)
    small = run_exact(mdps.chain_corridor(1), "rl", np.full((3, 2), 0.5), steps=2, lr=1.0)
    assert {"theta_0_0", "theta_2_1"} <= set(small.columns)


def test_run_exact_with_a_teacher_that_never_ends_an_episode():
    """A deterministic teacher looping in the undiscounted corridor: hx_teacher is NaN, rl still runs."""
    mdp = mdps.chain_corridor(2)
    LEFT, RIGHT = np.eye(2)
    looping = np.stack([LEFT, RIGHT, LEFT, RIGHT, LEFT])  # from the start (2): 2 -> 1 -> 2 -> ... forever
    with pytest.raises(ValueError, match="never terminates"):
        exact.evaluate(mdp, looping)
    df = run_exact(mdp, "rl", looping, steps=3, lr=0.1)
    assert df.hx_teacher.isna().all() and np.isfinite(df.student_return).all()


def test_run_exact_validates():
    mdp, teacher = garnet(0), random_teacher(0)
    with pytest.raises(ValueError, match="steps must be a non-negative integer"):
        run_exact(mdp, "rl", teacher, steps=-1, lr=0.1)
    with pytest.raises(ValueError, match="unknown rule"):
        run_exact(mdp, "nope", teacher, steps=1, lr=0.1)
