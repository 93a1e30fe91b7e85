"""Student exploration under on-policy distillation (seed 003, Sec. 4.4) (study ``exploration``).

Left: the student's return (its softmax policy, without the exploration) along training. Right: the
KL between teacher and student summed along the student's own trajectories.
"""

from __future__ import annotations

if __package__ in (None, ""):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from figures import _plot  # noqa: E402
from figures._plot import plt  # noqa: E402


def label(row) -> str:
    kind = row["exploration"]
    if kind == "none":
        return "sample from the student (on-policy)"
    if kind == "greedy":
        return "greedy student"
    if kind == "epsilon-greedy":
        return f"epsilon-greedy, epsilon = {row['epsilon']:g}"
    return f"Boltzmann, temperature {row['temperature']:g}"


def plot(table):
    keys = table[["exploration", "epsilon", "temperature"]].drop_duplicates().to_dict("records")
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for key in keys:
        g = table[(table["exploration"] == key["exploration"]) & (table["epsilon"] == key["epsilon"]) & (table["temperature"] == key["temperature"])]
        _plot.plot_band(axes[0], g, "step", "start_value", label=label(key))
        _plot.plot_band(axes[1], g, "step", "kl_student", label=label(key))
    axes[0].axhline(table["teacher_return"].mean(), color="k", ls="--", lw=1, label="teacher's return")
    axes[0].set_ylabel("student's return (expected, start state)")
    axes[1].set_ylabel("KL(teacher || student) along the\nstudent's trajectories (nats per episode)")
    axes[1].set_yscale("log")
    first = float(sorted(table["step"].unique())[1])  # the first recorded step after 0
    for ax in axes:
        ax.set_xscale("symlog", linthresh=first, linscale=0.3)
        ax.set_xlim(0, float(table["step"].max()))
        ax.set_xlabel("optimisation steps (episodes; linear to the first record, then logarithmic)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Exploration of the student during on-policy distillation ({table['mdp'].nunique()} gridworlds; {_plot.band_note()})", fontsize=10)
    fig.tight_layout()
    return fig


def main(results, out) -> list:
    return _plot.save(plot(_plot.read(results)), out, "fig_exploration")


if __name__ == "__main__":
    _plot.cli("exploration")
