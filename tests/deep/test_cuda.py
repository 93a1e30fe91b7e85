"""The CUDA path (tests marked ``cuda``; skipped without a CUDA device, run on a lent GPU by
``bash scripts/gpu_check.sh``).

The reference of every CUDA check is the CPU backend: one update on CUDA equals the CPU update from the
same state (the random numbers are drawn on the host, ``deep.rng.HostGenerator``, since the CUDA and CPU
generators are different algorithms); compiled updates equal eager ones; checkpoints move between
devices; the update never waits for the host (``torch.cuda.set_sync_debug_mode("error")``).

``DISTLAB_CUDA_TEST_DEVICE=cpu`` runs the device-independent checks with the CPU in the CUDA role (a check
of this file's harness on a machine without a GPU; it proves nothing about CUDA). The last test needs no
GPU: a checkpoint whose generator state belongs to the other device type resumes, reseeded.
"""

import os
import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch

from deep.config import TrainConfig, with_overrides
from deep.checkpoint import load_checkpoint, save_checkpoint
from deep.distill import PhaseContext, Teacher, piekd_distill_step
from deep.methods import METHODS, dpd_step, method_of, plan_of, resolve, sac_update
from deep.rng import HostGenerator
from deep.sac import SACLearner
from deep.seeds import new_stack, train_seeds
from deep.state import new_state
from deep.train import _Killed, train

DEVICE = os.environ.get("DISTLAB_CUDA_TEST_DEVICE", "cuda")
REAL_CUDA = DEVICE.startswith("cuda")
without_device = pytest.mark.skipif(REAL_CUDA and not torch.cuda.is_available(), reason="needs a CUDA device")
without_cuda = pytest.mark.skipif(not (REAL_CUDA and torch.cuda.is_available()), reason="needs a CUDA device")

TINY = {"sac.width": 32, "sac.batch_size": 32, "sac.warmup_steps": 200, "distill_start": 250, "distill_interval": 50,
        "distill_batches": 3, "eval_episodes": 1, "checkpoint_every": 10_000, "progress": False, "env": "Pendulum-v1",
        "dpd_batch": 16, "dpd_recent": 200}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny networks gain nothing from CPU threads (the CPU side of the comparisons)
    yield
    torch.set_num_threads(threads)


def tiny(**kw):
    steps = kw.pop("steps", 300)
    kw.setdefault("eval_every", steps)
    return with_overrides(TrainConfig(steps=steps), **{**TINY, **kw})


def _random_buffer_state(n: int, obs_dim: int, act_dim: int, k: int) -> dict:
    g = torch.Generator().manual_seed(123)
    return dict(obs=torch.randn(n, obs_dim, generator=g), next_obs=torch.randn(n, obs_dim, generator=g),
                act=torch.rand(n, act_dim, generator=g) * 2 - 1, rew=torch.randn(n, generator=g),
                terminated=(torch.rand(n, generator=g) < 0.05).float(), actor=torch.randint(0, k, (n,), generator=g),
                ptr=n, size=n)


def _state_on(cfg: TrainConfig, device: str):
    """A run of ``cfg`` on ``device`` with a filled buffer, known returns and host-drawn random numbers."""
    cfg = resolve(replace(cfg, device=device))
    run = new_state(cfg, peer_optimizer=method_of(cfg.method).peer_step is not None)  # same init: torch.manual_seed(seed)
    run.buffer.load_state_dict(_random_buffer_state(280, run.obs_dim, run.act_dim, cfg.k))
    run.gen = run.learner.gen = HostGenerator(7)
    run.member_returns = [[float(m % 3)] for m in range(cfg.k)]  # member 2 (of 3) is the best: elected teacher
    return run, plan_of(cfg)


def _params(run) -> dict[str, torch.Tensor]:
    return {name: p.detach().cpu().clone() for name, p in run.ens.state_dict().items()}


UPDATES = {
    "sac": (dict(method="sac"), lambda run, plan: [sac_update(run) for _ in range(2)]),
    "piekd": (dict(method="piekd"), lambda run, plan: [sac_update(run), plan.phase(run, plan)]),
    "dpd": (dict(method="dpd"), lambda run, plan: [sac_update(run), dpd_step(run), dpd_step(run)]),
    "rule value-gated": (dict(method="piekd", rule="value-gated"), lambda run, plan: plan.phase(run, plan)),
    "rule entropy-regularised": (dict(method="piekd", rule="entropy-regularised"), lambda run, plan: plan.phase(run, plan)),
}


@pytest.mark.cuda
@without_device
@pytest.mark.parametrize("name", list(UPDATES))
def test_an_update_on_the_device_equals_the_cpu_update(name):
    settings, update = UPDATES[name]
    cfg = tiny(**settings)
    runs = {}
    for device in ("cpu", DEVICE):
        run, plan = _state_on(cfg, device)
        before = _params(run)
        update(run, plan)
        runs[device] = run
    after_cpu, after_dev = _params(runs["cpu"]), _params(runs[DEVICE])
    assert any(not torch.equal(before[k], after_cpu[k]) for k in before)  # the update changed something
    for key in after_cpu:
        torch.testing.assert_close(after_dev[key], after_cpu[key], rtol=1e-4, atol=1e-5, msg=f"{name}: {key}")
    if name == "piekd":
        assert runs[DEVICE].phase_log[-1]["teacher"] == runs["cpu"].phase_log[-1]["teacher"] == 2



@pytest.mark.cuda
@without_device
@pytest.mark.parametrize("method", list(METHODS))
def test_a_short_run_of_every_method_on_the_device(method):
    tables = train(tiny(method=method, device=DEVICE))
    ev = tables["eval"]
    assert len(ev) == resolve(tiny(method=method)).k and np.isfinite(ev.mean_return).all()
    assert (ev.compile_mode == "none").all()


@pytest.mark.cuda
@without_device
def test_stacked_seeds_on_the_device_equal_separate_runs_there(tmp_path):
    from test_seeds import assert_same_run

    cfg = tiny(method="piekd-random-teacher", device=DEVICE, out=str(tmp_path / "stack"))
    train_seeds(cfg, [0, 1])
    for seed in (0, 1):
        train(with_overrides(cfg, seed=seed, out=str(tmp_path / f"single{seed}")))
        assert_same_run(load_checkpoint(tmp_path / "stack" / f"seed_{seed}"), load_checkpoint(tmp_path / f"single{seed}"))


@pytest.mark.cuda
@without_device
@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_compiled_updates_match_eager_and_really_compile(mode, tmp_path):
    torch._dynamo.reset()  # as a fresh process: dynamo's recompile limit counts optimizers across the session
    cfg = resolve(tiny(method="ensemble-sac", device=DEVICE))
    learners = {}
    for compile_mode in ("none", mode):
        run = new_state(replace(cfg, compile=compile_mode), peer_optimizer=False)
        run.buffer.load_state_dict(_random_buffer_state(280, run.obs_dim, run.act_dim, cfg.k))
        gen = torch.Generator(device=DEVICE).manual_seed(5)
        learner = SACLearner(run.ens, cfg.sac, gen, compile_mode)
        for _ in range(3):
            learner.update(run.buffer.sample(cfg.k, cfg.sac.batch_size, gen))
        learners[compile_mode] = (learner, run)
    assert learners[mode][0].compile_ran == mode  # no silent fallback to eager
    assert learners["none"][0].compile_ran == "none"
    eager, compiled = _params(learners["none"][1]), _params(learners[mode][1])
    for key in eager:
        torch.testing.assert_close(compiled[key], eager[key], rtol=1e-4, atol=1e-5, msg=key)
    # a whole run: its outputs say which mode ran
    ev = train(tiny(method="sac", device=DEVICE, compile=mode, out=str(tmp_path / "run")))["eval"]
    assert (ev.compile_mode == mode).all() and np.isfinite(ev.mean_return).all()


@pytest.mark.cuda
@without_device
@pytest.mark.parametrize("first,then", [(DEVICE, "cpu"), ("cpu", DEVICE)])
def test_a_checkpoint_resumes_on_the_other_device(first, then, tmp_path):
    cfg = tiny(method="piekd-random-teacher", device=first, checkpoint_every=250, out=str(tmp_path))
    with pytest.raises(_Killed):
        train(cfg, stop_at=270)
    saved = load_checkpoint(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the generator is reseeded across device types (tested below, on CPU)
        tables = train(with_overrides(cfg, device=then), resume=True)
    assert sorted(tables["eval"].step.unique()) == [300] and np.isfinite(tables["eval"].mean_return).all()
    resumed = load_checkpoint(tmp_path)
    assert resumed["config"]["device"] == then and resumed["step"] == 300
    assert resumed["buffer"]["size"] == 300 and torch.equal(resumed["buffer"]["obs"][:250], saved["buffer"]["obs"][:250])


@pytest.mark.cuda
@without_cuda
def test_the_update_never_waits_for_the_host():
    cfg = resolve(tiny(method="piekd", device=DEVICE))
    run = new_state(cfg, peer_optimizer=False)
    run.buffer.load_state_dict(_random_buffer_state(280, run.obs_dim, run.act_dim, cfg.k))
    ctx = PhaseContext(run.ens, [0, 1], cfg.distill_lr, cfg.sac.gamma, cfg.sac.tau, run.gen)
    teacher = Teacher(run.ens, [2, 2, 2], run.gen)
    stack = new_stack(replace(cfg, out=None), [0, 1])
    for i in range(2):
        stack.buffer.load_run_state_dict(i, _random_buffer_state(280, stack.obs_dim, stack.act_dim, cfg.k))

    def updates():
        sac_update(run)
        piekd_distill_step(run.ens, teacher, run.buffer.sample(cfg.k, cfg.sac.batch_size, run.gen), ctx)
        sac_update(stack)

    updates()  # first calls: allocations, fused-Adam state
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        updates()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    torch.cuda.synchronize()



def test_a_generator_state_of_the_other_device_type_is_reseeded_reproducibly(tmp_path):
    """No GPU needed: a checkpoint holding a CUDA generator's state (16 bytes: Philox seed and offset) resumes
    on the CPU with a warning, reseeded from (seed, step): twice the same numbers."""
    cfg = tiny(method="ensemble-sac", checkpoint_every=250, out=str(tmp_path / "a"))
    with pytest.raises(_Killed):
        train(cfg, stop_at=260)
    state = load_checkpoint(tmp_path / "a")
    state["rng"]["device"] = torch.zeros(16, dtype=torch.uint8)  # the layout of a CUDA generator's state
    save_checkpoint(state, tmp_path / "a")
    save_checkpoint(state, tmp_path / "b")
    finals = []
    for name in ("a", "b"):
        with pytest.warns(UserWarning, match="reseeded from"):
            train(with_overrides(cfg, out=str(tmp_path / name)), resume=True)
        finals.append(load_checkpoint(tmp_path / name))
    for key in finals[0]["ensemble"]:
        assert torch.equal(finals[0]["ensemble"][key], finals[1]["ensemble"][key])
    plain = with_overrides(cfg, out=str(tmp_path / "c"))
    with pytest.raises(_Killed):
        train(plain, stop_at=260)
    train(plain, resume=True)  # the generator's own state restored: a different stream from the reseeded one
    assert any(not torch.equal(finals[0]["ensemble"][k], load_checkpoint(tmp_path / "c")["ensemble"][k]) for k in finals[0]["ensemble"])


def test_a_failed_compilation_is_recorded_and_warned_never_silent(monkeypatch):
    """No GPU needed: when torch.compile's function fails, the update runs eagerly, and ``compile_ran`` (the
    eval table's ``compile_mode``) and a warning say so; when it works, ``compile_ran`` is the mode."""
    cfg = resolve(tiny(method="sac"))
    run = new_state(cfg, peer_optimizer=False)
    run.buffer.load_state_dict(_random_buffer_state(280, run.obs_dim, run.act_dim, cfg.k))

    def broken_compile(fn, mode):
        def call(*args):
            raise RuntimeError("no compiler here")
        return call

    monkeypatch.setattr(torch, "compile", broken_compile)
    learner = SACLearner(run.ens, cfg.sac, run.gen, "default")
    assert learner.compile_ran == "none"
    with pytest.warns(UserWarning, match=r"torch.compile\(default\) failed"):
        learner.update(run.buffer.sample(1, 32, run.gen))
    assert learner.compile_ran == "none (fallback from default: RuntimeError: no compiler here)"
    monkeypatch.setattr(torch, "compile", lambda fn, mode: fn)  # a compiler that works (here: the identity)
    learner = SACLearner(run.ens, cfg.sac, run.gen, "default")
    learner.update(run.buffer.sample(1, 32, run.gen))
    assert learner.compile_ran == "default"
