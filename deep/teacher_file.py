"""Teachers you can ship: one member of a run exported to a small file, loaded as a frozen ``--teacher``.

``distlab export-teacher RUN_DIR[:MEMBER] --out FILE.pt`` (:func:`export_teacher`) writes

    format="distlab-teacher", version=1, env, obs_dim, act_dim, width, hidden_layers, log_std_min,
    log_std_max, networks (state dict of a 1-member ``deep.networks.Ensemble``: actor, twin critics,
    target critics, log_alpha), steps (env steps the run had trained), member, source (the run), method,
    seed, recorded_return = {mean_return, std_return, episodes, seed, returns (per episode), precision,
    versions, device} (deterministic episodes measured at export: episode e starts from reset(seed + e), as
    ``deep.envs.evaluate_policies``; with the library versions and the device they were measured on)

and nothing else: no replay buffer, no optimizer state (a 2 x 256 HalfCheetah member is ~1.4 MB). The
file is written atomically. It reads training checkpoints of both layouts (``deep.state``), including
those written before the restructure (format 1).

Without ``:MEMBER`` the member with the best mean return at the run's last evaluation is taken (member 0
if the run never evaluated).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import copy

import numpy as np
import torch

from deep.checkpoint import CHECKPOINT_NAME, CheckpointError, load_checkpoint, load_torch_file, save_atomic
from deep.config import TrainConfig
from deep.envs import evaluate_policies
from deep.networks import Ensemble

__all__ = ["FrozenTeacher", "TEACHER_FORMAT", "load_teacher", "export_teacher", "policy_returns", "split_spec",
           "recorded_return"]

TEACHER_FORMAT = "distlab-teacher"


@dataclass
class FrozenTeacher:
    """A 1-member ensemble (no gradients) and where it came from."""

    ensemble: Ensemble
    env: str
    member: int
    steps: int
    source: str
    recorded_return: dict | None = None
    method: str = ""
    seed: int | None = None

    @property
    def obs_dim(self) -> int:
        return self.ensemble.obs_dim

    @property
    def act_dim(self) -> int:
        return self.ensemble.act_dim


def split_spec(spec: str) -> tuple[Path, int | None]:
    """``PATH[:MEMBER]`` -> (PATH, MEMBER or None)."""
    head, sep, tail = str(spec).rpartition(":")
    if sep and tail.isdigit():
        return Path(head), int(tail)
    return Path(spec), None


def _best_member(eval_log: list[dict]) -> int:
    if not eval_log:
        return 0
    last = max(row["step"] for row in eval_log)
    rows = [row for row in eval_log if row["step"] == last]
    return int(max(rows, key=lambda r: r["mean_return"])["member"])


def _member_of_checkpoint(state: dict, member: int | None, where: Path, device) -> FrozenTeacher:
    cfg = TrainConfig.from_dict(state["config"])
    widths = tuple(cfg.widths) if cfg.widths is not None else (cfg.sac.width,) * (cfg.k or 1)
    s = cfg.sac
    full = Ensemble(state["obs_dim"], state["act_dim"], widths, s.hidden_layers, log_std_min=s.log_std_min,
                    log_std_max=s.log_std_max).to(device)
    full.load_state_dict(state["ensemble"])
    member = _best_member(state.get("eval_log", [])) if member is None else member
    if not 0 <= member < full.k:
        raise ValueError(f"teacher member {member} out of range: {where} has K = {full.k} (members 0..{full.k - 1})")
    one = Ensemble(state["obs_dim"], state["act_dim"], (widths[member],), s.hidden_layers, log_std_min=s.log_std_min,
                   log_std_max=s.log_std_max).to(device)
    with torch.no_grad():
        src = full.member_tensors(member)
        for name, dst in one.member_tensors(0).items():
            dst.copy_(src[name])
    one.requires_grad_(False)
    return FrozenTeacher(one, cfg.env, member, int(state["step"]), str(where), method=cfg.method, seed=cfg.seed)


def _from_file(data: dict, path: Path, member: int | None, device) -> FrozenTeacher:
    if data.get("version") != 1:
        raise CheckpointError(f"teacher file {path} has version {data.get('version')!r}; this distlab reads version 1")
    if member not in (None, 0):
        raise ValueError(f"teacher file {path} holds one member (0); got :{member}")
    net = Ensemble(data["obs_dim"], data["act_dim"], (data["width"],), data["hidden_layers"],
                   log_std_min=data["log_std_min"], log_std_max=data["log_std_max"]).to(device)
    net.load_state_dict(data["networks"])
    net.requires_grad_(False)
    return FrozenTeacher(net, data["env"], int(data["member"]), int(data["steps"]), str(path),
                         recorded_return=data.get("recorded_return"), method=data.get("method", ""), seed=data.get("seed"))


def load_teacher(spec: str, device: str | torch.device = "cpu") -> FrozenTeacher:
    """A frozen teacher from an exported file, a run directory or a ``checkpoint.pt``, each optionally ``:MEMBER``."""
    path, member = split_spec(spec)
    if path.is_dir():
        if not (path / CHECKPOINT_NAME).exists():
            raise CheckpointError(f"teacher {spec!r}: run directory {path} has no {CHECKPOINT_NAME}")
        return _member_of_checkpoint(load_checkpoint(path, device), member, path, device)
    data = load_torch_file(path, device, what="teacher")
    if data.get("format") == TEACHER_FORMAT:
        return _from_file(data, path, member, device)
    return _member_of_checkpoint(load_checkpoint(path, device), member, path, device)


def policy_returns(teacher: FrozenTeacher, env: str, episodes: int, seed: int, return_states: bool = False,
                          stochastic: bool = False):
    """Returns (episodes,) of the teacher's deterministic policy tanh(mean) (and its visited states), or of its
    sampled policy.

    The policy network runs in float64 (a copy of the teacher). Why: MuJoCo locomotion amplifies any
    rounding difference of the actions, and float32 matrix kernels round differently on different CPUs.
    Measured on the shipped HalfCheetah good teacher with one pinned stack (mujoco 3.14.0, gymnasium 1.3.0,
    torch 2.13.0), float32: 3,692.6 on this project's AMD EPYC machine against 3,843.1 recorded on an
    earlier machine; in float64, two different summation orders (torch, numpy einsum) give identical returns
    on all four shipped teachers. So a teacher file's return is a property of the file, not of the CPU,
    and a default test checks it.

    ``stochastic=True`` acts with samples a = tanh(mean + std * eps) instead, eps ~ N(0, I) from a torch
    generator seeded with ``seed`` (the policy a KL-distilled student is fitted to, not only its mode)."""
    device = teacher.ensemble.log_alpha.device
    gen = torch.Generator(device=device).manual_seed(int(seed)) if stochastic else None
    policy = copy.deepcopy(teacher.ensemble).double()

    def act(obs):
        x = torch.as_tensor(obs.reshape(1, -1, obs.shape[-1]), device=device, dtype=torch.float64)
        with torch.no_grad():
            mean, log_std = policy.policy(x)
            if stochastic:
                mean = mean + log_std.exp() * torch.randn(mean.shape, generator=gen, device=device)
        return torch.tanh(mean).cpu().numpy().reshape(obs.shape[0], obs.shape[1], -1)

    out = evaluate_policies(act, env, 1, episodes, seed, return_states=return_states)
    if return_states:
        return out[0][0], out[1][0]
    return out[0]


def recorded_return(returns: np.ndarray, seed: int) -> dict:
    """The record of a teacher's measured return: mean, std, per-episode returns, and what they ran on."""
    from distlab.io import device_info, library_versions

    return dict(mean_return=float(np.mean(returns)), std_return=float(np.std(returns)), episodes=len(returns),
                seed=int(seed), returns=[float(r) for r in returns], precision="float64",
                versions=library_versions(), device=device_info())


def export_teacher(spec: str, out: str | Path, *, episodes: int = 10, seed: int = 0) -> dict:
    """Write member ``spec`` (``RUN_DIR[:MEMBER]``, or a teacher file to re-measure) to ``out`` with its measured
    deterministic return (float64 policy, :func:`policy_returns`); the record."""
    teacher = load_teacher(spec, "cpu")
    returns = policy_returns(teacher, teacher.env, episodes, seed)
    ens = teacher.ensemble
    source = teacher.source
    path, _ = split_spec(spec)
    if path.is_file():  # re-measuring a teacher file (e.g. under a new pinned stack) keeps where it came from
        data = load_torch_file(path, "cpu", what="teacher")
        if data.get("format") == TEACHER_FORMAT:
            source = data.get("source", source)
    record = dict(
        format=TEACHER_FORMAT, version=1, env=teacher.env, obs_dim=ens.obs_dim, act_dim=ens.act_dim, width=ens.widths[0],
        hidden_layers=ens.depth, log_std_min=ens.log_std_min, log_std_max=ens.log_std_max,
        networks={k: v.clone() for k, v in ens.state_dict().items()}, steps=teacher.steps, member=teacher.member,
        source=source, method=teacher.method, seed=teacher.seed,
        recorded_return=recorded_return(returns, seed),
    )
    save_atomic(record, out)
    return record
