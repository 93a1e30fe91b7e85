"""The softmax student, controls, exploration, and the per-state losses against direct formulas and
finite differences."""

import numpy as np
import pytest
from scipy.special import expit, log_softmax, rel_entr

from distlab import rules
from distlab import student as st

LOSSES = [l for l in rules.LOSSES if l != "none"]


def random_teacher(S, A, seed):
    return np.random.default_rng(seed).dirichlet(np.ones(A), size=S)


def test_student_policy_ties_rows_and_is_the_sigmoid_with_two_actions():
    theta = np.array([[0.0, 1.5], [2.0, -1.0]])
    alias = np.array([0, 1, 1, 0])
    pi = st.student_policy(theta, alias)
    assert pi.shape == (4, 2)
    np.testing.assert_array_equal(pi[1], pi[2])
    np.testing.assert_allclose(pi[:, 1], expit((theta[:, 1] - theta[:, 0])[alias]), rtol=1e-14)
    np.testing.assert_allclose(st.student_policy(theta), np.exp(log_softmax(theta, axis=1)), rtol=1e-14)


@pytest.mark.parametrize("alias, match", [(np.array([0, 2]), r"\[0, 2\)"), (np.array([0.0, 1.0]), "integer")])
def test_bad_alias_is_rejected(alias, match):
    with pytest.raises(ValueError, match=match):
        st.student_policy(np.zeros((2, 3)), alias)


def test_controls():
    student, teacher = random_teacher(5, 3, 0), random_teacher(5, 3, 1)
    np.testing.assert_array_equal(st.control_policy("teacher", student, teacher), teacher)
    np.testing.assert_array_equal(st.control_policy("student", student, teacher), student)
    np.testing.assert_allclose(st.control_policy("uniform", student, teacher), np.full((5, 3), 1 / 3))
    np.testing.assert_allclose(st.control_policy("mixture", student, teacher, beta=0.25), 0.25 * teacher + 0.75 * student)
    with pytest.raises(ValueError, match="unknown control 'dagger'; valid: teacher, student, uniform, mixture"):
        st.control_policy("dagger", student, teacher)


def test_exploration_strategies():
    theta = np.array([[1.0, 3.0, 3.0], [0.0, -1.0, 2.0]])
    pi = st.student_policy(theta)
    np.testing.assert_array_equal(st.explore(pi, "none"), pi)
    greedy = st.explore(pi, "greedy", theta=theta)
    np.testing.assert_allclose(greedy, [[0, 0.5, 0.5], [0, 0, 1]])  # ties split evenly
    np.testing.assert_allclose(st.explore(pi, "epsilon-greedy", epsilon=0.3, theta=theta), 0.7 * greedy + 0.1)
    np.testing.assert_allclose(st.explore(pi, "boltzmann", temperature=0.5, theta=theta), np.exp(log_softmax(theta / 0.5, axis=1)), rtol=1e-13)
    # Without theta the logits are log pi: the same policies.
    np.testing.assert_allclose(st.explore(pi, "boltzmann", temperature=0.5), st.explore(pi, "boltzmann", temperature=0.5, theta=theta), rtol=1e-12)
    with pytest.raises(ValueError, match="unknown exploration 'dropout'; valid: none, greedy, epsilon-greedy, boltzmann"):
        st.explore(pi, "dropout")


def test_tempered_teacher_is_the_renormalised_power():
    t = random_teacher(6, 4, 2)
    for T in (0.1, 0.5, 1.0, 3.0):
        ref = t ** (1 / T) / (t ** (1 / T)).sum(axis=1, keepdims=True)
        np.testing.assert_allclose(st.tempered_teacher(t, T), ref, rtol=1e-12)
    sharp = st.tempered_teacher(t, 0.05)
    assert np.all(sharp.max(axis=1) > t.max(axis=1))  # sharpening
    with pytest.raises(ValueError, match="teacher_temperature must be > 0"):
        st.tempered_teacher(t, 0.0)


def direct_loss(loss, t, z):
    """Independent per-state formulas (scipy's log_softmax and rel_entr)."""
    log_p = log_softmax(z, axis=1)
    p = np.exp(log_p)
    if loss == "hx":
        return -(t * log_p).sum(1)
    if loss == "kl":
        return rel_entr(t, p).sum(1)
    if loss == "reverse-hx":
        return -(p * np.log(t)).sum(1)
    if loss == "reverse-kl":
        return rel_entr(p, t).sum(1)
    if loss == "mse-logits":
        d = (z - z.mean(1, keepdims=True)) - (np.log(t) - np.log(t).mean(1, keepdims=True))
        return 0.5 * (d**2).sum(1)
    return -log_p[np.arange(len(z)), t.argmax(1)]  # nll-argmax


@pytest.mark.parametrize("loss", LOSSES)
def test_loss_values_match_direct_formulas(loss):
    t = random_teacher(7, 4, 3)
    z = np.random.default_rng(4).normal(size=(7, 4)) * 2
    np.testing.assert_allclose(st.loss_values(loss, t, z), direct_loss(loss, t, z), rtol=1e-12, atol=1e-12)
    # Teacher temperature acts on the target.
    np.testing.assert_allclose(st.loss_values(loss, t, z, teacher_temperature=0.3), direct_loss(loss, st.tempered_teacher(t, 0.3), z), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("loss", LOSSES)
def test_loss_gradients_match_finite_differences(loss):
    t = random_teacher(5, 3, 5)
    z = np.random.default_rng(6).normal(size=(5, 3))
    grads = st.loss_logit_grads(loss, t, z, teacher_temperature=0.7)
    eps = 1e-6
    for a in range(3):
        dz = np.zeros_like(z)
        dz[:, a] = eps
        fd = (st.loss_values(loss, t, z + dz, teacher_temperature=0.7) - st.loss_values(loss, t, z - dz, teacher_temperature=0.7)) / (2 * eps)
        np.testing.assert_allclose(grads[:, a], fd, rtol=1e-6, atol=1e-8)


def test_none_loss_is_zero_and_unknown_loss_lists_the_valid_ones():
    t, z = random_teacher(3, 2, 0), np.zeros((3, 2))
    assert not st.loss_values("none", t, z).any() and not st.loss_logit_grads("none", t, z).any()
    with pytest.raises(ValueError, match="unknown loss 'l2'; valid: none, hx, reverse-hx, kl, reverse-kl, mse-logits, nll-argmax"):
        st.loss_values("l2", t, z)


@pytest.mark.parametrize("loss", ["reverse-hx", "reverse-kl", "mse-logits"])
def test_log_teacher_losses_floor_zero_probabilities(loss):
    """A deterministic teacher: log 0 is floored at log(LOG_FLOOR), the same as the sampled kernels."""
    t = np.array([[0.5, 0.5], [1.0, 0.0]])
    z = np.array([[0.3, -0.2], [0.1, 0.4]])
    assert st.LOG_FLOOR == 1e-12
    floored = np.array([[0.5, 0.5], [1.0, 1e-12]])  # same logs; rows sum to 1 within 1e-12
    np.testing.assert_allclose(st.loss_values(loss, t, z), direct_loss(loss, floored, z), rtol=1e-12)
    assert st.loss_values("reverse-hx", t, z)[1] == pytest.approx(-np.exp(log_softmax(z, axis=1))[1, 1] * np.log(1e-12), rel=1e-12)
    assert np.isfinite(st.loss_logit_grads(loss, t, z)).all()


def test_dpd_hybrid_picks_the_better_policy_per_state():
    pi, peer = random_teacher(4, 2, 0), random_teacher(4, 2, 1)
    hybrid = st.dpd_hybrid_policy(pi, peer, value=np.array([0.0, 1.0, 2.0, 3.0]), peer_value=np.array([1.0, 1.0, 1.0, 4.0]))
    np.testing.assert_array_equal(hybrid, np.stack([peer[0], pi[1], pi[2], peer[3]]))
