"""Fig. 5 of *Distilling Policy Distillation*: distilling a noisy Q-learning teacher (study ``noisy-teacher``).

One column per noise level (fraction of the teacher's visited states whose best action is flipped).
Top row, as the paper: the student's return along training for policy cloning, cloning + R, value-gated
+ R, TD bootstrapped from the teacher's value and from 0, and rl; the rules that read the teacher's
value use the paper's Monte Carlo estimate (``value = "mc"``, 100 episodes). Bottom row: the two rules
that read the teacher's value, each with the three estimates of the study (line style: dotted = the
paper's Monte Carlo, dashed = Monte Carlo with states under the visit threshold set to 0, solid =
exact); TD + V_0 for reference. Dashed black: the noisy teacher's return.
"""

from __future__ import annotations

if __package__ in (None, ""):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from figures import _plot  # noqa: E402
from figures._plot import plt  # noqa: E402

RULE_STYLE = {
    "teacher": ("tab:cyan", "teacher distill (cloning)"),
    "on-policy": ("tab:blue", "on-policy distill (cloning)"),
    "n-distill": ("navy", "n-distill (cloning)"),
    "on-policy+r": ("darkgreen", "on-policy distill + R"),
    "n-distill+r": ("seagreen", "n-distill + R"),
    "value-gated+r": ("lime", "value-gated distill + R"),
    "td-teacher-v": ("tab:purple", "TD + V_teacher"),
    "td-v0": ("tab:pink", "TD + V_0"),
    "rl": ("tab:gray", "rl (no teacher)"),
}
VALUE_RULES = ("value-gated+r", "td-teacher-v")
PAPER_VALUE = "mc"


def value_style(table) -> dict[str, tuple[str, str]]:
    """Line style and legend text of each teacher-value estimate, with the run's episode/threshold numbers."""
    episodes = int(table["mc_episodes"].iloc[0])
    threshold = int(table["mc_min_visits"].iloc[0])
    return {
        "mc": (":", f"V from {episodes} MC episodes"),
        "mc-min-visits": ("--", f"V from {episodes} MC episodes, < {threshold} visits -> 0"),
        "exact": ("-", "exact V"),
    }


def _teacher_line(ax, sub) -> None:
    ax.axhline(sub.groupby("mdp")["teacher_return"].first().mean(), color="k", ls="--", lw=1, label="noisy teacher's return")


def _paper_panel(ax, sub) -> None:
    """All rules; the value-reading ones with the paper's Monte Carlo estimate."""
    for rule, (color, label) in RULE_STYLE.items():
        value = PAPER_VALUE if rule in VALUE_RULES else "none"
        g = sub[(sub["rule"] == rule) & (sub["value"] == value)]
        if len(g):
            suffix = " (MC V)" if rule in VALUE_RULES else ""
            _plot.plot_band(ax, g, "step", "start_value", label=label + suffix, color=color)
    _teacher_line(ax, sub)


def _value_panel(ax, sub, styles) -> None:
    """The value-reading rules under every estimate; TD + V_0 as the no-value reference."""
    for rule in VALUE_RULES:
        color, label = RULE_STYLE[rule]
        for value, (ls, value_label) in styles.items():
            g = sub[(sub["rule"] == rule) & (sub["value"] == value)]
            if len(g):
                _plot.plot_band(ax, g, "step", "start_value", label=f"{label}, {value_label}", color=color, linestyle=ls)
    g = sub[sub["rule"] == "td-v0"]
    if len(g):
        color, label = RULE_STYLE["td-v0"]
        _plot.plot_band(ax, g, "step", "start_value", label=label, color=color)
    _teacher_line(ax, sub)


def plot(table):
    levels = sorted(table["noise"].unique())
    styles = value_style(table)
    fig, axes = plt.subplots(2, len(levels), figsize=(4.2 * len(levels), 7.8), squeeze=False, sharey=True, sharex=True)
    for col, noise in enumerate(levels):
        sub = table[table["noise"] == noise]
        _paper_panel(axes[0][col], sub)
        _value_panel(axes[1][col], sub, styles)
        axes[0][col].set_title(f"{noise:.0%} of the teacher's states flipped", fontsize=9)
        axes[1][col].set_xlabel("optimisation steps (episodes)")
        for ax in axes[:, col]:
            ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("student's return\n(rules reading V: the paper's MC estimate)")
    axes[1][0].set_ylabel("student's return\n(rules reading V: three estimates)")
    for row, anchor in ((0, 0.515), (1, -0.02)):
        handles, labels = axes[row][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="upper center", ncol=4, fontsize=7.5, frameon=False, bbox_to_anchor=(0.5, anchor))
    fig.suptitle(f"Distilling a greedy Q-learning teacher with flipped actions ({table['mdp'].nunique()} gridworlds; "
                 f"{_plot.band_note()})", fontsize=10)
    fig.tight_layout(h_pad=6.0)
    return fig


def main(results, out) -> list:
    return _plot.save(plot(_plot.read(results)), out, "fig5_noisy_teacher")


if __name__ == "__main__":
    _plot.cli("noisy-teacher")
