"""Simulators in worker processes (``env_workers``, deep.env_workers): the same run, bit for bit.

The reference is the same group stepping its simulators in the training process (``env_workers = 0``):
the workers' simulators start from the runs' exact states and step the same actions, so every table
(evaluations, episodes) is equal exactly, through episode ends (per-run resets with the run's own seeds),
a checkpoint read back from the workers, and a resume.
"""

from dataclasses import replace

import pandas as pd
import pytest

import deep.rules_study as rs
from deep.config import ConfigError, TrainConfig, with_overrides
from deep.env_workers import worker_blocks
from deep.seeds import train_stack
from deep.train import _Killed, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = replace(rs.CONFIGS["smoke"], steps=200, record_every=100, warmup_steps=100, eval_episodes=1, width=16, batch_size=16)


def same_tables(a: dict, b: dict) -> None:
    for name in ("eval", "episodes"):
        cols = [c for c in a[name].columns if c != "wall_time_s"]
        pd.testing.assert_frame_equal(a[name][cols], b[name][cols], check_exact=True)


def test_worker_blocks_cover_the_runs_in_order():
    assert worker_blocks(5, 2) == [range(0, 2), range(2, 5)]
    assert worker_blocks(2, 8) == [range(0, 1), range(1, 2)]  # never an empty worker
    assert {len(b) for b in worker_blocks(72, 16)} == {4, 5}
    for runs, workers in ((1, 1), (7, 3), (72, 16)):
        blocks = worker_blocks(runs, workers)
        assert [i for b in blocks for i in b] == list(range(runs)) and min(map(len, blocks)) >= 1
    with pytest.raises(ValueError, match="env workers must be >= 1"):
        worker_blocks(3, 0)


def test_a_stacked_group_with_env_workers_is_the_in_process_group_bit_for_bit():
    """Hopper falls early, so the runs' episodes end (and reset) at different steps inside the workers."""
    cells = rs.cells(replace(SMALL, rules=("teacher", "n-distill+r", "rl"), seeds=(0, 1)))
    configs = [replace(rs.train_config(c), out=None, tensorboard=False) for c in cells]
    here = train_stack(configs)
    away = train_stack([replace(c, env_workers=2) for c in configs])
    assert sum(len(t["episodes"]) for t in here) > 2 * len(cells)  # several episodes per run: resets happened
    for a, b in zip(here, away):
        same_tables(a, b)


def test_a_killed_run_with_env_workers_resumes_to_the_uninterrupted_run(tmp_path):
    """The checkpoint reads the simulators' states back from the workers; the resumed run (again with
    workers) equals the uninterrupted in-process run."""
    cfg = with_overrides(TrainConfig(), env="Hopper-v5", method="sac", steps=300, eval_every=150, eval_episodes=1,
                         checkpoint_every=130, progress=False, tensorboard=False,
                         **{"sac.width": 16, "sac.batch_size": 16, "sac.warmup_steps": 100})
    whole = train(replace(cfg, out=str(tmp_path / "whole")))
    cut = replace(cfg, out=str(tmp_path / "cut"), env_workers=1)
    with pytest.raises(_Killed):
        train(cut, stop_at=200)  # killed 70 steps after the checkpoint at 130, mid-episode
    resumed = train(cut, resume=True)
    same_tables(whole, resumed)


def test_env_workers_must_not_be_negative():
    with pytest.raises(ConfigError, match="env_workers must be >= 0"):
        train(with_overrides(TrainConfig(), env="Pendulum-v1", env_workers=-1, progress=False))


def test_the_study_passes_env_workers_to_its_cells_and_keeps_default_cell_names():
    from distlab import studies

    plain, pooled = rs.cells(SMALL), rs.cells(replace(SMALL, env_workers=3))
    assert all("env_workers" not in c for c in plain)  # default cells keep their names (and results)
    assert [c.pop("env_workers") for c in pooled] == [3] * len(plain) and pooled == plain
    assert rs.train_config(rs.cells(replace(SMALL, env_workers=3))[0]).env_workers == 3
    with pytest.raises(ValueError, match="env_workers must be an integer >= 0"):
        rs.cells(replace(SMALL, env_workers=-2))
    with pytest.raises(ValueError, match="has no env_workers option; studies with one: mujoco-rules"):
        studies.run_study("control", "quick", "unused", env_workers=2)


def test_the_bench_reports_in_process_and_worker_env_stepping():
    from deep.bench import env_stepping_benchmarks

    records = {r["benchmark"]: r for r in env_stepping_benchmarks({"rules_env": "Pendulum-v1", "env_loops": 20}, 3)}
    here, away = records["rules_env_step"], records["rules_env_step_workers"]
    assert here["simulators"] == away["simulators"] == 3 and away["workers"] >= 1
    assert here["env_ms_per_stacked_step"] > 0 and away["env_ms_per_stacked_step"] > 0
    assert away["workers_over_in_process"] == pytest.approx(away["env_ms_per_stacked_step"] / here["env_ms_per_stacked_step"])


def test_a_dead_env_worker_is_an_error_not_a_hang():
    from deep.env_workers import EnvWorkers
    from deep.envs import env_state, make_env

    env = make_env("Pendulum-v1")
    env.reset(seed=0)
    workers = EnvWorkers("Pendulum-v1", [env_state(env)] * 2, 2, (env.observation_space, env.action_space))
    try:
        workers.procs[1].kill()
        workers.procs[1].join()
        with pytest.raises(RuntimeError, match=r"env worker 1 \(the simulators of runs 1..1\) died"):
            workers.step([env.action_space.sample(), env.action_space.sample()])
    finally:
        workers.close()
        env.close()
