"""``distlab train``, ``sweep``, ``export-teacher`` and ``evaluate``: thin typer wrappers over ``deep``.

``distlab train``'s options are generated from the fields of :class:`deep.config.TrainConfig` (and
``--sac-NAME`` / ``--mapping-NAME`` from :class:`deep.config.SACConfig` / :class:`deep.config.RuleMapping`),
with each field's help text: a new hyperparameter is
one line in ``deep/config.py`` (CleanRL's dataclass-as-CLI). ``--set KEY=VALUE`` still overrides any
setting. Argument problems exit 2 ("Invalid value", naming the option); a refused run directory, a
damaged checkpoint or a diverged run exits 1 with one line ``error: ...``; a run stopped by SIGTERM/SIGINT
exits 128 + the signal's number with one line naming its checkpoint and the command that resumes it.

Registered into the ``distlab`` app by one line in ``distlab/cli.py``; torch is imported only inside the
commands so that ``distlab --help`` stays fast.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Annotated, Optional

import typer

from distlab.plugins import PLUGIN_HELP

__all__ = ["register", "train_options"]

_TYPES = {"int": int, "float": float, "str": str, "bool": bool, "int | None": Optional[int], "float | None": Optional[float],
          "str | None": Optional[str], "tuple[int, ...] | None": Optional[str]}


def _parse_set(items: list[str] | None) -> dict:
    """``--set sac.width=64 --set distill_batches=200`` -> {"sac.width": 64, "distill_batches": 200} (JSON values)."""
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


def train_options() -> list[tuple[str, inspect.Parameter]]:
    """(setting key, typer parameter) for every TrainConfig field and nested option group field (SACConfig,
    RuleMapping): the options of ``distlab train``."""
    from deep.config import NESTED, TrainConfig

    out = []
    panels = {"sac.": "SAC", "mapping.": "Rule mapping (deep.distill)"}
    for prefix, cls in (("", TrainConfig), *((f"{name}.", cls) for name, cls in NESTED.items())):
        for f in fields(cls):
            if f.name in NESTED:
                continue
            flag = "--" + (prefix.rstrip(".") + "-" if prefix else "") + f.name.replace("_", "-")
            kind = _TYPES[str(f.type)]
            decl = f"{flag}/--no-{flag[2:]}" if kind is bool else flag
            default = f.default if f.default is not MISSING else None
            param = inspect.Parameter(prefix.replace(".", "_") + f.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                      annotation=Annotated[kind, typer.Option(decl, help=f.metadata.get("help", ""),
                                                                              rich_help_panel=panels.get(prefix))])
            out.append((prefix + f.name, param))
    return out


def _load_plugins(specs: list[str] | None) -> None:
    """``--plugin``: load the user's rules (and installed ``distlab.rules`` entry points) before the run."""
    from distlab.plugins import PluginError, load_plugins

    try:
        load_plugins(specs)
    except PluginError as err:
        raise typer.BadParameter(str(err), param_hint="--plugin") from None


def _fail(err: Exception) -> typer.Exit:
    typer.echo(f"error: {err}", err=True)
    return typer.Exit(1)


def _stopped(err) -> typer.Exit:
    """A run stopped by a signal (``deep.train.Interrupted``): its one line, and the signal's exit status."""
    typer.echo(str(err), err=True)
    return typer.Exit(err.exit_code)


def register(app: typer.Typer) -> None:
    """Add the ``train``, ``sweep``, ``export-teacher`` and ``evaluate`` commands to ``app``."""
    options = train_options()

    def train(**kwargs):
        """Train ensemble SAC with a distillation method on one environment (see deep.train, deep.methods)."""
        from deep.checkpoint import CheckpointError
        from deep.config import ConfigError, TrainConfig, with_overrides
        from deep.train import Interrupted, RunDirError, TrainingDiverged, default_run_dir, train as train_run

        resume, overwrite, sets, seeds = kwargs.pop("resume"), kwargs.pop("overwrite"), kwargs.pop("set_"), kwargs.pop("seeds")
        _load_plugins(kwargs.pop("plugin"))  # before the config checks --rule against the registry
        settings = {key: kwargs[param.name] for key, param in options}
        try:
            cfg = with_overrides(TrainConfig(), **{**settings, **_parse_set(sets)})  # --set wins over the named options
        except (ConfigError, TypeError) as err:
            raise typer.BadParameter(str(err)) from None
        if seeds is not None:
            return _train_seeds(cfg, seeds, resume=resume, overwrite=overwrite)
        if cfg.out is None:
            cfg = with_overrides(cfg, out=str(default_run_dir(cfg)))
            typer.echo(f"no --out given: the run goes to {cfg.out}", err=True)
        try:
            tables = train_run(cfg, resume=resume, overwrite=overwrite)
        except ConfigError as err:
            raise typer.BadParameter(str(err)) from None
        except (RunDirError, CheckpointError, TrainingDiverged, ValueError) as err:
            raise _fail(err) from None
        except Interrupted as err:
            raise _stopped(err) from None
        ev = tables["eval"]
        last = ev[ev.step == ev.step.max()]
        typer.echo(f"step {int(last.step.iloc[0])}: best member {last.mean_return.max():.1f}, worst {last.mean_return.min():.1f}"
                   f"; tables and checkpoint in {cfg.out}")

    extra = [
        inspect.Parameter("resume", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=Annotated[
            bool, typer.Option("--resume", help="continue the run in --out from its checkpoint (to --steps, which may be more)")]),
        inspect.Parameter("overwrite", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=Annotated[
            bool, typer.Option("--overwrite", help="replace a run already in --out")]),
        inspect.Parameter("seeds", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
            Optional[str], typer.Option("--seeds", help="independent runs of these seeds in one process, stacked with the "
                                        "ensemble (e.g. 0-4 or 0,2,5); they write OUT/seed_N/ as single runs (deep.seeds)")]),
        inspect.Parameter("set_", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
            Optional[list[str]], typer.Option("--set", help="any setting, KEY=VALUE (e.g. sac.width=64, distill_interval=2000)")]),
        inspect.Parameter("plugin", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
            Optional[list[str]], typer.Option("--plugin", help=PLUGIN_HELP)]),
    ]
    train.__signature__ = inspect.Signature([p for _, p in options] + extra)
    app.command("train")(train)

    def _train_seeds(cfg, seeds_text: str, *, resume: bool, overwrite: bool) -> None:
        """``distlab train --seeds``: the stacked runs of ``deep.seeds`` (one summary line per seed)."""
        from deep.checkpoint import CheckpointError
        from deep.config import ConfigError, with_overrides
        from deep.seeds import parse_seeds, train_seeds
        from deep.train import Interrupted, RunDirError, TrainingDiverged, default_run_dir

        try:
            seeds = parse_seeds(seeds_text)
        except ConfigError as err:
            raise typer.BadParameter(str(err)) from None
        if cfg.seed != 0:
            raise typer.BadParameter(f"give --seed (one run) or --seeds (stacked runs), not both; got --seed {cfg.seed} "
                                     f"and --seeds {seeds_text}")
        if cfg.out is None:
            cfg = with_overrides(cfg, out=str(default_run_dir(cfg)).rsplit("_s", 1)[0] + f"_seeds{seeds[0]}-{seeds[-1]}")
            typer.echo(f"no --out given: the runs go to {cfg.out}/seed_N", err=True)
        try:
            results = train_seeds(cfg, seeds, resume=resume, overwrite=overwrite)
        except ConfigError as err:
            raise typer.BadParameter(str(err)) from None
        except (RunDirError, CheckpointError, TrainingDiverged, ValueError) as err:
            raise _fail(err) from None
        except Interrupted as err:
            raise _stopped(err) from None
        for seed, tables in results.items():
            ev = tables["eval"]
            last = ev[ev.step == ev.step.max()]
            typer.echo(f"seed {seed} step {int(last.step.iloc[0])}: best member {last.mean_return.max():.1f}, "
                       f"worst {last.mean_return.min():.1f}; tables and checkpoint in {cfg.out}/seed_{seed}")

    @app.command()
    def sweep(
        name: Annotated[str, typer.Argument(help="sweep name (a folder under --out)")],
        envs: Annotated[str, typer.Option(help="comma-separated env ids")] = "Hopper-v5",
        methods: Annotated[str, typer.Option(help="comma-separated methods")] = "sac,ensemble-sac,piekd",
        seeds: Annotated[str, typer.Option(help="comma-separated seeds, or a range like 0-4")] = "0,1",
        steps: Annotated[int, typer.Option()] = 1_000_000,
        out: Annotated[Path, typer.Option(help="results root; runs go to OUT/NAME/runs/ENV_METHOD_sSEED")] = Path("results/deep"),
        backend: Annotated[str, typer.Option(help="local or ray")] = "local",
        workers: Annotated[Optional[int], typer.Option()] = None,
        ray_address: Annotated[Optional[str], typer.Option()] = None,
        device: Annotated[str, typer.Option()] = "cpu",
        eval_every: Annotated[int, typer.Option()] = 10_000,
        set_: Annotated[Optional[list[str]], typer.Option("--set", help="setting for every cell, KEY=VALUE")] = None,
        vectorise_seeds: Annotated[bool, typer.Option(
            "--vectorise-seeds/--no-vectorise-seeds",
            help="run the seeds of one env x method as ONE stacked process (deep.seeds; methods it supports), "
                 "writing OUT/NAME/runs/ENV_METHOD_seeds/seed_N; off: one process per seed")] = True,
    ):
        """Run methods x envs x seeds (resumable: finished cells are skipped, killed runs resume)."""
        from deep.config import ConfigError, TrainConfig, with_overrides
        from deep.methods import check_stackable, resolve
        from deep.seeds import parse_seeds
        from deep.seeds import run_seeds_cell
        from deep.train import run_cell
        from distlab.runner import run_grid

        try:
            seed_list = parse_seeds(seeds)
        except ConfigError as err:
            raise typer.BadParameter(str(err)) from None
        sets = _parse_set(set_)
        cells, stacked = [], False
        for env in envs.split(","):
            for method in methods.split(","):
                group = []
                for seed in seed_list:
                    cell = dict(env=env, method=method, seed=seed, steps=steps, device=device, eval_every=eval_every, **sets,
                                out=str(out / name / "runs" / f"{env}_{method}_s{seed}"))
                    try:
                        resolved = resolve(with_overrides(TrainConfig(), **cell))  # every cell valid before any work
                    except ValueError as err:
                        raise typer.BadParameter(f"cell {cell}: {err}") from None
                    group.append(cell)
                try:
                    check_stackable(resolved)
                    stackable = True
                except ConfigError:
                    stackable = False
                if vectorise_seeds and stackable and len(group) > 1:  # cells differing only by seed: one stacked run
                    cell = {key: value for key, value in group[0].items() if key != "seed"}
                    cells.append(dict(cell, seeds=seed_list, out=str(out / name / "runs" / f"{env}_{method}_seeds")))
                    stacked = True
                else:
                    cells += group
        table = run_grid(name, cells, run_seeds_cell if stacked else run_cell, out, backend=backend, workers=workers,
                         ray_address=ray_address, config=dict(envs=envs, methods=methods, seeds=seed_list, steps=steps, sets=sets))
        typer.echo(f"{len(cells)} runs; table of {len(table)} rows in {out / name / 'results.parquet'}")

    @app.command("export-teacher")
    def export_teacher(
        source: Annotated[str, typer.Argument(help="RUN_DIR[:MEMBER] (or a checkpoint.pt[:MEMBER]); default member: the best at the last evaluation")],
        out: Annotated[Path, typer.Option(help="teacher file to write (.pt)")],
        episodes: Annotated[int, typer.Option(help="deterministic episodes measuring the recorded return")] = 10,
        seed: Annotated[int, typer.Option(help="episode e starts from reset(seed + e)")] = 0,
    ):
        """Export one member of a run as a small frozen-teacher file (networks, env, sizes, steps, measured return)."""
        from deep.teacher_file import export_teacher as export

        if episodes < 1:
            raise typer.BadParameter(f"--episodes must be >= 1; got {episodes}")
        try:
            record = export(source, out, episodes=episodes, seed=seed)
        except ValueError as err:
            raise _fail(err) from None
        r = record["recorded_return"]
        typer.echo(json.dumps(dict(out=str(out), env=record["env"], member=record["member"], steps=record["steps"],
                                   bytes=out.stat().st_size, **r)))

    @app.command()
    def evaluate(
        policy: Annotated[str, typer.Option(help="teacher file (distlab export-teacher), or RUN_DIR[:MEMBER]")],
        env: Annotated[Optional[str], typer.Option(help="env id (default: the policy's own)")] = None,
        episodes: Annotated[Optional[int], typer.Option(help="deterministic episodes (default: as recorded, else 10)")] = None,
        seed: Annotated[Optional[int], typer.Option(help="episode e starts from reset(seed + e) (default: as recorded, else 0)")] = None,
        stochastic: Annotated[bool, typer.Option(help="act with samples tanh(mean + std * eps), not tanh(mean)")] = False,
    ):
        """Print one JSON line: mean_return, std_return, episodes of the deterministic (or, with --stochastic, the
        sampled) policy, and the recorded return of the deterministic one."""
        import numpy as np

        from deep.envs import check_env_id, env_dims, make_env
        from deep.teacher_file import load_teacher, policy_returns

        try:
            teacher = load_teacher(policy, "cpu")
            env_id = env or teacher.env
            check_env_id(env_id)
            probe = make_env(env_id)
            dims = env_dims(probe)
            probe.close()
        except ValueError as err:
            raise _fail(err) from None
        if dims != (teacher.obs_dim, teacher.act_dim):
            raise _fail(ValueError(f"{policy} has (obs, act) sizes {(teacher.obs_dim, teacher.act_dim)}; {env_id} has {dims}"))
        recorded = teacher.recorded_return or {}
        n = episodes if episodes is not None else recorded.get("episodes", 10)
        s = seed if seed is not None else recorded.get("seed", 0)
        if n < 1:
            raise typer.BadParameter(f"--episodes must be >= 1; got {n}")
        returns = policy_returns(teacher, env_id, n, s, stochastic=stochastic)
        line = dict(policy=policy, env=env_id, mean_return=float(np.mean(returns)), std_return=float(np.std(returns)),
                    episodes=int(n), seed=int(s), actions="sampled" if stochastic else "deterministic")
        if recorded:
            line["recorded_return"] = recorded.get("mean_return")
            line["recorded_episodes"], line["recorded_seed"] = recorded.get("episodes"), recorded.get("seed")
        typer.echo(json.dumps(line))
