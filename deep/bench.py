"""Speed figures of the deep backend (``distlab bench deep [--device D] [--quick]``), one JSON line each.

Update cost (every device measured; 2 x 256 MLPs, batch 256, HalfCheetah-v5 sizes: 17 observations, 6 actions):

* ``sac_update``: SAC updates/s of one member;
* ``sac_update_looped``: K = 3 members updated one after another (three 1-member learners);
* ``sac_update_batched``: the K = 3 batched ensemble (stacked parameters, one forward/backward/Adam step).
  ``batched_over_looped`` (CPU target <= 0.9) and ``k3_over_k1``, the K = 3 update's cost over the K = 1
  update's (CUDA target <= 1.5).

End to end (on ``--device``, or on CUDA when present), measured from the episode log's wall clock between
the first and the last episode end after the first update (so warm-up, torch.compile's compilation and
the final evaluation are outside the measurement; phases are inside):

* ``end_to_end``: env steps/s of sac K = 1, ensemble-sac K = 3 and piekd K = 3 (random election, so every
  phase runs; a phase of N/5 minibatches every N env steps, PIEKD's 1000 per 5000), each eager and
  compiled (``reduce-overhead`` on CUDA, ``default`` on CPU), with ``compile_ran`` (what actually ran) and
  ``env_step_share``: the fraction of an env step's time spent in ``env.step`` (the env's own speed,
  measured alone, over the end-to-end speed);
* ``rules_update_separate`` / ``rules_update_stacked``: a ``mujoco-rules`` group (six rules x both shipped
  teachers, K = 1 students, ``deep.rules_study.run_group``): ms per member of the every-step update, each cell's
  update one after another against ONE stacked update of members with different rules and teachers
  (``stacked_over_separate``); ``rules_env_step`` / ``rules_env_step_workers``: that group's simulators
  stepped one by one in the training process against ``deep.env_workers`` processes (``env_workers``: one
  per core up to the group's size), ms per env step and per loop step (every cell one step), and
  ``workers_over_in_process``;
* ``seeds_stacked``: aggregate env steps/s of ``--seeds 0-4`` piekd K = 3 in one process (``deep.seeds``);
* ``seeds_separate``: the same five runs as five processes at once (sum of their loop speeds; and the
  aggregate including process start-up), and ``seeds_stacked_over_separate``.

Targets (issue 10, on CUDA): piekd K = 3 >= 725 env steps/s; K = 3 update <= 1.5 x the K = 1 update;
5 seeds x K = 3 in one process >= 3000 aggregate env steps/s and >= 3 x five separate processes.
``--quick``: Pendulum-v1, 64-wide networks, a few hundred steps: checks that every figure is produced; not
speed figures of the real settings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from distlab.bench import benchmark, best_time

__all__ = ["deep_benchmarks", "loop_speed", "env_speed", "rules_stack_benchmarks", "env_stepping_benchmarks", "RULES_GROUP"]

FULL = dict(env="HalfCheetah-v5", width=256, batch=256, warmup=1_000, learn=3_000, interval=1_000, update_repeats=200,
            rules_env="HalfCheetah-v5", env_loops=1_000)
QUICK = dict(env="Pendulum-v1", width=64, batch=64, warmup=200, learn=600, interval=200, update_repeats=5,
             rules_env="Hopper-v5", env_loops=100)
# the rules of the stacked-cells figures: critic-less imitation, rule rewards, a value gate, a td score, SAC
RULES_GROUP = ("teacher", "on-policy", "n-distill+r", "value-gated+r", "td-teacher-v", "rl")


def _learner(k: int, device, obs_dim=17, act_dim=6, width=256):
    import torch

    from deep.config import SACConfig
    from deep.networks import Ensemble
    from deep.replay import ReplayBuffer
    from deep.sac import SACLearner

    gen = torch.Generator(device=device).manual_seed(0)
    learner = SACLearner(Ensemble(obs_dim, act_dim, (width,) * k).to(device), SACConfig(), gen)
    buffer = ReplayBuffer(20_000, obs_dim, act_dim, device)
    buffer.obs.normal_(generator=gen)
    buffer.next_obs.normal_(generator=gen)
    buffer.act.uniform_(-1, 1, generator=gen)
    buffer.rew.normal_(generator=gen)
    buffer.size = buffer.capacity
    return learner, buffer, gen


def update_benchmarks(device: str, repeats: int) -> Iterator[dict]:
    """Updates/s of K = 1, K = 3 looped and K = 3 batched (module docstring)."""
    import torch

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    one, buf1, g1 = _learner(1, device)
    looped = [_learner(1, device) for _ in range(3)]
    batched, buf3, g3 = _learner(3, device)
    n = min(20, repeats) if device == "cpu" else repeats

    def run_one():
        for _ in range(n):
            one.update(buf1.sample(1, 256, g1))
        sync()

    def run_looped():
        for _ in range(n):
            for learner, buf, g in looped:
                learner.update(buf.sample(1, 256, g))
        sync()

    def run_batched():
        for _ in range(n):
            batched.update(buf3.sample(3, 256, g3))
        sync()

    for fn in (run_one, run_looped, run_batched):  # warm-up (allocator, fused-Adam kernels)
        fn()
    t_one = best_time(run_one, repeat=3) / n
    t_looped = best_time(run_looped, repeat=3) / n
    t_batched = best_time(run_batched, repeat=3) / n
    yield dict(benchmark="sac_update", device=device, members=1, width=256, batch=256, updates_per_second=1 / t_one,
               threads=torch.get_num_threads())
    yield dict(benchmark="sac_update_looped", device=device, members=3, width=256, batch=256,
               ensemble_updates_per_second=1 / t_looped, member_updates_per_second=3 / t_looped)
    yield dict(benchmark="sac_update_batched", device=device, members=3, width=256, batch=256,
               ensemble_updates_per_second=1 / t_batched, member_updates_per_second=3 / t_batched,
               batched_over_looped=t_batched / t_looped, target="<= 0.9 (CPU)",
               k3_over_k1=t_batched / t_one, k3_over_k1_target="<= 1.5 (CUDA)")


def _fill(buffer, gen) -> None:
    """Random transitions in every row of a (stacked) replay buffer, all collected by the student."""
    buffer.obs.normal_(generator=gen)
    buffer.next_obs.normal_(generator=gen)
    buffer.act.uniform_(-1, 1, generator=gen)
    buffer.rew.normal_(generator=gen)
    buffer.size = buffer.capacity


def rules_stack_benchmarks(device: str, settings: dict, repeats: int) -> Iterator[dict]:
    """Stacked against separate mujoco-rules cells (``deep.rules_study.run_group``): the every-step update of
    the cells of :data:`RULES_GROUP` x both shipped teachers as ONE stacked update (``deep.seeds``, each member
    its own rule and teacher) against each cell's own update one after another, in ms per member update."""
    from dataclasses import replace

    import torch

    import deep.rules_study as rs
    from deep.methods import resolve, rule_update
    from deep.seeds import new_stack_of
    from deep.state import new_state

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    config = rs.Config(envs=(settings["rules_env"],), rules=RULES_GROUP, seeds=(0,), steps=5_000, record_every=5_000,
                       warmup_steps=0, width=settings["width"], batch_size=settings["batch"])
    cfgs = [resolve(replace(rs.train_config(cell), device=device)) for cell in rs.cells(config)]
    gen = torch.Generator(device=device).manual_seed(0)
    stack = new_stack_of(cfgs)
    _fill(stack.buffer, gen)
    singles = []
    for cfg in cfgs:
        run = new_state(cfg, peer_optimizer=False, frozen=stack.runs[len(singles)].frozen)
        _fill(run.buffer, gen)
        singles.append(run)
    n = min(5, repeats) if device == "cpu" else repeats

    def stacked():
        for _ in range(n):
            rule_update(stack)
        sync()

    def separate():
        for _ in range(n):
            for run in singles:
                rule_update(run)
        sync()

    for fn in (stacked, separate):  # warm-up
        fn()
    members = len(cfgs)
    t_stacked, t_separate = best_time(stacked, repeat=3) / n, best_time(separate, repeat=3) / n
    common = dict(device=device, env=settings["rules_env"], cells=members, rules=len(RULES_GROUP), width=settings["width"],
                  batch=settings["batch"], threads=torch.get_num_threads())
    yield dict(benchmark="rules_update_separate", ms_per_member_update=1e3 * t_separate / members, **common)
    yield dict(benchmark="rules_update_stacked", ms_per_member_update=1e3 * t_stacked / members,
               stacked_over_separate=t_stacked / t_separate, **common)


def env_stepping_benchmarks(settings: dict, members: int) -> Iterator[dict]:
    """A group's simulators (``members`` of ``rules_env``, random actions, resets at episode ends) stepped one
    by one in this process (``rules_env_step``) and by ``deep.env_workers`` processes (``rules_env_step_workers``,
    one per core up to the group's size): ms per env step and per loop step (every simulator one step)."""
    import numpy as np

    from deep.env_workers import EnvWorkers
    from deep.envs import env_state, make_env

    envs = [make_env(settings["rules_env"]) for _ in range(members)]
    for i, env in enumerate(envs):
        env.reset(seed=i)
    states = [env_state(env) for env in envs]
    space = envs[0].action_space
    loops = settings["env_loops"]
    workers_n = max(1, min(os.cpu_count() or 1, members))

    def step_all(step, reset) -> float:
        rng = np.random.default_rng(0)
        t0 = time.perf_counter()
        for _ in range(loops):
            actions = [rng.uniform(space.low, space.high).astype(space.dtype) for _ in range(members)]
            for i, (_, _, terminated, truncated, _) in enumerate(step(actions)):
                if terminated or truncated:
                    reset(i)
        return time.perf_counter() - t0

    here = step_all(lambda actions: [env.step(a) for env, a in zip(envs, actions)], lambda i: envs[i].reset(seed=i))
    for env in envs:
        env.close()
    pool = EnvWorkers(settings["rules_env"], states, workers_n, (envs[0].observation_space, space))
    try:
        away = step_all(pool.step, lambda i: pool.reset(i, i))
    finally:
        pool.close()
    common = dict(env=settings["rules_env"], simulators=members, loops=loops, cores=os.cpu_count())
    yield dict(benchmark="rules_env_step", env_ms_per_step=1e3 * here / (loops * members), env_ms_per_stacked_step=1e3 * here / loops,
               **common)
    yield dict(benchmark="rules_env_step_workers", workers=workers_n, env_ms_per_step=1e3 * away / (loops * members),
               env_ms_per_stacked_step=1e3 * away / loops, workers_over_in_process=away / here, **common)


def loop_speed(episodes, warmup: int) -> tuple[float, int]:
    """(env steps/s, steps measured) between the first and the last episode end after the first update,
    from an episode table's ``step`` and ``wall_time_s``; ValueError if fewer than two such episode ends."""
    after = episodes[episodes.step > warmup]
    if len(after) < 2:
        raise ValueError(f"need two episode ends after warm-up ({warmup} steps) to measure a speed; got {len(after)}")
    steps = int(after.step.iloc[-1] - after.step.iloc[0])
    return steps / float(after.wall_time_s.iloc[-1] - after.wall_time_s.iloc[0]), steps


def env_speed(env_id: str, steps: int) -> float:
    """env.step calls per second with uniformly random actions (resets included), the env alone."""
    import numpy as np

    from deep.envs import make_env

    env = make_env(env_id)
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    t0 = time.perf_counter()
    for _ in range(steps):
        action = rng.uniform(env.action_space.low, env.action_space.high).astype(env.action_space.dtype)
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    seconds = time.perf_counter() - t0
    env.close()
    return steps / seconds


def _config(method: str, device: str, settings: dict, compile_mode: str = "none", out: str | None = None):
    from deep.config import TrainConfig, with_overrides

    steps = settings["warmup"] + settings["learn"]
    return with_overrides(
        TrainConfig(env=settings["env"], method=method, steps=steps, device=device, compile=compile_mode, out=out,
                    eval_every=steps, eval_episodes=1, checkpoint_every=10 ** 9, progress=False,
                    election="random" if method.startswith("piekd") else "best",
                    distill_start=settings["warmup"], distill_interval=settings["interval"],
                    distill_batches=settings["interval"] // 5),
        **{"sac.warmup_steps": settings["warmup"], "sac.width": settings["width"], "sac.batch_size": settings["batch"]})


def end_to_end_benchmarks(device: str, settings: dict) -> Iterator[dict]:
    from deep.methods import resolve
    from deep.seeds import train_seeds
    from deep.train import train

    env_rate = env_speed(settings["env"], 5_000)
    yield dict(benchmark="env_step", device="cpu", env=settings["env"], env_steps_per_second=env_rate)
    compiled = "reduce-overhead" if device.startswith("cuda") else "default"
    import torch

    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else f"cpu ({os.cpu_count()} cores)"
    common = dict(device=device, device_name=name, env=settings["env"], width=settings["width"], batch=settings["batch"])
    for method in ("sac", "ensemble-sac", "piekd"):
        for mode in ("none", compiled):
            if mode != "none":
                # a fresh compiler cache per run, as a new process has: dynamo guards optimizer.step on the
                # optimizer object, and a 9th optimizer in one process exceeds its recompile limit (eager then)
                torch._dynamo.reset()
            cfg = _config(method, device, settings, mode)
            tables = train(cfg)
            rate, measured = loop_speed(tables["episodes"], settings["warmup"])
            record = dict(benchmark="end_to_end", method=method, members=resolve(cfg).k, compile=mode,
                          compile_ran=str(tables["eval"].compile_mode.iloc[-1]), measured_steps=measured,
                          env_steps_per_second=rate, env_step_share=rate / env_rate, **common)
            if method == "piekd":
                record["target"] = ">= 725 (CUDA)"
            yield record
    seeds = [0, 1, 2, 3, 4]
    with tempfile.TemporaryDirectory() as tmp:
        results = train_seeds(_config("piekd", device, settings, out=str(Path(tmp) / "stacked")), seeds)
        rate, measured = loop_speed(results[0]["episodes"], settings["warmup"])
        stacked = len(seeds) * rate
        yield dict(benchmark="seeds_stacked", method="piekd", members=3, seeds=len(seeds), measured_steps=measured,
                   aggregate_env_steps_per_second=stacked, per_run_env_steps_per_second=rate,
                   env_step_share=rate / env_rate * len(seeds), target=">= 3000 (CUDA)", **common)
        separate, with_startup = _separate_processes(device, settings, seeds, Path(tmp))
        yield dict(benchmark="seeds_separate", method="piekd", members=3, processes=len(seeds),
                   aggregate_env_steps_per_second=separate, aggregate_with_startup=with_startup, **common)
        yield dict(benchmark="seeds_stacked_over_separate", method="piekd", members=3, seeds=len(seeds),
                   ratio=stacked / separate, target=">= 3 (CUDA)", **common)


_CHILD = ("import json, sys; from deep.config import TrainConfig; from deep.train import train; "
          "train(TrainConfig.from_dict(json.loads(sys.argv[1])))")


def _separate_processes(device: str, settings: dict, seeds: list[int], root: Path) -> tuple[float, float]:
    """The runs of ``seeds`` as separate processes started together: (sum of their loop speeds, aggregate
    env steps/s over the wall time from start to the last exit, process start-up included)."""
    import pandas as pd

    threads = max(1, (os.cpu_count() or 1) // len(seeds))  # the processes share the cores
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1])] + [p for p in [env.get("PYTHONPATH")] if p])
    t0 = time.perf_counter()
    procs = []
    for seed in seeds:
        cfg = _config("piekd", device, settings, out=str(root / f"separate_{seed}"))
        cfg = cfg.__class__.from_dict({**cfg.to_dict(), "seed": seed})
        procs.append(subprocess.Popen([sys.executable, "-c", _CHILD, json.dumps(cfg.to_dict())], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    for seed, proc in zip(seeds, procs):
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"separate run of seed {seed} failed ({proc.returncode}): {err.decode()[-2000:]}")
    wall = time.perf_counter() - t0
    rates = [loop_speed(pd.read_parquet(root / f"separate_{seed}" / "episodes.parquet"), settings["warmup"])[0] for seed in seeds]
    total_steps = len(seeds) * (settings["warmup"] + settings["learn"])
    return float(sum(rates)), total_steps / wall


@benchmark("deep")
def deep_benchmarks(device: str | None = None, quick: bool = False) -> Iterator[dict]:
    """Update figures on ``device`` (default: CPU, and CUDA when present); end-to-end and seeds figures on
    ``device`` when given, else on CUDA when present. ``quick``: the short settings (module docstring)."""
    import torch

    from deep.state import device_of

    if device is not None:
        device_of(device)  # a clear error for cuda without CUDA
    settings = QUICK if quick else FULL
    devices = [device] if device is not None else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    threads = torch.get_num_threads()
    if quick:
        torch.set_num_threads(1)  # a smoke test: one thread is steadiest on a shared machine
    try:
        for dev in devices:
            for record in update_benchmarks(dev, settings["update_repeats"]):
                yield dict(record, quick=quick)
            for record in rules_stack_benchmarks(dev, settings, settings["update_repeats"]):
                yield dict(record, quick=quick)
        for record in env_stepping_benchmarks(settings, 2 * len(RULES_GROUP)):  # the group's simulators, any device
            yield dict(record, quick=quick)
        for dev in devices:
            if device is not None or dev.startswith("cuda"):
                for record in end_to_end_benchmarks(dev, settings):
                    yield dict(record, quick=quick, threads=torch.get_num_threads())
    finally:
        torch.set_num_threads(threads)
