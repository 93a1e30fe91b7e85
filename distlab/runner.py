"""Run a study's grid of cells, resumably, on a local process pool or on Ray.

A study is data (bsuite style): a list of *cells*, each a dict of JSON-serialisable parameters (family x
rule x control x temperature x noise x seed ...), and one top-level function ``run_cell(cell) ->
DataFrame``. :func:`run_grid` runs every cell once and writes it atomically as its own parquet file

    out_dir/<name>/cells/<cell_hash(cell)>.parquet

with the cell's parameters added as columns, so a rerun skips finished cells and a run killed mid-way
resumes where it stopped. The final table, the cells concatenated in the order of ``cells`` (not in the
order they finished), is written atomically to ``out_dir/<name>/results.parquet`` with the config, the
package version and the git commit. Both the resumed and the uninterrupted run read every cell back from
its parquet file, so they give the *same* table; the table does not depend on the number of workers
because every cell seeds itself from its own parameters.

Why processes and not threads: the tabular kernels are numba ``prange`` loops that already use threads;
each worker is limited to ``cores // workers`` numba threads so that workers x threads <= cores.

Each cell's file records how long it took (``timing``: wall ``seconds`` and ``cpu_seconds``, the
process time of the worker, all its threads) in its metadata, and ``results.parquet`` their sums, so a
study's cost can be read on a machine shared with other work, where wall time alone says little.

Workers die with the study: a pool worker blocks on its task queue, so a main process killed without
cleanup (``kill -9``, the OOM killer) would leave it running cells nobody collects. Each worker is a
direct child of the study's process (``spawn``), asks the kernel for SIGKILL when that parent dies
(Linux ``prctl(PR_SET_PDEATHSIG)``) and, on any platform, watches its parent from a daemon thread. The
cells it finished stay on disk, so a rerun resumes as after any other kill.

User-registered rules reach the workers: a worker process imports :mod:`distlab.rules` afresh and
knows only the built-in rules, so every rule registered in the calling process travels with each cell
and is registered there before the cell runs (a rule registered in a notebook runs in every study, on
any number of workers).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

__all__ = ["run_grid", "cell_hash", "cell_path", "BACKENDS", "ray_resources", "work_dir"]

BACKENDS = ("local", "ray")


def cell_hash(cell: dict) -> str:
    """Stable 16-hex-digit name of a cell: SHA-1 of its canonical JSON (sorted keys)."""
    return hashlib.sha1(_canonical_json(cell).encode()).hexdigest()[:16]


def cell_path(out_dir: str | Path, name: str, cell: dict) -> Path:
    """Where :func:`run_grid` writes (and looks for) the finished ``cell``."""
    return Path(out_dir) / name / "cells" / f"{cell_hash(cell)}.parquet"


def _canonical_json(cell: dict) -> str:
    try:
        return json.dumps(cell, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"cell {cell!r} is not JSON-serialisable: {err}") from None


def _column_value(value):
    """Cell parameters become columns; lists and dicts are stored as their JSON text."""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, sort_keys=True)
    return value


def _limit_threads(threads: int) -> None:
    """Cap numba's (and BLAS's) threads in this process; before numba is imported the env var does it."""
    threads = max(1, int(threads))
    for var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    if "numba" in sys.modules:
        import numba

        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_PARENT_POLL_SECONDS = 0.5


def _kill_me_when_parent_dies() -> bool:
    """Ask Linux to SIGKILL this process when its parent dies; False where that is not available.

    The kernel delivers the signal even while a numba kernel holds the GIL, which the watchdog thread
    of :func:`_exit_with_parent` cannot interrupt."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent: int, poll: float) -> None:
    """Exit this process once it is no longer ``parent``'s child (an orphan is re-parented)."""
    while os.getppid() == parent:
        time.sleep(poll)
    os._exit(1)  # no cleanup to run: finished cells are on disk, the cell in progress is redone on rerun


def _exit_with_parent(parent: int, poll: float = _PARENT_POLL_SECONDS) -> None:
    """Make this worker exit when ``parent`` (the study's process) dies, however it dies.

    Linux: the parent-death signal; everywhere: a daemon thread polling ``os.getppid()`` (between kernel
    calls). Checked once right away, as the parent may have died before the signal was asked for."""
    _kill_me_when_parent_dies()
    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent, poll), name="distlab-parent-watch", daemon=True).start()


def _init_worker(threads: int, parent: int) -> None:
    """Pool initializer: cap the worker's threads and tie its life to the study's process."""
    _limit_threads(threads)
    _exit_with_parent(parent)


def _registered_rules() -> tuple:
    """Every rule registered in this process (the user's included), in registration order."""
    from distlab import rules

    return tuple(rules.get(name) for name in rules.names())


def _register_missing(registered: tuple) -> None:
    """Register in this (worker) process the rules of ``registered`` it does not know yet."""
    if not registered:
        return
    from distlab import rules

    for rule in registered:
        if rule.name not in rules.names():  # registering a base rule also adds its "+r" variant
            rules.register(rule)


def _run_one(run_cell: Callable[[dict], pd.DataFrame], cell: dict, path: str, config: dict, threads: int | None,
             registered: tuple = ()) -> str:
    """Run one cell, add its parameters as columns and write it atomically to ``path``."""
    if threads is not None:
        _limit_threads(threads)
    _register_missing(registered)
    wall, cpu = time.perf_counter(), time.process_time()
    table = run_cell(dict(cell))
    timing = dict(seconds=time.perf_counter() - wall, cpu_seconds=time.process_time() - cpu)
    _write_cell(cell, path, table, dict(config, cell=cell, timing=timing))
    return path


def work_dir(path: str | Path) -> Path:
    """The folder a grouped task may keep a cell's unfinished work in (``cells/HASH.run/``, e.g. checkpoints of
    a long stacked group): given to ``run_group``, kept while the cell is unfinished (a killed task resumes
    from it), removed once the cell's file is written."""
    return Path(path).with_suffix(".run")


def _run_group(run_group: Callable[[list[dict], list[Path]], list[pd.DataFrame]], cells: list[dict], paths: list[str],
               config: dict, threads: int | None, registered: tuple = ()) -> list[str]:
    """Run a group of cells as one task (``run_group(cells, work_dirs) -> one table per cell``, e.g. a study
    that trains them as one stacked process, checkpointing cell i in ``work_dirs[i]``) and write each cell's
    file exactly as :func:`_run_one` writes it, then remove the work dirs; each cell's timing is the group's,
    divided evenly among its cells (``group_cells`` records how many)."""
    if threads is not None:
        _limit_threads(threads)
    _register_missing(registered)
    wall, cpu = time.perf_counter(), time.process_time()
    tables = run_group([dict(c) for c in cells], [work_dir(p) for p in paths])
    if not isinstance(tables, (list, tuple)) or len(tables) != len(cells):
        raise TypeError(f"run_group must return one DataFrame per cell ({len(cells)}); got {type(tables).__name__}")
    n = len(cells)
    timing = dict(seconds=(time.perf_counter() - wall) / n, cpu_seconds=(time.process_time() - cpu) / n, group_cells=n)
    for cell, path, table in zip(cells, paths, tables):
        _write_cell(cell, path, table, dict(config, cell=cell, timing=timing))
    for path in paths:  # every cell is on disk: its unfinished work is not needed any more
        shutil.rmtree(work_dir(path), ignore_errors=True)
    return list(paths)


def _write_cell(cell: dict, path: str, table, metadata: dict) -> None:
    from distlab.io import write_parquet

    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"run_cell must return a pandas DataFrame; got {type(table).__name__} for cell {cell!r}")
    clash = sorted(set(cell) & set(table.columns))
    if clash:
        raise ValueError(f"run_cell's table has columns {clash} that are also cell parameters of {cell!r}")
    table = table.reset_index(drop=True)
    params = pd.DataFrame({k: [_column_value(v)] * len(table) for k, v in cell.items()}, index=table.index)
    write_parquet(pd.concat([params, table], axis=1), path, config=metadata)


def _groups(pending, group_of) -> list[tuple[list[dict], list[str]]]:
    """The pending (cell, path) pairs grouped by ``group_of(cell)``, in the order of their first cell."""
    groups: dict = {}
    for cell, path in pending:
        cells, paths = groups.setdefault(group_of(cell), ([], []))
        cells.append(cell)
        paths.append(path)
    return list(groups.values())


def _default_workers() -> int:
    return max(1, (os.cpu_count() or 1))


def _progress_bar(total: int, name: str, enabled: bool, initial: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=name, unit="cell", disable=not enabled, dynamic_ncols=True)


def _tasks(pending, run_cell, run_group, group_of):
    """(function, cells argument, paths argument, cell count) per task: one per cell, or one per group."""
    if run_group is None:
        return [(_run_one, run_cell, cell, path, 1) for cell, path in pending]
    return [(_run_group, run_group, cells, paths, len(cells)) for cells, paths in _groups(pending, group_of)]


def _run_local(pending, run_cell, config, workers, bar, run_group=None, group_of=None):
    tasks = _tasks(pending, run_cell, run_group, group_of)
    if workers == 1:
        # In this process: no pool to start, and a debugger or profiler sees the cell.
        for fn, task, cells, paths, n in tasks:
            fn(task, cells, paths, config, None)
            bar.update(n)
        return
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    threads = max(1, _default_workers() // workers)
    # spawn: a forked child would inherit numba's running thread pool, which is not fork-safe; and unlike
    # forkserver's, spawned workers are children of this process, so they can die with it (_exit_with_parent).
    context = mp.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker, initargs=(threads, os.getpid())) as pool:
        registered = _registered_rules()
        futures = {pool.submit(fn, task, cells, paths, config, threads, registered): n for fn, task, cells, paths, n in tasks}
        pending_futures = set(futures)
        while pending_futures:
            # FIRST_COMPLETED, not FIRST_EXCEPTION: the latter only returns when every cell is done,
            # which froze the progress bar until the end of the run.
            done, pending_futures = wait(pending_futures, return_when=FIRST_COMPLETED)
            for future in done:
                future.result()  # re-raise a failed cell's exception here; finished cells stay on disk
                bar.update(futures[future])


def ray_resources(gpus: float) -> dict:
    """The resources a Ray task of the runner asks for: one CPU, and ``gpus`` of a GPU when > 0 (a share,
    e.g. 0.5: Ray packs two such tasks onto one GPU; a cluster's scheduler places them on its GPUs)."""
    if not gpus >= 0:
        raise ValueError(f"gpus must be >= 0 (a share of one GPU per task, e.g. 0.5); got {gpus!r}")
    return dict(num_cpus=1, num_gpus=gpus) if gpus > 0 else dict(num_cpus=1)


def _run_ray(pending, run_cell, config, workers, bar, ray_address, run_group=None, group_of=None, gpus: float = 0.0):
    try:
        import ray
    except ImportError:
        raise ImportError("backend='ray' needs ray: pip install 'distlab[ray]' (or use backend='local')") from None
    if not ray.is_initialized():
        ray.init(address=ray_address, num_cpus=workers if ray_address is None else None, include_dashboard=False, log_to_driver=False)
    registered = _registered_rules()
    refs = {}
    for fn, task, cells, paths, n in _tasks(pending, run_cell, run_group, group_of):
        refs[ray.remote(**ray_resources(gpus))(fn).remote(task, cells, paths, config, 1, registered)] = n
    waiting = list(refs)
    while waiting:
        done, waiting = ray.wait(waiting, num_returns=1)
        ray.get(done)
        bar.update(sum(refs[d] for d in done))


def run_grid(
    name: str,
    cells: list[dict],
    run_cell: Callable[[dict], pd.DataFrame],
    out_dir: str | Path,
    *,
    backend: str = "local",
    workers: int | None = None,
    progress: bool = True,
    config: dict | None = None,
    ray_address: str | None = None,
    run_group: Callable[[list[dict], list[Path]], list[pd.DataFrame]] | None = None,
    group_of: Callable[[dict], object] | None = None,
    gpus: float = 0.0,
) -> pd.DataFrame:
    """Run ``run_cell`` on every cell not yet finished under ``out_dir/name``; return the full table.

    Args:
        name: the study's name (a folder under ``out_dir``).
        cells: the grid, one dict of JSON-serialisable parameters per cell; no duplicates.
        run_cell: a top-level (picklable) function ``cell -> DataFrame``; it must seed itself from the
            cell so that results do not depend on where or in which order cells run.
        out_dir: the results root.
        backend: ``"local"`` (a process pool of ``workers``) or ``"ray"`` (Ray tasks; a local Ray
            instance with ``workers`` CPUs when ``ray_address`` is None).
        workers: parallel cells; default: the number of cores. ``1`` runs the cells in this process.
        progress: show a tqdm bar over cells.
        config: stored with every cell and with ``results.parquet`` (e.g. the study's config).
        run_group: run the pending cells in groups, one task per group: ``run_group(cells, work_dirs)``
            returns one table per cell (e.g. a study training a group as one stacked process); each cell is
            written exactly as a single cell would be, so a rerun, the final table and figures see no
            difference. ``work_dirs[i]`` (:func:`work_dir`) is where the task may keep cell i's unfinished
            work (checkpoints): a rerun of a killed task finds it there; it is removed once the cells are written.
        group_of: ``cell -> key``: the cells of one group share a key (needed with ``run_group``).
        gpus: the share of a GPU each Ray task asks for (``num_gpus``; 0: none). Ray backend only.

    Returns the table of all cells (cell parameters first), also written to ``out_dir/name/results.parquet``.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"name must be a plain folder name; got {name!r}")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1; got {workers!r}")
    cells = list(cells)
    if not cells:
        raise ValueError("cells is empty: nothing to run")
    for cell in cells:
        if not isinstance(cell, dict):
            raise ValueError(f"every cell must be a dict of parameters; got {cell!r}")
    hashes = [cell_hash(c) for c in cells]  # also checks that every cell is JSON-serialisable
    if len(set(hashes)) != len(hashes):
        dup = next(c for c, h in zip(cells, hashes) if hashes.count(h) > 1)
        raise ValueError(f"duplicate cell {dup!r}: every cell must be unique")
    config = json.loads(json.dumps(config or {}, default=str))
    workers = workers or _default_workers()
    if (run_group is None) != (group_of is None):
        raise ValueError("run_group and group_of go together: give both (grouped cells) or neither")
    if gpus and backend != "ray":
        raise ValueError(f"gpus={gpus!r} asks Ray for a GPU share per task; backend {backend!r} has no such request (use backend='ray')")
    ray_resources(gpus)

    paths = [cell_path(out_dir, name, c) for c in cells]
    pending = [(c, str(p)) for c, p in zip(cells, paths) if not p.exists()]
    workers = min(workers, max(1, len(pending)))
    with _progress_bar(len(cells), name, progress, initial=len(cells) - len(pending)) as bar:
        if pending:
            if backend == "local":
                _run_local(pending, run_cell, config, workers, bar, run_group, group_of)
            else:
                _run_ray(pending, run_cell, config, workers, bar, ray_address, run_group, group_of, gpus)
    return _collect(name, cells, paths, out_dir, config)


def _collect(name, cells, paths, out_dir, config) -> pd.DataFrame:
    """Concatenate the finished cells in the order of ``cells`` and write ``results.parquet``."""
    from distlab.io import read_parquet_metadata, write_parquet

    table = pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
    timings = [read_parquet_metadata(p).get("config", {}).get("timing", {}) for p in paths]
    timing = {k: sum(t.get(k, 0.0) for t in timings) for k in ("seconds", "cpu_seconds")}
    write_parquet(table, Path(out_dir) / name / "results.parquet",
                  config=dict(config, name=name, n_cells=len(cells), cells_timing=timing))
    return table
