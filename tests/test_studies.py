"""Studies: each smoke config runs through the runner and yields its figure's columns; the study-specific
pieces (Monte Carlo values, noisy teachers, bandits, the corridor actor-critic, the oscillation) are
checked against exact solutions, closed forms or theorems."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import mdps
from distlab import exact, studies, teachers
from distlab.studies import _common, chain, control, multi_teacher, noisy_teacher, oscillation

# The columns each figure reads (besides the cell parameters).
FIGURE_COLUMNS = {
    "oscillation": {"rule", "step", "p_right_0", "p_right_1", "student_return", "lr"},
    "control": {"temperature", "control", "mdp", "step", "kl_teacher", "kl_student", "kl_uniform", "start_value", "teacher_return", "teacher_entropy"},
    "actions": {"n_actions", "rule", "mdp", "step", "start_value", "teacher_return", "lr"},
    "noisy-teacher": {"noise", "rule", "value", "mdp", "step", "start_value", "teacher_return"},
    "chain": {"T", "teacher", "teacher_value", "rule", "seed", "step", "start_value", "teacher_return", "optimal_return", "continuation"},
    "multi-teacher": {"bandit", "mdp", "round", "step", "cumulative_regret", "student_return", "arm_noise", "best_teacher_return"},
    "dual": {"method", "mdp", "learner", "env_steps", "start_value"},
    "exploration": {"exploration", "epsilon", "temperature", "mdp", "step", "start_value", "kl_student", "teacher_return"},
}


@pytest.fixture(scope="module")
def smoke_tables():
    from _smoke_results import smoke_results_root

    root = smoke_results_root()
    return {n: pd.read_parquet(studies.results_path(root, n, "smoke")) for n in studies.names()}


def test_registry_names_and_errors():
    assert studies.names() == ["oscillation", "control", "actions", "noisy-teacher", "chain", "multi-teacher", "dual", "exploration",
                               "mujoco-rules"]
    with pytest.raises(ValueError, match="valid studies: oscillation, control"):
        studies.get("controll")
    with pytest.raises(ValueError, match="scale"):
        studies.run_study("control", "huge")
    for n in studies.names():
        module = studies.get(n)
        assert set(module.CONFIGS) == set(studies.SCALES)
        assert studies.describe(n) and not studies.describe(n).startswith(n + ":")


@pytest.mark.parametrize("name", list(FIGURE_COLUMNS))
def test_smoke_study_has_figure_columns(smoke_tables, name):
    table = smoke_tables[name]
    assert len(table) > 0
    missing = FIGURE_COLUMNS[name] - set(table.columns)
    assert not missing, f"{name} lacks {missing}"
    numeric = table.select_dtypes("number")
    assert np.isfinite(numeric.to_numpy(dtype=float)[~numeric.isna().to_numpy()]).all()


def test_control_records_match_an_exact_dense_solve(smoke_tables):
    """At step 0 the student is uniform: its return and expected KLs follow from a dense linear solve."""
    table = smoke_tables["control"]
    cell = control.CONFIGS["smoke"]
    batch = _common.gridworlds(0, cell.n_mdps, size=cell.size)
    Q = _common.q_learning_teachers(batch, 0)
    for temperature in cell.temperatures:
        pi = teachers.softmax_policy(Q, temperature)
        for b in range(len(batch)):
            P, R, mu0 = batch[b].to_dense()
            S, A = R.shape
            uniform = np.full((S, A), 1.0 / A)
            M = np.eye(S) - np.einsum("sa,sat->st", uniform, P)
            V = np.linalg.solve(M, (uniform * R).sum(1))
            visits = np.linalg.solve(M.T, mu0)
            kl = (pi[b] * (np.log(np.where(pi[b] > 0, pi[b], 1.0)) - np.log(uniform))).sum(1)
            rows = table[(table.temperature == temperature) & (table.mdp == b) & (table.step == 0)]
            assert len(rows) == len(cell.controls)
            np.testing.assert_allclose(rows["start_value"], mu0 @ V, rtol=1e-8)
            np.testing.assert_allclose(rows["kl_student"], visits @ kl, rtol=1e-6, atol=1e-9)
            M_pi = np.eye(S) - np.einsum("sa,sat->st", pi[b], P)
            np.testing.assert_allclose(rows["teacher_return"], mu0 @ np.linalg.solve(M_pi, (pi[b] * R).sum(1)), rtol=1e-8)


def test_monte_carlo_values_converge_to_the_exact_value():
    mdp = mdps.random_gridworld(size=6, seed=3)
    pi = teachers.epsilon_greedy_policy(exact.optimal(mdp)[1], 0.3)
    V, _, _ = exact.evaluate(mdp, pi)
    start = int(mdp.mu0.argmax())
    V_hat = noisy_teacher.monte_carlo_values(mdp, pi, episodes=20_000, seed=0)
    # Returns are in [0, 10]: the standard error of 20k episodes is below 0.04.
    assert abs(V_hat[start] - V[start]) < 0.15
    few = noisy_teacher.monte_carlo_values(mdp, pi, episodes=3, seed=0)
    _, _, visits = exact.evaluate(mdp, pi)
    assert (few[visits == 0] == 0).all()


def test_noisy_teachers_flip_the_requested_share_of_visited_states():
    batch = _common.gridworlds(0, 2, size=8)
    clean = noisy_teacher.noisy_teachers(batch, 0, 0.0)
    noisy = noisy_teacher.noisy_teachers(batch, 0, 0.5)
    _, _, visits = exact.evaluate_batch(batch, clean)
    for b in range(2):
        changed = (clean[b].argmax(1) != noisy[b].argmax(1))
        assert changed.sum() == round(0.5 * (visits[b] > 0).sum())
        assert not changed[visits[b] == 0].any()


def test_ucb1_and_thompson_find_the_best_of_stationary_arms():
    """On stationary Bernoulli arms (0.2, 0.5, 0.8) the adaptive bandits pull the best arm most."""
    probs = np.array([0.2, 0.5, 0.8])
    for bandit in ("ucb1", "thompson", "epsilon-greedy"):
        rng = np.random.default_rng(1)
        counts, sums = np.zeros(3), np.zeros(3)
        for _ in range(2000):
            k = multi_teacher.choose_arm(bandit, counts, sums, rng, epsilon=0.1, sigma=0.1)
            counts[k] += 1
            sums[k] += rng.random() < probs[k]
        assert counts.argmax() == 2 and counts[2] > 0.7 * counts.sum(), (bandit, counts)
    rng = np.random.default_rng(0)
    counts = np.zeros(3)
    for _ in range(3000):
        counts[multi_teacher.choose_arm("random", counts, np.zeros(3), rng, 0.1, 0.1)] += 1
    assert np.all(np.abs(counts / counts.sum() - 1 / 3) < 0.04)
    with pytest.raises(ValueError, match="valid: random"):
        multi_teacher.choose_arm("exp3", np.zeros(3), np.zeros(3), rng, 0.1, 0.1)


def test_corridor_actor_critic_starts_uniform_and_learns_the_optimal_policy():
    mdp = mdps.chain_corridor(3, continuation=0.99)
    V_opt, _, _ = exact.evaluate(mdp, chain.corridor_teacher(mdp, "optimal"))
    runs = []
    for teacher_value in (None, V_opt):
        table = chain.actor_critic(mdp, steps=400, lr=0.2, critic_lr=0.2, teacher_value=teacher_value, record_every=100, n_seeds=8, seed=0)
        # A uniform random walk from the middle of a symmetric corridor: expected return 0 by symmetry.
        np.testing.assert_allclose(table[table.step == 0]["start_value"], 0.0, atol=1e-12)
        final = table[table.step == 400]["start_value"].mean()
        assert final > 0.9 * V_opt[3], final  # optimal: 0.99^3 = 0.970
        runs.append(table)
    again = chain.actor_critic(mdp, steps=400, lr=0.2, critic_lr=0.2, record_every=100, n_seeds=8, seed=0)
    pd.testing.assert_frame_equal(runs[0], again)  # seeded: the same learner twice
    with pytest.raises(ValueError, match="teacher_value"):
        chain.actor_critic(mdp, steps=10, lr=0.1, critic_lr=0.1, teacher_value=np.zeros(3))


def test_chain_cells_run_both_adversarial_values():
    cells = chain.cells(chain.CONFIGS["smoke"])
    adv = {(c["rule"], c["teacher_value"]) for c in cells if c["teacher"] == "adversarial"}
    assert {("teacher-v-reward", "own"), ("teacher-v-reward", "optimal"), ("td-teacher-v", "optimal")} <= adv
    with pytest.raises(ValueError, match="valid: teacher"):
        chain.cells(chain.Config(rules=("dagger",)))


def test_oscillation_cycles_for_on_policy_and_converges_for_n_distill():
    """Fig. 2 / App. C: on-policy distill+R keeps cycling, n-distill+R (a gradient field) converges."""
    config = oscillation.Config(steps=3000, record_every=10)
    tables = {c["rule"]: oscillation.run_cell(c) for c in oscillation.cells(config)}
    for t in tables.values():  # p_right is the sigmoid of the tied row's logit difference
        np.testing.assert_allclose(t["p_right_1"], 1 / (1 + np.exp(t["theta_1_0"] - t["theta_1_1"])), rtol=1e-12)
    late = lambda t: t[t.step >= 1500]["p_right_1"]  # noqa: E731
    assert late(tables["on-policy+r"]).max() - late(tables["on-policy+r"]).min() > 0.5
    assert late(tables["n-distill+r"]).max() - late(tables["n-distill+r"]).min() < 0.01


def test_cli_lists_studies_and_rejects_unknown_names(tmp_path):
    from typer.testing import CliRunner

    from distlab.cli import app

    runner = CliRunner()
    listed = runner.invoke(app, ["study", "--list"])
    assert listed.exit_code == 0
    assert [line.split()[0] for line in listed.output.strip().splitlines()] == studies.names()
    bad = runner.invoke(app, ["study", "controll", "--out", str(tmp_path)])
    flat = " ".join(bad.output.replace("│", " ").split())  # rich wraps the error in a box
    assert bad.exit_code != 0 and "unknown study 'controll'" in flat and "oscillation, control" in flat
    ran = runner.invoke(app, ["study", "chain", "--smoke", "--workers", "1", "--out", str(tmp_path)])
    assert ran.exit_code == 0, ran.output
    assert studies.results_path(tmp_path, "chain", "smoke").exists()
