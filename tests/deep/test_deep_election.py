"""Teacher election strategies pick as specified (PIEKD Sec. 4.4; bandits of seed 003)."""

import numpy as np
import pytest

from deep.election import TeacherElection, recent_performance


def test_recent_performance_is_mean_of_last_m_returns():
    r = recent_performance([[1, 2, 3, 10], [], [5]], window=2)
    assert r[0] == 6.5 and r[1] == -np.inf and r[2] == 5


def test_best_picks_argmax_and_random_is_uniform():
    assert TeacherElection("best", 3, 0).elect(np.array([1.0, 5.0, 2.0])) == 1
    e = TeacherElection("random", 3, 0)
    counts = np.bincount([e.elect(np.array([1.0, 5.0, 2.0])) for _ in range(3000)], minlength=3)
    assert np.all(np.abs(counts / 3000 - 1 / 3) < 0.04)


def _feed(e, perf_seq):
    return [e.elect(np.array(p, dtype=float)) for p in perf_seq]


def test_bandit_reward_is_students_return_change_and_arms_are_tried_first():
    e = TeacherElection("ucb1", 3, 0)
    assert e.elect(np.array([0.0, 0.0, 0.0])) == 0  # unplayed arms first, lowest index
    # students of teacher 0 are 1 and 2; their change (+4, +2) -> reward 3 for arm 0
    assert e.elect(np.array([0.0, 4.0, 2.0])) == 1
    assert e.counts.tolist() == [1, 0, 0] and e.sums[0] == 3.0


def test_ucb1_matches_formula():
    e = TeacherElection("ucb1", 3, 0, ucb_c=1.0)
    for arm, rewards in enumerate([[1.0, 2.0], [0.5], [3.0, 0.0, 1.0]]):
        for r in rewards:
            e.record_reward(arm, r)
    means = e.sums / e.counts
    scale = np.std(e.rewards)
    expected = np.argmax(means + scale * np.sqrt(2 * np.log(6) / e.counts))
    e.pending = None
    assert e.elect(np.zeros(3)) == expected


@pytest.mark.parametrize("strategy", ["epsilon-greedy", "thompson"])
def test_bandits_exploit_a_clearly_better_arm(strategy):
    e = TeacherElection(strategy, 3, 1, epsilon=0.1)
    for arm, mu in enumerate([0.0, 5.0, 1.0]):
        for r in np.random.default_rng(arm).normal(mu, 0.5, 20):
            e.record_reward(arm, r)
    picks = [e._choose(np.zeros(3)) for _ in range(1000)]
    frac = np.mean(np.array(picks) == 1)
    if strategy == "epsilon-greedy":  # 1 - eps + eps / K
        assert abs(frac - (0.9 + 0.1 / 3)) < 0.03
    else:
        assert frac > 0.99


def test_epsilon_extremes():
    e0 = TeacherElection("epsilon-greedy", 3, 0, epsilon=0.0)
    e1 = TeacherElection("epsilon-greedy", 3, 0, epsilon=1.0)
    for e in (e0, e1):
        for arm, r in enumerate([1.0, 3.0, 2.0]):
            e.record_reward(arm, r)
    assert all(e0._choose(np.zeros(3)) == 1 for _ in range(100))
    counts = np.bincount([e1._choose(np.zeros(3)) for _ in range(3000)], minlength=3)
    assert np.all(np.abs(counts / 3000 - 1 / 3) < 0.04)


def test_state_roundtrip_reproduces_choices():
    e = TeacherElection("thompson", 3, 5)
    for arm, r in enumerate([1.0, 2.0, 3.0]):
        e.record_reward(arm, r)
    state = e.state_dict()
    a = [e._choose(np.zeros(3)) for _ in range(20)]
    f = TeacherElection("thompson", 3, 99)
    f.load_state_dict(state)
    assert [f._choose(np.zeros(3)) for _ in range(20)] == a


def test_unknown_strategy_is_rejected():
    with pytest.raises(ValueError, match="unknown election 'greedy'"):
        TeacherElection("greedy", 3, 0)
