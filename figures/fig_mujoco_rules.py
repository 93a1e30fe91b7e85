"""The taxonomy's rules on MuJoCo: a SAC student distilling a frozen teacher (study ``mujoco-rules``).

Top rows, one column per (env, teacher): the student's mean deterministic return against env steps, one
line per rule (mean over seeds, 95 % percentile-bootstrap band over seeds, ``_plot.mean_and_ci``), the
teacher's return on the same episode seeds as a dashed black line; below, KL(teacher || student) on the
student's own evaluation states. Right: the final return of every rule, aggregated over all runs (env x
teacher x seed) as the interquartile mean (IQM) of the teacher-normalised final return with a 95 %
stratified-bootstrap interval.

Aggregation follows rliable (Agarwal et al., 2021, "Deep RL at the edge of the statistical precipice"),
reimplemented with numpy/scipy because rliable's dependency ``arch`` does not import with this pandas:

* IQM: the mean of the middle 50 % of the pooled run scores, ``scipy.stats.trim_mean(x, 0.25)`` (Sec. 4.3);
* stratified bootstrap: resample the runs *within each task* (here a stratum = one env x teacher) with
  replacement, keeping every stratum's size, recompute the statistic on the pooled resample; the
  interval is the percentile interval of those statistics (rliable's ``StratifiedBootstrap`` with its
  default ``percentile`` method, Sec. 4.1 and App. A.3).

The normalised score of a run is its final return divided by its teacher's return (1 = the teacher;
a rule above 1 on the imperfect teacher improved on it). ``summary`` returns the numbers behind the
figure (``python figures/fig_mujoco_rules.py --summary RESULTS.parquet`` prints them as markdown;
``--report`` prints the compact tables REPRODUCTION.md quotes); no computation beyond aggregation.
"""

from __future__ import annotations

import sys

if __package__ in (None, ""):
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import stats  # noqa: E402

from figures import _plot  # noqa: E402
from figures._plot import plt  # noqa: E402

__all__ = ["iqm", "stratified_bootstrap_statistics", "stratified_bootstrap_ci", "final_scores", "summary", "summary_markdown", "report_markdown", "speed", "max_drawdown", "rule_styles", "plot", "main", "STEM"]

STEM = "mujoco_rules"
STRATUM = ("env", "teacher")
RUN = ("env", "teacher", "rule", "seed")
TRIM = 0.25


def iqm(scores, axis=-1):
    """Interquartile mean: the 25 %-trimmed mean (Agarwal et al., 2021, Sec. 4.3), ``scipy.stats.trim_mean``."""
    return stats.trim_mean(scores, TRIM, axis=axis)


def stratified_bootstrap_statistics(strata: list[np.ndarray], statistic=iqm, n_resamples: int = 2000,
                                    seed: int = 0) -> np.ndarray:
    """``(n_resamples,)`` values of ``statistic`` on stratified bootstrap resamples of the pooled scores.

    Each resample draws ``len(s)`` runs with replacement from every stratum ``s`` independently (rliable's
    ``StratifiedBootstrap``: the tasks are fixed, the runs are random) and applies ``statistic`` (which
    takes ``axis``) to the pooled draws.
    """
    strata = [np.asarray(s, dtype=float).ravel() for s in strata if len(s)]
    if not strata:
        raise ValueError("a stratified bootstrap needs at least one non-empty stratum")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1; got {n_resamples}")
    rng = np.random.default_rng(seed)
    draws = [s[rng.integers(0, s.size, size=(n_resamples, s.size))] for s in strata]
    return np.asarray(statistic(np.concatenate(draws, axis=1), axis=1), dtype=float)


def stratified_bootstrap_ci(strata: list[np.ndarray], statistic=iqm, n_resamples: int = 2000,
                            confidence: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """``(statistic of the pooled scores, low, high)``: the percentile interval of
    :func:`stratified_bootstrap_statistics` (rliable's default interval). One run per stratum gives a
    zero-width interval, as it must."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1); got {confidence}")
    boot = stratified_bootstrap_statistics(strata, statistic, n_resamples, seed)
    point = float(statistic(np.concatenate([np.asarray(s, dtype=float).ravel() for s in strata])))
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(boot, [alpha, 1.0 - alpha])
    return point, float(low), float(high)


def final_scores(table: pd.DataFrame) -> pd.DataFrame:
    """One row per run at its last record: final return, teacher return, normalised score, final KLs."""
    last = table.loc[table.groupby(list(RUN))["step"].transform("max") == table["step"]].copy()
    last["normalised"] = last["mean_return"] / last["teacher_return"]
    return last.reset_index(drop=True)


def max_drawdown(values) -> float:
    """The largest fall of a curve below its running maximum, ``max_t (max_{u <= t} x_u - x_t)``; 0 for a
    curve that never falls (an instability measure: a rule that learns and then unlearns scores high)."""
    x = np.asarray(values, dtype=float)
    return float(np.max(np.maximum.accumulate(x) - x)) if x.size else float("nan")


def speed(table: pd.DataFrame) -> pd.DataFrame:
    """Per run: the mean teacher-normalised return over its records (area under the normalised curve divided
    by its length, a speed-of-learning measure on equal budgets), the first env step reaching half and 90 %
    of the teacher's return (NaN if never) and the normalised curve's :func:`max_drawdown`."""
    rows = []
    for key, run in table.sort_values("step").groupby(list(RUN)):
        norm = (run["mean_return"] / run["teacher_return"]).to_numpy()
        steps = run["env_steps"].to_numpy()
        rows.append(dict(zip(RUN, key), mean_normalised=float(norm.mean()), steps_to_half=_first_step(steps, norm, 0.5),
                         steps_to_90=_first_step(steps, norm, 0.9), max_drawdown=max_drawdown(norm)))
    return pd.DataFrame(rows)


def _first_step(steps: np.ndarray, normalised: np.ndarray, level: float) -> float:
    """The first record's env step at which the normalised return reaches ``level``; NaN if none does."""
    hit = steps[normalised >= level]
    return float(hit[0]) if hit.size else float("nan")


def summary(table: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Per rule: IQM of the normalised final score over all runs with its stratified-bootstrap CI, and per
    (env, teacher) the mean final return, the mean KLs and the speed measures (means over seeds)."""
    final = final_scores(table)
    fast = speed(table)
    rows = []
    for rule, runs in final.groupby("rule", sort=False):
        strata = [g["normalised"].to_numpy() for _, g in runs.groupby(list(STRATUM))]
        point, low, high = stratified_bootstrap_ci(strata, seed=seed)
        row = dict(rule=rule, runs=len(runs), iqm_normalised=point, iqm_low=low, iqm_high=high)
        for (env, teacher), g in runs.groupby(list(STRATUM)):
            f = fast[(fast["rule"] == rule) & (fast["env"] == env) & (fast["teacher"] == teacher)]
            tag = f"{env.split('-')[0]}/{teacher}"
            row.update({f"{tag} final": g["mean_return"].mean(), f"{tag} teacher": g["teacher_return"].mean(),
                        f"{tag} KL student states": g["kl_student_states"].mean(),
                        f"{tag} KL teacher states": g["kl_teacher_states"].mean(),
                        f"{tag} mean normalised": f["mean_normalised"].mean(),
                        f"{tag} steps to half": f["steps_to_half"].mean()})
        rows.append(row)
    return pd.DataFrame(rows)


def _scale_of(results) -> str:
    return str(_plot.read_config(results).get("scale", ""))


def _title(table: pd.DataFrame, scale: str) -> str:
    seeds = table["seed"].nunique()
    budgets = table.groupby("env")["env_steps"].max()  # the budget may differ per env
    steps = " / ".join(f"{int(v):,} ({env.split('-')[0]})" for env, v in budgets.items())
    what = {"quick": " quick run", "smoke": " smoke run"}.get(scale, f" {scale}" if scale else "")
    return (f"mujoco-rules{what}: SAC student (K = 1) distilling a frozen teacher; {seeds} seed(s), {steps} env steps\n"
            "bands: 95 % bootstrap over seeds; right: IQM, 95 % stratified bootstrap (rliable's method)")


def plot(table: pd.DataFrame, scale: str = ""):
    """The figure described in the module docstring."""
    panels = table[list(STRATUM)].drop_duplicates().sort_values(list(STRATUM), ascending=[True, True]).to_numpy().tolist()
    rules = list(dict.fromkeys(table["rule"]))
    colors, styles = rule_styles(rules)
    n = len(panels)
    fig = plt.figure(figsize=(4.2 * n + 5.2, 8.0))
    grid = fig.add_gridspec(2, n + 1, width_ratios=[1] * n + [1.1], hspace=0.3, wspace=0.45)
    run_unit = table.assign(run=table["seed"])
    for j, (env, teacher) in enumerate(panels):
        top, bottom = fig.add_subplot(grid[0, j]), fig.add_subplot(grid[1, j])
        cell = run_unit[(run_unit["env"] == env) & (run_unit["teacher"] == teacher)]
        for rule in rules:
            g = cell[cell["rule"] == rule]
            if g.empty:
                continue
            style = styles[rule]
            _plot.plot_band(top, g, "env_steps", "mean_return", label=rule, color=colors[rule], unit="run", linestyle=style)
            _plot.plot_band(bottom, g, "env_steps", "kl_student_states", label=rule, color=colors[rule], unit="run", linestyle=style)
        top.axhline(cell["teacher_return"].mean(), color="k", ls="--", lw=1.2, label="teacher's return")
        top.set_title(f"{env}, {teacher} teacher", fontsize=10)
        top.set_ylabel("deterministic return")
        bottom.set_ylabel("KL(teacher || student)\non the student's states")
        bottom.set_yscale("log")
        for ax in (top, bottom):
            ax.set_xlabel("env steps")
            ax.xaxis.set_major_formatter(lambda x, _: f"{x / 1000:g}k")  # 10000 ... 14000 collide at this width
            ax.grid(alpha=0.3)
        if j == 0:
            handles, labels = top.get_legend_handles_labels()
    ax = fig.add_subplot(grid[:, n])
    summ = summary(table)
    order = summ.sort_values("iqm_normalised")
    y = np.arange(len(order))
    ax.errorbar(order["iqm_normalised"], y, xerr=[order["iqm_normalised"] - order["iqm_low"], order["iqm_high"] - order["iqm_normalised"]],
                fmt="none", ecolor=[colors[r] for r in order["rule"]], elinewidth=6, alpha=0.5)
    ax.scatter(order["iqm_normalised"], y, c=[colors[r] for r in order["rule"]], zorder=3, s=25)
    ax.axvline(1.0, color="k", ls="--", lw=1)
    ax.set_yticks(y, order["rule"], fontsize=8)
    ax.set_xlabel("IQM of final return / teacher's return\n(all env x teacher x seed runs)")
    ax.grid(alpha=0.3, axis="x")
    fig.legend(handles, labels, loc="lower center", ncol=min(7, len(labels)), fontsize=8, frameon=False)
    fig.subplots_adjust(bottom=0.16, left=0.05, right=0.98)
    fig.suptitle(_title(table, scale), fontsize=9)
    return fig


def rule_styles(rules: list[str]) -> tuple[dict, dict]:
    """(color, linestyle) per rule: a rule and its "+r" variant share a color, the "+r" one dashed; ``rl``
    (SAC without a teacher) black dotted."""
    palette = [plt.cm.tab10(i) for i in range(10) if i != 7] + [plt.cm.Dark2(i) for i in range(8)]  # tab10's 7 is grey
    bases = list(dict.fromkeys(r.removesuffix("+r") for r in rules if r != "rl"))
    colors = {r: "k" if r == "rl" else palette[bases.index(r.removesuffix("+r")) % len(palette)] for r in rules}
    styles = {r: ":" if r == "rl" else ("--" if r.endswith("+r") else "-") for r in rules}
    return colors, styles


def summary_markdown(table: pd.DataFrame) -> str:
    """:func:`summary` as a markdown table (the numbers quoted in REPRODUCTION.md)."""
    summ = summary(table)
    cols = list(summ.columns)
    fmt = lambda v: f"{v:.3g}" if isinstance(v, float) and abs(v) < 10 else (f"{v:,.0f}" if isinstance(v, float) else str(v))  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(row[c]) for c in cols) + " |" for _, row in summ.iterrows()]
    return "\n".join(lines)


def report_markdown(table: pd.DataFrame, seed: int = 0) -> str:
    """The compact tables REPRODUCTION.md quotes: (1) per rule and (env, teacher), final return / teacher's
    return as the mean over seeds with each seed's value; (2) per rule, the IQM over all runs with its
    stratified-bootstrap CI, the mean normalised return over all runs, and on the good teacher's runs, per env,
    the mean step of first reaching 50 % / 90 % of the teacher (over the runs that did; how many did) and
    the mean max drawdown (the stability measures of :func:`speed`)."""
    final = final_scores(table)
    strata = table[list(STRATUM)].drop_duplicates().sort_values(list(STRATUM)).to_numpy().tolist()
    rules = list(dict.fromkeys(table["rule"]))
    head = [f"{env.split('-')[0]} / {teacher}" for env, teacher in strata]
    lines = ["| rule | " + " | ".join(head) + " |", "|---|" + "---|" * len(head)]
    for rule in rules:
        cells = []
        for env, teacher in strata:
            g = final[(final["rule"] == rule) & (final["env"] == env) & (final["teacher"] == teacher)].sort_values("seed")
            seeds = ", ".join(f"{v:.2f}" for v in g["normalised"])
            cells.append(f"{g['normalised'].mean():.2f} ({seeds})" if len(g) else "")
        lines.append(f"| {rule} | " + " | ".join(cells) + " |")
    summ = summary(table, seed=seed).set_index("rule")
    fast = speed(table)
    good = fast[fast["teacher"] == "good"]
    envs = sorted(good["env"].unique())
    lines += ["", "| rule | IQM final / teacher [95 % CI] | mean normalised return over the run | "
              + " | ".join(f"{env.split('-')[0]}, good teacher: steps to 50 % / 90 %" for env in envs)
              + " | max drawdown, good teacher (normalised) |", "|---|---|---|" + "---|" * len(envs) + "---|"]
    for rule in rules:
        f, g, s = fast[fast["rule"] == rule], good[good["rule"] == rule], summ.loc[rule]
        reach = [f"{_steps(g.loc[g['env'] == env, 'steps_to_half'])} / {_steps(g.loc[g['env'] == env, 'steps_to_90'])}"
                 for env in envs]
        lines.append(f"| {rule} | {s['iqm_normalised']:.2f} [{s['iqm_low']:.2f}, {s['iqm_high']:.2f}] | "
                     f"{f['mean_normalised'].mean():.2f} | " + " | ".join(reach) + f" | {g['max_drawdown'].mean():.2f} |")
    return "\n".join(lines)


def _steps(values: pd.Series) -> str:
    """Mean over the runs that reached the level, and how many did."""
    hit = values.dropna()
    return f"{hit.mean():,.0f} ({len(hit)}/{len(values)})" if len(hit) else f"never (0/{len(values)})"


def main(results, out) -> list:
    return _plot.save(plot(_plot.read(results), _scale_of(results)), out, STEM)


if __name__ == "__main__":
    if "--summary" in sys.argv:  # python figures/fig_mujoco_rules.py --summary RESULTS.parquet
        print(summary_markdown(_plot.read(sys.argv[-1])))
    elif "--report" in sys.argv:  # python figures/fig_mujoco_rules.py --report RESULTS.parquet
        print(report_markdown(_plot.read(sys.argv[-1])))
    else:
        _plot.cli("mujoco-rules")
