"""The numbers REPRODUCTION.md quotes, aggregated from the studies' results tables (no computation of its own).

    python figures/reproduction_numbers.py [RESULTS_ROOT]     # default: results; uses full results, else quick

Prints markdown tables: Fig. 3 steps (and sampled transitions) to recover the teacher's return per
control policy and step unit, area ratios and the final KL under each trajectory distribution; Fig. 4
final returns per |A| and estimator, with the mean episode length; Fig. 5 returns at 25 % noise; Fig. 6
final returns on the corridor (sampled and exact dynamics); and the seed-003 / DPD studies' final
numbers (exploration: KL and steps to recover the teacher; multi-teacher: the share of rounds 101-150
on a noise-free teacher). Means over MDPs (or seeds) with 95 % bootstrap intervals. Crossing points of
a mean curve are interpolated linearly between records (the records sit on a log-spaced grid).
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


def _ci(values, digits: int = 2) -> str:
    m, lo, hi = _plot.mean_and_ci(np.asarray(values, dtype=float))
    return f"{m[0]:.{digits}f} [{lo[0]:.{digits}f}, {hi[0]:.{digits}f}]"


def _markdown(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


FRACTIONS = (0.9, 0.95, 0.99)
CONTROLS = ("teacher", "student", "uniform")


def first_crossing(x: np.ndarray, y: np.ndarray, target: float) -> float:
    """The first ``x`` at which the piecewise-linear curve ``y(x)`` reaches ``target`` (NaN if never)."""
    above = np.flatnonzero(y >= target)
    if not len(above):
        return np.nan
    i = above[0]
    if i == 0:
        return float(x[0])
    return float(x[i - 1] + (target - y[i - 1]) * (x[i] - x[i - 1]) / (y[i] - y[i - 1]))


def _fmt(v: float, digits: int = 0) -> str:
    return "never" if np.isnan(v) else f"{v:,.{digits}f}"


def _ratio(a: float, b: float) -> str:
    return "n/a" if np.isnan(a) or np.isnan(b) or b <= 0 else f"{a / b:.2f}x"


def recovery_points(g: pd.DataFrame, teacher: float) -> dict:
    """``{(fraction, control): (step, transitions)}`` where the MDP-mean return first reaches ``fraction``
    of the MDP-mean teacher return (transitions: the MDP-mean cumulative count at that step)."""
    out = {}
    for control, c in g.groupby("control"):
        mean = c.groupby("step")[["start_value", "transitions"]].mean() if "transitions" in c else \
            c.groupby("step")[["start_value"]].mean().assign(transitions=np.nan)
        steps = mean.index.to_numpy(dtype=float)
        for frac in FRACTIONS:
            step = first_crossing(steps, mean["start_value"].to_numpy(), frac * teacher)
            out[(frac, control)] = (step, np.interp(step, steps, mean["transitions"].to_numpy()) if not np.isnan(step) else np.nan)
    return out


def control_numbers(t: pd.DataFrame) -> str:
    units = t.groupby("step_unit", sort=False) if "step_unit" in t.columns else [("episode", t)]
    parts = []
    for unit, u in units:
        rows = []
        for temp, g in u.groupby("temperature"):
            teacher = g.groupby("mdp")["teacher_return"].first().mean()
            hits = recovery_points(g, teacher)
            row = dict(temperature=temp, teacher_return=f"{teacher:.2f}",
                       teacher_entropy=f"{g.groupby('mdp')['teacher_entropy'].first().mean():.2f}")
            for frac in FRACTIONS:
                row[f"steps to {frac:.0%}: teacher / student / uniform"] = " / ".join(_fmt(hits[(frac, c)][0]) for c in CONTROLS)
                row[f"step ratio ({frac:.0%}): teacher, uniform / student"] = ", ".join(
                    _ratio(hits[(frac, c)][0], hits[(frac, "student")][0]) for c in ("teacher", "uniform"))
                if unit == "episode":
                    row[f"transitions to {frac:.0%}: teacher / student / uniform"] = " / ".join(
                        _fmt(hits[(frac, c)][1]) for c in CONTROLS)
                    row[f"transition ratio ({frac:.0%}): teacher, uniform / student"] = ", ".join(
                        _ratio(hits[(frac, c)][1], hits[(frac, "student")][1]) for c in ("teacher", "uniform"))
            rows.append(row)
        per_step = ""
        if unit == "transitions":
            per_step = f", {int(u['transitions_per_step'].iloc[0])} transitions per step"
        mean_len = ""
        if unit == "episode" and "transitions" in u:
            last = u[u["step"] == u["step"].max()]
            lengths = last.groupby(["temperature", "control"])["transitions"].mean() / u["step"].max()
            mean_len = "\n\nMean sampled transitions per episode over training (teacher / student / uniform control): " + "; ".join(
                f"T = {temp:g}: " + " / ".join(f"{lengths[(temp, c)]:.1f}" for c in CONTROLS) for temp in sorted(u["temperature"].unique()))
        from figures.fig3_control import areas

        a = areas(u).groupby(["temperature", "control"])[["return_gap_area", "kl_area"]].mean()
        ratios = []
        for temp in sorted(u["temperature"].unique()):
            r = dict(temperature=temp)
            for ref in ("teacher", "uniform"):
                for metric in ("return_gap_area", "kl_area"):
                    r[f"{ref}/student {metric}"] = f"{a.loc[(temp, ref), metric] / a.loc[(temp, 'student'), metric]:.2f}"
            ratios.append(r)
        parts.append(f"### step unit: {unit}{per_step}\n\n" + _markdown(pd.DataFrame(rows)) + mean_len
                     + "\n\nRatios of MDP-mean areas under the curves over steps (Fig. 3 right):\n\n" + _markdown(pd.DataFrame(ratios))
                     + f"\n\nKL(teacher || student) in nats per episode after the last step ({u['step'].max()}), MDP means:\n\n"
                     + _markdown(final_kl(u)))
    return "\n\n".join(parts)


def final_kl(u: pd.DataFrame) -> pd.DataFrame:
    """Per temperature and control: the MDP-mean KL under the teacher's, the student's and uniform
    trajectories at the last step, and how many times lower uniform control's KL under uniform
    trajectories is than each other control's."""
    last = u[u["step"] == u["step"].max()]
    kl = last.groupby(["temperature", "control"])[["kl_teacher", "kl_student", "kl_uniform"]].mean()
    rows = []
    for (temp, control), r in kl.iterrows():
        rows.append(dict(temperature=temp, control=control, **{c: f"{r[c]:.3f}" for c in kl.columns},
                         **{"kl_uniform / uniform control's": f"{r['kl_uniform'] / kl.loc[(temp, 'uniform'), 'kl_uniform']:.1f}"}))
    return pd.DataFrame(rows)


def final_rows(t: pd.DataFrame, by: list[str], value: str = "start_value", unit: str = "mdp", x: str = "step",
               digits: int = 2) -> pd.DataFrame:
    last = t[t[x] == t[x].max()]
    rows = []
    for key, g in last.groupby(by, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(by, key)), f"final {value} (mean [95% CI])": _ci(g.groupby(unit)[value].mean(), digits), "n": g[unit].nunique()})
    return pd.DataFrame(rows)


def actions_numbers(t: pd.DataFrame) -> str:
    """Final returns per |A|, rule and estimator (sampled: after the last step; exact dynamics: after its
    last step), and the returns at the exact-dynamics horizon for comparison."""
    if "estimator" not in t.columns:
        t = t.assign(estimator="literal", dynamics="sampled")
    parts = []
    for dynamics, d in t.groupby("dynamics", sort=False):
        f = final_rows(d, ["n_actions", "rule", "estimator"])
        f["teacher"] = [f"{d[d.n_actions == a]['teacher_return'].mean():.2f}" for a in f["n_actions"]]
        if dynamics == "sampled" and "transitions" in d:  # mean episode length over training (the step is one episode)
            last = d[d["step"] == d["step"].max()]
            per_episode = last.groupby(["n_actions", "rule", "estimator"])["transitions"].mean() / d["step"].max()
            f["transitions per episode"] = [f"{per_episode[tuple(k)]:.1f}" for k in f[["n_actions", "rule", "estimator"]].itertuples(index=False)]
        parts.append(f"{dynamics} ({d['step'].max()} steps):\n\n{_markdown(f)}")
    exact = t[t["dynamics"] == "exact"]
    if len(exact):
        horizon = exact["step"].max()
        sampled = t[t["dynamics"] == "sampled"]
        at = sampled[sampled["step"] <= horizon]
        at = at[at["step"] == at["step"].max()]
        f = final_rows(at, ["n_actions", "rule", "estimator"])
        parts.append(f"sampled, at the last record <= the exact horizon ({at['step'].max()} steps):\n\n{_markdown(f)}")
    return "\n\n".join(parts)


def main(root: str = "results") -> None:
    root = Path(root)
    t, scale = _table(root, "control")
    if t is not None:
        print(f"## control ({scale}: {t['mdp'].nunique()} MDPs, {t['step'].max()} steps)\n\n{control_numbers(t)}\n")
    t, scale = _table(root, "actions")
    if t is not None:
        print(f"## actions ({scale})\n\n{actions_numbers(t)}\n")
    t, scale = _table(root, "noisy-teacher")
    if t is not None:
        f = final_rows(t, ["noise", "value", "rule"])
        best = t.groupby(["noise", "value", "rule", "step"])["start_value"].mean().groupby(["noise", "value", "rule"]).max()
        f["max of the mean curve"] = [f"{best[(n, v, r)]:.2f}" for n, v, r in zip(f["noise"], f["value"], f["rule"])]
        f["teacher"] = [f"{t[t.noise == n]['teacher_return'].mean():.2f}" for n in f["noise"]]
        print(f"## noisy-teacher ({scale}: {t['mdp'].nunique()} MDPs, {t['step'].max()} steps)\n\n{_markdown(f)}\n")
    t, scale = _table(root, "chain")
    if t is not None:
        by = ["T", "teacher", "teacher_value", "rule"]
        if "dynamics" in t.columns:  # each dynamics at its own last step
            f = pd.concat([final_rows(g, by, unit="seed").assign(dynamics=d, steps=g["step"].max())
                           for d, g in t.groupby("dynamics", sort=False)], ignore_index=True)
        else:
            f = final_rows(t, by, unit="seed")
        f["teacher's return"] = [f"{t[(t['T'] == T) & (t.teacher == te)]['teacher_return'].iloc[0]:.2f}" for T, te in zip(f["T"], f["teacher"])]
        sampled = t[t["dynamics"] == "sampled"] if "dynamics" in t.columns else t
        print(f"## chain ({scale}: {sampled['seed'].nunique()} seeds, {sampled['step'].max()} episodes)\n\n{_markdown(f)}\n")
    t, scale = _table(root, "multi-teacher")
    if t is not None:
        f = final_rows(t, ["bandit"], value="cumulative_regret", x="round")
        f2 = final_rows(t, ["bandit"], value="student_return", x="round")
        f["final student_return"] = f2.iloc[:, 1].to_numpy()
        last_third = t[t["round"] > t["round"].max() * 2 // 3]  # rounds 101-150 of 150
        share = last_third.assign(expert=(last_third["arm_noise"] == 0).astype(float)).groupby(["bandit", "mdp"])["expert"].mean().groupby("bandit").mean()
        f[f"share of rounds {last_third['round'].min()}-{t['round'].max()} on a noise-free teacher"] = [f"{share[b]:.2f}" for b in f["bandit"]]
        f["best teacher"] = f"{t.groupby('mdp')['best_teacher_return'].first().mean():.2f}"
        print(f"## multi-teacher ({scale}: {t['mdp'].nunique()} MDPs, {t['round'].max()} rounds)\n\n{_markdown(f)}\n")
    t, scale = _table(root, "dual")
    if t is not None:
        by = ["method", "dpd_states"] if "dpd_states" in t.columns else ["method"]
        mean = t.groupby(by + ["mdp", "env_steps"], as_index=False)["start_value"].mean()
        f = final_rows(mean, by, x="env_steps")
        if "dpd_weight_max" in t.columns:  # per MDP: the largest unclipped weight over rounds and learners
            w = t.dropna(subset=["dpd_weight_max"]).groupby(by + ["mdp"])["dpd_weight_max"].max().groupby(by)
            stats = pd.DataFrame(dict(median=w.median(), largest=w.max()))
            f["per-MDP max of exp(alpha xi): median / largest"] = [
                f"{stats.loc[tuple(k)]['median']:.0f} / {stats.loc[tuple(k)]['largest']:.0f}" if tuple(k) in stats.index else ""
                for k in f[by].itertuples(index=False)]
        print(f"## dual ({scale}: {t['mdp'].nunique()} MDPs, {t['env_steps'].max()} episodes of all learners)\n\n{_markdown(f)}\n")
    t, scale = _table(root, "exploration")
    if t is not None:
        by = ["exploration", "epsilon", "temperature"]
        f = final_rows(t, by)
        kl = final_rows(t, by, value="kl_student", digits=3)
        f["final kl_student"] = kl.iloc[:, len(by)].to_numpy()
        teacher = t.groupby("mdp")["teacher_return"].first().mean()
        f["teacher"] = f"{teacher:.2f}"
        for frac in FRACTIONS:
            hits = []
            for _, g in t.groupby(by, sort=False):
                mean = g.groupby("step")["start_value"].mean()
                hits.append(_fmt(first_crossing(mean.index.to_numpy(dtype=float), mean.to_numpy(), frac * teacher)))
            f[f"steps to {frac:.0%} of the teacher"] = hits
        print(f"## exploration ({scale}: {t['mdp'].nunique()} MDPs, {t['step'].max()} steps)\n\n{_markdown(f)}\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
