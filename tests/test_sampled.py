"""Sampled kernels (distlab.sampled) against the exact expected updates (distlab.expected) and exact values.

The reference of every agreement test is :func:`distlab.expected.expected_update`, computed from
expected visits and Q-values by a linear solve, independently of any sampling. A Monte-Carlo mean of
many single-episode updates must match it elementwise within a few standard errors.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest

import mdps
from distlab import exact, rules, sampled
from distlab import student as st
from distlab.expected import expected_update
from distlab.teachers import softmax_policy

from _agreement import EPISODES, assert_agrees  # tests/ is on sys.path


@pytest.fixture(scope="module")
def garnet_case():
    """A small Garnet MDP (episodes of ~5 steps), a random student and a full-support teacher that is
    better than the student in some states and worse in others (so the value gate is informative)."""
    mdp = mdps.garnet(6, 3, 2, seed=1, continuation=0.8)
    rng = np.random.default_rng(0)
    theta = rng.normal(size=(6, 3))
    _, Q, _ = exact.optimal(mdp)
    teacher = 0.3 * softmax_policy(Q, 0.5) + 0.7 * rng.dirichlet(np.ones(3), size=6)
    V_teacher = exact.evaluate(mdp, teacher)[0]
    V_student = exact.evaluate(mdp, st.student_policy(theta))[0]
    gate = V_teacher > V_student
    assert 0 < gate.sum() < len(gate), "the value gate should be mixed in this case"
    return mdp, theta, teacher


@pytest.fixture(scope="module")
def chain_case():
    """The corridor of Sec. 4.2 (T = 3, undiscounted) with the deterministic optimal teacher (log pi is
    floored at LOG_FLOOR on the actions it never takes) and a student biased to the left."""
    mdp = mdps.chain_corridor(3)
    S = mdp.n_states
    teacher = np.zeros((S, 2))
    teacher[:, 1] = 1.0
    theta = np.tile([0.4, 0.0], (S, 1)) + np.random.default_rng(1).normal(scale=0.3, size=(S, 2))
    return mdp, theta, teacher


@pytest.mark.parametrize("name", rules.names())
def test_every_rule_matches_expected_update_on_a_garnet(garnet_case, name):
    mdp, theta, teacher = garnet_case
    mean, stderr = sampled.sampled_update(mdp, name, theta, teacher, episodes=EPISODES, seed=3)
    assert_agrees(mean, stderr, expected_update(mdp, name, theta, teacher), name)


@pytest.mark.parametrize("name", rules.names())
def test_every_rule_matches_expected_update_on_the_chain(chain_case, name):
    mdp, theta, teacher = chain_case
    mean, stderr = sampled.sampled_update(mdp, name, theta, teacher, episodes=EPISODES, seed=4)
    assert_agrees(mean, stderr, expected_update(mdp, name, theta, teacher), name)


OPTION_CASES = [
    *[("on-policy", dict(loss=loss)) for loss in rules.LOSSES],
    *[("n-distill", dict(loss=loss)) for loss in ("reverse-hx", "kl", "reverse-kl", "mse-logits", "nll-argmax")],
    ("on-policy", dict(control="teacher")),
    ("on-policy", dict(control="uniform")),
    ("n-distill+r", dict(control="mixture", beta=0.3)),
    ("expected-entropy", dict(exploration="greedy")),
    ("n-distill", dict(exploration="epsilon-greedy", epsilon=0.3)),
    ("on-policy+r", dict(exploration="boltzmann", temperature=0.5)),
    ("entropy-regularised", dict(control="mixture", exploration="boltzmann", temperature=2.0)),
    ("expected-entropy+r", dict(teacher_temperature=0.5)),
    ("value-gated+r", dict(student_value=np.linspace(-1.0, 1.0, 6))),
    ("td-teacher-v", dict(teacher_value=np.linspace(0.5, -0.5, 6))),
    ("dpd", dict(dpd_weight="indicator")),
    ("dpd+r", dict(dpd_alpha=0.5, peer="uniform")),
    ("n-distill", dict(loss_mask=np.array([1.0, 0.0, 0.5, 1.0, 0.0, 2.0]))),
]


@pytest.mark.parametrize("name,options", OPTION_CASES, ids=[f"{n}-{'-'.join(o)}" for n, o in OPTION_CASES])
def test_options_match_expected_update(garnet_case, name, options):
    """Swapped losses and controls, exploration, tempered targets, given values, DPD peers, loss masks."""
    mdp, theta, teacher = garnet_case
    options = dict(options)
    if options.get("peer") == "uniform":
        options["peer"] = np.full_like(teacher, 1.0 / teacher.shape[1])
    mean, stderr = sampled.sampled_update(mdp, name, theta, teacher, episodes=EPISODES, seed=5, **options)
    assert_agrees(mean, stderr, expected_update(mdp, name, theta, teacher, **options), f"{name} {options}")


def test_greedy_exploration_splits_ties_like_the_exact_backend(garnet_case):
    """Tied logits (theta = 0): the greedy behaviour is uniform over the tied actions, not the first."""
    mdp, _, teacher = garnet_case
    theta = np.zeros((6, 3))
    theta[0] = [1.0, 1.0, 0.0]
    mean, stderr = sampled.sampled_update(mdp, "on-policy", theta, teacher, episodes=EPISODES, seed=6,
                                          exploration="greedy")
    assert_agrees(mean, stderr, expected_update(mdp, "on-policy", theta, teacher, exploration="greedy"))


def test_tied_student_rows_match_expected_update(garnet_case):
    """A state -> row alias (parameter tying): tied states add up into their shared row."""
    mdp, _, teacher = garnet_case
    alias = np.array([0, 1, 0, 2, 1, 0])
    theta = np.random.default_rng(2).normal(size=(3, 3))
    for name in ("on-policy+r", "n-distill", "expected-entropy", "value-gated"):
        mean, stderr = sampled.sampled_update(mdp, name, theta, teacher, episodes=EPISODES, seed=7, alias=alias)
        assert_agrees(mean, stderr, expected_update(mdp, name, theta, teacher, alias=alias), name)


@pytest.mark.parametrize("name", ["on-policy+r", "n-distill+r"])
def test_fig2_counterexample_tied_rows_and_loss_mask_match_expected_update(name):
    """The sigmoid student of Fig. 2 (s_L and s_R share a row), the teacher's signal in s_R only
    (``mdp.info["loss_mask"]``, read by default) and the paper's linear loss (reverse-hx)."""
    mdp, alias, teacher = mdps.oscillation_counterexample()
    theta = np.array([[0.0, 0.3], [0.2, -0.4], [0.0, 0.0]])
    mean, stderr = sampled.sampled_update(mdp, name, theta, teacher, alias=alias, loss="reverse-hx",
                                          episodes=EPISODES, seed=12)
    assert_agrees(mean, stderr, expected_update(mdp, name, theta, teacher, alias=alias, loss="reverse-hx"), name)


def test_truncated_episodes_are_reported(chain_case):
    mdp, theta, teacher = chain_case
    with pytest.warns(UserWarning, match="truncated"):
        sampled.sampled_update(mdp, "on-policy", theta, teacher, episodes=100, seed=0, max_steps=2)


def test_a_user_registered_rule_runs_in_the_sampled_backend(garnet_case):
    """Components are dispatched on codes: an unusual combination matches its exact expectation."""
    mdp, theta, teacher = garnet_case
    rule = rules.Rule("sampled-test-combination", control="mixture", loss="reverse-kl", reward="log-teacher-next",
                      score="td-teacher-v", gate="value", has_plus_r=False)
    mean, stderr = sampled.sampled_update(mdp, rule, theta, teacher, episodes=EPISODES, seed=8, beta=0.4)
    assert_agrees(mean, stderr, expected_update(mdp, rule, theta, teacher, beta=0.4))


def test_standard_error_matches_the_spread_of_repeated_estimates(garnet_case):
    """The reported stderr is the spread of the mean over independent seeds (a check of the variance)."""
    mdp, theta, teacher = garnet_case
    means, errs = zip(*(sampled.sampled_update(mdp, "n-distill", theta, teacher, episodes=2_000, seed=s)
                        for s in range(40)))
    spread = np.std(means, axis=0, ddof=1)
    ratio = spread / np.mean(errs, axis=0)
    assert np.all((ratio > 0.6) & (ratio < 1.5)), ratio


# ---------------------------------------------------------------------------- determinism and inputs
def _with_threads(n, fn):
    before = numba.get_num_threads()
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    try:
        return fn()
    finally:
        numba.set_num_threads(before)


def test_sampled_update_is_identical_on_one_and_two_threads_and_seeds_differ(garnet_case):
    mdp, theta, teacher = garnet_case

    def run(seed):
        return sampled.sampled_update(mdp, "n-distill+r", theta, teacher, episodes=5_000, seed=seed)

    one, two = _with_threads(1, lambda: run(11)), _with_threads(2, lambda: run(11))
    np.testing.assert_array_equal(one[0], two[0])
    np.testing.assert_array_equal(one[1], two[1])
    assert not np.array_equal(one[0], run(12)[0])


@pytest.fixture(scope="module")
def grid_case():
    batch = mdps.random_gridworlds(3, size=6, seed=10)
    _, Q, _ = exact.optimal_batch(batch)
    teachers = 0.9 * softmax_policy(Q, 0.2) + 0.1 / batch.n_actions
    return batch, teachers


def test_train_sampled_is_identical_on_one_and_two_threads_and_seeds_differ(grid_case):
    batch, teachers = grid_case

    def run(seed, rule="value-gated+r"):
        return sampled.train_sampled(batch, rule, teachers, steps=300, lr=0.5, record_every=100, seed=seed,
                                     value_every=7, return_theta=True)

    (t1, th1), (t2, th2) = _with_threads(1, lambda: run(5)), _with_threads(2, lambda: run(5))
    np.testing.assert_array_equal(th1, th2)
    assert t1.equals(t2)
    assert not np.array_equal(th1, run(6)[1])


@pytest.mark.parametrize(
    "call",
    [
        lambda m, th, pi: sampled.sampled_update(m, "no-such-rule", th, pi, episodes=10, seed=0),
        lambda m, th, pi: sampled.sampled_update(m, "on-policy", th, pi, episodes=10, seed=0, loss="l2"),
        lambda m, th, pi: sampled.sampled_update(m, "on-policy", th, pi, episodes=10, seed=0, control="expert"),
        lambda m, th, pi: sampled.sampled_update(m, "teacher", th, pi, episodes=10, seed=0, exploration="greedy"),
        lambda m, th, pi: sampled.sampled_update(m, "on-policy", th, pi, episodes=10, seed=0, exploration="dropout"),
        lambda m, th, pi: sampled.sampled_update(m, "on-policy", th, pi, episodes=0, seed=0),
        lambda m, th, pi: sampled.sampled_update(m, "on-policy", th, pi, episodes=10, seed=-1),
        lambda m, th, pi: sampled.sampled_update(m, "on-policy", th[:, :2], pi, episodes=10, seed=0),
        lambda m, th, pi: sampled.sampled_update(m, "on-policy", th[:4], pi, episodes=10, seed=0),
        lambda m, th, pi: sampled.sampled_update(m, "on-policy", th, pi * 2, episodes=10, seed=0),
        lambda m, th, pi: sampled.sampled_update(m, "on-policy", th, pi, episodes=10, seed=0, alias=np.arange(6) + 1),
        lambda m, th, pi: sampled.sampled_update(m, "on-policy", th, pi, episodes=10, seed=0, peer=pi),
        lambda m, th, pi: sampled.sampled_update(m, "dpd", th, pi, episodes=10, seed=0, dpd_weight="softmax"),
        lambda m, th, pi: sampled.sampled_update(m, "on-policy", th, pi, episodes=10, seed=0, beta=1.5),
        lambda m, th, pi: sampled.sampled_update(m, "on-policy", th, pi, episodes=10, seed=0, temperature=0.0),
        lambda m, th, pi: sampled.sampled_update(m, "td-teacher-v", th, pi, episodes=10, seed=0,
                                                 teacher_value=np.zeros(5)),
        lambda m, th, pi: sampled.sampled_update(m, "on-policy", np.full((6, 3), np.nan), pi, episodes=10, seed=0),
    ],
)
def test_invalid_inputs_raise_value_error(garnet_case, call):
    mdp, theta, teacher = garnet_case
    with pytest.raises(ValueError):
        call(mdp, theta, teacher)


def test_train_sampled_invalid_inputs_raise(grid_case):
    batch, teachers = grid_case
    with pytest.raises(ValueError, match="teachers"):
        sampled.train_sampled(batch, "on-policy", teachers[:2], steps=1, lr=0.1)
    with pytest.raises(ValueError, match="steps"):
        sampled.train_sampled(batch, "on-policy", teachers, steps=-1, lr=0.1)
    with pytest.raises(ValueError, match="lr"):
        sampled.train_sampled(batch, "on-policy", teachers, steps=1, lr=np.nan)
    with pytest.raises(ValueError, match="batch"):
        sampled.train_sampled(batch[0], "on-policy", teachers, steps=1, lr=0.1)
    with pytest.raises(ValueError, match="theta0"):
        sampled.train_sampled(batch, "on-policy", teachers, steps=1, lr=0.1, theta0=np.zeros((2, 3, 4)))


# ---------------------------------------------------------------------------- training
def test_one_training_step_is_an_unbiased_update(garnet_case):
    """``steps=1, lr=1``: theta0 - theta1 is the mean of ``episodes_per_step`` single-episode updates, on
    B copies of the MDP with independent seeds; its mean over copies matches expected_update. Covers
    the fused on-policy update and the general one (n-distill reads log-probabilities)."""
    mdp, theta, teacher = garnet_case
    B, E = 400, 100
    batch = mdps.stack([mdp] * B)
    teachers = np.broadcast_to(teacher, (B,) + teacher.shape)
    for name in ("on-policy", "n-distill+r", "value-gated"):
        _, theta1 = sampled.train_sampled(batch, name, teachers, steps=1, lr=1.0, episodes_per_step=E, theta0=theta,
                                          seed=9, return_theta=True)
        g = theta[None] - theta1
        mean, stderr = g.mean(axis=0), g.std(axis=0, ddof=1) / np.sqrt(B)
        assert_agrees(mean, stderr, expected_update(mdp, name, theta, teacher), name)


def test_on_policy_training_reduces_the_student_cross_entropy_and_records_exact_metrics():
    """On gridworlds, sampled on-policy distillation lowers E_pi_theta[sum_t Hx(pi || pi_theta)]; every
    recorded metric at the last step equals a recomputation from the returned theta with exact.evaluate."""
    batch = mdps.random_gridworlds(4, size=8, seed=3)
    _, Q, _ = exact.optimal_batch(batch)
    teachers = softmax_policy(Q, 0.3)
    table, theta = sampled.train_sampled(batch, "on-policy", teachers, steps=2_000, lr=0.5, record_every=500,
                                         seed=1, return_theta=True)
    assert list(table.columns) == ["mdp", "step", "transitions", *sampled.METRICS]
    assert sorted(table.step.unique()) == [0, 500, 1000, 1500, 2000]
    first, last = table[table.step == 0].set_index("mdp"), table[table.step == 2000].set_index("mdp")
    assert (last.hx_student < 0.8 * first.hx_student).all(), (first.hx_student, last.hx_student)
    assert (last.start_value > first.start_value).all()
    uniform = np.full((batch.n_states, batch.n_actions), 1.0 / batch.n_actions)
    for b, mdp in enumerate(batch):
        pi_theta = st.student_policy(theta[b])
        V, _, visits = exact.evaluate(mdp, pi_theta)
        visits_teacher = exact.evaluate(mdp, teachers[b])[2]
        visits_uniform = exact.evaluate(mdp, uniform)[2]
        hx = st.loss_values("hx", teachers[b], theta[b])
        kl = st.loss_values("kl", teachers[b], theta[b])
        expected = dict(start_value=mdp.mu0 @ V, hx_teacher=visits_teacher @ hx, hx_student=visits @ hx,
                        hx_uniform=visits_uniform @ hx, kl_teacher=visits_teacher @ kl, kl_student=visits @ kl,
                        kl_uniform=visits_uniform @ kl)
        for name, value in expected.items():
            np.testing.assert_allclose(last.loc[b, name], value, rtol=1e-9, atol=1e-9, err_msg=name)


def test_zero_learning_rate_keeps_theta_and_metrics(grid_case):
    batch, teachers = grid_case
    theta0 = np.random.default_rng(0).normal(size=(batch.n_states, batch.n_actions))
    table, theta = sampled.train_sampled(batch, "expected-entropy+r", teachers, steps=50, lr=0.0, record_every=10,
                                         theta0=theta0, return_theta=True)
    np.testing.assert_array_equal(theta, np.broadcast_to(theta0, theta.shape))
    for _, group in table.groupby("mdp"):
        assert np.ptp(group[list(sampled.METRICS)].to_numpy(), axis=0).max() == 0.0
    assert table.attrs["transitions"] > 0
