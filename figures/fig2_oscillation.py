"""Fig. 2 of *Distilling Policy Distillation*: on-policy distill+R cycles, n-distill+R converges (study ``oscillation``).

Left: the student's policy as a point (x, y) = (pi_theta(R | s_L) = pi_theta(R | s_R), pi_theta(R | start))
moving under the exact dynamics of each rule. Right: the two probabilities and the student's return
against optimisation steps.
"""

from __future__ import annotations

if __package__ in (None, ""):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from figures import _plot  # noqa: E402
from figures._plot import plt  # noqa: E402

RULE_STYLE = {"on-policy+r": ("tab:red", "on-policy distill + R"), "n-distill+r": ("tab:blue", "n-distill + R")}


def plot(table):
    fig = plt.figure(figsize=(13, 4.2))
    grid = fig.add_gridspec(2, 3, width_ratios=[1.1, 1.6, 1.6], hspace=0.35, wspace=0.3)
    ax_phase = fig.add_subplot(grid[:, 0])
    rules = [r for r in RULE_STYLE if r in set(table["rule"])] + sorted(set(table["rule"]) - set(RULE_STYLE))
    for i, rule in enumerate(rules):
        g = table[table["rule"] == rule].sort_values("step")
        color, label = RULE_STYLE.get(rule, (None, rule))
        (line,) = ax_phase.plot(g["p_right_1"], g["p_right_0"], color=color, lw=0.8, label=label)
        ax_phase.plot(g["p_right_1"].iloc[0], g["p_right_0"].iloc[0], "o", color="k", ms=5)
        ax_phase.plot(g["p_right_1"].iloc[-1], g["p_right_0"].iloc[-1], "s", color=line.get_color(), ms=6)
        ax = fig.add_subplot(grid[0 if i == 0 else 1, 1 + (i // 2)]) if len(rules) > 2 else fig.add_subplot(grid[i, 1])
        ax.plot(g["step"], g["p_right_1"], color=color, lw=1, label="pi(R | s_L) = pi(R | s_R) (tied)")
        ax.plot(g["step"], g["p_right_0"], color=color, lw=1, ls=":", label="pi(R | start)")
        ax.set_ylim(-0.03, 1.03)
        ax.set_ylabel("probability of R")
        ax.set_title(label, loc="left", fontsize=9)
        ax.legend(fontsize=7, loc="upper right")
        ax_ret = fig.add_subplot(grid[i, 2]) if len(rules) <= 2 else None
        if ax_ret is not None:
            ax_ret.plot(g["step"], g["student_return"], color=color, lw=1)
            ax_ret.set_ylabel("student's return")
            ax_ret.set_title(label, loc="left", fontsize=9)
            if i == len(rules) - 1:
                ax_ret.set_xlabel("optimisation steps (exact expected updates)")
        if i == len(rules) - 1:
            ax.set_xlabel("optimisation steps (exact expected updates)")
    ax_phase.set_xlim(-0.03, 1.03)
    ax_phase.set_ylim(-0.03, 1.03)
    ax_phase.set_xlabel("pi_theta(R | s_L) = pi_theta(R | s_R)  (tied)")
    ax_phase.set_ylabel("pi_theta(R | start)")
    ax_phase.set_title("policy trajectory (o start, square end)", loc="left", fontsize=9)
    ax_phase.legend(fontsize=7, loc="center", bbox_to_anchor=(0.4, 0.62))
    lr = table["lr"].iloc[0] if "lr" in table else float("nan")
    fig.suptitle(f"Fig. 2 counterexample: sigmoid student sharing s_L/s_R, true expected returns, learning rate {lr:g}", fontsize=10)
    return fig


def main(results, out) -> list:
    return _plot.save(plot(_plot.read(results)), out, "fig2_oscillation")


if __name__ == "__main__":
    _plot.cli("oscillation")
