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
from dataclasses import asdict
from pathlib import Path

import pandas as pd

__all__ = ["STUDIES", "SCALES", "names", "get", "describe", "run_study", "results_path"]

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
) -> pd.DataFrame:
    """Run study ``name`` at ``scale`` (or with an explicit ``config``) and return its tidy table."""
    module = get(name)
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; valid: {', '.join(SCALES)}")
    config = config if config is not None else module.CONFIGS[scale]
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
    )
