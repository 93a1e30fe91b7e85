"""Jacobians, asymmetry, candidate objectives and gradient gaps; user-registered rules end to end."""

import numpy as np
import pytest
from scipy.special import log_softmax

import mdps
from distlab import rules
from distlab import diagnostics as dg
from distlab.expected import expected_update, run_exact

S, A = 6, 3


def garnet(seed):
    return mdps.garnet(S, A, 3, seed=seed)


def random_teacher(seed):
    return np.random.default_rng(seed).dirichlet(np.ones(A), size=S)


def random_theta(seed):
    return np.random.default_rng(50 + seed).normal(size=(S, A))


def dense_values(mdp, pi):
    P, R, mu0 = mdp.to_dense()
    M = np.eye(mdp.n_states) - np.einsum("sa,sat->st", pi, P)
    return np.linalg.solve(M, (pi * R).sum(1)), np.linalg.solve(M.T, mu0)


def test_asymmetry_of_known_matrices():
    assert dg.asymmetry(np.array([[2.0, 1.0], [1.0, 3.0]])) == 0.0
    assert dg.asymmetry(np.array([[0.0, 1.0], [-1.0, 0.0]])) == pytest.approx(2.0)
    assert dg.asymmetry(np.zeros((2, 2))) == 0.0
    with pytest.raises(ValueError, match="square"):
        dg.asymmetry(np.zeros((2, 3)))


def test_jacobian_of_teacher_distill_is_the_block_diagonal_softmax_hessian():
    """Under the teacher's fixed visits g = sum_s d(s) (p_s - t_s): J = blockdiag(d(s) (diag p - p p^T))."""
    mdp, teacher, theta = garnet(0), random_teacher(1), random_theta(2)
    _, d = dense_values(mdp, teacher)
    p = np.exp(log_softmax(theta, axis=1))
    ref = np.zeros((S * A, S * A))
    for s in range(S):
        ref[s * A:(s + 1) * A, s * A:(s + 1) * A] = d[s] * (np.diag(p[s]) - np.outer(p[s], p[s]))
    np.testing.assert_allclose(dg.jacobian(mdp, "teacher", theta, teacher), ref, atol=1e-8)


def test_rule_objectives_are_the_loss_column_of_table_1():
    mdp, teacher, theta = garnet(3), random_teacher(4), random_theta(5)
    P, R, mu0 = mdp.to_dense()
    p = np.exp(log_softmax(theta, axis=1))
    V, d = dense_values(mdp, p)
    hx = d @ -(teacher * np.log(p)).sum(1)
    log_teacher = d @ -(p * np.log(teacher)).sum(1)
    ret = mu0 @ V
    _, d_t = dense_values(mdp, teacher)
    expected = {
        "teacher": d_t @ -(teacher * np.log(p)).sum(1),
        "on-policy": hx, "n-distill": hx, "n-distill+r": hx - ret,
        "entropy-regularised": log_teacher, "expected-entropy": log_teacher, "expected-entropy+r": log_teacher - ret,
        "rl": -ret,
        "teacher-v-reward": -ret + mu0 @ dense_values(mdp, teacher)[0],
    }
    for name, value in expected.items():
        assert dg.rule_objective(mdp, name, theta, teacher) == pytest.approx(value, rel=1e-10), name


@pytest.mark.parametrize("name", rules.names())
def test_gradient_gap_separates_gradient_fields_from_the_rest(name):
    mdp, teacher, theta = garnet(6), random_teacher(7), random_theta(8)
    own = dict(dpd_states="own") if rules.get(name).gate == "dpd" else {}  # on the learner's states (see below)
    gap = dg.gradient_gap(mdp, name, theta, teacher, **own)
    if rules.get(name).is_gradient:
        assert gap < 1e-6
    else:
        assert gap > 1e-2


@pytest.mark.parametrize("name", ["dpd", "dpd+r"])
def test_dpd_on_the_peers_states_is_a_gradient_field_with_the_gate_held(name):
    """Eq. 11 of DPD takes s ~ pi~, a distribution that does not move with theta: with the gate held
    fixed the loss term is the gradient of sum_s d_peer(s) w(s) Hx(pi~(s) || pi_theta(s)) (and +r adds
    the return's gradient), unlike on the learner's own states (Theorem 1's argument)."""
    mdp, teacher, theta = garnet(6), random_teacher(7), random_theta(8)
    assert dg.gradient_gap(mdp, name, theta, teacher, dpd_states="peer") < 1e-6
    assert dg.gradient_gap(mdp, name, theta, teacher, dpd_states="own") > 1e-2


def test_user_registered_rule_works_everywhere(monkeypatch):
    monkeypatch.setattr(rules, "_REGISTRY", dict(rules._REGISTRY))
    # N-distill with the KL loss (Theorem 2 holds for any loss) and its naive on-policy counterpart.
    rules.register(rules.Rule("kl-n-distill", loss="kl", reward="neg-next-loss", gradient_of="E_pi_theta[sum_t KL(pi || pi_theta)]"))
    rules.register(rules.Rule("kl-on-policy", loss="kl"))
    assert {"kl-n-distill", "kl-n-distill+r", "kl-on-policy", "kl-on-policy+r"} <= set(rules.names())
    mdp, teacher, theta = garnet(9), random_teacher(10), random_theta(11)
    # The same as swapping the loss of n-distill; not n-distill itself: KL = Hx - H(pi(s)), and the
    # teacher's entropy weighs states differently once the visits move with theta.
    kl = expected_update(mdp, "kl-n-distill+r", theta, teacher)
    np.testing.assert_allclose(kl, expected_update(mdp, "n-distill+r", theta, teacher, loss="kl"), rtol=1e-12, atol=1e-14)
    assert np.abs(kl - expected_update(mdp, "n-distill+r", theta, teacher)).max() > 1e-3
    assert dg.gradient_gap(mdp, "kl-n-distill", theta, teacher) < 1e-6
    assert dg.asymmetry(dg.jacobian(mdp, "kl-n-distill+r", theta, teacher)) < 1e-6
    assert dg.asymmetry(dg.jacobian(mdp, "kl-on-policy", theta, teacher)) > 1e-2
    df = run_exact(mdp, "kl-n-distill+r", teacher, steps=5, lr=0.1)
    assert np.all(np.diff(df.objective) < 0)


def test_unregistered_rule_objects_work_too():
    mdp, teacher, theta = garnet(12), random_teacher(13), random_theta(14)
    rule = rules.Rule("reverse-kl-expected", loss="reverse-kl", reward="log-teacher-next")
    # The log-teacher-next correction belongs to Hx(pi_theta || pi) = KL(pi_theta || pi) + H(pi_theta):
    # paired with reverse KL it misses the entropy term, and the field is not the candidate gradient.
    assert dg.gradient_gap(mdp, rule, theta, teacher) > 1e-3  # finite differences resolve ~1e-8
    rule = rules.Rule("mse-n-distill", loss="mse-logits", reward="neg-next-loss")
    assert dg.gradient_gap(mdp, rule, theta, teacher) < 1e-6
