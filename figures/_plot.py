"""Shared plotting helpers: read a study's table, mean curves with 95 % bootstrap bands, save PNG + PDF.

Figures only aggregate (means over MDPs or seeds, bootstrap confidence intervals, areas under curves);
every number they show was computed by a study and stored in its parquet table.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are files; never open a window

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import stats  # noqa: E402

# The one study -> figure map (studies do not name their figures: figures read results, not the reverse).
FIGURES = {
    "oscillation": "figures.fig2_oscillation",
    "control": "figures.fig3_control",
    "actions": "figures.fig4_actions",
    "noisy-teacher": "figures.fig5_noisy_teacher",
    "chain": "figures.fig6_chain",
    "multi-teacher": "figures.fig_multi_teacher",
    "dual": "figures.fig_dual",
    "exploration": "figures.fig_exploration",
    "mujoco-rules": "figures.fig_mujoco_rules",
}

CONFIDENCE = 0.95
RESAMPLES = 1000


def read_config(path: str | Path) -> dict:
    """The study config a results table was written with (the ``"distlab"`` schema metadata that
    ``distlab.io.write_parquet`` stores; read here with pyarrow, since figures import nothing of distlab);
    ``{}`` when the file or the key is missing."""
    import json

    import pyarrow.parquet as pq

    if not Path(path).exists():
        return {}
    meta = pq.read_schema(path).metadata or {}
    config = json.loads(meta.get(b"distlab", b"{}")).get("config", {})
    return config if isinstance(config, dict) else {}


def read(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no results table at {path}; run `distlab study` first")
    return pd.read_parquet(path)


def mean_and_ci(values: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Column means of ``values`` (units x points) and their 95 % percentile-bootstrap interval over units.

    Uses ``scipy.stats.bootstrap`` (resampling the rows, i.e. the MDPs or seeds). With a single unit,
    or a column without spread, the interval collapses to the mean.
    """
    values = np.asarray(values, dtype=float)
    if values.ndim == 1:
        values = values[:, None]
    mean = np.nanmean(values, axis=0)
    if values.shape[0] < 2 or np.all(np.nanstd(values, axis=0) == 0):
        return mean, mean.copy(), mean.copy()
    res = stats.bootstrap(
        (values,), np.mean, axis=0, confidence_level=CONFIDENCE, n_resamples=RESAMPLES, method="percentile",
        vectorized=True, batch=100, random_state=np.random.default_rng(seed),
    )
    low = np.where(np.isfinite(res.confidence_interval.low), res.confidence_interval.low, mean)
    high = np.where(np.isfinite(res.confidence_interval.high), res.confidence_interval.high, mean)
    return mean, low, high


def curve(table: pd.DataFrame, x: str, y: str, unit: str = "mdp") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x values, mean, ci_low, ci_high)`` of ``y`` against ``x`` over the ``unit``s of ``table``."""
    wide = table.pivot_table(index=unit, columns=x, values=y, aggfunc="mean")
    mean, low, high = mean_and_ci(wide.to_numpy())
    return wide.columns.to_numpy(), mean, low, high


def plot_band(ax, table, x, y, *, label, color=None, unit="mdp", linestyle="-"):
    """Mean of ``y`` over units against ``x`` with its 95 % bootstrap band."""
    xs, mean, low, high = curve(table, x, y, unit)
    (line,) = ax.plot(xs, mean, label=label, color=color, linestyle=linestyle, lw=1.6)
    ax.fill_between(xs, low, high, color=line.get_color(), alpha=0.2, lw=0)
    return line


def band_note() -> str:
    return f"lines: mean; bands: {int(CONFIDENCE * 100)}% bootstrap CI over MDPs"


def save(fig, out: str | Path, stem: str) -> list[Path]:
    """Write ``out/stem.png`` (120 dpi) and ``out/stem.pdf``; return both paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.png", out / f"{stem}.pdf"]
    fig.savefig(paths[0], dpi=120, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    plt.close(fig)
    return paths


def draw(name: str, results: str | Path, out: str | Path) -> list[Path]:
    """Draw study ``name``'s figure(s) from its ``results.parquet``; return the files written."""
    if name not in FIGURES:
        raise ValueError(f"no figure for study {name!r}; valid: {', '.join(FIGURES)}")
    module = importlib.import_module(FIGURES[name])
    return module.main(results, out)


def cli(name: str) -> None:
    """``python figures/figX.py RESULTS.parquet [OUT_DIR]``: the command line of every figure script."""
    import argparse

    parser = argparse.ArgumentParser(description=f"Draw the {name} figure from its results table.")
    parser.add_argument("results", help="the study's results.parquet")
    parser.add_argument("out", nargs="?", default="figures/out", help="output folder (PNG and PDF)")
    args = parser.parse_args()
    for path in draw(name, args.results, args.out):
        print(f"wrote {path}")
