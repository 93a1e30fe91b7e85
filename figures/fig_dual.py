"""Dual policy distillation (seed 002) on tabular learners (study ``dual``).

The return of the learners against the environment steps used by *all* learners of a method (two DPD
learners or two independent learners: their mean and their best; one learner given twice the steps).
DPD runs with the indicator weight, the clipped and normalised exp weight and the paper's unclipped exp
weight, each with its distillation states from the peer (Eq. 11, solid) or from the learner itself
(dotted). Right: the largest unclipped weight ``exp(alpha xi)`` over the sampled states (median over MDPs).
"""

from __future__ import annotations

if __package__ in (None, ""):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from figures import _plot  # noqa: E402
from figures._plot import plt  # noqa: E402

METHOD_STYLE = {"dpd-indicator": ("tab:red", "DPD, weight 1[xi > 0] (+R)"),
                "dpd-exp": ("tab:orange", "DPD, weight exp(alpha xi) clipped + normalised (+R)"),
                "dpd-exp-unclipped": ("tab:brown", "DPD, weight exp(alpha xi) unclipped, Eq. 11 (+R)"),
                "independent": ("tab:gray", "two independent rl learners"),
                "single-double-steps": ("k", "one rl learner, twice the steps")}
STATES_STYLE = {"peer": ("-", "states of the peer"), "own": (":", "own states"), "none": ("-", "")}


def _variants(table):
    """(method, dpd_states, rows) for every method and state distribution present, in style order."""
    states = table["dpd_states"] if "dpd_states" in table.columns else "none"
    for method in METHOD_STYLE:
        for s in STATES_STYLE:
            g = table[(table["method"] == method) & (states == s)]
            if len(g):
                yield method, s, g


def _label(method, states):
    return METHOD_STYLE[method][1] + (f", {STATES_STYLE[states][1]}" if states != "none" else "")


def plot(table):
    has_weights = "dpd_weight_max" in table.columns and table["dpd_weight_max"].notna().any()
    fig, axes = plt.subplots(1, 3 if has_weights else 2, figsize=(16 if has_weights else 11, 4.2))
    for method, states, g in _variants(table):
        color, ls = METHOD_STYLE[method][0], STATES_STYLE[states][0]
        mean = g.groupby(["mdp", "env_steps"], as_index=False)["start_value"].mean()
        best = g.groupby(["mdp", "env_steps"], as_index=False)["start_value"].max()
        _plot.plot_band(axes[0], mean, "env_steps", "start_value", label=_label(method, states), color=color, linestyle=ls)
        _plot.plot_band(axes[1], best, "env_steps", "start_value", label=_label(method, states), color=color, linestyle=ls)
        if has_weights and g["dpd_weight_max"].notna().any():
            w = g.groupby(["env_steps", "mdp"])["dpd_weight_max"].max().groupby("env_steps").median()
            axes[2].plot(w.index, w.to_numpy(), color=color, ls=ls, label=_label(method, states))
    axes[0].set_title("mean of the learners", fontsize=9)
    axes[1].set_title("best of the learners", fontsize=9)
    axes[0].set_ylabel("return (expected, start state)")
    for ax in axes[:2]:
        ax.set_xlabel("environment episodes of all learners together")
        ax.grid(alpha=0.3)
    axes[1].sharey(axes[0])
    if has_weights:
        axes[2].set_yscale("log")
        axes[2].set_title("largest unclipped weight exp(alpha xi) over sampled states\n(median over MDPs of the two learners' max)", fontsize=9)
        axes[2].set_xlabel("environment episodes of all learners together")
        axes[2].grid(alpha=0.3, which="both")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=7, frameon=False, bbox_to_anchor=(0.5, -0.16))
    fig.suptitle(f"Dual policy distillation vs independent learners ({table['mdp'].nunique()} gridworlds; {_plot.band_note()})", fontsize=10)
    fig.tight_layout()
    return fig


def main(results, out) -> list:
    return _plot.save(plot(_plot.read(results)), out, "fig_dual")


if __name__ == "__main__":
    _plot.cli("dual")
