"""Learning curves of deep runs: best (solid) and worst (dashed) ensemble member across seeds.

Reads every ``eval.parquet`` under a results folder (written by ``distlab train`` / ``distlab sweep``);
draws, per environment, the mean over seeds of the best member's mean deterministic return at each
evaluation (PIEKD Sec. 5.1 reports the best member, and the worst for context) with a 95 % bootstrap
confidence band over seeds (``scipy.stats.bootstrap``, percentile method: with few seeds BCa is
degenerate). With several environments an extra panel aggregates them by the interquartile mean (IQM,
Agarwal et al., 2021) of min-max normalised returns over (env, seed) runs, computed with
``scipy.stats.trim_mean(x, 0.25)`` (rliable is not used: it is not installed here).

    python -m figures.deep_learning_curves results/deep/hopper_short --out figures/out/deep_hopper_short.png

Prints the final numbers (per method: best and worst member, mean over seeds, and the seeds) as a
markdown table. No computation beyond aggregation.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import stats  # noqa: E402

__all__ = ["load_evals", "member_extremes", "mean_ci", "iqm_ci", "plot", "final_table", "markdown", "main"]


def load_evals(root: str | Path) -> pd.DataFrame:
    paths = sorted(Path(root).rglob("eval.parquet"))
    if not paths:
        raise FileNotFoundError(f"no eval.parquet under {root}; run `distlab train --out DIR` first")
    return pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)


def member_extremes(evals: pd.DataFrame) -> pd.DataFrame:
    """Per (env, method, seed, step): the best and the worst member's mean return."""
    g = evals.groupby(["env", "method", "seed", "step"]).mean_return
    return pd.DataFrame({"best": g.max(), "worst": g.min()}).reset_index()


def mean_ci(values: np.ndarray, confidence: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """Mean over seeds with a percentile-bootstrap interval (the point itself when there is one seed)."""
    values = np.asarray(values, dtype=float)
    if values.size < 2 or np.ptp(values) == 0:
        return float(values.mean()), float(values.mean()), float(values.mean())
    res = stats.bootstrap((values,), np.mean, confidence_level=confidence, method="percentile", n_resamples=2000,
                          random_state=np.random.default_rng(seed))
    return float(values.mean()), float(res.confidence_interval.low), float(res.confidence_interval.high)


def iqm_ci(values: np.ndarray, confidence: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """Interquartile mean (25 % trimmed mean) with a percentile-bootstrap interval."""
    values = np.asarray(values, dtype=float)
    iqm = lambda x, axis=-1: stats.trim_mean(x, 0.25, axis=axis)  # noqa: E731
    if values.size < 2 or np.ptp(values) == 0:
        return float(iqm(values)), float(iqm(values)), float(iqm(values))
    res = stats.bootstrap((values,), iqm, confidence_level=confidence, method="percentile", n_resamples=2000,
                          random_state=np.random.default_rng(seed))
    return float(iqm(values)), float(res.confidence_interval.low), float(res.confidence_interval.high)


def _curve(frame: pd.DataFrame, column: str, agg=mean_ci) -> pd.DataFrame:
    rows = [(step, *agg(group[column].to_numpy())) for step, group in frame.groupby("step")]
    return pd.DataFrame(rows, columns=["step", "mid", "low", "high"])


def plot(evals: pd.DataFrame, out: str | Path, title: str | None = None) -> Path:
    ext = member_extremes(evals)
    envs = sorted(ext.env.unique())
    methods = list(dict.fromkeys(ext.method))
    panels = envs + (["IQM (normalised)"] if len(envs) > 1 else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), squeeze=False)
    colours = dict(zip(methods, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for ax, env in zip(axes[0], envs):
        for method in methods:
            sub = ext[(ext.env == env) & (ext.method == method)]
            if sub.empty:
                continue
            n_seeds = sub.seed.nunique()
            best = _curve(sub, "best")
            ax.plot(best.step, best.mid, color=colours[method], label=f"{method} (best, {n_seeds} seeds)")
            ax.fill_between(best.step, best.low, best.high, color=colours[method], alpha=0.2)
            if sub.groupby(["seed", "step"]).size().gt(0).any() and (sub.best != sub.worst).any():
                worst = _curve(sub, "worst")
                ax.plot(worst.step, worst.mid, color=colours[method], ls="--", lw=1, label=f"{method} (worst)")
        ax.set_title(env)
        ax.set_xlabel("environment steps")
        ax.set_ylabel("mean deterministic return")
        ax.legend(fontsize=7)
    if len(envs) > 1:
        ax = axes[0][-1]
        lo = ext.groupby("env").best.transform("min")
        hi = ext.groupby("env").best.transform("max")
        ext = ext.assign(norm=(ext.best - lo) / (hi - lo).replace(0, 1))
        for method in methods:
            sub = ext[ext.method == method]
            curve = _curve(sub, "norm", agg=iqm_ci)
            ax.plot(curve.step, curve.mid, color=colours[method], label=method)
            ax.fill_between(curve.step, curve.low, curve.high, color=colours[method], alpha=0.2)
        ax.set_title("IQM over envs x seeds (min-max normalised)")
        ax.set_xlabel("environment steps")
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130)
    plt.close(fig)
    return out


def final_table(evals: pd.DataFrame) -> pd.DataFrame:
    """Per (env, method): the last evaluated step reached by all its seeds, best/worst member there."""
    ext = member_extremes(evals)
    rows = []
    for (env, method), sub in ext.groupby(["env", "method"], sort=False):
        step = sub.groupby("seed").step.max().min()
        at = sub[sub.step == step]
        rows.append(dict(env=env, method=method, step=int(step), seeds=",".join(map(str, sorted(at.seed))),
                         best_mean=at.best.mean(), worst_mean=at.worst.mean(),
                         best_per_seed=", ".join(f"{v:.0f}" for v in at.sort_values("seed").best)))
    return pd.DataFrame(rows)


def markdown(table: pd.DataFrame) -> str:
    """A markdown table (floats to one decimal) without the optional ``tabulate`` dependency."""
    cells = [[f"{v:.1f}" if isinstance(v, float) else str(v) for v in row] for row in table.itertuples(index=False)]
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in cells])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="folder searched recursively for eval.parquet")
    parser.add_argument("--out", default="figures/out/deep_learning_curves.png")
    parser.add_argument("--title", default=None)
    args = parser.parse_args(argv)
    evals = load_evals(args.root)
    path = plot(evals, args.out, args.title)
    print(f"wrote {path}")
    print(markdown(final_table(evals)))


if __name__ == "__main__":
    main()
