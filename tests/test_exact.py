"""Exact solvers against dense numpy linear algebra and the Bellman equations."""

import numpy as np
import pytest

import mdps
from distlab import exact


def random_policy(S, A, seed):
    return np.random.default_rng(seed).dirichlet(np.ones(A) * 0.7, size=S)


def dense_evaluate(mdp, pi):
    """Independent reference: dense (I - P_pi) solves with numpy."""
    P, R, mu0 = mdp.to_dense()
    P_pi = np.einsum("sa,sat->st", pi, P)
    M = np.eye(mdp.n_states) - P_pi
    V = np.linalg.solve(M, (pi * R).sum(axis=1))
    visits = np.linalg.solve(M.T, mu0)
    return V, R + P @ V, visits


def relative_error(x, ref):
    return np.abs(x - ref).max() / max(np.abs(ref).max(), 1e-300)


WORLDS = [
    ("garnet", lambda seed: mdps.garnet(40, 4, 5, seed=seed, continuation=0.97)),
    ("gridworld", lambda seed: mdps.random_gridworld(size=20, seed=seed)),
    ("gridworld-8-actions", lambda seed: mdps.random_gridworld(size=10, n_actions=8, seed=seed)),
    ("chain", lambda seed: mdps.chain_corridor(3 + seed)),
]


@pytest.mark.parametrize("name, make", WORLDS, ids=[w[0] for w in WORLDS])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_evaluate_matches_dense_solve(name, make, seed):
    mdp = make(seed)
    pi = random_policy(mdp.n_states, mdp.n_actions, seed)
    V, Q, visits = exact.evaluate(mdp, pi)
    V_ref, Q_ref, visits_ref = dense_evaluate(mdp, pi)
    assert relative_error(V, V_ref) < 1e-10
    assert relative_error(Q, Q_ref) < 1e-10
    assert relative_error(visits, visits_ref) < 1e-10


@pytest.mark.parametrize("name, make", WORLDS, ids=[w[0] for w in WORLDS])
def test_bellman_equations_and_visit_identity(name, make):
    mdp = make(5)
    pi = random_policy(mdp.n_states, mdp.n_actions, 5)
    V, Q, visits = exact.evaluate(mdp, pi)
    P, R, mu0 = mdp.to_dense()
    r_pi = (pi * R).sum(axis=1)
    np.testing.assert_allclose(V, (pi * Q).sum(axis=1), rtol=1e-11, atol=1e-11)  # V = E_pi Q
    np.testing.assert_allclose(Q, R + P @ V, rtol=1e-11, atol=1e-11)
    # visits solve d = mu0 + P_pi^T d
    np.testing.assert_allclose(visits, mu0 + np.einsum("sa,sat->t", pi * visits[:, None], P), rtol=1e-11, atol=1e-11)
    assert mu0 @ V == pytest.approx(visits @ r_pi, rel=1e-11)
    np.testing.assert_allclose(exact.q_values(mdp, V), Q, rtol=1e-12, atol=1e-12)


def dense_value_iteration(mdp, tol=1e-14, max_iterations=200_000):
    P, R, _ = mdp.to_dense()
    V = np.zeros(mdp.n_states)
    for _ in range(max_iterations):
        V_new = (R + P @ V).max(axis=1)
        if np.abs(V_new - V).max() <= tol * max(1.0, np.abs(V_new).max()):
            return V_new
        V = V_new
    raise AssertionError("value iteration did not converge")


@pytest.mark.parametrize(
    "make",
    [lambda: mdps.garnet(30, 3, 4, seed=3, continuation=0.9), lambda: mdps.random_gridworld(size=8, seed=3), lambda: mdps.chain_corridor(5)],
    ids=["garnet", "gridworld", "chain"],
)
def test_optimal_matches_value_iteration_and_bellman_optimality(make):
    mdp = make()
    V_star, Q_star, pi_star = exact.optimal(mdp)
    assert relative_error(V_star, dense_value_iteration(mdp)) < 1e-10
    np.testing.assert_allclose(V_star, Q_star.max(axis=1), rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(pi_star.sum(axis=1), 1.0)
    # pi_star is greedy wrt Q_star and its own value is V_star
    V_pi_star, _, _ = exact.evaluate(mdp, pi_star)
    np.testing.assert_allclose(V_pi_star, V_star, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_optimal_dominates_random_policies(seed):
    mdp = mdps.garnet(25, 4, 3, seed=seed)
    V_star, _, _ = exact.optimal(mdp)
    for k in range(5):
        V, _, _ = exact.evaluate(mdp, random_policy(25, 4, 100 * seed + k))
        assert np.all(V_star >= V - 1e-10)


def test_chain_optimum_is_to_walk_right():
    V_star, _, pi_star = exact.optimal(mdps.chain_corridor(5))
    assert V_star[5] == pytest.approx(1.0)
    np.testing.assert_array_equal(pi_star[1:-1].argmax(axis=1), 1)


def test_batch_forms_equal_single_forms():
    batch = mdps.random_gridworlds(6, size=9, seed=20)
    pis = np.stack([random_policy(81, 4, i) for i in range(6)])
    V, Q, visits = exact.evaluate_batch(batch, pis)
    V_star, Q_star, pi_star = exact.optimal_batch(batch)
    for i, mdp in enumerate(batch):
        for got, want in zip((V[i], Q[i], visits[i]), exact.evaluate(mdp, pis[i])):
            np.testing.assert_array_equal(got, want)
        for got, want in zip((V_star[i], Q_star[i], pi_star[i]), exact.optimal(mdp)):
            np.testing.assert_array_equal(got, want)
    # one shared policy broadcasts over the batch
    V_shared, _, _ = exact.evaluate_batch(batch, pis[0])
    np.testing.assert_array_equal(V_shared[3], exact.evaluate(batch[3], pis[0])[0])


def test_non_terminating_policy_is_reported():
    mdp = mdps.chain_corridor(3)
    pi = np.zeros((7, 2))
    pi[:, 1] = 1.0
    pi[3] = [0.0, 1.0]
    pi[4] = [1.0, 0.0]  # 3 -> 4 -> 3 -> ... forever
    with pytest.raises(ValueError, match="never terminates from state"):
        exact.evaluate(mdp, pi)


@pytest.mark.parametrize(
    "pi, message",
    [
        (np.full((7, 3), 1 / 3), r"pi must have shape \(S, A\) = \(7, 2\)"),
        (np.full((7, 2), 0.6), r"rows of pi must sum to 1; pi state 0 sums to 1.2"),
        (np.tile([1.5, -0.5], (7, 1)), r"pi state 0 has a negative probability"),
        (np.tile([np.nan, 1.0], (7, 1)), r"pi state 0 has a non-finite probability"),
    ],
)
def test_bad_policies_raise(pi, message):
    with pytest.raises(ValueError, match=message):
        exact.evaluate(mdps.chain_corridor(3), pi)
