"""``distlab train`` and ``distlab sweep``: thin typer wrappers over :func:`deep.train.train` and the runner.

Registered into the ``distlab`` app by one line in ``distlab/cli.py``; torch is imported only inside the
commands so that ``distlab --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register"]


def _parse_set(items: list[str] | None) -> dict:
    """``--set sac.width=64 --set distill_batches=200`` -> {"sac.width": 64, "distill_batches": 200} (JSON values)."""
    import json

    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"--set expects KEY=VALUE; got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _config(env, method, k, steps, seed, device, out, rule, election, teacher, eval_every, eval_episodes,
            checkpoint_every, widths, distill_mode, distill_batches, compile_mode, sets, progress=True):
    from deep.config import TrainConfig, with_overrides

    fields = dict(env=env, method=method, k=k, steps=steps, seed=seed, device=device, out=None if out is None else str(out),
                  rule=rule, election=election, teacher=teacher, eval_every=eval_every, eval_episodes=eval_episodes,
                  checkpoint_every=checkpoint_every, distill_mode=distill_mode, distill_batches=distill_batches,
                  compile=compile_mode, progress=progress,
                  widths=None if widths is None else tuple(int(w) for w in widths.split(",")))
    return with_overrides(TrainConfig(), **{**fields, **sets})  # --set wins over the named options


def register(app: typer.Typer) -> None:
    """Add the ``train`` and ``sweep`` commands to ``app``."""

    @app.command()
    def train(
        env: Annotated[str, typer.Option(help="gymnasium env id, e.g. HalfCheetah-v5, Hopper-v5, Pendulum-v1")] = "HalfCheetah-v5",
        method: Annotated[str, typer.Option(help="sac, ensemble-sac, sac-extra, ensemble-sac-extra, piekd, piekd-hardcopy, piekd-random-teacher, dpd")] = "piekd",
        k: Annotated[int | None, typer.Option(help="ensemble size (default: the method's: 1 sac, 2 dpd, 3 otherwise)")] = None,
        steps: Annotated[int, typer.Option(help="environment steps")] = 1_000_000,
        seed: Annotated[int, typer.Option()] = 0,
        device: Annotated[str, typer.Option(help="cpu or cuda[:N]")] = "cpu",
        out: Annotated[Path | None, typer.Option(help="run directory (tables, checkpoint)")] = None,
        rule: Annotated[str | None, typer.Option(help="distillation rule of `distlab rules` (piekd's step); default PIEKD's KL + critic L2")] = None,
        election: Annotated[str, typer.Option(help="best, random, epsilon-greedy, ucb1, thompson")] = "best",
        teacher: Annotated[str | None, typer.Option(help="frozen teacher: a run directory or checkpoint.pt, optionally :MEMBER")] = None,
        resume: Annotated[bool, typer.Option(help="continue the run in --out from its checkpoint")] = False,
        eval_every: Annotated[int, typer.Option()] = 10_000,
        eval_episodes: Annotated[int, typer.Option()] = 20,
        checkpoint_every: Annotated[int, typer.Option()] = 10_000,
        widths: Annotated[str | None, typer.Option(help="per-member widths, e.g. 256,1024 (heterogeneous ensemble)")] = None,
        distill_mode: Annotated[str, typer.Option(help="sampled (N random batches) or faithful (public PIEKD code: 5 epochs over the buffer)")] = "sampled",
        distill_batches: Annotated[int, typer.Option(help="N, minibatches per distillation phase (sampled mode)")] = 1_000,
        compile_mode: Annotated[str, typer.Option("--compile", help="none, default, reduce-overhead (CUDA graphs)")] = "none",
        set_: Annotated[list[str] | None, typer.Option("--set", help="any other setting, KEY=VALUE (e.g. sac.width=64, distill_interval=2000)")] = None,
    ):
        """Train ensemble SAC with a distillation method on one environment (see deep.train)."""
        from deep.train import TrainingDiverged, train as train_run

        try:
            cfg = _config(env, method, k, steps, seed, device, out, rule, election, teacher, eval_every, eval_episodes,
                          checkpoint_every, widths, distill_mode, distill_batches, compile_mode, _parse_set(set_))
            tables = train_run(cfg, resume=resume)
        except ValueError as err:
            raise typer.BadParameter(str(err)) from None
        except TrainingDiverged as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(1) from None
        ev = tables["eval"]
        last = ev[ev.step == ev.step.max()]
        typer.echo(f"step {int(last.step.iloc[0])}: best member {last.mean_return.max():.1f}, worst {last.mean_return.min():.1f}"
                   + (f"; tables in {out}" if out else ""))

    @app.command()
    def sweep(
        name: Annotated[str, typer.Argument(help="sweep name (a folder under --out)")],
        envs: Annotated[str, typer.Option(help="comma-separated env ids")] = "Hopper-v5",
        methods: Annotated[str, typer.Option(help="comma-separated methods")] = "sac,ensemble-sac,piekd",
        seeds: Annotated[str, typer.Option(help="comma-separated seeds, or a range like 0-4")] = "0,1",
        steps: Annotated[int, typer.Option()] = 1_000_000,
        out: Annotated[Path, typer.Option(help="results root; runs go to OUT/NAME/runs/ENV_METHOD_sSEED")] = Path("results/deep"),
        backend: Annotated[str, typer.Option(help="local or ray")] = "local",
        workers: Annotated[int | None, typer.Option()] = None,
        ray_address: Annotated[str | None, typer.Option()] = None,
        device: Annotated[str, typer.Option()] = "cpu",
        eval_every: Annotated[int, typer.Option()] = 10_000,
        set_: Annotated[list[str] | None, typer.Option("--set", help="setting for every cell, KEY=VALUE")] = None,
    ):
        """Run methods x envs x seeds (resumable: finished cells are skipped, killed runs resume)."""
        from deep.config import resolve, with_overrides, TrainConfig
        from deep.train import run_cell
        from distlab.runner import run_grid

        if "-" in seeds and "," not in seeds:
            lo, hi = (int(x) for x in seeds.split("-"))
            seed_list = list(range(lo, hi + 1))
        else:
            seed_list = [int(s) for s in seeds.split(",")]
        sets = _parse_set(set_)
        cells = []
        for env in envs.split(","):
            for method in methods.split(","):
                for seed in seed_list:
                    cell = dict(env=env, method=method, seed=seed, steps=steps, device=device, eval_every=eval_every, **sets,
                                out=str(out / name / "runs" / f"{env}_{method}_s{seed}"))
                    try:
                        resolve(with_overrides(TrainConfig(), **cell))  # every cell valid before any work
                    except ValueError as err:
                        raise typer.BadParameter(f"cell {cell}: {err}") from None
                    cells.append(cell)
        table = run_grid(name, cells, run_cell, out, backend=backend, workers=workers, ray_address=ray_address,
                         config=dict(envs=envs, methods=methods, seeds=seed_list, steps=steps, sets=sets))
        typer.echo(f"{len(cells)} runs; table of {len(table)} rows in {out / name / 'results.parquet'}")
