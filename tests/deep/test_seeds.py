"""Stacked independent runs (``--seeds``, deep.seeds): each run equals the separate run of its seed.

The reference is independent of the stacking: the ordinary single run (``deep.train.train``) of the
same seed. Equality holds up to float rounding of the batched kernels, so parameters are compared with
a tolerance of 1e-5 and everything discrete (buffers, episode logs, elections) exactly.
"""

import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from deep.checkpoint import load_checkpoint, save_checkpoint
from deep.config import ConfigError, TrainConfig, with_overrides
from deep.methods import GatheredTeacher
from deep.networks import Ensemble
from deep.distill import Teacher
from deep.seeds import parse_seeds, resumable, train_seeds
from deep.train import RUN_FILES, TB_DIR, _Killed, train
from distlab.cli import app

TINY = {"sac.width": 16, "sac.batch_size": 16, "sac.warmup_steps": 100, "distill_start": 150, "distill_interval": 50,
        "distill_batches": 5, "eval_episodes": 1, "checkpoint_every": 10_000, "progress": False, "env": "Pendulum-v1"}
PHASE_KINDS = {"piekd-random-teacher": "distill", "piekd-hardcopy": "hardcopy", "ensemble-sac-extra": "extra", "piekd": "distill"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(out, **kw):
    steps = kw.pop("steps", 260)
    kw.setdefault("eval_every", 130)
    return with_overrides(TrainConfig(steps=steps), **{**TINY, "out": str(out), **kw})


def assert_same_run(a: dict, b: dict) -> None:
    """Two checkpoints of the same run: parameters and Adam moments within float tolerance, the rest exact."""
    for key in a["ensemble"]:
        torch.testing.assert_close(a["ensemble"][key], b["ensemble"][key], rtol=1e-5, atol=1e-5, msg=key)
    for name in a["optimizers"]:
        for i, state in a["optimizers"][name]["state"].items():
            for key, value in state.items():
                torch.testing.assert_close(value, b["optimizers"][name]["state"][i][key], rtol=1e-4, atol=1e-6)
    warmup = a["config"]["sac"]["warmup_steps"]
    for key in ("obs", "next_obs", "act", "rew", "terminated", "actor"):  # warm-up data: no network involved, exact
        assert torch.equal(a["buffer"][key][:warmup], b["buffer"][key][:warmup]), key
    for key in ("terminated", "actor"):
        assert torch.equal(a["buffer"][key], b["buffer"][key]), key
    for key in ("obs", "next_obs", "act", "rew"):  # the policies' actions differ by rounding, and so the states
        torch.testing.assert_close(a["buffer"][key], b["buffer"][key], rtol=1e-4, atol=1e-4, msg=key)
    assert a["step"] == b["step"] and a["episode"] == b["episode"]
    assert [len(r) for r in a["member_returns"]] == [len(r) for r in b["member_returns"]]
    for ra, rb in zip(a["member_returns"], b["member_returns"]):
        np.testing.assert_allclose(ra, rb, rtol=1e-5)
    inexact = ("episode_return", "wall_time_s")  # returns differ by rounding; wall times are times
    for log in ("episode_log", "phase_log"):
        la, lb = pd.DataFrame(a[log]), pd.DataFrame(b[log])
        assert la.drop(columns=[c for c in inexact if c in la]).equals(lb.drop(columns=[c for c in inexact if c in lb]))
        if "episode_return" in la:
            np.testing.assert_allclose(la.episode_return, lb.episode_return, rtol=1e-5)
    for ra, rb in zip(a["eval_log"], b["eval_log"]):
        assert (ra["step"], ra["member"]) == (rb["step"], rb["member"])
        assert ra["mean_return"] == pytest.approx(rb["mean_return"], rel=1e-5)


def test_parse_seeds():
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds("3,1,7") == [3, 1, 7]
    assert parse_seeds("5") == [5]
    for bad in ("", "a-b", "0,0", "4-2", "-1", "1,x"):
        with pytest.raises(ConfigError, match="--seeds"):
            parse_seeds(bad)


@pytest.mark.parametrize("method,extra", [
    ("sac", {}), ("ensemble-sac", {}), ("piekd-random-teacher", {}),
    ("piekd-random-teacher", {"rule": "value-gated"}), ("piekd-random-teacher", {"rule": "entropy-regularised"}),
    ("piekd-hardcopy", {"election": "random"}), ("ensemble-sac-extra", {}), ("piekd", {"election": "ucb1"}),
    ("piekd-random-teacher", {"k": 3, "widths": "16,32,16"}),  # two widths: grouped stacks, the general teacher path
])
def test_stacked_runs_equal_separate_runs(tmp_path, method, extra):
    cfg = tiny(tmp_path / "stack", method=method, **extra)
    stacked = train_seeds(cfg, [0, 3])
    for seed in (0, 3):
        single = train(with_overrides(cfg, seed=seed, out=str(tmp_path / f"single{seed}")))
        assert_same_run(load_checkpoint(tmp_path / "stack" / f"seed_{seed}"), load_checkpoint(tmp_path / f"single{seed}"))
        np.testing.assert_allclose(stacked[seed]["eval"].mean_return, single["eval"].mean_return, rtol=1e-5)
        assert stacked[seed]["phases"].drop(columns=[c for c in stacked[seed]["phases"] if c.startswith("R_")]).equals(
            single["phases"].drop(columns=[c for c in single["phases"] if c.startswith("R_")]))
        if method in PHASE_KINDS:  # the phases really ran (not all skipped), so the comparison covers them
            assert (stacked[seed]["phases"].kind == PHASE_KINDS[method]).sum() == 3
    # the two stacked runs are different runs (their own seeds), not copies
    assert not np.allclose(stacked[0]["eval"].mean_return, stacked[3]["eval"].mean_return)


def test_stacked_tables_pass_the_single_run_checks(tmp_path):
    cfg = tiny(tmp_path, method="piekd", election="ucb1", steps=450, eval_every=450)
    results = train_seeds(cfg, [1, 2])
    for seed, tables in results.items():
        names = {p.name for p in (tmp_path / f"seed_{seed}").iterdir()}
        assert names - {TB_DIR} == set(RUN_FILES)  # and the TensorBoard folder where tensorboard is installed
        ev = tables["eval"]
        assert sorted(ev.step.unique()) == [450] and len(ev) == 3 and np.isfinite(ev.mean_return).all()
        assert ev.is_best.sum() == 1 and ev.is_worst.sum() == 1
        assert (ev.seed == seed).all() and (ev.compile_mode == "none").all()
        ep = tables["episodes"]
        assert (np.diff(ep.step.to_numpy()) > 0).all() and (ep.seed == seed).all()
        on_disk = pd.read_parquet(tmp_path / f"seed_{seed}" / "eval.parquet")
        pd.testing.assert_frame_equal(on_disk.reset_index(drop=True), ev.reset_index(drop=True), check_dtype=False)
        ph = tables["phases"]
        assert ph.kind.tolist() == ["distill"] * 7 and ph.step.tolist() == list(range(150, 451, 50))
        assert ph.teacher.isin([0, 1, 2]).all() and (ph.batches == 5).all()


def test_stacked_resume_equals_separate_resumes_and_a_single_run_resumes_a_stacked_seed(tmp_path):
    cfg = tiny(tmp_path / "stack", method="piekd-random-teacher", checkpoint_every=150)
    with pytest.raises(_Killed):
        train_seeds(cfg, [0, 1], stop_at=200)  # killed at 200: checkpoints at 150
    shutil.copytree(tmp_path / "stack" / "seed_1", tmp_path / "alone1")
    resumed = train_seeds(cfg, [0, 1], resume=True)
    assert resumed[1]["eval"].step.tolist() == [130] * 3 + [260] * 3
    # seed 0: the separate run killed and resumed at the same steps
    single = with_overrides(cfg, seed=0, out=str(tmp_path / "single0"))
    with pytest.raises(_Killed):
        train(single, stop_at=200)
    train(single, resume=True)
    assert_same_run(load_checkpoint(tmp_path / "stack" / "seed_0"), load_checkpoint(tmp_path / "single0"))
    # seed 1: a single run resumes the stacked run's seed directory (same checkpoint layout)
    train(with_overrides(cfg, seed=1, out=str(tmp_path / "alone1")), resume=True)
    assert_same_run(load_checkpoint(tmp_path / "stack" / "seed_1"), load_checkpoint(tmp_path / "alone1"))


def test_stacked_resume_refuses_checkpoints_at_different_steps(tmp_path):
    cfg = tiny(tmp_path, method="ensemble-sac", steps=150, eval_every=150)
    train_seeds(cfg, [0, 1])
    state = load_checkpoint(tmp_path / "seed_1")
    state["step"] = 120
    save_checkpoint(state, tmp_path / "seed_1")
    with pytest.raises(ConfigError, match="different steps"):
        train_seeds(with_overrides(cfg, steps=200), [0, 1], resume=True)


@pytest.mark.parametrize("overrides,message", [
    ({"method": "dpd"}, "method 'dpd' is not stacked"),
    ({"method": "piekd", "distill_mode": "faithful"}, "distill mode 'faithful'"),
])
def test_unsupported_stacking_is_refused_naming_what_is_supported(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message) as err:
        train_seeds(tiny(tmp_path, **overrides), [0, 1])
    assert "piekd-hardcopy" in str(err.value)
    assert not any(tmp_path.iterdir())


def test_gathered_teacher_equals_the_general_teacher():
    torch.manual_seed(0)
    ens = Ensemble(5, 2, (16,) * 6)
    teacher_of = [1, 1, 1, 5, 5, 5]  # two runs of K = 3: run 0 elected member 1, run 1 its member 2 (row 5)
    obs, act = torch.randn(6, 7, 5), torch.rand(6, 7, 2) * 2 - 1
    gathered, general = GatheredTeacher(ens, teacher_of, None), Teacher(ens, teacher_of, None)
    for x, y in zip(gathered.policy(obs), general.policy(obs)):
        torch.testing.assert_close(x, y)
    torch.testing.assert_close(gathered.q(obs, act), general.q(obs, act))


def test_cli_train_seeds_and_a_vectorised_sweep_equal_the_per_seed_sweep(tmp_path):
    tiny_args = ["--set", "sac.width=8", "--set", "sac.batch_size=8", "--set", "sac.warmup_steps=200", "--set", "progress=false",
                 "--set", "eval_episodes=1"]
    result = CliRunner().invoke(app, ["train", "--env", "Pendulum-v1", "--method", "sac", "--steps", "250", "--eval-every", "250",
                                      "--seeds", "0-1", "--out", str(tmp_path / "t"), *tiny_args])
    assert result.exit_code == 0, result.output
    assert "seed 1 step 250" in result.output and (tmp_path / "t" / "seed_1" / "checkpoint.pt").exists()
    both = CliRunner().invoke(app, ["train", "--env", "Pendulum-v1", "--seed", "3", "--seeds", "0-1", "--out", str(tmp_path / "u")])
    assert both.exit_code != 0 and "not both" in both.output
    tables = {}
    for flag in ("--vectorise-seeds", "--no-vectorise-seeds"):
        args = ["sweep", "v", "--envs", "Pendulum-v1", "--methods", "ensemble-sac", "--seeds", "0-1", "--steps", "250",
                "--eval-every", "250", "--out", str(tmp_path / flag), "--workers", "1", flag, *tiny_args]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        tables[flag] = pd.read_parquet(tmp_path / flag / "v" / "results.parquet").sort_values(["seed", "member"]).reset_index(drop=True)
    assert (tmp_path / "--vectorise-seeds" / "v" / "runs" / "Pendulum-v1_ensemble-sac_seeds" / "seed_1").is_dir()
    assert len(tables["--vectorise-seeds"]) == 6
    np.testing.assert_allclose(tables["--vectorise-seeds"].mean_return, tables["--no-vectorise-seeds"].mean_return, rtol=1e-5)


def test_a_diverging_run_stops_the_stack_and_keeps_every_last_good_checkpoint(tmp_path, monkeypatch, nan_reward_env):
    import deep.seeds
    from deep.train import TrainingDiverged

    made = []
    make_env = deep.seeds.make_env

    def make(env_id):
        made.append(env_id)
        return nan_reward_env(make_env(env_id)) if len(made) == 2 else make_env(env_id)

    monkeypatch.setattr(deep.seeds, "make_env", make)
    cfg = tiny(tmp_path, method="sac", steps=300, checkpoint_every=50, nan_check_every=25)
    with pytest.raises(TrainingDiverged, match=r"critic.* loss of the stacked runs \(seeds \[0, 1\]\).*before env step 100.*last good checkpoints \(step 50\)"):
        train_seeds(cfg, [0, 1])
    assert [load_checkpoint(tmp_path / f"seed_{s}")["step"] for s in (0, 1)] == [50, 50]


def test_repeat_rows_is_repeat_interleave_without_a_device_count():
    from deep.networks import repeat_rows

    x = torch.randn(3, 4, 5)
    for times in (1, 2, 3):
        assert torch.equal(repeat_rows(x, times), x.repeat_interleave(times, dim=0))


def test_resumable_needs_every_checkpoint_at_one_step(tmp_path):
    """A stack killed while writing its runs' checkpoints one after another leaves them at different steps:
    not resumable (load_stack would refuse), so a sweep or study cell starts afresh instead."""
    dirs = [tmp_path / "a", tmp_path / "b"]

    def save(d, step):
        save_checkpoint(dict(config={}, obs_dim=1, act_dim=1, ensemble={}, step=step), d)

    assert not resumable([]) and not resumable(dirs)
    save(dirs[0], 100)
    assert not resumable(dirs)  # one run has no checkpoint yet
    save(dirs[1], 0)
    assert not resumable(dirs)  # killed between the two writes: steps 100 and 0
    save(dirs[1], 100)
    assert resumable(dirs)
