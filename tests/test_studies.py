"""Studies: each smoke config runs through the runner and yields its figure's columns; the study-specific
pieces (Monte Carlo values, noisy teachers, bandits, the corridor, DPD weights, the oscillation, record
grids) are checked against exact solutions, closed forms or theorems; a user-registered rule runs in
every study."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dataclasses import replace

import mdps
from distlab import exact, rules, studies, teachers
from distlab.studies import _common, chain, control, dual, multi_teacher, noisy_teacher, oscillation

# The columns each figure reads (besides the cell parameters).
FIGURE_COLUMNS = {
    "oscillation": {"rule", "step", "p_right_0", "p_right_1", "student_return", "lr"},
    "control": {"temperature", "control", "step_unit", "mdp", "step", "transitions", "kl_teacher", "kl_student", "kl_uniform",
                "start_value", "teacher_return", "teacher_entropy"},
    "actions": {"n_actions", "rule", "estimator", "dynamics", "mdp", "step", "start_value", "teacher_return", "lr"},
    "noisy-teacher": {"noise", "rule", "value", "mdp", "step", "start_value", "teacher_return"},
    "chain": {"T", "teacher", "teacher_value", "rule", "dynamics", "seed", "step", "start_value", "teacher_return", "optimal_return",
              "continuation"},
    "multi-teacher": {"bandit", "mdp", "round", "step", "cumulative_regret", "student_return", "arm_noise", "best_teacher_return"},
    "dual": {"method", "dpd_states", "mdp", "learner", "env_steps", "start_value", "dpd_weight_max"},
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
            assert len(rows) == len(cell.controls) * len(cell.step_units)
            np.testing.assert_allclose(rows["start_value"], mu0 @ V, rtol=1e-8)
            np.testing.assert_allclose(rows["kl_student"], visits @ kl, rtol=1e-6, atol=1e-9)
            M_pi = np.eye(S) - np.einsum("sa,sat->st", pi[b], P)
            np.testing.assert_allclose(rows["teacher_return"], mu0 @ np.linalg.solve(M_pi, (pi[b] * R).sum(1)), rtol=1e-8)


def test_monte_carlo_values_converge_to_the_exact_value():
    mdp = mdps.random_gridworld(size=6, seed=3)
    pi = teachers.epsilon_greedy_policy(exact.optimal(mdp)[1], 0.3)
    V, _, _ = exact.evaluate(mdp, pi)
    start = int(mdp.mu0.argmax())
    V_hat = teachers.monte_carlo_values(mdp, pi, episodes=20_000, seed=0)
    # Returns are in [0, 10]: the standard error of 20k episodes is below 0.04.
    assert abs(V_hat[start] - V[start]) < 0.15
    few = teachers.monte_carlo_values(mdp, pi, episodes=3, seed=0)
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


def test_control_counts_transitions_and_records_on_a_log_grid(smoke_tables):
    """The transitions unit consumes exactly N transitions per step; the episode unit at least one per
    episode; records sit on the log grid (step 0 and the last step included)."""
    table = smoke_tables["control"]
    config = control.CONFIGS["smoke"]
    grid = _common.log_record_steps(config.steps, config.record_points)
    assert grid[0] == 0 and grid[-1] == config.steps and np.all(np.diff(grid) > 0)
    ratios = grid[2:] / grid[1:-1]  # geometric spacing, up to rounding to integers
    assert ratios.max() <= (config.steps ** (1 / (config.record_points - 1))) * 2
    for (unit, control_, temperature, mdp), g in table.groupby(["step_unit", "control", "temperature", "mdp"]):
        np.testing.assert_array_equal(g["step"].to_numpy(), grid)
        transitions = g["transitions"].to_numpy()
        if unit == "transitions":
            np.testing.assert_array_equal(transitions, config.transitions_per_step * grid)
        else:
            assert transitions[0] == 0 and np.all(np.diff(transitions) >= np.diff(grid))


def test_chain_exact_dynamics_of_teacher_v_reward_equal_rl():
    """Prop. 4: the teacher-V shaping telescopes (V_pi = 0 past the end), so its expected update is rl's
    for any teacher value: the exact-dynamics curves coincide, and both climb towards the optimum."""
    config = chain.Config(lengths=(3,), rules=("teacher-v-reward", "rl"), teachers=("adversarial",), dynamics=("exact",),
                          exact_steps=3000, exact_record_every=500, lr=0.1)
    tables = {(c["rule"], c["teacher_value"]): chain.run_cell(c) for c in chain.cells(config)}
    assert set(tables) == {("teacher-v-reward", "own"), ("teacher-v-reward", "optimal"), ("rl", "none")}
    for key in (("teacher-v-reward", "own"), ("teacher-v-reward", "optimal")):
        np.testing.assert_allclose(tables[key]["start_value"], tables[("rl", "none")]["start_value"], atol=1e-9)
    rl = tables[("rl", "none")]
    mdp = mdps.chain_corridor(3, continuation=0.99)
    V_opt, _, _ = exact.evaluate(mdp, chain.corridor_teacher(mdp, "optimal"))
    np.testing.assert_allclose(rl[rl.step == 0]["start_value"], 0.0, atol=1e-12)  # symmetric random walk
    assert rl["start_value"].iloc[-1] > 0.9 * V_opt[3] and np.all(np.diff(rl["start_value"]) > 0)


def test_chain_sampled_rl_with_a_learned_baseline_learns_the_corridor():
    """The registry's rl through train_sampled with the learned baseline (no learner of the study's own)
    starts at the uniform walk's exact value 0 and learns the optimal policy of a short corridor."""
    cell = dict(T=3, teacher="optimal", rule="rl", teacher_value="none", dynamics="sampled", lr=0.2, continuation=0.99,
                n_seeds=8, steps=400, record_points=5, baseline="learned", baseline_lr=0.2)
    table = chain.run_cell(cell)
    np.testing.assert_allclose(table[table.step == 0]["start_value"], 0.0, atol=1e-12)
    final = table[table.step == 400]["start_value"].mean()
    assert final > 0.9 * table["optimal_return"].iloc[0], final  # optimal: 0.99^3 = 0.970
    pd.testing.assert_frame_equal(table, chain.run_cell(dict(cell)))  # seeded: the same learner twice


def test_dual_weight_max_matches_a_dense_solve():
    """max_s exp(alpha (V_peer - V_self)) over the sampled states, against values from np.linalg.solve."""
    batch = _common.gridworlds(0, 2, size=6)
    rng = np.random.default_rng(0)
    pis = [np.exp(rng.standard_normal((2, batch.n_states, batch.n_actions))) for _ in range(2)]
    pis = [p / p.sum(-1, keepdims=True) for p in pis]
    for states in ("own", "peer"):
        got = dual.max_dpd_weight(batch, pis[0], pis[1], 0.7, states)
        for b in range(2):
            P, R, mu0 = batch[b].to_dense()
            V, d = [], []
            for pi in (pis[0][b], pis[1][b]):
                M = np.eye(len(R)) - np.einsum("sa,sat->st", pi, P)
                V.append(np.linalg.solve(M, (pi * R).sum(1)))
                d.append(np.linalg.solve(M.T, mu0))
            visited = (d[0] if states == "own" else d[1]) > 0
            np.testing.assert_allclose(got[b], np.exp(0.7 * (V[1] - V[0])[visited].max()), rtol=1e-8)


@pytest.mark.parametrize("name", studies.names())
def test_a_user_registered_rule_runs_in_every_study(name):
    """Register a copy of a smoke cell's rule under a new name: the study gives the same table, because
    studies and backends dispatch on a rule's components, never on its name."""
    module = studies.get(name)
    cell = next((c for c in module.cells(module.CONFIGS["smoke"]) if "rule" in c), None)
    if cell is None:
        pytest.skip(f"study {name!r} hard-codes its rule (no 'rule' in its cells)")
    original = rules.get(cell["rule"])
    base = rules.get(original.base)
    user = f"user-copy-of-{base.name}"
    if user not in rules.names():
        rules.register(replace(base, name=user, doc="a user-registered copy (tests)"))
    user_rule = user + (rules.PLUS_R_SUFFIX if original.name != base.name else "")
    assert rules.get(user_rule).env_reward == original.env_reward
    timing = ["wall_time_s"]  # measured, not computed: differs between any two runs
    expected = module.run_cell(dict(cell)).drop(columns=timing, errors="ignore")
    got = module.run_cell(dict(cell, rule=user_rule)).drop(columns=timing, errors="ignore")
    pd.testing.assert_frame_equal(got, expected)


def test_chain_cells_run_both_adversarial_values():
    cells = chain.cells(chain.CONFIGS["smoke"])
    adv = {(c["rule"], c["teacher_value"]) for c in cells if c["teacher"] == "adversarial"}
    assert {("teacher-v-reward", "own"), ("teacher-v-reward", "optimal"), ("td-teacher-v", "optimal")} <= adv
    with pytest.raises(ValueError, match="valid rules: teacher"):
        chain.cells(chain.Config(rules=("dagger",)))
    exact_cells = [c for c in cells if c["dynamics"] == "exact"]
    assert len(exact_cells) == len(cells) // 2  # every sampled cell has its exact-dynamics twin


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
