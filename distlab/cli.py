"""The ``distlab`` command line (typer). Each command is a thin wrapper over a library function."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from distlab.plugins import PLUGIN_HELP

app = typer.Typer(
    help="distlab: policy distillation in RL, exactly on tabular MDPs and with ensemble SAC on MuJoCo.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command()
def gridworlds(
    n: Annotated[int, typer.Option(help="number of random gridworlds")] = 100,
    size: Annotated[int, typer.Option(help="grid side length")] = 20,
    n_actions: Annotated[int, typer.Option(help="actions (4 moves + no-ops)")] = 4,
    seed: Annotated[int, typer.Option(help="seed of the first gridworld")] = 0,
    out: Annotated[Path | None, typer.Option(help="write a per-MDP summary table (parquet) here")] = None,
):
    """Generate random gridworlds, solve them exactly, train Q-learning teachers, print a summary."""
    from distlab.summaries import gridworld_summary

    table = gridworld_summary(n=n, size=size, n_actions=n_actions, seed=seed)
    typer.echo(table.describe().T[["mean", "std", "min", "50%", "max"]].to_string(float_format="%.3f"))
    if out is not None:
        from distlab.io import write_parquet

        path = write_parquet(table, out, config=dict(n=n, size=size, n_actions=n_actions, seed=seed))
        typer.echo(f"wrote {path}")


@app.command()
def bench(
    group: Annotated[str, typer.Argument(help="'tabular' (foundation + taxonomy), 'deep', or one group")] = "tabular",
    device: Annotated[Optional[str], typer.Option(help="deep: cpu or cuda[:N]; end-to-end, seeds and env-share figures "
                                                       "on this device (default: updates on cpu, and cuda if present)")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="deep: short runs on Pendulum-v1 with small networks "
                                                         "(checks that the bench runs; not speed figures)")] = False,
):
    """Print speed figures as JSON lines (see distlab.bench)."""
    from distlab import bench as bench_module

    groups = list(bench_module.TABULAR_GROUPS) if group == "tabular" else [group]
    try:
        bench_module.check_groups(groups)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="GROUP") from None
    options = {**({"device": device} if device is not None else {}), **({"quick": True} if quick else {})}
    try:
        bench_module.run(groups, options=options)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None


@app.command("rules")
def list_rules(
    plugin: Annotated[Optional[list[str]], typer.Option("--plugin", help=PLUGIN_HELP)] = None,
):
    """List the registered distillation update rules with their components (yours too, with --plugin)."""
    from distlab import rules
    from distlab.plugins import PluginError, load_plugins

    try:
        load_plugins(plugin)
    except PluginError as err:
        raise typer.BadParameter(str(err), param_hint="--plugin") from None

    for name in rules.names():
        r = rules.get(name)
        grad = "gradient" if r.is_gradient else "not a gradient"
        typer.echo(f"{name:24s} q={r.control:8s} l={r.loss:11s} rhat={r.reward:18s} score={r.score:13s} gate={r.gate:6s} {grad}")


# ---- commands of other modules register here, one line each ----------------------------------------
from deep.cli import register as _register_deep; _register_deep(app)  # noqa: E402,E702  train, sweep
from distlab.studies.cli import register as _register_studies; _register_studies(app)  # noqa: E402,E702


def main() -> None:
    app()


if __name__ == "__main__":
    main()
