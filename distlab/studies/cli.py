"""``distlab study`` and ``distlab figure``: run a study through the runner, draw its figure."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from distlab.plugins import PLUGIN_HELP


def _load_plugins(specs: list[str] | None) -> None:
    """Load the user's rules (--plugin, installed entry points) before a command looks up any rule."""
    from distlab.plugins import PluginError, load_plugins

    try:
        load_plugins(specs)
    except PluginError as err:
        raise typer.BadParameter(str(err), param_hint="--plugin") from None


def register(app: typer.Typer) -> None:
    """Add the ``study`` and ``figure`` commands to the distlab CLI."""

    @app.command()
    def study(
        name: Annotated[str | None, typer.Argument(help="the study to run (see --list)")] = None,
        quick: Annotated[bool, typer.Option("--quick", help="the quick config (same shape, ~1-2 min)")] = False,
        smoke: Annotated[bool, typer.Option("--smoke", hidden=True, help="a tiny config (tests)")] = False,
        out: Annotated[Path, typer.Option(help="results root: writes OUT/<quick|full>/<name>/results.parquet")] = Path("results"),
        backend: Annotated[str, typer.Option(help="local | ray")] = "local",
        workers: Annotated[int | None, typer.Option(help="parallel cells (default: the number of cores)")] = None,
        ray_address: Annotated[str | None, typer.Option(help="Ray cluster address (default: a local instance)")] = None,
        list_: Annotated[bool, typer.Option("--list", help="list the studies, one per line")] = False,
        rule: Annotated[list[str] | None, typer.Option("--rule", help="run these rules instead of the study's own "
                                                       "(repeatable; studies with a rule axis, e.g. control, chain)")] = None,
        plugin: Annotated[list[str] | None, typer.Option("--plugin", help=PLUGIN_HELP)] = None,
        stack: Annotated[bool | None, typer.Option("--stack/--no-stack", help="mujoco-rules: each env's cells as ONE "
                                                   "stacked process (default: the config's; off)")] = None,
        device: Annotated[str | None, typer.Option(help="mujoco-rules: cpu or cuda[:N] (default: cpu)")] = None,
        env_workers: Annotated[int | None, typer.Option(help="mujoco-rules: worker processes stepping a stacked group's "
                                                        "simulators (default: 0, in the group's process; same numbers)")] = None,
    ):
        """Run a study (a grid of cells, resumable: a rerun skips finished cells) and write its tidy table."""
        from distlab import studies

        _load_plugins(plugin)
        if list_:
            for n in studies.names():
                typer.echo(f"{n:14s} {studies.describe(n)}")
            return
        if name is None:
            raise typer.BadParameter(f"give a study name; valid studies: {', '.join(studies.names())}", param_hint="NAME")
        if name not in studies.STUDIES:
            raise typer.BadParameter(f"unknown study {name!r}; valid studies: {', '.join(studies.names())}", param_hint="NAME")
        scale = "smoke" if smoke else "quick" if quick else "full"
        config = None
        if rule:
            try:
                config = studies.with_rules(name, studies.get(name).CONFIGS[scale], rule)
            except ValueError as err:
                raise typer.BadParameter(str(err), param_hint="--rule") from None
        try:
            table = studies.run_study(name, scale, out, backend=backend, workers=workers, ray_address=ray_address, config=config,
                                      stack=stack, device=device, env_workers=env_workers)
        except ValueError as err:
            raise typer.BadParameter(str(err)) from None
        typer.echo(f"{len(table)} rows -> {studies.results_path(out, name, scale)}")

    @app.command()
    def figure(
        name: Annotated[str, typer.Argument(help="a study name (its figure) or 'all'")],
        results: Annotated[Path, typer.Option(help="results root written by `distlab study`")] = Path("results"),
        out: Annotated[Path | None, typer.Option(help="where the PNG and PDF go (default: RESULTS/figures)")] = None,
    ):
        """Draw a study's figure from its results (full if present, else quick). Never runs a study: the
        figures only read results (``all``: every study that has some)."""
        from distlab import studies
        from figures._plot import draw

        # Default under the results root: drawing never overwrites the figures committed in figures/out/.
        out = results / "figures" if out is None else out
        names = studies.names() if name == "all" else [name]
        for n in names:
            if n not in studies.STUDIES:
                raise typer.BadParameter(f"unknown study {n!r}; valid studies: {', '.join(studies.names())}, all", param_hint="NAME")
        found = {n: _results_of(studies, results, n) for n in names}
        missing = [n for n, path in found.items() if path is None]
        if len(missing) == len(names):  # checked before drawing anything: a wrong --results creates nothing
            typer.echo(_no_results_message(studies, results, missing), err=True)
            raise typer.Exit(1)
        if missing:
            typer.echo(f"skipped (no results): {_no_results_message(studies, results, missing)}", err=True)
        for n, path in found.items():
            if path is not None:
                for written in draw(n, path, out):
                    typer.echo(f"wrote {written}")


    @app.command("warm-cache")
    def warm_cache(
        name: Annotated[list[str] | None, typer.Argument(help="tabular studies whose kernels to compile (default: all)")] = None,
    ):
        """Compile the numba kernels of the tabular studies ahead of time (scripts/setup.sh runs it): the first
        study then starts at once instead of compiling for a minute or more."""
        import os
        import time

        from distlab import kernel_cache_is_warm, studies

        start = time.perf_counter()
        before = "warm" if kernel_cache_is_warm() else "cold"
        try:
            studies.warm_kernel_cache(name or None, log=lambda line: typer.echo(line, err=True))
        except ValueError as err:
            raise typer.BadParameter(str(err), param_hint="NAME") from None
        cache = os.environ.get("NUMBA_CACHE_DIR", "numba's default cache")
        typer.echo(f"numba kernels compiled and cached in {cache} ({before} before) in {time.perf_counter() - start:.0f} s",
                   err=True)


def _results_of(studies, results: Path, name: str) -> Path | None:
    """The results file the figure of ``name`` reads: the full study's if present, else the quick one's."""
    return next((p for p in (studies.results_path(results, name, s) for s in ("full", "quick")) if p.exists()), None)


def _no_results_message(studies, results: Path, names: list[str]) -> str:
    """Which files were looked for and the command that writes them (figures never run a study)."""
    out = "" if results == Path("results") else f" --out {results}"
    looked = ", ".join(str(studies.results_path(results, n, s)) for n in names for s in ("full", "quick"))
    commands = " && ".join(f"distlab study {n} --quick{out}" for n in names)
    return f"no results for {', '.join(map(repr, names))} under {results} (looked for {looked}); run `{commands}` first"
