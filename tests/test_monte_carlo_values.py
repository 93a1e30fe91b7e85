"""Monte Carlo teacher values (``distlab.teachers.monte_carlo_values``) against exact policy evaluation."""

import numba
import numpy as np
import pytest

import mdps
from distlab import exact, teachers


@pytest.fixture(scope="module")
def world():
    """A 6x6 gridworld and an epsilon-greedy (0.3) optimal policy: stochastic, so states are revisited."""
    mdp = mdps.random_gridworld(size=6, seed=3)
    pi = teachers.epsilon_greedy_policy(exact.optimal(mdp)[1], 0.3)
    V, _, visits = exact.evaluate(mdp, pi)
    return mdp, pi, V, visits


def test_error_at_the_start_state_shrinks_like_one_over_sqrt_episodes(world):
    """RMS error over 30 seeds: 100x the episodes should cut it ~10x (CLT); a biased or stuck
    estimator would not."""
    mdp, pi, V, _ = world
    start = int(mdp.mu0.argmax())

    def rms_error(episodes):
        errors = [teachers.monte_carlo_values(mdp, pi, episodes, seed=s)[start] - V[start] for s in range(30)]
        return float(np.sqrt(np.mean(np.square(errors))))

    few, many = rms_error(100), rms_error(10_000)
    assert 0.04 < many / few < 0.25, (few, many)


def test_every_state_is_within_a_clt_bound_when_started_everywhere(world):
    """``starts="all"``: each state starts ``n`` episodes, so it has >= n visits, and (returns lie in
    [0, 10], sd <= 5) its estimate is within 6 standard errors 6 * 5 / sqrt(n) of the exact value."""
    mdp, pi, V, _ = world
    n = 4000
    V_hat, visits = teachers.monte_carlo_values(mdp, pi, n, seed=1, starts="all", return_visits=True)
    assert (visits >= n).all()
    bound = 6 * 5.0 / np.sqrt(n)
    assert np.abs(V_hat - V).max() < bound, np.abs(V_hat - V).max()


def test_visit_counts_match_the_expected_visits(world):
    """``N(s) / episodes`` estimates ``d(s) = [(I - P_pi)^-T mu0](s)``, the exact expected visits."""
    mdp, pi, _, d = world
    n = 50_000
    _, visits = teachers.monte_carlo_values(mdp, pi, n, seed=2, return_visits=True)
    np.testing.assert_allclose(visits / n, d, atol=0.05 * d.max())
    assert (visits[d == 0] == 0).all()


def test_min_visits_replaces_exactly_the_states_under_the_threshold(world):
    mdp, pi, _, _ = world
    raw, visits = teachers.monte_carlo_values(mdp, pi, 30, seed=4, return_visits=True)
    threshold = int(np.median(visits[visits > 0]))
    cut = teachers.monte_carlo_values(mdp, pi, 30, seed=4, min_visits=threshold)
    under = visits < threshold
    assert under.any() and (~under).any()
    np.testing.assert_array_equal(cut[under], 0.0)
    np.testing.assert_array_equal(cut[~under], raw[~under])
    other = teachers.monte_carlo_values(mdp, pi, 30, seed=4, min_visits=threshold, fallback=-1.0)
    np.testing.assert_array_equal(other[under], -1.0)
    # unvisited states have no estimate: they get the fallback even without a threshold
    assert (raw[visits == 0] == 0).all()


def test_batch_matches_single_calls_and_ignores_the_thread_count():
    batch = mdps.random_gridworlds(4, size=8, seed=0)
    pis = teachers.epsilon_greedy_policy(exact.optimal_batch(batch)[1], 0.2)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = teachers.monte_carlo_values_batch(batch, pis, 50, seed=7, return_visits=True)
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        many = teachers.monte_carlo_values_batch(batch, pis, 50, seed=7, return_visits=True)
    finally:
        numba.set_num_threads(threads)
    for a, b in zip(one, many):
        np.testing.assert_array_equal(a, b)
    single = teachers.monte_carlo_values(batch[2], pis[2], 50, seed=9, return_visits=True)  # MDP i uses seed + i
    np.testing.assert_array_equal(one[0][2], single[0])
    np.testing.assert_array_equal(one[1][2], single[1])
    assert not np.array_equal(one[0], teachers.monte_carlo_values_batch(batch, pis, 50, seed=8))


@pytest.mark.parametrize("kwargs, message", [
    (dict(episodes=0), "episodes must be an integer >= 1; got 0"),
    (dict(episodes=2.5), "episodes must be an integer >= 1; got 2.5"),
    (dict(min_visits=-1), "min_visits must be an integer >= 0; got -1"),
    (dict(starts="start"), "unknown starts 'start'; valid: 'mu0', 'all'"),
    (dict(fallback=float("nan")), "fallback must be a finite number; got nan"),
    (dict(max_steps=0), "max_steps must be an integer >= 1; got 0"),
    (dict(seed=-1), "seed must be a non-negative integer; got -1"),
])
def test_bad_arguments_name_the_value_and_the_choices(world, kwargs, message):
    mdp, pi, _, _ = world
    args = dict(episodes=10, seed=0) | kwargs
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        teachers.monte_carlo_values(mdp, pi, **args)


def test_truncated_episodes_are_reported(world):
    mdp, pi, _, _ = world
    with pytest.warns(UserWarning, match="reached max_steps = 2"):
        teachers.monte_carlo_values(mdp, pi, 20, seed=0, max_steps=2)
