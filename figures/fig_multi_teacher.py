"""Multi-teacher distillation as a bandit (seed 003, Sec. 4.5) (study ``multi-teacher``).

Left: the cumulative pseudo-regret of the teacher choices (the best teacher's return minus the chosen
one's, summed over rounds). Middle: the student's return. Right: how often each bandit picks a
noise-free (expert) teacher.
"""

from __future__ import annotations

if __package__ in (None, ""):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from figures import _plot  # noqa: E402
from figures._plot import plt  # noqa: E402

BANDIT_STYLE = {"random": ("tab:gray", "random"), "epsilon-greedy": ("tab:blue", "epsilon-greedy (0.1)"),
                "ucb1": ("tab:red", "UCB1"), "thompson": ("tab:green", "Thompson sampling")}


def plot(table):
    table = table.sort_values(["bandit", "mdp", "round"]).assign(expert_chosen=(table["arm_noise"] == 0).astype(float))
    # per MDP, the share of the last 10 rounds that picked a noise-free teacher (a single pick is 0 or 1)
    window = min(10, int(table["round"].max()))
    table["expert_chosen"] = table.groupby(["bandit", "mdp"])["expert_chosen"].transform(lambda x: x.rolling(window, min_periods=1).mean())
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    for bandit, (color, label) in BANDIT_STYLE.items():
        g = table[table["bandit"] == bandit]
        if not len(g):
            continue
        _plot.plot_band(axes[0], g, "round", "cumulative_regret", label=label, color=color)
        _plot.plot_band(axes[1], g, "step", "student_return", label=label, color=color)
        _plot.plot_band(axes[2], g, "round", "expert_chosen", label=label, color=color)
    axes[1].axhline(table["best_teacher_return"].mean(), color="k", ls="--", lw=1, label="best teacher's return")
    axes[0].set_ylabel("cumulative pseudo-regret\n(sum of return gaps to the best teacher)")
    axes[1].set_ylabel("student's return (expected, start state)")
    axes[2].set_ylabel(f"share of the last {window} rounds\nthat chose a noise-free teacher")
    axes[0].set_xlabel("round")
    axes[1].set_xlabel("distillation steps (episodes)")
    axes[2].set_xlabel("round")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    noise = ", ".join(f"{x:g}" for x in sorted(table["arm_noise"].unique()))
    fig.suptitle(f"Choosing among Q-learning teachers with Gaussian Q-noise sd in {{{noise}}} "
                 f"({table['mdp'].nunique()} gridworlds; {_plot.band_note()})", fontsize=10)
    fig.tight_layout()
    return fig


def main(results, out) -> list:
    return _plot.save(plot(_plot.read(results)), out, "fig_multi_teacher")


if __name__ == "__main__":
    _plot.cli("multi-teacher")
