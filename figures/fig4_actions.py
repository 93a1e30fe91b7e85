"""Fig. 4 of *Distilling Policy Distillation*: distillation rules as the action set grows (study ``actions``).

One panel per number of actions |A| (4 of them move the agent, the rest leave it in place): the
student's return along training for entropy-regularised, expected-entropy regularised, on-policy and
n-distill with the literal Table-1 estimator (``fig4_actions``); the dashed line is the teacher's
return. Last panel: the return at the end of training against |A|.

``fig4_actions_estimators``: the two entropy rules with each estimator of the score-function term
(literal, exact and learned per-state baselines, episodes truncated to 30 steps) and under exact
dynamics (the expected update itself, a few MDPs: mean line only), one colour per estimator, one line
style per rule; panels for the |A| that ran the variants.
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


ESTIMATOR_STYLE = {
    "literal": ("tab:gray", "literal (Table 1, no baseline)"),
    "baseline-exact": ("tab:green", "exact per-state baseline"),
    "baseline-learned": ("tab:olive", "learned per-state baseline"),
    "truncated-30": ("tab:purple", "episodes truncated to 30 steps"),
    "exact-dynamics": ("k", "exact dynamics (expected update)"),
}
RULE_LINES = {"entropy-regularised": "-", "expected-entropy": "--"}


def literal(table):
    """The sampled runs with the literal Table-1 estimator (all rows of tables without the estimator column)."""
    if "estimator" not in table.columns:
        return table
    return table[(table["estimator"] == "literal") & (table["dynamics"] == "sampled")]


def _log_steps(ax, table):
    steps = np.sort(table["step"].unique())
    ax.set_xscale("symlog", linthresh=max(1.0, float(steps[1])) if len(steps) > 1 else 1.0, linscale=0.3)
    ax.set_xlim(0, float(steps.max()))


def plot(table):
    table = literal(table)
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
        _log_steps(ax, sub)
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


def plot_estimators(table):
    """Panels for the |A| that ran more than the literal estimator; exact dynamics (a few MDPs) as a mean line."""
    variants = table.groupby("n_actions")["estimator"].nunique()
    counts = sorted(variants.index[variants > 1])
    fig, axes = plt.subplots(1, len(counts), figsize=(4.2 * len(counts), 3.6), squeeze=False)
    for ax, A in zip(axes[0], counts):
        sub = table[(table["n_actions"] == A) & table["rule"].isin(list(RULE_LINES))]
        for estimator, (color, label) in ESTIMATOR_STYLE.items():
            for rule, ls in RULE_LINES.items():
                g = sub[(sub["estimator"] == estimator) & (sub["rule"] == rule)]
                if not len(g):
                    continue
                if estimator == "exact-dynamics":
                    mean = g.groupby("step")["start_value"].mean()
                    ax.plot(mean.index, mean.to_numpy(), color=color, ls=ls, lw=1.6, label=f"{RULE_STYLE[rule][1]}: {label}")
                else:
                    _plot.plot_band(ax, g, "step", "start_value", label=f"{RULE_STYLE[rule][1]}: {label}", color=color, linestyle=ls)
        ax.axhline(sub["teacher_return"].mean(), color="r", ls=":", lw=1, label="teacher's return")
        _log_steps(ax, sub)
        ax.set_title(f"|A| = {A}  ({sub[sub['dynamics'] == 'sampled']['mdp'].nunique()} MDPs sampled, "
                     f"{sub[sub['dynamics'] == 'exact']['mdp'].nunique()} exact)", fontsize=9)
        ax.set_xlabel("optimisation steps (episodes)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("student's return (expected, start state)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=7, frameon=False, bbox_to_anchor=(0.5, -0.22))
    fig.suptitle("The score-function estimator decides the entropy rules: literal vs baselines vs truncation vs exact "
                 f"dynamics ({_plot.band_note()})", fontsize=10)
    fig.tight_layout()
    return fig


def main(results, out) -> list:
    table = _plot.read(results)
    paths = _plot.save(plot(table), out, "fig4_actions")
    if "estimator" in table.columns and table["estimator"].nunique() > 1:
        paths += _plot.save(plot_estimators(table), out, "fig4_actions_estimators")
    return paths


if __name__ == "__main__":
    _plot.cli("actions")
