"""Speed figures (``distlab bench``): JSON lines, each measured against its baseline in the same run.

Benchmarks are grouped; ``distlab bench`` runs the tabular groups, ``distlab bench deep`` the deep one.
A group is a function yielding dict records; register one with :func:`benchmark`.
Speed targets live here, never in timed tests: the machines are shared and noisy.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator

import numpy as np

__all__ = ["benchmark", "run", "GROUPS", "best_time"]

GROUPS: dict[str, Callable[[], Iterator[dict]]] = {}
# Groups that live in other modules, imported only when asked for (deep pulls in torch).
GROUP_MODULES = {"taxonomy": "distlab.sampled_bench", "deep": "deep.bench"}
TABULAR_GROUPS = ("foundation", "taxonomy")


def benchmark(group: str):
    """Decorator registering a generator of result records under ``group``."""

    def wrap(fn):
        GROUPS[group] = fn
        return fn

    return wrap


def best_time(fn: Callable[[], object], repeat: int = 5, number: int = 1) -> float:
    """Best wall time of ``number`` calls of ``fn`` over ``repeat`` trials (seconds per call)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - t0) / number)
    return best


@benchmark("foundation")
def foundation_benchmarks() -> Iterator[dict]:
    import mdps
    from distlab import exact

    mdps.random_gridworlds(4, seed=0)  # compile (or load numba's cache) before timing
    n = 1000
    t = best_time(lambda: mdps.random_gridworlds(n, size=20, seed=12345), repeat=3)
    yield dict(benchmark="gridworld_generation", size=20, n_mdps=n, seconds=t, mdps_per_second=n / t)

    batch = mdps.random_gridworlds(50, size=20, seed=7)
    rng = np.random.default_rng(0)
    pis = rng.dirichlet(np.ones(batch.n_actions), size=(len(batch), batch.n_states))
    mdp_list = list(batch)
    exact.evaluate(mdp_list[0], pis[0])
    dense = [m.to_dense() for m in mdp_list]

    def sparse_all():
        for m, pi in zip(mdp_list, pis):
            exact.evaluate(m, pi)

    def dense_all():
        # The same problem, densely: build I - P_pi and solve for V and for the visits.
        S = batch.n_states
        eye = np.eye(S)
        for (P, R, mu0), pi in zip(dense, pis):
            M = eye - np.einsum("sa,sat->st", pi, P)
            V = np.linalg.solve(M, (pi * R).sum(1))
            np.linalg.solve(M.T, mu0)
            R + P @ V

    t_sparse = best_time(sparse_all) / len(mdp_list)
    t_dense = best_time(dense_all) / len(mdp_list)
    yield dict(
        benchmark="exact_evaluate",
        size=20,
        n_states=batch.n_states,
        evaluations_per_second=1 / t_sparse,
        dense_numpy_evaluations_per_second=1 / t_dense,
        speedup_vs_dense=t_dense / t_sparse,
    )
    exact.evaluate_batch(batch, pis)
    t_batch = best_time(lambda: exact.evaluate_batch(batch, pis)) / len(mdp_list)
    yield dict(benchmark="exact_evaluate_batch", size=20, n_mdps=len(mdp_list), evaluations_per_second=1 / t_batch)


def check_groups(groups: list[str]) -> None:
    """Raise ``ValueError`` naming unknown groups and the valid ones."""
    valid = sorted(set(GROUPS) | set(GROUP_MODULES))
    unknown = [g for g in groups if g not in valid]
    if unknown:
        raise ValueError(f"unknown benchmark group(s) {unknown}; valid: {', '.join(valid)}")


def run(groups: list[str], out=None, options: dict | None = None) -> list[dict]:
    """Run the named groups, printing one JSON line per record to ``out`` (stdout); return the records.

    ``options`` (e.g. ``device``, ``quick`` of the deep group) are passed to every group as keywords; a
    group that does not take one of them is refused with ValueError naming it.
    """
    import importlib
    import inspect

    check_groups(groups)
    out = sys.stdout if out is None else out
    options = options or {}
    records = []
    for g in groups:
        if g not in GROUPS:
            importlib.import_module(GROUP_MODULES[g])
        accepted = inspect.signature(GROUPS[g]).parameters
        unknown = [name for name in options if name not in accepted]
        if unknown:
            raise ValueError(f"benchmark group {g!r} takes no option(s) {unknown}; it takes: {', '.join(accepted) or 'none'}")
        for record in GROUPS[g](**options):
            record = {"group": g, **record}
            print(json.dumps(record), file=out, flush=True)
            records.append(record)
    return records
