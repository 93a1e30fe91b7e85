"""The estimator knobs of the sampled backend against independent references.

* ``step_unit="transitions"``: the ``transitions`` column counts exactly ``N`` per step; an unroll's mean
  update is ``N / E_q[T]`` times the exact expected update (each transition a visit from ``d_q / sum d_q``;
  ``E_q[T] = sum_s d_q(s)`` from a linear solve), score terms included when the cut return is
  bootstrapped with the exact baseline.
* ``baseline``: ``"exact"`` and ``"learned"`` keep the sampled mean on ``expected_update`` (|z| < 5) for
  every registered rule with a score term and lower its standard error where the rule has a return part.
* ``dpd_clip`` / ``dpd_states``: the sampled DPD updates match the exact ones (which match a dense
  re-derivation in ``test_expected``).
"""

from __future__ import annotations

import numpy as np
import pytest

import mdps
from distlab import exact, kernels, rules, sampled
from distlab import student as st
from distlab.components import component_codes
from distlab.expected import expected_update, update_terms
from distlab.teachers import softmax_policy

from _agreement import EPISODES, Z_MAX, assert_agrees  # tests/ is on sys.path


@pytest.fixture(scope="module")
def garnet_case():
    """A small Garnet MDP (episodes of ~5 steps), a random student and a teacher better than the
    student in some states and worse in others."""
    mdp = mdps.garnet(6, 3, 2, seed=1, continuation=0.8)
    rng = np.random.default_rng(0)
    theta = rng.normal(size=(6, 3))
    _, Q, _ = exact.optimal(mdp)
    teacher = 0.3 * softmax_policy(Q, 0.5) + 0.7 * rng.dirichlet(np.ones(3), size=6)
    return mdp, theta, teacher


def has_score(rule: rules.Rule) -> bool:
    return rule.reward != "none" or rule.score != "return" or rule.env_reward


def has_return_part(rule: rules.Rule) -> bool:
    """Rules whose score weight has a return Rhat (the part a baseline applies to)."""
    return rule.reward != "none" or rule.env_reward


SCORE_RULES = [n for n in rules.names() if has_score(rules.get(n))]


def mean_episode_length(mdp, theta, teacher, rule="on-policy", **options) -> float:
    return float(update_terms(mdp, rule, theta, teacher, **options).visits.sum())


# ---------------------------------------------------------------------------- baselines
@pytest.mark.parametrize("name", SCORE_RULES)
def test_exact_baseline_is_unbiased_and_lowers_the_standard_error(garnet_case, name):
    mdp, theta, teacher = garnet_case
    reference = expected_update(mdp, name, theta, teacher)
    plain_mean, plain_se = sampled.sampled_update(mdp, name, theta, teacher, episodes=EPISODES, seed=21)
    mean, se = sampled.sampled_update(mdp, name, theta, teacher, episodes=EPISODES, seed=21, baseline="exact")
    assert_agrees(mean, se, reference, f"{name} exact baseline")
    ratio = np.linalg.norm(se) / np.linalg.norm(plain_se)
    print(f"SE ratio exact/none {name}: {ratio:.3f}")
    if has_return_part(rules.get(name)):
        assert ratio < 1.0, ratio
    else:  # td-teacher-v, td-v0: no return, so the baseline is 0 and the estimate is the plain one
        np.testing.assert_array_equal(mean, plain_mean)


@pytest.mark.parametrize("name", ["n-distill+r", "expected-entropy", "entropy-regularised+r", "teacher-v-reward", "rl"])
def test_learned_baseline_is_unbiased_and_lowers_the_standard_error(garnet_case, name):
    """The critic is updated after each episode and subtracted before: it never sees its own sample."""
    mdp, theta, teacher = garnet_case
    _, plain_se = sampled.sampled_update(mdp, name, theta, teacher, episodes=EPISODES, seed=22)
    mean, se = sampled.sampled_update(mdp, name, theta, teacher, episodes=EPISODES, seed=22, baseline="learned",
                                      baseline_lr=0.05)
    assert_agrees(mean, se, expected_update(mdp, name, theta, teacher), f"{name} learned baseline")
    if name != "teacher-v-reward":  # its shaping already subtracts V_pi(s_t): a learned b adds its own noise
        assert np.linalg.norm(se) < np.linalg.norm(plain_se)


@pytest.mark.parametrize("name, options", [
    ("on-policy+r", dict(control="uniform")),
    ("n-distill+r", dict(control="mixture", beta=0.4)),
    ("expected-entropy+r", dict(exploration="boltzmann", temperature=2.0)),
    ("entropy-regularised", dict(exploration="epsilon-greedy", epsilon=0.3)),
])
def test_baselines_stay_unbiased_when_the_control_is_not_the_student(garnet_case, name, options):
    """E_q[grad log pi_theta] = q - pi_theta != 0: the kernels add back the exact correction."""
    mdp, theta, teacher = garnet_case
    for baseline in ("exact", "learned"):
        mean, se = sampled.sampled_update(mdp, name, theta, teacher, episodes=EPISODES, seed=23, baseline=baseline,
                                          **options)
        assert_agrees(mean, se, expected_update(mdp, name, theta, teacher, **options), f"{name} {options} {baseline}")


@pytest.mark.parametrize("name", ["n-distill+r", "expected-entropy+r", "entropy-regularised", "teacher-v-reward",
                                  "value-gated+r", "dpd+r"])
def test_the_training_kernels_exact_baseline_is_the_exact_return_to_go(garnet_case, name):
    """``kernels.exact_baseline_into`` (recomputed inside train_sampled) against ``UpdateTerms.return_to_go``
    (a NumPy solve), with the exact backend's gate weights."""
    mdp, theta, teacher = garnet_case
    terms = update_terms(mdp, name, theta, teacher, exploration="boltzmann", temperature=1.5)
    rule = terms.rule
    S, A = theta.shape
    alias = np.arange(S)
    probs, logp, beh_cdf = np.empty((S, A)), np.empty((S, A)), np.empty((S, A))
    codes = component_codes(rule)
    kernels.init_student(theta, alias, codes[0], rules.EXPLORATIONS.index("boltzmann"), teacher, 0.5, 0.1, 1 / 1.5,
                         probs, logp, beh_cdf)
    log_t, centred, argmax_t, entropy = (np.asarray(x) for x in kernels.target_tables(terms.target))
    teacher_v = np.zeros(S) if terms.teacher_value is None else terms.teacher_value
    out = np.full(S, np.nan)
    ok = kernels.exact_baseline_into(codes[2], codes[1], bool(codes[5]), mdp.next_state, mdp.next_prob, mdp.R,
                                     mdp.mu0, alias, teacher_v, terms.mask, terms.weight, terms.target, log_t, centred,
                                     argmax_t, entropy, probs, logp, beh_cdf, np.empty((S, A)), np.empty((S, A)),
                                     np.empty((S, A)), np.empty(S), out)
    assert ok
    np.testing.assert_allclose(out, terms.return_to_go, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("baseline", ["exact", "learned"])
def test_one_training_step_with_a_baseline_is_an_unbiased_update(garnet_case, baseline):
    """``steps=1, lr=1`` on B copies: theta0 - theta1 is one step's update; its mean over copies matches
    expected_update (the exact baseline is computed inside the training kernel)."""
    mdp, theta, teacher = garnet_case
    B, E = 400, 50
    batch = mdps.stack([mdp] * B)
    teachers = np.broadcast_to(teacher, (B,) + teacher.shape)
    for name in ("n-distill+r", "expected-entropy"):
        _, theta1 = sampled.train_sampled(batch, name, teachers, steps=1, lr=1.0, episodes_per_step=E, theta0=theta,
                                          seed=9, return_theta=True, baseline=baseline)
        g = theta[None] - theta1
        assert_agrees(g.mean(axis=0), g.std(axis=0, ddof=1) / np.sqrt(B), expected_update(mdp, name, theta, teacher),
                      f"{name} {baseline}")


# ---------------------------------------------------------------------------- step unit
@pytest.mark.parametrize("name", ["on-policy", "on-policy+r", "n-distill", "expected-entropy+r", "td-teacher-v",
                                  "teacher-v-reward", "dpd+r"])
def test_an_unroll_estimates_n_over_the_mean_episode_length_times_the_expected_update(garnet_case, name):
    """Each transition of a long stream is a visit from d_q / sum d_q, so an unroll of N transitions
    estimates N / E_q[T] * expected_update; the return cut at the unroll's end is bootstrapped with the
    exact baseline, which keeps the score term unbiased."""
    mdp, theta, teacher = garnet_case
    N = 40
    scale = N / mean_episode_length(mdp, theta, teacher)
    mean, se = sampled.sampled_update(mdp, name, theta, teacher, episodes=EPISODES, seed=24, step_unit="transitions",
                                      transitions_per_step=N, baseline="exact")
    assert_agrees(mean, se, scale * expected_update(mdp, name, theta, teacher), f"{name} unrolls of {N}")


def test_an_unroll_without_bootstrap_is_biased_for_return_rules(garnet_case):
    """What "cut" means: with baseline "none" the return stops at the unroll's end (a bias towards zero
    that the exact bootstrap removes), and the loss-only rules do not care."""
    mdp, theta, teacher = garnet_case
    N = 4  # short unrolls: many cut returns
    scale = N / mean_episode_length(mdp, theta, teacher)
    mean, se = sampled.sampled_update(mdp, "rl", theta, teacher, episodes=EPISODES, seed=25, step_unit="transitions",
                                      transitions_per_step=N)
    z = np.abs(mean - scale * expected_update(mdp, "rl", theta, teacher)) / se
    assert z.max() > 2 * Z_MAX
    mean, se = sampled.sampled_update(mdp, "on-policy", theta, teacher, episodes=EPISODES, seed=25,
                                      step_unit="transitions", transitions_per_step=N)
    assert_agrees(mean, se, scale * expected_update(mdp, "on-policy", theta, teacher), "on-policy, short unrolls")


@pytest.fixture(scope="module")
def grid_case():
    batch = mdps.random_gridworlds(3, size=6, seed=10)
    _, Q, _ = exact.optimal_batch(batch)
    teachers = 0.9 * softmax_policy(Q, 0.2) + 0.1 / batch.n_actions
    return batch, teachers


@pytest.mark.parametrize("name", ["on-policy", "n-distill+r", "value-gated"])
def test_the_transitions_column_is_exact(grid_case, name):
    batch, teachers = grid_case
    N = 37
    table = sampled.train_sampled(batch, name, teachers, steps=100, lr=0.3, record_every=25, seed=2,
                                  step_unit="transitions", transitions_per_step=N)
    np.testing.assert_array_equal(table.transitions.to_numpy(), N * table.step.to_numpy())
    assert table.attrs["transitions"] == len(batch) * N * 100


def test_the_transitions_column_counts_episodes_in_episode_mode(grid_case):
    """Episode mode: the column is cumulative and its last value per MDP sums to the kernel's count;
    with record_steps the grid is the one given."""
    batch, teachers = grid_case
    grid = [0, 1, 3, 10, 30, 100]
    table = sampled.train_sampled(batch, "on-policy", teachers, steps=100, lr=0.3, record_steps=grid, seed=2,
                                  episodes_per_step=2)
    for _, group in table.groupby("mdp"):
        assert group.step.tolist() == grid
        assert group.transitions.iloc[0] == 0
        # at least one transition per episode, two episodes per step
        assert np.all(np.diff(group.transitions.to_numpy()) >= 2 * np.diff(grid))
    assert table.groupby("mdp").transitions.last().sum() == table.attrs["transitions"]


def test_record_steps_are_validated():
    with pytest.raises(ValueError, match="strictly increasing"):
        sampled.record_grid(10, record_steps=[0, 5, 5])
    with pytest.raises(ValueError, match=r"in \[0, steps=10\]"):
        sampled.record_grid(10, record_steps=[0, 11])
    np.testing.assert_array_equal(sampled.record_grid(10, 4), [0, 4, 8, 10])


def test_transitions_mode_training_reduces_the_cross_entropy(grid_case):
    """A sanity check of the training loop with unrolls (and a learned baseline): it learns."""
    batch, teachers = grid_case
    table = sampled.train_sampled(batch, "n-distill", teachers, steps=1500, lr=0.05, record_every=1500, seed=3,
                                  step_unit="transitions", transitions_per_step=20, baseline="learned")
    first, last = table[table.step == 0].set_index("mdp"), table[table.step == 1500].set_index("mdp")
    assert (last.hx_student < 0.8 * first.hx_student).all()


def test_episodes_per_step_is_for_the_episode_unit(grid_case):
    batch, teachers = grid_case
    with pytest.raises(ValueError, match="episodes_per_step=2 is for step_unit='episode'"):
        sampled.train_sampled(batch, "on-policy", teachers, steps=1, lr=0.1, episodes_per_step=2,
                              step_unit="transitions", transitions_per_step=5)


# ---------------------------------------------------------------------------- DPD options
@pytest.mark.parametrize("name", ["dpd", "dpd+r"])
@pytest.mark.parametrize("dpd_states", ["own", "peer"])
@pytest.mark.parametrize("dpd_clip", [None, 1.5])
def test_sampled_dpd_states_and_clip_match_expected_update(garnet_case, name, dpd_states, dpd_clip):
    mdp, theta, teacher = garnet_case
    peer = np.random.default_rng(5).dirichlet(np.ones(3), size=6)
    kw = dict(dpd_states=dpd_states, dpd_clip=dpd_clip, dpd_alpha=3.0, peer=peer)
    mean, se = sampled.sampled_update(mdp, name, theta, teacher, episodes=EPISODES, seed=26, **kw)
    assert_agrees(mean, se, expected_update(mdp, name, theta, teacher, **kw), f"{name} {kw}")


@pytest.mark.parametrize("dpd_states", ["own", "peer"])
def test_one_dpd_training_step_is_an_unbiased_update(garnet_case, dpd_states):
    """The training kernel's DPD weights (clipped, normalised under the loss states' visits) and the
    peer's state stream, against expected_update."""
    mdp, theta, teacher = garnet_case
    peer = np.random.default_rng(5).dirichlet(np.ones(3), size=6)
    B, E = 400, 50
    batch = mdps.stack([mdp] * B)
    teachers = np.broadcast_to(teacher, (B,) + teacher.shape)
    peers = np.broadcast_to(peer, (B,) + peer.shape)
    kw = dict(dpd_states=dpd_states, dpd_clip=1.5, dpd_alpha=3.0)
    _, theta1 = sampled.train_sampled(batch, "dpd+r", teachers, steps=1, lr=1.0, episodes_per_step=E, theta0=theta,
                                      seed=27, return_theta=True, peers=peers, **kw)
    g = theta[None] - theta1
    assert_agrees(g.mean(axis=0), g.std(axis=0, ddof=1) / np.sqrt(B),
                  expected_update(mdp, "dpd+r", theta, teacher, peer=peer, **kw), f"dpd+r {dpd_states}")


def test_an_unroll_of_dpd_on_peer_states_scales_with_the_peers_episode_length():
    """The loss of DPD on the peer's states comes from the peer's own stream of N transitions, so it
    estimates N / E_peer[T] * expected_update; checked where the peer's and the student's episode
    lengths differ (an MDP whose termination depends on the action)."""
    mdp = mdps.random_gridworlds(1, size=5, seed=4)[0]
    S, A = mdp.n_states, mdp.n_actions
    theta = np.random.default_rng(3).normal(size=(S, A))
    peer = softmax_policy(exact.optimal(mdp)[1], 0.3)  # heads for the terminal cells
    teacher = np.full((S, A), 1.0 / A)
    peer_length = float(exact.evaluate(mdp, peer)[2].sum())
    student_length = float(exact.evaluate(mdp, st.student_policy(theta))[2].sum())
    assert abs(peer_length / student_length - 1.0) > 0.1, (peer_length, student_length)
    N = 60
    mean, se = sampled.sampled_update(mdp, "dpd", theta, teacher, episodes=EPISODES, seed=28, step_unit="transitions",
                                      transitions_per_step=N, peer=peer, dpd_states="peer")
    assert_agrees(mean, se, N / peer_length * expected_update(mdp, "dpd", theta, teacher, peer=peer), "dpd on peer states")
