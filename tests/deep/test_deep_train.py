"""End-to-end runs on CPU with tiny networks: every method and rule, resume, NaN stop, argument errors."""


import numpy as np
import pandas as pd
import pytest
import torch

from distlab import rules
from deep.checkpoint import load_checkpoint
from deep.config import TrainConfig, with_overrides
from deep.methods import METHODS, distill_phase_of_run, extra_sac_phase, hardcopy_phase
from deep.train import TrainingDiverged, _Killed, train

PHASE_KIND = {None: "none", distill_phase_of_run: "distill", extra_sac_phase: "extra", hardcopy_phase: "hardcopy"}

# Tiny networks, and few gradient steps: env steps are cheap, updates are what costs on a shared CPU.
TINY = {"sac.width": 16, "sac.batch_size": 16, "sac.warmup_steps": 200, "distill_start": 300, "distill_interval": 300,
        "distill_batches": 10, "eval_episodes": 1, "checkpoint_every": 10_000, "progress": False,
        "dpd_batch": 16, "dpd_recent": 200}


def tiny(**kw):
    """A tiny config: ``steps`` env steps, evaluation at the end only (unless ``eval_every`` is given)."""
    steps = kw.pop("steps", 800)
    kw.setdefault("eval_every", steps)
    return with_overrides(TrainConfig(steps=steps), **{**TINY, **kw})


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine is shared; tiny nets gain nothing from threads
    yield
    torch.set_num_threads(threads)


def _check_run(tables, cfg_steps, k):
    ev = tables["eval"]
    assert sorted(ev.step.unique()) == [cfg_steps]
    assert len(ev) == k and np.isfinite(ev.mean_return).all()
    assert ev.is_best.sum() == 1 and ev.is_worst.sum() == 1
    ep = tables["episodes"]
    assert (np.diff(ep.step.to_numpy()) > 0).all()


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("env", ["Pendulum-v1", "HalfCheetah-v5"])
def test_every_method_runs(method, env):
    # 2000 env steps (10 Pendulum episodes, 2 HalfCheetah episodes), 400 gradient steps, 3 phases
    # (with the "best" election they may all be skipped: see the test below, which runs them)
    cfg = tiny(env=env, method=method, steps=2000, **{"sac.warmup_steps": 1600, "distill_start": 1700, "distill_interval": 150})
    tables = train(cfg)
    k = METHODS[method].default_k
    _check_run(tables, 2000, k)
    phases = tables["phases"]
    if METHODS[method].phase is None:
        assert phases.empty
    else:
        assert phases.step.tolist() == [1700, 1850, 2000]
    if method == "piekd-random-teacher":
        assert set(phases.teacher) <= {0, 1, 2} and (phases.kind != "skipped").all()


@pytest.mark.parametrize("method", ["piekd", "piekd-hardcopy"])
def test_best_election_waits_for_every_member_to_have_a_training_return(method):
    """Electing by R_k before a member has an episode would spread an untrained policy: skipped instead."""
    cfg = tiny(env="Pendulum-v1", method=method, k=2, steps=2000, **{"sac.warmup_steps": 1000, "distill_start": 1000, "distill_interval": 200})
    tables = train(cfg)
    phases = tables["phases"].set_index("step")
    returns = tables["episodes"].query("actor >= 0")
    for step, phase in phases.iterrows():
        members_with_returns = set(returns[returns.step <= step].actor)
        if members_with_returns == {0, 1}:
            assert phase.kind == PHASE_KIND[METHODS[method].phase]
            assert phase.teacher == int(np.argmax([phase[f"R_{m}"] for m in range(2)]))
        else:
            assert phase.kind == "skipped" and phase.teacher == -1
    assert (phases.kind == "skipped").any() and (phases.kind == PHASE_KIND[METHODS[method].phase]).any()


@pytest.mark.parametrize("rule", rules.names())
def test_every_rule_runs_against_the_elected_member(rule):
    # a random election: at step 550 no member has a training return yet, which "best" would wait for
    tables = train(tiny(env="Pendulum-v1", method="piekd", rule=rule, k=2, steps=700, election="random",
                        **{"sac.warmup_steps": 500, "distill_start": 550}))
    _check_run(tables, 700, 2)
    assert tables["phases"].step.tolist() == [550]
    assert tables["phases"].kind.tolist() == ["distill"]


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher")
    train(tiny(env="Pendulum-v1", method="ensemble-sac", k=2, steps=500, out=str(out)))
    return out


@pytest.mark.parametrize("rule", ["teacher", "on-policy+r", "n-distill", "expected-entropy", "value-gated+r",
                                  "teacher-v-reward", "td-teacher-v+r", "dpd"])
def test_rules_every_step_from_a_frozen_teacher(rule, teacher_run):
    tables = train(tiny(env="Pendulum-v1", method="piekd", rule=rule, k=1, steps=600, teacher=f"{teacher_run}:1",
                        **{"sac.warmup_steps": 400}))
    _check_run(tables, 600, 1)
    actors = set(tables["episodes"].actor)
    # control: the teacher acts for a teacher-controlled rule, the student otherwise (-2 = warm-up)
    assert actors == ({-2, -1} if rules.get(rule).control == "teacher" else {-2, 0})


def test_heterogeneous_widths_and_faithful_mode(tmp_path):
    tables = train(tiny(env="Pendulum-v1", method="piekd", k=2, widths=(16, 32), distill_mode="faithful", distill_epochs=1, steps=700))
    _check_run(tables, 700, 2)
    assert sorted(tables["eval"].width) == [16, 32]


def test_kill_and_resume_reaches_the_step_count_with_an_unbroken_log(tmp_path):
    cfg = tiny(env="Pendulum-v1", method="piekd", k=2, steps=1400, eval_every=200, checkpoint_every=400, out=str(tmp_path))
    with pytest.raises(_Killed):
        train(cfg, stop_at=1000)  # killed after the checkpoint at 800, evals at 200..1000 written
    assert load_checkpoint(tmp_path)["step"] == 800
    assert sorted(pd.read_parquet(tmp_path / "eval.parquet").step.unique()) == list(range(200, 1001, 200))
    tables = train(cfg, resume=True)
    ev = pd.read_parquet(tmp_path / "eval.parquet")
    assert sorted(ev.step.unique()) == list(range(200, 1401, 200))  # no gap, no duplicate
    assert ev.groupby("step").size().eq(2).all()
    assert load_checkpoint(tmp_path)["step"] == 1400
    ep = tables["episodes"]
    assert (np.diff(ep.step.to_numpy()) > 0).all() and ep.episode.tolist() == list(range(len(ep)))
    assert tables["phases"].step.tolist() == [300, 600, 900, 1200]


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, nan_reward_env):
    import deep.state


    make_env = deep.state.make_env
    monkeypatch.setattr(deep.state, "make_env", lambda env_id: nan_reward_env(make_env(env_id)))
    cfg = tiny(env="Pendulum-v1", method="sac", steps=600, checkpoint_every=100, nan_check_every=50, out=str(tmp_path))
    # updates start at step 200 (end of warm-up); the check at 200 comes before that step's checkpoint
    with pytest.raises(TrainingDiverged, match=r"critic.* loss became NaN or inf before env step 200.*last good checkpoint \(step 100\)"):
        train(cfg)
    assert load_checkpoint(tmp_path)["step"] == 100


@pytest.mark.parametrize("overrides,message", [
    (dict(env="Nope-v0"), "unknown env 'Nope-v0'"),
    (dict(method="ppo"), "unknown method 'ppo'"),
    (dict(method="piekd", rule="magic"), "unknown rule 'magic'"),
    (dict(method="piekd", k=0), "k must be >= 1"),
    (dict(method="dpd", k=3), "k must be 2"),
    (dict(method="sac", k=3), "single agent"),
    (dict(method="piekd", k=1), "k must be >= 2"),
    (dict(method="ensemble-sac", rule="teacher"), "--rule applies"),
    (dict(method="piekd", election="greedy"), "unknown election 'greedy'"),
    (dict(method="piekd", widths=(8, 16)), "one positive width per member"),
    (dict(method="piekd", device="tpu"), "unknown device 'tpu'"),
])
def test_invalid_arguments_fail_before_any_work(overrides, message, tmp_path):
    cfg = with_overrides(TrainConfig(out=str(tmp_path / "x"), progress=False), **overrides)
    with pytest.raises(ValueError, match=message):
        train(cfg)
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_ensemble_sac_learns_pendulum():
    """Ensemble SAC (K = 2) reaches an average deterministic return above -300 within 15k steps."""
    cfg = TrainConfig(env="Pendulum-v1", method="ensemble-sac", k=2, steps=15_000, eval_every=5_000, eval_episodes=20,
                      checkpoint_every=100_000, progress=False, seed=0)
    ev = train(cfg)["eval"]
    final = ev[ev.step == 15_000].mean_return.mean()
    print(f"ensemble-sac K=2 Pendulum-v1 15k steps: mean over members {final:.1f}")
    assert final > -300
