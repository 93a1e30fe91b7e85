"""Fig. 4 of *Distilling Policy Distillation*: distillation rules as the action set grows (study ``actions``).

One panel per number of actions |A| (4 of them move the agent, the rest leave it in place): the
student's return along training for entropy-regularised, expected-entropy regularised, on-policy and
n-distill; the dashed line is the teacher's return. Last panel: the return at the end of training
against |A|.
"""

from __future__ import annotations

import numpy as np

if __package__ in (None, ""):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from figures import _plot  # noqa: E402
from figures._plot import plt  # noqa: E402

RULE_STYLE = {
    "entropy-regularised": ("tab:orange", "entropy regularised (reward only)"),
    "expected-entropy": ("tab:green", "expected entropy regularised"),
    "on-policy": ("tab:red", "on-policy distill"),
    "n-distill": ("tab:blue", "n-distill"),
}


def plot(table):
    counts = sorted(table["n_actions"].unique())
    rules = [r for r in RULE_STYLE if r in set(table["rule"])]
    n_panels = len(counts) + 1
    ncol = min(4, n_panels)
    nrow = -(-n_panels // ncol)
    fig, grid = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 3.2 * nrow), squeeze=False)
    axes = list(grid.ravel())
    for ax in axes[n_panels:]:
        ax.remove()
    axes = axes[:n_panels]
    finals = {r: [] for r in rules}
    for ax, A in zip(axes, counts):
        sub = table[table["n_actions"] == A]
        for rule in rules:
            color, label = RULE_STYLE[rule]
            g = sub[sub["rule"] == rule]
            _plot.plot_band(ax, g, "step", "start_value", label=label, color=color)
            last = g[g["step"] == g["step"].max()]
            finals[rule].append(_plot.mean_and_ci(last["start_value"].to_numpy()))
        ax.axhline(sub["teacher_return"].mean(), color="k", ls="--", lw=1, label="teacher's return")
        ax.set_title(f"|A| = {A}  ({sub['mdp'].nunique()} MDPs)", fontsize=9)
        ax.set_xlabel("optimisation steps (episodes)")
        ax.grid(alpha=0.3)
    for ax in axes[:-1:ncol]:
        ax.set_ylabel("student's return (expected, start state)")
    ax = axes[-1]
    for rule in rules:
        color, label = RULE_STYLE[rule]
        m = np.array([f[0][0] for f in finals[rule]])
        lo = np.array([f[1][0] for f in finals[rule]])
        hi = np.array([f[2][0] for f in finals[rule]])
        ax.errorbar(counts, m, yerr=[m - lo, hi - m], color=color, marker="o", capsize=3, label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("number of actions |A|")
    ax.set_ylabel("return after the last step")
    ax.set_title("end of training", fontsize=9)
    ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=5, fontsize=8, frameon=False, bbox_to_anchor=(0.5, -0.06 / nrow))
    lr = table["lr"].iloc[0]
    fig.suptitle(f"Distilling an epsilon-greedy (0.1) optimal teacher with |A| actions, learning rate {lr:g}\n({_plot.band_note()}; where the entropy-regularised curve is not visible it lies under the expected-entropy one)", fontsize=10)
    fig.tight_layout()
    return fig


def main(results, out) -> list:
    return _plot.save(plot(_plot.read(results)), out, "fig4_actions")


if __name__ == "__main__":
    _plot.cli("actions")
