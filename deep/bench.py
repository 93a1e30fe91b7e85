"""Speed figures of the deep backend (``distlab bench deep``), measured against each other in one process.

* SAC updates/s of one member (2 x 256 MLPs, batch 256, HalfCheetah-v5 sizes: 17 observations, 6 actions);
* K = 3 members updated one after another (three separate 1-member learners: the "looped" ensemble);
* the K = 3 batched ensemble (stacked parameters, one forward/backward/Adam step for all members).
  Target on CPU: a batched update costs <= 0.9x the looped one (``batched_over_looped``);
* on CUDA also end-to-end env steps/s of ensemble SAC on HalfCheetah-v5 (K = 3, after warm-up).
"""

from __future__ import annotations

from collections.abc import Iterator

from distlab.bench import benchmark, best_time

__all__ = ["deep_benchmarks"]


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


@benchmark("deep")
def deep_benchmarks() -> Iterator[dict]:
    import torch

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        one, buf1, g1 = _learner(1, device)
        looped = [_learner(1, device) for _ in range(3)]
        batched, buf3, g3 = _learner(3, device)
        n = 20 if device == "cpu" else 200

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
                   batched_over_looped=t_batched / t_looped, target="<= 0.9")
        if device == "cuda":
            yield _end_to_end(device)


def _end_to_end(device: str) -> dict:
    """Env steps/s of ensemble SAC (K = 3) on HalfCheetah-v5 after a 1000-step warm-up."""
    import time

    from deep.config import TrainConfig, with_overrides
    from deep.train import train

    steps = 4_000
    cfg = with_overrides(TrainConfig(env="HalfCheetah-v5", method="ensemble-sac", steps=steps, device=device, eval_every=10 ** 9,
                                     checkpoint_every=10 ** 9, eval_episodes=1, progress=False), **{"sac.warmup_steps": 1_000})
    t0 = time.perf_counter()
    train(cfg)
    seconds = time.perf_counter() - t0
    return dict(benchmark="end_to_end", device=device, env="HalfCheetah-v5", method="ensemble-sac", members=3, steps=steps,
                learning_steps=steps - 1_000, env_steps_per_second=steps / seconds)
