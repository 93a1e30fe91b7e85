"""Teachers: Q-learning quality against the exact optimum, policy transforms, noisy flips."""

import numba
import numpy as np
import pytest

import mdps
from distlab import exact, teachers


def test_q_learning_teacher_is_near_optimal_on_most_gridworlds():
    """The paper's teachers: epsilon-greedy Q-learning; >= 90 % of V*(start) on most worlds."""
    batch = mdps.random_gridworlds(20, size=20, seed=300)
    Q = teachers.q_learning_batch(batch, seed=1)
    V_star, _, _ = exact.optimal_batch(batch)
    V_teacher, _, _ = exact.evaluate_batch(batch, teachers.greedy_policy(Q))
    start = batch.mu0.argmax(axis=1)
    rows = np.arange(len(batch))
    ratio = V_teacher[rows, start] / V_star[rows, start]
    assert np.mean(ratio >= 0.9) >= 0.8, ratio


def test_q_learning_on_the_chain_learns_to_go_right():
    Q = teachers.q_learning(mdps.chain_corridor(4), teachers.QLearningConfig(episodes=2000), seed=0)
    np.testing.assert_array_equal(Q[1:-1].argmax(axis=1), 1)


def test_q_learning_is_deterministic_and_thread_independent():
    batch = mdps.random_gridworlds(4, size=8, seed=0)
    config = teachers.QLearningConfig(episodes=200)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = teachers.q_learning_batch(batch, config, seed=3)
        numba.set_num_threads(max(2, threads) if numba.config.NUMBA_NUM_THREADS >= 2 else 1)
        two = teachers.q_learning_batch(batch, config, seed=3)
    finally:
        numba.set_num_threads(threads)
    np.testing.assert_array_equal(one, two)
    np.testing.assert_array_equal(one[2], teachers.q_learning(batch[2], config, seed=5))
    assert not np.array_equal(one, teachers.q_learning_batch(batch, config, seed=4))


def test_softmax_policy_limits_and_formula():
    Q = np.array([[1.0, 2.0, 0.0], [5.0, 5.0, -1.0]])
    pi = teachers.softmax_policy(Q, temperature=2.0)
    expected = np.exp(Q / 2.0) / np.exp(Q / 2.0).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(pi, expected, rtol=1e-12)
    np.testing.assert_array_equal(teachers.softmax_policy(Q, 0.0), [[0, 1, 0], [1, 0, 0]])
    np.testing.assert_allclose(teachers.softmax_policy(Q, 1e9), 1 / 3, rtol=1e-6)
    # numerically stable for large values
    assert np.all(np.isfinite(teachers.softmax_policy(Q * 1e4, 1.0)))
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        teachers.softmax_policy(Q, -1.0)


def test_epsilon_greedy_policy():
    Q = np.array([[0.0, 3.0, 1.0, 2.0]])
    np.testing.assert_allclose(teachers.epsilon_greedy_policy(Q, 0.2), [[0.05, 0.85, 0.05, 0.05]])
    with pytest.raises(ValueError, match="epsilon must be in"):
        teachers.epsilon_greedy_policy(Q, 1.5)


def test_noisy_teacher_flips_the_argmax_in_the_requested_fraction():
    rng = np.random.default_rng(0)
    pi = rng.dirichlet(np.ones(4), size=40)
    noisy = teachers.noisy_teacher(pi, 0.25, seed=1)
    changed = np.flatnonzero(np.any(noisy != pi, axis=1))
    assert len(changed) == 10
    assert np.all(noisy[changed].argmax(axis=1) != pi[changed].argmax(axis=1))
    # a flip is a swap: the multiset of probabilities in each state is unchanged
    np.testing.assert_allclose(np.sort(noisy, axis=1), np.sort(pi, axis=1))
    np.testing.assert_array_equal(teachers.noisy_teacher(pi, 0.25, seed=1), noisy)
    np.testing.assert_array_equal(teachers.noisy_teacher(pi, 0.0, seed=1), pi)


def test_noisy_teacher_restricted_to_candidate_states():
    pi = np.eye(3)[np.zeros(10, dtype=int)]
    mask = np.zeros(10, dtype=bool)
    mask[[2, 5, 7, 9]] = True
    noisy = teachers.noisy_teacher(pi, 0.5, seed=0, states=mask)
    changed = set(np.flatnonzero(np.any(noisy != pi, axis=1)).tolist())
    assert len(changed) == 2 and changed <= {2, 5, 7, 9}
    with pytest.raises(ValueError, match="fraction must be in"):
        teachers.noisy_teacher(pi, 1.2)
