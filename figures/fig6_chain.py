"""Fig. 6 (T = 5) and appendix Fig. 9 (other T) of *Distilling Policy Distillation* (study ``chain``).

Rows: corridor half-length T. Columns: the optimal teacher; the adversarial teacher with the paper's
"V_bad := V_good" (the rules that read a teacher value get the optimal one); the adversarial teacher
with its own value. Solid lines with bands: the student's return along sampled training per rule
(cloning rules, TD bootstrapped from the teacher's value, the teacher-V shaping reward and rl; the rules
with a score term use the learned per-state baseline); dashed lines: the same rule under exact
dynamics (the expected update, no sampling).
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
    "td-teacher-v": ("tab:purple", "TD + V_teacher"),
    "teacher-v-reward": ("tab:orange", "teacher V reward (lies under rl)"),
    "rl": ("tab:gray", "rl (no teacher)"),
}
COLUMNS = (("optimal", "own", "optimal teacher"),
           ("adversarial", "optimal", "adversarial teacher, V_bad := V_good (paper)"),
           ("adversarial", "own", "adversarial teacher, its own value"))


def panel(ax, table, T, teacher, value):
    sub = table[(table["T"] == T) & (table["teacher"] == teacher)]
    # rules without a teacher value appear in every column of their teacher
    sub = sub[sub["teacher_value"].isin([value, "none"])]
    dynamics = sub["dynamics"] if "dynamics" in sub.columns else "sampled"
    others = [r for r in sub["rule"].unique() if r not in RULE_STYLE]  # user-registered rules
    for rule, (color, label) in list(RULE_STYLE.items()) + [(r, (None, r)) for r in others]:
        g = sub[(sub["rule"] == rule) & (dynamics == "sampled")]
        if len(g):
            line = _plot.plot_band(ax, g, "step", "start_value", label=label, color=color, unit="seed")
            color = line.get_color()
        g = sub[(sub["rule"] == rule) & (dynamics == "exact")].sort_values("step")
        if len(g):
            ax.plot(g["step"], g["start_value"], color=color, ls="--", lw=1.2, label=f"{label}, exact dynamics")
    if len(sub):
        ax.axhline(sub["optimal_return"].iloc[0], color="k", ls="--", lw=1, label="optimal return")
        ax.axhline(sub["teacher_return"].iloc[0], color="r", ls=":", lw=1, label="teacher's return")


def plot(table, lengths):
    fig, axes = plt.subplots(len(lengths), len(COLUMNS), figsize=(13, 3.2 * len(lengths)), squeeze=False, sharey=True)
    for i, T in enumerate(lengths):
        for j, (teacher, value, title) in enumerate(COLUMNS):
            ax = axes[i][j]
            panel(ax, table, T, teacher, value)
            ax.set_title(f"T = {T} ({2 * T + 1} states): {title}", fontsize=9)
            ax.grid(alpha=0.3)
            ax.set_xscale("symlog", linthresh=10.0, linscale=0.3)
            ax.set_xlim(0, float(table["step"].max()))
            if i == len(lengths) - 1:
                ax.set_xlabel("training episodes (exact dynamics: steps x exact_lr / lr)", fontsize=8)
        axes[i][0].set_ylabel("student's return (expected)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False, bbox_to_anchor=(0.5, -0.3 / len(lengths)))
    cont = table["continuation"].iloc[0]
    fig.suptitle(f"Corridor, start in the middle, -1 left end, +1 right end, discount {cont:g} "
                 f"({table['seed'].nunique()} seeds; solid: mean of sampled runs, bands: 95% bootstrap CI over seeds; "
                 "dashed: exact dynamics)", fontsize=10)
    fig.tight_layout()
    return fig


def main(results, out) -> list:
    table = _plot.read(results)
    lengths = sorted(table["T"].unique())
    paths = []
    main_T = 5 if 5 in lengths else lengths[0]
    paths += _plot.save(plot(table, [main_T]), out, "fig6_chain")
    if len(lengths) > 1:
        paths += _plot.save(plot(table, lengths), out, "fig9_chain_lengths")
    return paths


if __name__ == "__main__":
    _plot.cli("chain")
