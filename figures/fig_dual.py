"""Dual policy distillation (seed 002) on tabular learners (study ``dual``).

The return of the learners against the environment steps used by *all* learners of a method (two DPD
learners or two independent learners: their mean and their best; one learner given twice the steps).
"""

from __future__ import annotations

if __package__ in (None, ""):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from figures import _plot  # noqa: E402
from figures._plot import plt  # noqa: E402

METHOD_STYLE = {"dpd-indicator": ("tab:red", "DPD, weight 1[xi > 0] (+R)"), "dpd-exp": ("tab:orange", "DPD, weight exp(alpha xi) (+R)"),
                "independent": ("tab:gray", "two independent rl learners"), "single-double-steps": ("k", "one rl learner, twice the steps")}


def plot(table):
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    for method, (color, label) in METHOD_STYLE.items():
        g = table[table["method"] == method]
        if not len(g):
            continue
        mean = g.groupby(["mdp", "env_steps"], as_index=False)["start_value"].mean()
        best = g.groupby(["mdp", "env_steps"], as_index=False)["start_value"].max()
        _plot.plot_band(axes[0], mean, "env_steps", "start_value", label=label, color=color)
        _plot.plot_band(axes[1], best, "env_steps", "start_value", label=label, color=color)
    axes[0].set_title("mean of the learners", fontsize=9)
    axes[1].set_title("best of the learners", fontsize=9)
    axes[0].set_ylabel("return (expected, start state)")
    for ax in axes:
        ax.set_xlabel("environment episodes of all learners together")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Dual policy distillation vs independent learners ({table['mdp'].nunique()} gridworlds; {_plot.band_note()})", fontsize=10)
    fig.tight_layout()
    return fig


def main(results, out) -> list:
    return _plot.save(plot(_plot.read(results)), out, "fig_dual")


if __name__ == "__main__":
    _plot.cli("dual")
