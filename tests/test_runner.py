"""The study runner: skip finished cells, resume after a kill, same table for any worker count, Ray."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from distlab.io import read_parquet_metadata
from distlab.runner import cell_hash, cell_path, run_grid

CELLS = [dict(family="a", seed=s, scale=x) for s in range(3) for x in (1.0, 2.5)]


def monte_carlo_cell(cell: dict) -> pd.DataFrame:
    """A tidy per-cell table seeded only by the cell: sample means of N(scale, 1) at growing n."""
    rng = np.random.default_rng([cell["seed"], int(cell["scale"] * 10)])
    x = rng.normal(cell["scale"], 1.0, size=64)
    delay = cell.get("delay", 0.0)
    if delay:
        time.sleep(delay)
    n = np.array([1, 4, 16, 64])
    return pd.DataFrame(dict(n=n, mean=[x[:k].mean() for k in n]))


def expected_table(cells) -> pd.DataFrame:
    """The table run_grid must produce, built independently of the runner."""
    parts = []
    for c in cells:
        t = monte_carlo_cell(c)
        parts.append(pd.concat([pd.DataFrame({k: [v] * len(t) for k, v in c.items()}), t], axis=1))
    return pd.concat(parts, ignore_index=True)


def rule_components_cell(cell: dict) -> pd.DataFrame:
    """The components of the cell's rule as this (worker) process's registry knows them."""
    from distlab import rules

    rule = rules.get(cell["rule"])
    return pd.DataFrame(dict(control=[rule.control], loss=[rule.loss], env_reward=[rule.env_reward], pid=[os.getpid()]))


def test_user_registered_rules_reach_worker_processes(tmp_path):
    """A rule registered in the calling process runs in spawned workers (which import the registry afresh)."""
    from distlab import rules

    rules.register(rules.Rule("runner-test-rule", control="uniform", loss="kl", doc="test"), overwrite=True)
    cells = [dict(rule="runner-test-rule", i=i) for i in range(2)] + [dict(rule="runner-test-rule+r", i=2)]
    table = run_grid("rules", cells, rule_components_cell, tmp_path, workers=2, progress=False)
    assert list(table["control"]) == ["uniform"] * 3 and list(table["loss"]) == ["kl"] * 3
    assert list(table["env_reward"]) == [False, False, True]
    assert os.getpid() not in set(table["pid"])  # the cells ran in worker processes


def test_table_has_cell_columns_in_cell_order_and_provenance(tmp_path):
    table = run_grid("demo", CELLS, monte_carlo_cell, tmp_path, workers=1, progress=False, config=dict(note="x"))
    pd.testing.assert_frame_equal(table, expected_table(CELLS))
    on_disk = pd.read_parquet(tmp_path / "demo" / "results.parquet")
    pd.testing.assert_frame_equal(on_disk, table)
    meta = read_parquet_metadata(tmp_path / "demo" / "results.parquet")
    assert meta["config"]["note"] == "x" and meta["config"]["n_cells"] == len(CELLS)
    cell_timings = [read_parquet_metadata(cell_path(tmp_path, "demo", c))["config"]["timing"] for c in CELLS]
    assert all(t["seconds"] >= 0 and t["cpu_seconds"] >= 0 for t in cell_timings)
    assert meta["config"]["cells_timing"]["seconds"] == pytest.approx(sum(t["seconds"] for t in cell_timings))
    assert "git_commit" in meta and "distlab_version" in meta


def test_finished_cells_are_skipped(tmp_path):
    run_grid("demo", CELLS[:2], monte_carlo_cell, tmp_path, workers=1, progress=False)
    # Overwrite a finished cell with a marker: a rerun must read it back, not recompute it.
    path = cell_path(tmp_path, "demo", CELLS[0])
    marked = pd.read_parquet(path).assign(mean=-123.0)
    marked.to_parquet(path)
    table = run_grid("demo", CELLS, monte_carlo_cell, tmp_path, workers=1, progress=False)
    assert (table["mean"] == -123.0).sum() == 4
    assert len(list((tmp_path / "demo" / "cells").glob("*.parquet"))) == len(CELLS)


def test_workers_one_and_two_give_identical_tables(tmp_path):
    one = run_grid("demo", CELLS, monte_carlo_cell, tmp_path / "one", workers=1, progress=False)
    two = run_grid("demo", CELLS, monte_carlo_cell, tmp_path / "two", workers=2, progress=False)
    pd.testing.assert_frame_equal(one, two)
    pd.testing.assert_frame_equal(two, expected_table(CELLS))


def test_killed_run_resumes_to_the_uninterrupted_table(tmp_path):
    cells = [dict(c, delay=0.4) for c in CELLS]
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_runner import monte_carlo_cell
        from distlab.runner import run_grid
        run_grid("demo", {cells!r}, monte_carlo_cell, {str(tmp_path / "killed")!r}, workers=1, progress=False)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    cells_dir = tmp_path / "killed" / "demo" / "cells"
    deadline = time.time() + 60
    while time.time() < deadline and len(list(cells_dir.glob("*.parquet"))) < 2:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    finished = len(list(cells_dir.glob("*.parquet")))
    assert 2 <= finished < len(cells), "the kill must land mid-way for this test to mean anything"
    assert not (tmp_path / "killed" / "demo" / "results.parquet").exists()
    resumed = run_grid("demo", cells, monte_carlo_cell, tmp_path / "killed", workers=1, progress=False)
    straight = run_grid("demo", cells, monte_carlo_cell, tmp_path / "straight", workers=1, progress=False)
    pd.testing.assert_frame_equal(resumed, straight)


def test_bad_input_is_rejected_before_work(tmp_path):
    with pytest.raises(ValueError, match="backend"):
        run_grid("demo", CELLS, monte_carlo_cell, tmp_path, backend="slurm")
    with pytest.raises(ValueError, match="duplicate"):
        run_grid("demo", [CELLS[0], dict(CELLS[0])], monte_carlo_cell, tmp_path)
    with pytest.raises(ValueError, match="JSON"):
        run_grid("demo", [dict(x=object())], monte_carlo_cell, tmp_path)
    assert not (tmp_path / "demo").exists()


def test_cell_hash_ignores_key_order():
    assert cell_hash(dict(a=1, b=2)) == cell_hash(dict(b=2, a=1))
    assert cell_hash(dict(a=1, b=2)) != cell_hash(dict(a=1, b=3))


def test_ray_backend_matches_local(tmp_path):
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Ray's workers must import this test module to unpickle monte_carlo_cell.
    path = os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env=dict(env_vars=dict(PYTHONPATH=path)))
    try:
        via_ray = run_grid("demo", CELLS, monte_carlo_cell, tmp_path / "ray", backend="ray", progress=False)
    finally:
        ray.shutdown()
    pd.testing.assert_frame_equal(via_ray, expected_table(CELLS))


def started_then_sleeping_cell(cell: dict) -> pd.DataFrame:
    """Mark the cell as started (a file), then run long enough to be killed mid-cell."""
    Path(cell["marks"], f"started-{cell['i']}").touch()
    time.sleep(cell["seconds"])
    return pd.DataFrame(dict(i=[cell["i"]]))


def _children(pid: int) -> set[int]:
    """The live processes whose parent is ``pid`` (Linux /proc)."""
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] not in "ZX":
            out.add(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    """Running (a zombie, dead but not yet reaped by a container's init, counts as dead)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in "ZX"


def _wait_until(condition, seconds: float) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the process tree from /proc")
def test_workers_exit_when_the_study_process_is_killed(tmp_path):
    """kill -9 of a study's process (no cleanup runs) takes its pool workers, and every other process it
    started (multiprocessing's resource tracker), down within seconds: no orphan keeps writing cells."""
    marks = tmp_path / "marks"
    marks.mkdir()
    cells = [dict(i=i, seconds=60.0, marks=str(marks)) for i in range(6)]
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_runner import started_then_sleeping_cell
        from distlab.runner import run_grid
        run_grid("demo", {cells!r}, started_then_sleeping_cell, {str(tmp_path / "out")!r}, workers=2, progress=False)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        assert _wait_until(lambda: len(list(marks.iterdir())) >= 2, 60), "both workers must be inside a cell"
        children = _children(proc.pid)
        assert len(children) >= 2, children
    finally:
        proc.kill()
        proc.wait()
    assert _wait_until(lambda: not any(_alive(pid) for pid in children), 5), \
        f"still alive 5 s after the kill: {sorted(p for p in children if _alive(p))}"
    assert not list((tmp_path / "out" / "demo" / "cells").glob("*.parquet"))  # they died mid-cell


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the process tree from /proc")
def test_a_worker_watchdog_exits_when_its_parent_dies_without_the_linux_signal():
    """The portable fallback alone (the parent-death signal switched off): a daemon thread that polls
    os.getppid() ends the process once its parent is gone."""
    child = textwrap.dedent(
        """
        import os, time
        from distlab import runner
        runner._kill_me_when_parent_dies = lambda: False
        runner._exit_with_parent(os.getppid(), poll=0.05)
        print("watching", flush=True)
        time.sleep(60)
        """
    )
    parent = textwrap.dedent(
        f"""
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", {child!r}], stdout=sys.stdout)
        print(child.pid, flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True)
    try:
        child_pid = int(proc.stdout.readline())
        assert proc.stdout.readline().strip() == "watching" and _alive(child_pid)
    finally:
        proc.kill()
        proc.wait()
    assert _wait_until(lambda: not _alive(child_pid), 5)


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_results_files_get_the_mode_the_umask_gives(tmp_path, umask):
    """Cells and results.parquet are as readable as any file the user creates (0644 under umask 022),
    not private like the 0600 atomic temporary file they are renamed from."""
    previous = os.umask(umask)
    try:
        run_grid("demo", CELLS[:2], monte_carlo_cell, tmp_path, workers=1, progress=False)
    finally:
        os.umask(previous)
    files = [tmp_path / "demo" / "results.parquet", *(tmp_path / "demo" / "cells").glob("*.parquet")]
    assert len(files) == 3
    assert {oct(f.stat().st_mode & 0o777) for f in files} == {oct(0o666 & ~umask)}


# ------------------------------------------------------------------------------------------- grouped cells
def monte_carlo_group(cells: list[dict], work_dirs: list) -> list[pd.DataFrame]:
    """A study that runs a group of cells as one task (as a stacked process would): one table per cell."""
    assert len(work_dirs) == len(cells) and all(d.suffix == ".run" for d in work_dirs)
    return [monte_carlo_cell(c) for c in cells]


def by_seed(cell: dict) -> int:
    return cell["seed"]


def test_grouped_cells_write_the_per_cell_files_and_table(tmp_path):
    table = run_grid("demo", CELLS, monte_carlo_cell, tmp_path, progress=False, workers=1,
                     run_group=monte_carlo_group, group_of=by_seed)
    pd.testing.assert_frame_equal(table, expected_table(CELLS))
    meta = read_parquet_metadata(cell_path(tmp_path, "demo", CELLS[0]))["config"]
    assert meta["cell"] == CELLS[0] and meta["timing"]["group_cells"] == 2  # seed 0: two scales
    # a rerun skips them, and an ungrouped run reads the same files
    pd.testing.assert_frame_equal(run_grid("demo", CELLS, monte_carlo_cell, tmp_path, progress=False, workers=1), table)
    with pytest.raises(ValueError, match="run_group and group_of go together"):
        run_grid("demo2", CELLS, monte_carlo_cell, tmp_path, progress=False, run_group=monte_carlo_group)
    with pytest.raises(ValueError, match="backend 'local' has no such request"):
        run_grid("demo2", CELLS, monte_carlo_cell, tmp_path, progress=False, gpus=0.5)


def test_ray_groups_request_their_gpu_share_and_run(tmp_path, monkeypatch):
    """On Ray each group is one task asking for ``gpus`` of a GPU (num_gpus): here a local instance that
    declares one (logical) GPU, so two half-GPU groups fit at once; the request is recorded where it is made."""
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    requests = []
    real_remote = ray.remote

    def recording_remote(*args, **options):
        requests.append(options)
        return real_remote(*args, **options)

    monkeypatch.setattr(ray, "remote", recording_remote)
    path = os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False, runtime_env=dict(env_vars=dict(PYTHONPATH=path)))
    try:
        table = run_grid("demo", CELLS, monte_carlo_cell, tmp_path, backend="ray", progress=False,
                         run_group=monte_carlo_group, group_of=by_seed, gpus=0.5)
    finally:
        ray.shutdown()
    pd.testing.assert_frame_equal(table, expected_table(CELLS))
    assert requests == [dict(num_cpus=1, num_gpus=0.5)] * 3  # one task per seed group
