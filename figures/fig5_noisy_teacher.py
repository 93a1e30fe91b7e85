"""Fig. 5 of *Distilling Policy Distillation*: distilling a noisy Q-learning teacher (study ``noisy-teacher``).

One panel per noise level (fraction of the teacher's visited states whose best action is flipped): the
student's return along training for policy cloning, cloning + R, value-gated + R, TD bootstrapped from the
teacher's value and from 0, and rl; dashed: the noisy teacher's return. ``fig5_noisy_teacher`` uses the
paper's teacher value (Monte Carlo, 100 episodes) for the rules that read it;
``fig5_noisy_teacher_exact_values`` the same with the exact teacher value.
"""

from __future__ import annotations

if __package__ in (None, ""):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from figures import _plot  # noqa: E402
from figures._plot import plt  # noqa: E402

RULE_STYLE = {
    "teacher": ("tab:cyan", "-", "teacher distill (cloning)"),
    "on-policy": ("tab:blue", "-", "on-policy distill (cloning)"),
    "n-distill": ("navy", "-", "n-distill (cloning)"),
    "on-policy+r": ("darkgreen", "-", "on-policy distill + R"),
    "n-distill+r": ("seagreen", "--", "n-distill + R"),
    "value-gated+r": ("lime", "-", "value-gated distill + R"),
    "td-teacher-v": ("tab:purple", "-", "TD + V_teacher"),
    "td-v0": ("tab:pink", "-", "TD + V_0"),
    "rl": ("tab:gray", "-", "rl (no teacher)"),
}


def plot(table, value: str):
    table = table[table["value"].isin([value, "none"])]
    levels = sorted(table["noise"].unique())
    fig, axes = plt.subplots(1, len(levels), figsize=(4.2 * len(levels), 3.8), squeeze=False, sharey=True)
    for ax, noise in zip(axes[0], levels):
        sub = table[table["noise"] == noise]
        for rule, (color, ls, label) in RULE_STYLE.items():
            g = sub[sub["rule"] == rule]
            if len(g):
                _plot.plot_band(ax, g, "step", "start_value", label=label, color=color, linestyle=ls)
        ax.axhline(sub["teacher_return"].mean(), color="k", ls="--", lw=1, label="noisy teacher's return")
        ax.set_title(f"{noise:.0%} of the teacher's states flipped", fontsize=9)
        ax.set_xlabel("optimisation steps (episodes)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("student's return (expected, start state)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=5, fontsize=8, frameon=False, bbox_to_anchor=(0.5, -0.12))
    what = "Monte Carlo, 100 episodes" if value.startswith("mc") else "exact"
    fig.suptitle(f"Distilling a greedy Q-learning teacher with flipped actions; teacher value: {what} "
                 f"({table['mdp'].nunique()} gridworlds; {_plot.band_note()})", fontsize=10)
    fig.tight_layout()
    return fig


def main(results, out) -> list:
    table = _plot.read(results)
    paths = []
    for value, stem in (("mc100", "fig5_noisy_teacher"), ("exact", "fig5_noisy_teacher_exact_values")):
        if value in set(table["value"]):
            paths += _plot.save(plot(table, value), out, stem)
    return paths


if __name__ == "__main__":
    _plot.cli("noisy-teacher")
