"""The numbers REPRODUCTION.md quotes, aggregated from the studies' results tables (no computation of its own).

    python figures/reproduction_numbers.py [RESULTS_ROOT]     # default: results; uses full results, else quick

Prints markdown tables: Fig. 3 steps to recover the teacher's return per control policy, Fig. 4 final
returns per |A|, Fig. 5 returns at 25 % noise, Fig. 6 final returns on the corridor, and the seed-003 /
DPD studies' final numbers. Means over MDPs (or seeds) with 95 % bootstrap intervals.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from figures import _plot  # noqa: E402


def _table(root: Path, name: str) -> tuple[pd.DataFrame | None, str]:
    for scale in ("full", "quick", "smoke"):
        path = root / scale / name / "results.parquet"
        if path.exists():
            return pd.read_parquet(path), scale
    return None, ""


def _ci(values) -> str:
    m, lo, hi = _plot.mean_and_ci(np.asarray(values, dtype=float))
    return f"{m[0]:.2f} [{lo[0]:.2f}, {hi[0]:.2f}]"


def _markdown(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def control_numbers(t: pd.DataFrame) -> str:
    rows = []
    for temp, g in t.groupby("temperature"):
        teacher = g.groupby("mdp")["teacher_return"].first().mean()
        row = dict(temperature=temp, teacher_return=f"{teacher:.2f}", teacher_entropy=f"{g.groupby('mdp')['teacher_entropy'].first().mean():.2f}")
        hits = {}
        for frac in (0.9, 0.95, 0.99):
            for control, c in g.groupby("control"):
                mean = c.groupby("step")["start_value"].mean()
                ok = mean.index[mean.to_numpy() >= frac * teacher]
                hits[(frac, control)] = float(ok.min()) if len(ok) else np.nan
            row[f"steps to {frac:.0%}: teacher / student / uniform"] = " / ".join(
                "never" if np.isnan(hits[(frac, c)]) else f"{hits[(frac, c)]:.0f}" for c in ("teacher", "student", "uniform"))
            s = hits[(frac, "student")]
            row[f"ratio to student ({frac:.0%}): teacher, uniform"] = ", ".join(
                f"{hits[(frac, c)] / s:.1f}x" if s > 0 and not np.isnan(hits[(frac, c)]) else "n/a" for c in ("teacher", "uniform"))
        rows.append(row)
    out = _markdown(pd.DataFrame(rows))
    from figures.fig3_control import areas

    a = areas(t).groupby(["temperature", "control"])[["return_gap_area", "kl_area"]].mean()
    ratios = []
    for temp in sorted(t["temperature"].unique()):
        r = dict(temperature=temp)
        for ref in ("teacher", "uniform"):
            for metric in ("return_gap_area", "kl_area"):
                r[f"{ref}/student {metric}"] = f"{a.loc[(temp, ref), metric] / a.loc[(temp, 'student'), metric]:.2f}"
        ratios.append(r)
    return out + "\n\nRatios of MDP-mean areas under the curves (Fig. 3 right):\n\n" + _markdown(pd.DataFrame(ratios))


def final_rows(t: pd.DataFrame, by: list[str], value: str = "start_value", unit: str = "mdp", x: str = "step") -> pd.DataFrame:
    last = t[t[x] == t[x].max()]
    rows = []
    for key, g in last.groupby(by, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(by, key)), f"final {value} (mean [95% CI])": _ci(g.groupby(unit)[value].mean()), "n": g[unit].nunique()})
    return pd.DataFrame(rows)


def main(root: str = "results") -> None:
    root = Path(root)
    t, scale = _table(root, "control")
    if t is not None:
        print(f"## control ({scale}: {t['mdp'].nunique()} MDPs, {t['step'].max()} steps)\n\n{control_numbers(t)}\n")
    t, scale = _table(root, "actions")
    if t is not None:
        f = final_rows(t, ["n_actions", "rule"])
        f["teacher"] = [f"{t[t.n_actions == a]['teacher_return'].mean():.2f}" for a in f["n_actions"]]
        print(f"## actions ({scale}, {t['step'].max()} steps)\n\n{_markdown(f)}\n")
    t, scale = _table(root, "noisy-teacher")
    if t is not None:
        f = final_rows(t, ["noise", "value", "rule"])
        best = t.groupby(["noise", "value", "rule", "step"])["start_value"].mean().groupby(["noise", "value", "rule"]).max()
        f["max of the mean curve"] = [f"{best[(n, v, r)]:.2f}" for n, v, r in zip(f["noise"], f["value"], f["rule"])]
        f["teacher"] = [f"{t[t.noise == n]['teacher_return'].mean():.2f}" for n in f["noise"]]
        print(f"## noisy-teacher ({scale}: {t['mdp'].nunique()} MDPs, {t['step'].max()} steps)\n\n{_markdown(f)}\n")
    t, scale = _table(root, "chain")
    if t is not None:
        f = final_rows(t, ["T", "teacher", "teacher_value", "rule"], unit="seed")
        f["teacher's return"] = [f"{t[(t['T'] == T) & (t.teacher == te)]['teacher_return'].iloc[0]:.2f}" for T, te in zip(f["T"], f["teacher"])]
        print(f"## chain ({scale}: {t['seed'].nunique()} seeds, {t['step'].max()} episodes)\n\n{_markdown(f)}\n")
    t, scale = _table(root, "multi-teacher")
    if t is not None:
        f = final_rows(t, ["bandit"], value="cumulative_regret", x="round")
        f2 = final_rows(t, ["bandit"], value="student_return", x="round")
        f["final student_return"] = f2.iloc[:, 1].to_numpy()
        print(f"## multi-teacher ({scale}: {t['mdp'].nunique()} MDPs, {t['round'].max()} rounds)\n\n{_markdown(f)}\n")
    t, scale = _table(root, "dual")
    if t is not None:
        mean = t.groupby(["method", "mdp", "env_steps"], as_index=False)["start_value"].mean()
        f = final_rows(mean, ["method"], x="env_steps")
        print(f"## dual ({scale}: {t['mdp'].nunique()} MDPs, {t['env_steps'].max()} episodes of all learners)\n\n{_markdown(f)}\n")
    t, scale = _table(root, "exploration")
    if t is not None:
        f = final_rows(t, ["exploration", "epsilon", "temperature"])
        print(f"## exploration ({scale}: {t['mdp'].nunique()} MDPs, {t['step'].max()} steps)\n\n{_markdown(f)}\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
