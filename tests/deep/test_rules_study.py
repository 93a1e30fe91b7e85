"""The mujoco-rules study: its grid, its smoke config end to end through the runner and the CLI, the figure
from a synthetic table, rliable's IQM and stratified bootstrap against closed forms and brute force, and the
shipped teachers (they load as --teacher; `distlab evaluate` reproduces their recorded return and the
README's table)."""

import itertools
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from deep import rules_study as rs
from deep.teacher_file import load_teacher
from distlab import studies
from distlab.cli import app
from figures import fig_mujoco_rules as fig

SHIPPED = [(env, q) for env in rs.ENVS for q in rs.QUALITIES]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ------------------------------------------------------------------------------------------- the grid
def test_full_config_is_issue_9s_grid():
    full = rs.CONFIGS["full"]
    assert set(full.envs) == {"HalfCheetah-v5", "Hopper-v5"} and set(full.teachers) == {"good", "imperfect"}
    assert set(full.rules) == {"teacher", "on-policy", "entropy-regularised", "n-distill", "expected-entropy", "on-policy+r",
                               "n-distill+r", "expected-entropy+r", "value-gated+r", "teacher-v-reward", "td-teacher-v", "rl"}
    assert len(full.seeds) >= 3 and full.eval_episodes >= 10
    grid = rs.cells(full)
    assert len(grid) == 2 * 2 * 12 * len(full.seeds)
    assert len({json.dumps(c, sort_keys=True) for c in grid}) == len(grid)
    quick = rs.CONFIGS["quick"]
    assert len(quick.envs) == 1 and len(quick.rules) == 2 and len(quick.seeds) == 1 and quick.eval_episodes >= 10


def test_bad_choices_name_the_valid_ones():
    with pytest.raises(ValueError, match="valid: HalfCheetah-v5, Hopper-v5"):
        rs.shipped_teacher("Walker2d-v5", "good")
    with pytest.raises(ValueError, match="valid: good, imperfect"):
        rs.shipped_teacher("Hopper-v5", "mediocre")
    cell = rs.cells(rs.CONFIGS["smoke"])[0]
    with pytest.raises(ValueError, match="rule 'dpd'.*two learning peers"):
        rs.train_config(dict(cell, rule="dpd"))
    with pytest.raises(ValueError, match="unknown rule 'dagger'; valid rules: teacher"):
        rs.train_config(dict(cell, rule="dagger"))


def test_cells_use_the_student_warmup_and_one_member():
    cell = rs.cells(rs.CONFIGS["full"])[0]
    cfg = rs.train_config(cell)
    assert (cfg.k, cfg.method, cfg.schedule, cfg.sac.warmup_steps) == (1, "piekd", "every-step", 1_000)
    assert Path(cfg.teacher) == rs.shipped_teacher(cell["env"], cell["teacher"])


# ------------------------------------------------------------------------------------------- end to end
def test_smoke_study_runs_end_to_end_through_the_cli(tmp_path):
    result = CliRunner().invoke(app, ["study", "mujoco-rules", "--smoke", "--out", str(tmp_path), "--workers", "1"])
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(studies.results_path(tmp_path, "mujoco-rules", "smoke"))
    smoke = rs.CONFIGS["smoke"]
    assert set(rs.COLUMNS) <= set(table.columns) and {"env", "teacher", "rule", "seed"} <= set(table.columns)
    records = smoke.steps // smoke.record_every
    assert len(table) == len(rs.cells(smoke)) * records
    assert sorted(table["env_steps"].unique()) == [smoke.record_every * (i + 1) for i in range(records)]
    assert (table["episodes"] == smoke.eval_episodes).all()
    assert np.isfinite(table[["mean_return", "kl_student_states", "kl_teacher_states", "teacher_return"]].to_numpy()).all()
    assert (table[["kl_student_states", "kl_teacher_states"]] >= 0).all().all()
    assert table.groupby(["rule"])["wall_time_s"].is_monotonic_increasing.all()
    teacher = load_teacher(str(rs.shipped_teacher("Hopper-v5", "good")))
    assert (table["teacher_steps"] == teacher.steps).all()
    assert np.allclose(table["teacher_recorded_return"], teacher.recorded_return["mean_return"])
    # rerun: every cell is finished, the same table comes back without training
    again = studies.run_study("mujoco-rules", "smoke", tmp_path, workers=1, progress=False)
    pd.testing.assert_frame_equal(again, table)


# ------------------------------------------------------------------------------------------- statistics
def test_iqm_is_the_mean_of_the_middle_half():
    x = np.array([7.0, -100.0, 2.0, 3.0, 5.0, 4.0, 1e6, 0.0])  # sorted: -100, 0, 2, 3, 4, 5, 7, 1e6
    assert fig.iqm(x) == pytest.approx(np.mean([2.0, 3.0, 4.0, 5.0]))


def test_stratified_bootstrap_keeps_each_stratum_size():
    # an unstratified bootstrap of the pooled mean would vary; a stratified one of these strata cannot
    point, low, high = fig.stratified_bootstrap_ci([np.zeros(3), np.ones(1)], statistic=np.mean, n_resamples=500)
    assert point == low == high == 0.25


def test_stratified_bootstrap_mean_matches_its_closed_form_variance():
    rng = np.random.default_rng(3)
    strata = [rng.normal(0, 1, 5), rng.normal(4, 3, 8), rng.exponential(2.0, 3)]
    n = sum(s.size for s in strata)
    boot = fig.stratified_bootstrap_statistics(strata, statistic=np.mean, n_resamples=40_000, seed=1)
    # Var of the pooled mean of independent within-stratum resamples: sum_s n_s var_s / N^2 (var_s: the
    # stratum's population variance, ddof 0); its expectation is the pooled mean.
    var = sum(s.size * s.var() for s in strata) / n**2
    assert boot.mean() == pytest.approx(np.concatenate(strata).mean(), abs=4 * np.sqrt(var / boot.size))
    assert boot.var() == pytest.approx(var, rel=0.03)


def test_stratified_bootstrap_iqm_matches_brute_force_enumeration():
    strata = [np.array([0.0, 10.0]), np.array([1.0, 2.0, 30.0])]
    # every resample (2^2 x 3^3 = 108, equally likely) and its IQM
    exact = np.array([fig.iqm(np.array(a + b)) for a in itertools.product(strata[0], repeat=2)
                      for b in itertools.product(strata[1], repeat=3)])
    boot = fig.stratified_bootstrap_statistics(strata, n_resamples=60_000, seed=2)
    values, counts = np.unique(exact, return_counts=True)
    for value, count in zip(values, counts):
        assert np.mean(np.isclose(boot, value)) == pytest.approx(count / exact.size, abs=0.01)
    point, low, high = fig.stratified_bootstrap_ci(strata, n_resamples=60_000, seed=2)
    assert point == fig.iqm(np.concatenate(strata))
    assert (low, high) == (np.quantile(boot, 0.025), np.quantile(boot, 0.975))


# ------------------------------------------------------------------------------------------- figure
def _synthetic_table(seeds=3, steps=(2_000, 4_000, 6_000)):
    """Known final scores: rule r reaches (1 + r) / 3 of its teacher's return, plus a per-seed offset."""
    rows = []
    for env, teacher_return in (("HalfCheetah-v5", 4000.0), ("Hopper-v5", 2000.0)):
        for quality, scale in (("good", 1.0), ("imperfect", 0.4)):
            for r, rule in enumerate(("teacher", "n-distill+r", "rl")):
                for seed in range(seeds):
                    for i, step in enumerate(steps):
                        frac = (1 + r) / 3 * (i + 1) / len(steps) + 0.01 * seed
                        rows.append(dict(env=env, teacher=quality, rule=rule, seed=seed, step=step, env_steps=step,
                                         wall_time_s=step / 50, mean_return=frac * teacher_return * scale, std_return=1.0,
                                         episodes=10, kl_student_states=1.0 / (i + 1), kl_teacher_states=2.0 / (i + 1),
                                         teacher_return=teacher_return * scale, teacher_steps=60_000,
                                         teacher_recorded_return=teacher_return * scale))
    return pd.DataFrame(rows)


def test_figure_draws_from_a_synthetic_table(tmp_path):
    table = _synthetic_table()
    results = tmp_path / "results.parquet"
    table.to_parquet(results)
    written = fig.main(results, tmp_path / "out")
    assert [p.name for p in written] == ["mujoco_rules.png", "mujoco_rules.pdf"]
    assert all(p.stat().st_size > 5_000 for p in written)
    summary = fig.summary(table).set_index("rule")
    assert fig.summary_markdown(table).count("\n") == 2 + 3 - 1
    for r, rule in enumerate(("teacher", "n-distill+r", "rl")):
        finals = (1 + r) / 3 + 0.01 * np.arange(3)  # every stratum has the same normalised scores
        assert summary.loc[rule, "iqm_normalised"] == pytest.approx(fig.iqm(np.tile(finals, 4)), rel=1e-3)
        assert summary.loc[rule, "runs"] == 12
        assert summary.loc[rule, "HalfCheetah/imperfect final"] == pytest.approx(finals.mean() * 1600, rel=1e-3)
    fast = fig.speed(table)
    # normalised curves (+ <= 0.02 seed offset): rl 1/3, 2/3, 1; n-distill+r 2/9, 4/9, 6/9; teacher 1/9, 2/9, 3/9
    assert fast.loc[fast["rule"] == "rl", "steps_to_half"].eq(4_000).all()
    assert fast.loc[fast["rule"] == "n-distill+r", "steps_to_half"].eq(6_000).all()
    assert fast.loc[fast["rule"] == "teacher", "steps_to_half"].isna().all()
    assert fast.loc[fast["rule"] == "rl", "mean_normalised"].to_numpy() == pytest.approx(2 / 3 + 0.01 * fast.loc[fast["rule"] == "rl", "seed"].to_numpy())


def test_max_drawdown_against_hand_computed_curves():
    assert fig.max_drawdown([0.1, 0.5, 0.9]) == 0.0  # never falls
    assert fig.max_drawdown([0.2, 0.9, 0.3, 0.8, 0.1]) == pytest.approx(0.8)  # peak 0.9, later low 0.1
    assert fig.max_drawdown([1.0, 0.4, 2.0, 1.5]) == pytest.approx(0.6)  # the first fall is the larger


def test_report_quotes_each_seed_and_the_speed_measures():
    table = _synthetic_table()
    report = fig.report_markdown(table)
    # rl reaches 1 + 0.01 * seed of its teacher at the last record in every stratum
    assert "| rl | 1.01 (1.00, 1.01, 1.02) | 1.01 (1.00, 1.01, 1.02) |" in report
    # n-distill+r: 2/9, 4/9, 6/9 of the teacher -> 50 % first at 6,000 steps, 90 % never; curves never fall
    row = next(line for line in report.splitlines()[8:] if line.startswith("| n-distill+r |"))
    assert "| 6,000 (3/3) / never (0/3) | 6,000 (3/3) / never (0/3) | 0.00 |" in row
    # the drawdown of a falling curve shows up: make the teacher rule unlearn in one run
    falling = table.copy()
    hit = (falling["rule"] == "teacher") & (falling["seed"] == 0) & (falling["step"] == 6_000)
    falling.loc[hit, "mean_return"] = 0.0
    fast = fig.speed(falling)
    drop = fast.loc[(fast["rule"] == "teacher") & (fast["seed"] == 0), "max_drawdown"]
    assert np.allclose(drop, 2 / 9)  # the curve was at 2/9 of the teacher at 4,000 steps, then 0


# ------------------------------------------------------------------------------------------- shipped teachers
def _readme_returns() -> dict:
    text = (rs.TEACHERS_DIR / "README.md").read_text()
    rows = re.findall(r"^\| `(\w+)\.pt` \| ([\w-]+) \| ([\d,]+) \| ([\d,.]+) ", text, flags=re.M)
    return {name: (env, int(steps.replace(",", "")), float(ret.replace(",", ""))) for name, env, steps, ret in rows}


@pytest.mark.parametrize("env,quality", SHIPPED)
def test_shipped_teacher_matches_its_readme_row(env, quality):
    teacher = load_teacher(str(rs.shipped_teacher(env, quality)))
    assert teacher.env == env and teacher.recorded_return["episodes"] >= 10
    readme_env, steps, recorded = _readme_returns()[f"{rs.ENVS[env]}_{quality}"]
    assert (readme_env, steps) == (env, teacher.steps)
    assert recorded == pytest.approx(teacher.recorded_return["mean_return"], abs=0.05)
    assert rs.shipped_teacher(env, quality).stat().st_size < 4_000_000


def test_good_teachers_beat_their_imperfect_checkpoints():
    for env in rs.ENVS:
        good, imperfect = (load_teacher(str(rs.shipped_teacher(env, q))) for q in rs.QUALITIES)
        assert imperfect.steps < good.steps
        assert imperfect.recorded_return["mean_return"] < good.recorded_return["mean_return"]


def _evaluate_reproduces(env, quality, episodes=None):
    path = rs.shipped_teacher(env, quality)
    args = ["evaluate", "--policy", str(path)] + (["--episodes", str(episodes)] if episodes else [])
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    line = json.loads(result.output.strip().splitlines()[-1])
    recorded = load_teacher(str(path)).recorded_return
    if episodes is None:
        assert line["episodes"] >= 10
        assert line["mean_return"] == pytest.approx(line["recorded_return"], rel=1e-9)
    else:  # the first episodes of the record: same seeds, reset(seed + e)
        assert line["mean_return"] == pytest.approx(np.mean(recorded["returns"][:episodes]), rel=1e-9)


@pytest.mark.parametrize("env,quality", SHIPPED)
def test_shipped_teachers_reproduce_their_recorded_episodes(env, quality):
    """Default suite: every shipped teacher's first two recorded episodes, exactly (float64 policy: the number
    does not depend on the CPU's float32 kernels; ``deep.teacher_file.policy_returns``)."""
    _evaluate_reproduces(env, quality, episodes=2)


def test_shipped_teachers_record_what_they_were_measured_with():
    for env, quality in SHIPPED:
        record = load_teacher(str(rs.shipped_teacher(env, quality))).recorded_return
        assert record["precision"] == "float64" and len(record["returns"]) == record["episodes"]
        assert record["mean_return"] == pytest.approx(np.mean(record["returns"]), rel=1e-12)
        assert {"mujoco", "gymnasium", "torch", "numpy", "python"} <= set(record["versions"])
        assert record["device"]["cpu"]


@pytest.mark.slow
@pytest.mark.parametrize("env,quality", SHIPPED)
def test_shipped_teachers_reproduce_their_returns(env, quality):
    _evaluate_reproduces(env, quality)


def test_shipped_teacher_loads_with_the_teacher_option(tmp_path):
    path = rs.shipped_teacher("Hopper-v5", "good")
    result = CliRunner().invoke(app, ["train", "--env", "Hopper-v5", "--method", "piekd", "--k", "1", "--teacher", str(path),
                                      "--rule", "teacher", "--steps", "60", "--eval-every", "60", "--eval-episodes", "1",
                                      "--set", "sac.warmup_steps=30", "--set", "sac.batch_size=16", "--set", "sac.width=16",
                                      "--out", str(tmp_path / "run"), "--no-progress"])
    assert result.exit_code == 0, result.output
    evals = pd.read_parquet(tmp_path / "run" / "eval.parquet")
    assert evals["kl_teacher_states"].notna().all() and (evals["teacher_return"] > 0).all()


# ------------------------------------------------------------------------------------------- the every-step update
@pytest.mark.parametrize("rule, critic_moves", [("on-policy", False), ("teacher", False), ("value-gated", True),
                                                ("on-policy+r", True)])
def test_rule_update_steps_the_critic_only_when_the_rule_reads_it(rule, critic_moves):
    """A pure distillation rule never reads the student's critic, so ``rule_update`` leaves it (and its Adam
    state) bit-identical; a value gate (V_k) or a "+R" return needs it, so it moves. The actor moves in all."""
    from deep.methods import resolve, rule_update
    from deep.state import new_state

    cell = dict(rs.cells(rs.CONFIGS["smoke"])[0], rule=rule)
    cfg = resolve(rs.train_config(cell))
    run = new_state(cfg, peer_optimizer=False, frozen=load_teacher(cfg.teacher))
    g = torch.Generator().manual_seed(0)
    n = 200
    run.buffer.load_state_dict(dict(
        obs=torch.randn(n, run.obs_dim, generator=g), next_obs=torch.randn(n, run.obs_dim, generator=g),
        act=torch.rand(n, run.act_dim, generator=g) * 2 - 1, rew=torch.randn(n, generator=g),
        terminated=torch.zeros(n), actor=torch.zeros(n, dtype=torch.long), ptr=n, size=n))
    before_critic = [p.detach().clone() for p in run.ens.critic_parameters()]
    before_actor = [p.detach().clone() for p in run.ens.actor_parameters()]
    rule_update(run)
    critic_same = all(torch.equal(a, b) for a, b in zip(before_critic, run.ens.critic_parameters()))
    actor_same = all(torch.equal(a, b) for a, b in zip(before_actor, run.ens.actor_parameters()))
    assert critic_same is (not critic_moves)
    assert not actor_same
    assert (len(run.learner.critic_opt.state) > 0) is critic_moves


def test_per_env_budgets_reach_the_cells():
    config = rs.Config(envs=("HalfCheetah-v5", "Hopper-v5"), rules=("rl",), seeds=(0,),
                       steps=(("HalfCheetah-v5", 600), ("Hopper-v5", 1_400)), record_every=200)
    budget = {(c["env"], c["teacher"]): (c["steps"], c["record_every"]) for c in rs.cells(config)}
    assert budget[("HalfCheetah-v5", "good")] == (600, 200) and budget[("Hopper-v5", "imperfect")] == (1_400, 200)
    with pytest.raises(ValueError, match="no per-env value for 'Hopper-v5'; given for: HalfCheetah-v5"):
        rs.cells(rs.Config(steps=(("HalfCheetah-v5", 600),)))


def test_each_check_moves_one_knob_of_cells_in_the_full_study():
    """A budget check changes a budget field of full-study cells; a mapping check adds exactly one mapping choice to
    them, and its baseline cells ARE full-study cells (same names: the runner shares them)."""
    from dataclasses import fields

    from deep.config import RuleMapping
    from distlab.runner import cell_hash

    budget = ("batch_size", "steps", "record_every")
    mapping_fields = {f.name for f in fields(RuleMapping)}
    strip = budget + tuple(mapping_fields)
    full = {json.dumps({k: v for k, v in c.items() if k not in budget}, sort_keys=True): c for c in rs.cells(rs.CONFIGS["full"])}
    full_names = {cell_hash(c) for c in rs.cells(rs.CONFIGS["full"])}
    for name, config in rs.CHECKS.items():
        for cell in rs.cells(config):
            twin = full[json.dumps({k: v for k, v in cell.items() if k not in strip}, sort_keys=True)]
            moved = {k for k in cell if cell.get(k) != twin.get(k)}
            assert moved in ({"batch_size"}, {"steps", "record_every"}) or (len(moved) == 1 and moved <= mapping_fields), \
                (name, moved)
        if config.mapping:
            assert {cell_hash(c) for c in rs.cells(rs.baseline_of(name))} <= full_names
    assert {"nd-kl", "nd-reward-0.1", "entreg-fixed", "entreg-none", "td-teacher-critic", "long-imperfect"} <= set(rs.CHECKS)
    with pytest.raises(ValueError, match="unknown check 'huge'; valid: batch-256, long-imperfect"):
        rs.run_check("huge")


def test_compare_check_pairs_final_normalised_returns():
    def table(rule, finals, extra=None):
        rows = [dict(env="Hopper-v5", teacher="good", rule=rule, seed=seed, step=step, mean_return=ret * (step / 200),
                     teacher_return=100.0) for seed, ret in enumerate(finals) for step in (100, 200)]
        return pd.DataFrame(rows)

    check = table("n-distill", [50.0, 80.0])
    baseline = pd.concat([table("n-distill", [10.0, 20.0]), table("rl", [99.0, 99.0])])
    out = rs.compare_check(check, baseline)
    assert list(out["rule"]) == ["n-distill", "n-distill"]
    assert np.allclose(out["default"], [0.1, 0.2]) and np.allclose(out["moved"], [0.5, 0.8])


def test_a_rule_and_its_plus_r_variant_share_a_color_and_differ_in_style():
    colors, styles = fig.rule_styles(list(rs.RULES))
    assert colors["on-policy"] == colors["on-policy+r"] and styles["on-policy"] == "-" and styles["on-policy+r"] == "--"
    assert colors["rl"] == "k" and styles["rl"] == ":"
    solid = [r for r in rs.RULES if styles[r] == "-"]
    assert len({colors[r] for r in solid}) == len(solid)  # distinct colors among the base rules


# the libraries whose versions change the float32 training numbers (the others only read and write tables)
NUMERIC_STACK = ("python", "numpy", "torch", "mujoco", "gymnasium")


@pytest.mark.slow
def test_a_committed_study_cell_reproduces_on_its_recorded_stack():
    """The committed full study (``figures/out/mujoco_rules.parquet``) is reproducible, not only recorded:
    one of its cells (HalfCheetah, good teacher, value-gated+r, seed 0: a loss term, a rule reward and the
    teacher's value) re-run with today's code equals its committed rows exactly.

    float32 training numbers depend on the CPU model as well as on the library versions (REPRODUCTION.md
    "MuJoCo"), so the test runs only where the recorded CPU model and numeric stack are the current ones and
    says otherwise why it skipped (slow: ~90 s on this project's machine)."""
    from distlab.io import provenance, read_parquet_metadata

    path = Path(fig.__file__).parent / "out" / "mujoco_rules.parquet"
    meta, here = read_parquet_metadata(path), provenance()
    recorded = ({k: meta["versions"][k] for k in NUMERIC_STACK}, meta["device"]["cpu"], meta["device"]["machine"])
    current = ({k: here["versions"][k] for k in NUMERIC_STACK}, here["device"]["cpu"], here["device"]["machine"])
    if current != recorded:
        pytest.skip(f"the study was recorded on {recorded}; this machine is {current}")
    key = ("HalfCheetah-v5", "good", "value-gated+r", 0)
    cell = next(c for c in rs.cells(rs.CONFIGS["full"]) if (c["env"], c["teacher"], c["rule"], c["seed"]) == key)
    committed = pd.read_parquet(path)
    committed = committed[(committed["env"] == key[0]) & (committed["teacher"] == key[1])
                          & (committed["rule"] == key[2]) & (committed["seed"] == key[3])].sort_values("step")
    rerun = rs.run_cell(cell).sort_values("step")
    columns = ["step", "env_steps", "mean_return", "std_return", "kl_student_states", "kl_teacher_states",
               "teacher_return"]
    assert len(committed) == len(rerun) == 6  # the records at 1,000, 2,000, ..., 6,000 env steps
    np.testing.assert_array_equal(rerun[columns].to_numpy(), committed[columns].to_numpy())
