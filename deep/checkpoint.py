"""Checkpoints: one atomic ``checkpoint.pt`` per run directory, and frozen teachers read from them.

A checkpoint holds everything needed to continue a run to the same step count: networks (online and
target), the three Adam optimizers (and DPD's), the replay buffer (all stored transitions, so a resumed
run learns from the same data; 1M HalfCheetah transitions are ~170 MB), the RNG states (numpy, python,
torch CPU and the training device's generator), the counters (env steps, episodes, the acting member),
the election's bandit statistics, R_k's recent returns, and the logs so far. It is written to a
temporary file and renamed, so a kill during the write leaves the previous checkpoint intact.

What a resumed run does differently from an uninterrupted one: the episode in progress at the checkpoint
is abandoned (its transitions are in the buffer; simulator states are not portable across gymnasium
environments) and a new episode starts at the same step count.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

__all__ = ["CHECKPOINT_NAME", "save_checkpoint", "load_checkpoint", "load_frozen_teacher"]

CHECKPOINT_NAME = "checkpoint.pt"


def save_checkpoint(state: dict, directory: str | Path) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / CHECKPOINT_NAME
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".checkpoint.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.exists():
        raise ValueError(f"no checkpoint at {path}")
    return torch.load(path, map_location=device, weights_only=False)


def load_frozen_teacher(spec: str, device: str | torch.device, obs_dim: int, act_dim: int):
    """A 1-member Ensemble holding member ``m`` of the run checkpointed at ``PATH`` (spec ``PATH[:m]``).

    Without ``:m`` the member with the best mean return at the run's last evaluation is taken (member 0
    if the run never evaluated). The teacher's observation and action sizes must match the environment.
    """
    from deep.config import TrainConfig
    from deep.networks import Ensemble

    path, member = spec, None
    head, sep, tail = spec.rpartition(":")
    if sep and tail.isdigit():
        path, member = head, int(tail)
    state = load_checkpoint(path, device)
    cfg = TrainConfig.from_dict(state["config"])
    full = Ensemble(state["obs_dim"], state["act_dim"], cfg.widths, cfg.sac.hidden_layers,
                    log_std_min=cfg.sac.log_std_min, log_std_max=cfg.sac.log_std_max).to(device)
    full.load_state_dict(state["ensemble"])
    if (state["obs_dim"], state["act_dim"]) != (obs_dim, act_dim):
        raise ValueError(f"teacher {path} was trained with (obs, act) sizes {(state['obs_dim'], state['act_dim'])}; "
                         f"this env has {(obs_dim, act_dim)}")
    if member is None:
        evals = [row for row in state.get("eval_log", []) if row["step"] == max((r["step"] for r in state.get("eval_log", [])), default=-1)]
        member = max(evals, key=lambda r: r["mean_return"])["member"] if evals else 0
    if not 0 <= member < full.k:
        raise ValueError(f"teacher member {member} out of range: {path} has K = {full.k}")
    teacher = Ensemble(state["obs_dim"], state["act_dim"], (cfg.widths[member],), cfg.sac.hidden_layers,
                       log_std_min=cfg.sac.log_std_min, log_std_max=cfg.sac.log_std_max).to(device)
    with torch.no_grad():
        src = full.member_tensors(member)
        for name, dst in teacher.member_tensors(0).items():
            dst.copy_(src[name])
    teacher.requires_grad_(False)
    return teacher, member
