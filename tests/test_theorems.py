"""The taxonomy's theorems and propositions, checked on exact dynamics.

Czarnecki et al. (2019): Theorem 1 (on-policy distill is not a gradient field), Prop. 1 (it converges
to the teacher in the tabular case), Props. 2-3 (value gating and bootstrapping from the teacher's
value end at least as good as the teacher), Prop. 4 (the teacher-V shaping penalises leaving the
optimal path), Sec. 3.3 (reverse cross entropy is mode seeking); Lai et al. (2020), DPD Prop. 1 (the
per-state hybrid of two policies is at least as good as both). The Fig. 2 counterexample is in
``test_counterexample.py``; Theorem 2 (gradients of the corrected rules) in ``test_expected.py``.
"""

import numpy as np
import pytest

import mdps
from distlab import diagnostics as dg
from distlab import student as st
from distlab.exact import evaluate, optimal
from distlab.expected import expected_step_reward, expected_update, run_exact
from distlab.teachers import epsilon_greedy_policy, noisy_teacher, softmax_policy


def random_policy(S, A, seed):
    return np.random.default_rng(seed).dirichlet(np.ones(A), size=S)


# ------------------------------------------------------------------------------------ Theorem 1
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_theorem_1_on_policy_distill_is_not_a_gradient_field(seed):
    mdp = mdps.garnet(8, 3, 3, seed=seed)
    teacher = random_policy(8, 3, seed + 10)
    theta = np.random.default_rng(seed).normal(size=(8, 3))
    figures = {name: dg.asymmetry(dg.jacobian(mdp, name, theta, teacher)) for name in ("on-policy", "on-policy+r", "n-distill", "n-distill+r", "expected-entropy")}
    print(f"garnet {seed}: ||J - J^T||_F / ||J||_F = " + ", ".join(f"{k} {v:.3g}" for k, v in figures.items()))
    assert figures["on-policy"] > 0.05 and figures["on-policy+r"] > 0.05
    for name in ("n-distill", "n-distill+r", "expected-entropy"):  # Theorem 2: gradient fields
        assert figures[name] < 1e-6, name


# ------------------------------------------------------------------------------------ Prop. 1
@pytest.mark.parametrize("make", [lambda: mdps.garnet(8, 3, 3, seed=4), lambda: mdps.random_gridworld(size=5, seed=2, p_wall=0.3)], ids=["garnet", "gridworld"])
def test_prop_1_on_policy_distill_converges_to_the_teacher_on_reachable_states(make):
    mdp = make()
    teacher = softmax_policy(optimal(mdp)[1], 1.0)  # strictly stochastic
    theta = np.zeros((mdp.n_states, mdp.n_actions))
    for _ in range(3000):
        theta -= 0.5 * expected_update(mdp, "on-policy", theta, teacher)
    student = st.student_policy(theta)
    reachable = evaluate(mdp, student)[2] > 0
    assert reachable.sum() >= mdp.n_states // 2
    assert np.abs(student - teacher)[reachable].max() < 1e-6


# ------------------------------------------------------------------------------------ Props. 2-3
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_props_2_3_value_gating_and_teacher_bootstrap_beat_a_noisy_teacher(seed):
    mdp = mdps.garnet(8, 3, 3, seed=seed)
    _, Q_star, _ = optimal(mdp)
    teacher = noisy_teacher(epsilon_greedy_policy(Q_star, 0.1), 0.5, seed=seed)
    teacher_return = mdp.mu0 @ evaluate(mdp, teacher)[0]
    final = {}
    for rule in ("value-gated+r", "td-teacher-v", "on-policy"):
        df = run_exact(mdp, rule, teacher, steps=3000, lr=1.0, record_every=3000)
        final[rule] = df.student_return.iloc[-1]
    print(f"garnet {seed}: teacher {teacher_return:.3f}, " + ", ".join(f"{k} {v:.3f}" for k, v in final.items()))
    assert final["value-gated+r"] >= teacher_return  # Prop. 2
    assert final["td-teacher-v"] >= teacher_return  # Prop. 3
    # Cloning converges to the teacher's return (Prop. 1): the teacher is a real bar to clear.
    assert final["on-policy"] == pytest.approx(teacher_return, abs=1e-3 * abs(teacher_return) + 1e-3)


# ------------------------------------------------------------------------------------ Prop. 4
def test_prop_4_teacher_v_reward_penalises_leaving_the_optimal_path_on_the_chain():
    mdp = mdps.chain_corridor(5, continuation=0.9)
    V_star, Q_star, pi_star = optimal(mdp)
    r_V = expected_step_reward(mdp, "teacher-v-reward", np.zeros((11, 2)), pi_star)
    interior = np.arange(1, 10)  # the ends are the terminal states
    LEFT, RIGHT = 0, 1
    assert np.all(pi_star[interior, RIGHT] == 1.0)
    np.testing.assert_allclose(r_V[interior, RIGHT], mdp.R[interior, RIGHT], atol=1e-12)  # r^V = r on the path
    assert np.all(r_V[interior, LEFT] < mdp.R[interior, LEFT] - 1e-3)  # an immediate penalty off it


@pytest.mark.parametrize("seed", [0, 1])
def test_prop_4_on_a_gridworld_the_shaped_reward_is_the_optimal_advantage(seed):
    mdp = mdps.random_gridworld(size=8, seed=seed)
    V_star, Q_star, pi_star = optimal(mdp)
    r_V = expected_step_reward(mdp, "teacher-v-reward", np.zeros((64, 4)), pi_star)
    advantage = Q_star - V_star[:, None]
    np.testing.assert_allclose(r_V, advantage, atol=1e-9 * np.abs(V_star).max())
    optimal_action = advantage > -1e-9 * np.abs(V_star).max()
    no_reward = np.all(mdp.R == 0.0, axis=1)[:, None] & np.ones_like(optimal_action)
    assert np.all(np.abs(r_V - mdp.R)[optimal_action & no_reward] < 1e-8)
    assert np.all((r_V < mdp.R)[~optimal_action & no_reward])
    assert (~optimal_action & no_reward).sum() > 10


# ------------------------------------------------------------------------------------ DPD Prop. 1
@pytest.mark.parametrize("seed", range(5))
def test_dpd_prop_1_hybrid_policy_is_at_least_as_good_as_both(seed):
    # Short episodes keep values local, so two policies can each be better in different states.
    mdp = mdps.garnet(20, 4, 4, seed=seed, continuation=0.6)
    # Complementary policies: each is optimal in its own half of the states and random in the other.
    pi_star = optimal(mdp)[2]
    half = np.random.default_rng(seed).permutation(20) < 10
    pi = np.where(half[:, None], pi_star, random_policy(20, 4, seed))
    peer = np.where(half[:, None], random_policy(20, 4, seed + 100), pi_star)
    V, V_peer = evaluate(mdp, pi)[0], evaluate(mdp, peer)[0]
    hybrid = st.dpd_hybrid_policy(pi, peer, V, V_peer)
    V_hybrid = evaluate(mdp, hybrid)[0]
    assert np.all(V_hybrid >= np.maximum(V, V_peer) - 1e-10)
    assert np.any(V_hybrid > np.maximum(V, V_peer) + 1e-6)  # the two policies are complementary
    # Taking the worse policy per state is not an improvement: the test can fail.
    V_worse = evaluate(mdp, st.dpd_hybrid_policy(pi, peer, V_peer, V))[0]
    assert np.any(V_worse < np.maximum(V, V_peer) - 1e-6)


# ------------------------------------------------------------------------------------ Sec. 3.3
def test_reverse_cross_entropy_is_mode_seeking():
    teacher = random_policy(6, 4, 3)
    z_reverse = np.zeros((6, 4))
    z_forward = np.zeros((6, 4))
    for _ in range(3000):
        z_reverse -= st.loss_logit_grads("reverse-hx", teacher, z_reverse)
        z_forward -= st.loss_logit_grads("hx", teacher, z_forward)
    p_reverse, p_forward = st.softmax(z_reverse), st.softmax(z_forward)
    assert np.all(p_reverse[np.arange(6), teacher.argmax(1)] > 0.99)  # mass on the teacher's mode
    np.testing.assert_allclose(p_forward, teacher, atol=1e-4)  # the forward one replicates pi


@pytest.mark.parametrize("rule", ["expected-entropy", "entropy-regularised"])
def test_mode_seeking_through_the_exact_dynamics_of_a_bandit(rule):
    """One state, episodes of one step: E_pi_theta[-log pi(a)] is minimised by the teacher's argmax."""
    P = np.zeros((1, 3, 1))
    mdp = mdps.TabularMDP.from_dense(P, np.zeros((1, 3)), np.ones(1))
    teacher = np.array([[0.2, 0.45, 0.35]])
    df = run_exact(mdp, rule, teacher, steps=3000, lr=1.0, record_every=3000)
    theta = df[[f"theta_0_{a}" for a in range(3)]].to_numpy()[-1]
    assert st.softmax(theta)[1] > 0.99
