"""Fig. 3 of *Distilling Policy Distillation*: the control policy of distillation (study ``control``).

Left grid: rows = teacher temperature, columns = KL(pi || pi_theta) summed along trajectories of
z = teacher / student / uniform, and the student's return; one line per control policy q.
Right: the student-driven speed-up, the ratio of areas under the curves (teacher-driven over
student-driven; uniform-driven over student-driven) of the return gap to the teacher and of KL under
the student's trajectories, against the teacher's entropy in the states it visits.

One figure per step unit of the study: ``fig3_control`` (one step = one sampled episode, as the paper
reads) and ``fig3_control_transitions`` (one step = a fixed number of sampled transitions).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

if __package__ in (None, ""):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from figures import _plot  # noqa: E402
from figures._plot import plt  # noqa: E402

CONTROL_COLORS = {"teacher": "tab:blue", "student": "tab:red", "uniform": "tab:gray"}
CONTROL_LABELS = {"teacher": "teacher-driven (q = teacher)", "student": "student-driven (q = student)", "uniform": "uniform (q = uniform)"}
COLUMNS = [("kl_teacher", "KL under teacher's trajectories\n(nats per episode)"),
           ("kl_student", "KL under student's trajectories\n(nats per episode)"),
           ("kl_uniform", "KL under uniform trajectories\n(nats per episode)"),
           ("start_value", "student's return\n(expected, start state)")]


STEP_UNIT_LABELS = {"episode": "steps (one episode each)",
                    "transitions": "steps ({n} transitions each)"}
FIGURE_STEMS = {"episode": "fig3_control", "transitions": "fig3_control_transitions"}


def step_units(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The table split by ``step_unit`` (tables of runs before the column existed are ``"episode"``)."""
    if "step_unit" not in table.columns:
        return {"episode": table}
    return {unit: g for unit, g in table.groupby("step_unit", sort=False)}


def areas(table: pd.DataFrame) -> pd.DataFrame:
    """Per MDP, temperature and control: area under the return gap (teacher - student) and under KL_student.

    Trapezoidal areas over optimisation steps; the speed-up of student- over teacher-driven distillation
    is the ratio of these areas (the paper's "ratio of areas under reward/KL curves").
    """
    rows = []
    for (temp, control, mdp), g in table.groupby(["temperature", "control", "mdp"], sort=True):
        g = g.sort_values("step")
        gap = np.clip(g["teacher_return"].to_numpy() - g["start_value"].to_numpy(), 0.0, None)
        rows.append(dict(temperature=temp, control=control, mdp=mdp, teacher_entropy=g["teacher_entropy"].iloc[0],
                         return_gap_area=np.trapezoid(gap, g["step"]), kl_area=np.trapezoid(g["kl_student"], g["step"])))
    return pd.DataFrame(rows)


def steps_to_recover(table: pd.DataFrame, fraction: float = 0.95) -> pd.DataFrame:
    """First step at which the mean student return reaches ``fraction`` of the mean teacher return."""
    rows = []
    for (temp, control), g in table.groupby(["temperature", "control"], sort=True):
        mean = g.groupby("step")[["start_value", "teacher_return"]].mean()
        hit = mean.index[mean["start_value"] >= fraction * mean["teacher_return"]]
        rows.append(dict(temperature=temp, control=control, fraction=fraction, step=hit.min() if len(hit) else np.nan))
    return pd.DataFrame(rows)


def plot(table: pd.DataFrame, unit: str = "episode"):
    temps = sorted(table["temperature"].unique())
    fig = plt.figure(figsize=(18.5, 3.0 * len(temps) + 1.2))
    grid = fig.add_gridspec(len(temps), 6, width_ratios=[1, 1, 1, 1, 0.15, 1.2], wspace=0.85, hspace=0.35,
                            top=1.0 - 0.9 / (3.0 * len(temps) + 1.2))
    for i, temp in enumerate(temps):
        sub = table[table["temperature"] == temp]
        for j, (col, label) in enumerate(COLUMNS):
            ax = fig.add_subplot(grid[i, j])
            for control in [c for c in CONTROL_LABELS if c in set(sub["control"])]:
                _plot.plot_band(ax, sub[sub["control"] == control], "step", col, label=CONTROL_LABELS[control], color=CONTROL_COLORS[control])
            if col == "start_value":
                ax.axhline(sub["teacher_return"].mean(), color="k", ls="--", lw=1, label="teacher's return")
            else:
                ax.set_yscale("log")
            first = float(np.sort(sub["step"].unique())[1])  # the first recorded step after 0
            ax.set_xscale("symlog", linthresh=first, linscale=0.3)
            ax.set_xlim(0, float(sub["step"].max()))
            top = int(np.log10(float(sub["step"].max())))
            ax.set_xticks([0] + [10.0**k for k in range(max(1, int(np.log10(first)) + 1), top + 1)])
            ax.set_title(f"teacher temperature {temp:g}" if j == 0 else "", loc="left", fontsize=9)
            ax.set_ylabel(label, fontsize=8)
            if i == len(temps) - 1:
                n = int(table["transitions_per_step"].iloc[0]) if unit == "transitions" else 0
                ax.set_xlabel(STEP_UNIT_LABELS[unit].format(n=n))
            ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    ax_r = fig.add_subplot(grid[:, 5])
    a = areas(table)
    for ref, marker in (("teacher", "o"), ("uniform", "s")):
        for metric, style, mlabel in (("return_gap_area", "-", "return gap"), ("kl_area", ":", "KL under student")):
            xs, ys, lo, hi = [], [], [], []
            for temp in temps:
                s = a[(a["temperature"] == temp)].pivot_table(index="mdp", columns="control", values=[metric, "teacher_entropy"])
                if ref not in s[metric] or "student" not in s[metric]:
                    continue
                ratio = s[metric][ref] / s[metric]["student"]
                ratio = ratio[np.isfinite(ratio)].to_numpy()
                # ratio of the MDP-mean areas; CI: bootstrap of the mean per-MDP log ratio, shifted to it
                m = s[metric][ref].mean() / s[metric]["student"].mean()
                logm, loglo, loghi = _plot.mean_and_ci(np.log(ratio[ratio > 0]))
                xs.append(s["teacher_entropy"]["student"].mean())
                ys.append(m)
                lo.append(m * np.exp(loglo[0] - logm[0]))
                hi.append(m * np.exp(loghi[0] - logm[0]))
            if xs:
                color = CONTROL_COLORS[ref]
                ax_r.errorbar(xs, ys, yerr=[np.subtract(ys, lo), np.subtract(hi, ys)], color=color, ls=style, marker=marker,
                              capsize=3, label=f"{ref}-driven / student-driven, {mlabel}")
                for x, y, t in zip(xs, ys, temps):
                    ax_r.annotate(f"T={t:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7, color=color)
    ax_r.axhline(1.0, color="k", lw=0.8)
    ax_r.set_yscale("log")
    from matplotlib.ticker import LogLocator, ScalarFormatter

    ax_r.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0)))
    ax_r.yaxis.set_major_formatter(ScalarFormatter())
    ax_r.yaxis.set_minor_formatter(ScalarFormatter())
    ax_r.set_xlabel("teacher entropy in its visited states (nats)")
    ax_r.set_ylabel("speed-up of student-driven distillation\n(ratio of areas under the curves)")
    ax_r.legend(fontsize=7, loc="best")
    ax_r.grid(alpha=0.3, which="both")
    fig.legend(handles, labels, loc="upper center", ncol=4, fontsize=9, frameon=False, bbox_to_anchor=(0.42, 0.985))
    n = table["mdp"].nunique()
    what = "one step = one sampled episode" if unit == "episode" else "one step = a fixed number of sampled transitions"
    fig.suptitle(f"Control policy of distillation ({what}): {n} gridworlds, Q-learning teachers at softmax temperatures "
                 f"({_plot.band_note()}; speed-up bars: 95% CI of the per-MDP log ratio)", y=1.0, fontsize=10)
    return fig


def main(results, out) -> list:
    paths = []
    for unit, table in step_units(_plot.read(results)).items():
        paths += _plot.save(plot(table, unit), out, FIGURE_STEMS[unit])
    return paths


if __name__ == "__main__":
    _plot.cli("control")
