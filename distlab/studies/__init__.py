"""The studies that reproduce the papers' experiments, one module each, run through :mod:`distlab.runner`.

A study module defines

* ``Config``: a dataclass with the scale of the experiment (MDPs, steps, grid of settings); ``CONFIGS``
  maps ``"smoke"`` (a few MDPs, a few steps: tests), ``"quick"`` (the same shape in a minute or two)
  and ``"full"`` (the paper's scale, or the largest that fits ~30 min on 2 cores) to one;
* ``cells(config) -> list[dict]``: the declarative grid; every cell is self-contained (it carries all
  the parameters ``run_cell`` needs, seeds included);
* ``run_cell(cell) -> DataFrame``: a tidy table for one cell (top-level, picklable).

Which figure draws a study is written once, in ``figures._plot.FIGURES`` (study name -> figure
module): the figures read the studies' results, never the other way round, so a study does not name
its figure.

:func:`run_study` runs one through the resumable runner and writes
``<out>/<scale>/<name>/results.parquet``.
"""

from __future__ import annotations

import importlib
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, fields, replace
from pathlib import Path

import pandas as pd

__all__ = ["STUDIES", "SCALES", "RULE_AXES", "names", "get", "describe", "run_study", "results_path", "rule_axis",
           "studies_with_rule_axis", "with_rules", "tabular_names", "compile_notice", "warm_kernel_cache"]

# name -> module (imported lazily: a study may pull in heavy kernels)
STUDIES = {
    "oscillation": "distlab.studies.oscillation",
    "control": "distlab.studies.control",
    "actions": "distlab.studies.actions",
    "noisy-teacher": "distlab.studies.noisy_teacher",
    "chain": "distlab.studies.chain",
    "multi-teacher": "distlab.studies.multi_teacher",
    "dual": "distlab.studies.dual",
    "exploration": "distlab.studies.exploration",
    "mujoco-rules": "deep.rules_study",
}
SCALES = ("smoke", "quick", "full")
# The Config fields that are a study's rule axis: a tuple of rules ("rules") or the one rule it runs ("rule").
RULE_AXES = ("rules", "rule")


def names() -> list[str]:
    return list(STUDIES)


def get(name: str):
    """The module of study ``name``; ``ValueError`` listing the valid names if there is none."""
    if name not in STUDIES:
        raise ValueError(f"unknown study {name!r}; valid studies: {', '.join(STUDIES)}")
    return importlib.import_module(STUDIES[name])


def describe(name: str) -> str:
    """The first line of the study module's docstring, without the leading ``name:``."""
    return (get(name).__doc__ or "").strip().splitlines()[0].removeprefix(f"{name}:").strip()


def results_path(out: str | Path, name: str, scale: str) -> Path:
    """``<out>/<scale>/<name>/results.parquet``: where :func:`run_study` writes its table."""
    return Path(out) / scale / name / "results.parquet"


def rule_axis(name: str) -> str | None:
    """The field of study ``name``'s ``Config`` that holds the rules it runs (see :data:`RULE_AXES`), or None
    for a study whose rules are fixed roles (dual's DPD against RL) or that runs no rule (multi-teacher)."""
    config_fields = {f.name for f in fields(get(name).Config)}
    return next((axis for axis in RULE_AXES if axis in config_fields), None)


def studies_with_rule_axis() -> list[str]:
    return [n for n in STUDIES if rule_axis(n) is not None]


def with_rules(name: str, config, rule_names: Sequence[str]):
    """``config`` of study ``name`` running ``rule_names`` instead of its own rules (``--rule``).

    ``ValueError`` naming the valid choices for an unknown rule, for a study without a rule axis, and
    for more than one rule where the study runs one."""
    from distlab import rules

    rule_names = list(rule_names)
    axis = rule_axis(name)
    if axis is None:
        raise ValueError(f"study {name!r} has no rule axis, so it takes no --rule; studies with one: "
                         f"{', '.join(studies_with_rule_axis())}")
    if not rule_names:
        raise ValueError("give at least one rule")
    for rule in rule_names:
        rules.get(rule)  # ValueError listing the registered rules
    if len(set(rule_names)) != len(rule_names):
        raise ValueError(f"a rule is given twice: {', '.join(rule_names)}")
    if axis == "rule":
        if len(rule_names) != 1:
            raise ValueError(f"study {name!r} runs one rule at a time (its config's 'rule'); got {len(rule_names)}: "
                             f"{', '.join(rule_names)}; studies that take several: "
                             f"{', '.join(n for n in STUDIES if rule_axis(n) == 'rules')}")
        return replace(config, rule=rule_names[0])
    return replace(config, rules=tuple(rule_names))


def tabular_names() -> list[str]:
    """The studies of the tabular backend (they run distlab's numba kernels; the deep ones do not)."""
    return [n for n, module in STUDIES.items() if module.startswith("distlab.studies.")]


# Measured into an empty cache: control at smoke scale 172 s, every tabular study 219 s (2 cores, load ~3;
# issue 18 measured ~40 s on an idle machine). Most kernels are shared, so the first study pays nearly all of it.
_COMPILE_SECONDS = "about a minute on an idle 2-core machine, about 3 under load"


def compile_notice(name: str) -> str | None:
    """The line to print before study ``name`` runs when numba's cache holds no compiled kernel yet.

    Why: the first run compiles the kernels before its first cell can finish, and a progress bar
    sitting at 0 % for minutes reads as a hang. None for a warm cache and for deep studies."""
    from distlab import kernel_cache_is_warm

    if name not in tabular_names() or kernel_cache_is_warm():
        return None
    return (f"distlab: first run of these sources: compiling the numba kernels ({_COMPILE_SECONDS}) before the "
            f"first cell finishes; they are cached for later runs. `distlab warm-cache` compiles them ahead.")


def warm_kernel_cache(names: Sequence[str] | None = None, *, log=None) -> dict[str, float]:
    """Compile (into numba's cache) the kernels of the tabular studies ``names`` (default: all) by running
    each at smoke scale in this process, results thrown away; ``{study: seconds}``.

    Why smoke scale: a kernel is compiled once per signature, and the smoke configs take the code paths
    (and argument types) of the quick and full ones in seconds once compiled. ``scripts/setup.sh`` runs it, so
    that the first real study starts at once."""
    names = tabular_names() if names is None else list(names)
    for name in names:
        if name not in tabular_names():
            raise ValueError(f"not a tabular study: {name!r}; valid: {', '.join(tabular_names())}")
    seconds = {}
    with tempfile.TemporaryDirectory(prefix="distlab-warm-") as out:
        for name in names:
            start = time.perf_counter()
            run_study(name, "smoke", out, workers=1, progress=False)
            seconds[name] = time.perf_counter() - start
            if log is not None:
                log(f"{name}: {seconds[name]:.1f} s")
    return seconds


def run_study(
    name: str,
    scale: str = "quick",
    out: str | Path = "results",
    *,
    backend: str = "local",
    workers: int | None = None,
    progress: bool = True,
    config=None,
    ray_address: str | None = None,
    stack: bool | None = None,
    device: str | None = None,
    env_workers: int | None = None,
) -> pd.DataFrame:
    """Run study ``name`` at ``scale`` (or with an explicit ``config``) and return its tidy table.

    ``stack`` / ``device`` / ``env_workers`` (None: the config's own) set the config fields of those names, for studies
    that have them (``mujoco-rules``): ``stack`` runs each group of cells (``module.group_of``) as one
    task (``module.run_group``: one stacked process) whose cells are written as single cells are; on
    Ray each task then asks for ``module.gpu_share(config)`` of a GPU (0 on CPU)."""
    module = get(name)
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; valid: {', '.join(SCALES)}")
    config = config if config is not None else module.CONFIGS[scale]
    for option, value in (("stack", stack), ("device", device), ("env_workers", env_workers)):
        if value is None:
            continue
        if option not in {f.name for f in fields(config)}:
            having = [n for n in STUDIES if option in {f.name for f in fields(get(n).Config)}]
            raise ValueError(f"study {name!r} has no {option} option; studies with one: {', '.join(having)}")
        config = replace(config, **{option: value})
    grouped = {}
    if getattr(config, "stack", False):
        grouped = dict(run_group=module.run_group, group_of=module.group_of,
                       gpus=module.gpu_share(config) if backend == "ray" else 0.0)
    notice = compile_notice(name) if progress else None
    if notice:
        print(notice, file=sys.stderr, flush=True)
    from distlab.runner import run_grid

    return run_grid(
        name,
        module.cells(config),
        module.run_cell,
        Path(out) / scale,
        backend=backend,
        workers=workers,
        progress=progress,
        config=dict(study=name, scale=scale, **asdict(config)),
        ray_address=ray_address,
        **grouped,
    )
