"""distlab.bandits against closed forms: UCB1 indices and Auer et al.'s bound on suboptimal pulls, the
conjugate Gaussian posterior of Thompson sampling, epsilon-greedy's choice probabilities; both users
(tabular study, deep election) decide through it."""

import numpy as np
import pytest

from distlab import bandits


def test_ucb1_index_is_mean_plus_exploration_bonus_and_untried_arms_come_first():
    counts, sums = np.array([2, 1, 3]), np.array([3.0, 0.5, 4.0])
    n = 6
    expected = sums / counts + 0.7 * 2.0 * np.sqrt(2 * np.log(n) / counts)
    assert np.allclose(bandits.ucb1_scores(counts, sums, c=0.7, scale=2.0), expected)
    rng = np.random.default_rng(0)
    assert bandits.choose_arm("ucb1", counts, sums, rng) == int(np.argmax(sums / counts + np.sqrt(2 * np.log(n) / counts)))
    assert bandits.choose_arm("ucb1", [2, 0, 1, 0], [9.0, 0, 9.0, 0], rng) == 1  # untried, lowest index first
    assert bandits.choose_arm("ucb1", counts, sums, rng, c=0.0) == int(np.argmax(sums / counts))  # no bonus: greedy


def test_ucb1_pulls_a_suboptimal_arm_no_more_than_auer_et_al_bound():
    """Auer et al. (2002), Thm. 1: E[T_j(n)] <= 8 ln n / Delta_j^2 + 1 + pi^2 / 3 for rewards in [0, 1]."""
    probs, horizon, runs = np.array([0.9, 0.6, 0.4]), 2000, 20
    pulls = np.zeros(3)
    for run in range(runs):
        rng = np.random.default_rng(run)
        counts, sums = np.zeros(3), np.zeros(3)
        for _ in range(horizon):
            i = bandits.choose_arm("ucb1", counts, sums, rng)
            counts[i] += 1
            sums[i] += rng.random() < probs[i]
        pulls += counts / runs
    gaps = probs.max() - probs
    for j in (1, 2):
        bound = 8 * np.log(horizon) / gaps[j] ** 2 + 1 + np.pi ** 2 / 3
        assert pulls[j] <= bound, (j, pulls[j], bound)
    assert pulls[0] > 0.6 * horizon


def test_thompson_draws_follow_the_conjugate_gaussian_posterior():
    """Prior N(mu0, s^2), rewards N(theta, s^2): posterior precision 1/s^2 + n/s^2, mean (mu0/s^2 + S/s^2)/precision."""
    counts, sums, sigma, mu0 = np.array([0, 4, 20]), np.array([0.0, 2.0, 15.0]), 0.3, 0.5
    precision = 1 / sigma ** 2 + counts / sigma ** 2
    post_mean = (mu0 / sigma ** 2 + sums / sigma ** 2) / precision
    mean, std = bandits.thompson_posterior(counts, sums, sigma, mu0)
    assert np.allclose(mean, post_mean) and np.allclose(std, precision ** -0.5)
    rng = np.random.default_rng(0)
    draws = np.stack([bandits.thompson_draw(counts, sums, rng, sigma, mu0) for _ in range(20_000)])
    assert np.allclose(draws.mean(0), post_mean, atol=4 * precision ** -0.5 / np.sqrt(20_000))
    assert np.allclose(draws.std(0), precision ** -0.5, rtol=0.03)


def test_thompson_choice_probability_of_two_arms_is_the_normal_cdf_of_their_difference():
    from math import erf, sqrt

    counts, sums, sigma = np.array([3, 8]), np.array([1.5, 5.0]), 1.0
    mean, std = bandits.thompson_posterior(counts, sums, sigma)
    z = (mean[1] - mean[0]) / np.hypot(std[0], std[1])
    p_second = 0.5 * (1 + erf(z / sqrt(2)))  # P(theta_1 > theta_0)
    rng = np.random.default_rng(1)
    picks = [bandits.choose_arm("thompson", counts, sums, rng, sigma=sigma) for _ in range(20_000)]
    assert abs(np.mean(picks) - p_second) < 0.015


@pytest.mark.parametrize("epsilon", [0.0, 0.2, 1.0])
def test_epsilon_greedy_picks_the_best_mean_with_probability_one_minus_epsilon_plus_epsilon_over_k(epsilon):
    counts, sums = np.array([2, 5, 1, 4]), np.array([1.0, 4.0, 0.9, 1.0])  # means 0.5, 0.8, 0.9, 0.25
    rng = np.random.default_rng(2)
    picks = np.array([bandits.choose_arm("epsilon-greedy", counts, sums, rng, epsilon=epsilon) for _ in range(20_000)])
    frac = np.bincount(picks, minlength=4) / len(picks)
    assert abs(frac[2] - (1 - epsilon + epsilon / 4)) < 0.015
    assert all(abs(frac[i] - epsilon / 4) < 0.015 for i in (0, 1, 3))
    assert bandits.choose_arm("epsilon-greedy", np.zeros(4), np.zeros(4), np.random.default_rng(0), epsilon=0.0) in range(4)


def test_random_is_uniform_and_unknown_strategies_are_named():
    rng = np.random.default_rng(3)
    frac = np.bincount([bandits.choose_arm("random", np.zeros(3), np.zeros(3), rng) for _ in range(9000)], minlength=3) / 9000
    assert np.all(np.abs(frac - 1 / 3) < 0.02)
    with pytest.raises(ValueError, match="unknown bandit 'exp3'; valid: random, epsilon-greedy, ucb1, thompson"):
        bandits.choose_arm("exp3", np.zeros(3), np.zeros(3), rng)


def test_the_tabular_study_and_the_deep_election_decide_through_the_module():
    from distlab.studies import multi_teacher

    counts, sums = np.array([3, 2, 4]), np.array([1.2, 1.5, 2.0])
    for strategy in bandits.STRATEGIES:
        a = [multi_teacher.choose_arm(strategy, counts, sums, np.random.default_rng(7), 0.1, 0.1) for _ in range(3)]
        b = [bandits.choose_arm(strategy, counts, sums, np.random.default_rng(7), epsilon=0.1, sigma=0.1, prior_mean=0.5)
             for _ in range(3)]
        assert a == b
    pytest.importorskip("torch")
    from deep.election import TeacherElection

    for strategy in ("epsilon-greedy", "ucb1", "thompson"):
        e = TeacherElection(strategy, 3, 0, epsilon=0.1, ucb_c=1.5)
        for arm, reward in [(0, 1.0), (0, 3.0), (1, -1.0), (2, 2.0)]:
            e.record_reward(arm, reward)
        scale = np.std(e.rewards)
        rng = np.random.default_rng([0, 7919])  # the election's own stream
        expected = bandits.choose_arm(strategy, e.counts, e.sums, rng, epsilon=0.1, c=1.5, scale=scale, sigma=scale)
        assert e._choose(np.zeros(3)) == expected
