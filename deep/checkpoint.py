"""Checkpoint files: written atomically, read with one clear error for a damaged file.

A run directory holds one ``checkpoint.pt`` (the :mod:`deep.state` layout: networks, optimizers, the
replay buffer, RNG states, counters, logs; 1M HalfCheetah transitions are ~170 MB). Every file is
written to ``NAME.tmp`` beside it, flushed to disk and renamed over ``NAME``: a kill during the write
leaves the previous file intact, and the one fixed temporary name is overwritten by the next write
(a kill never accumulates stray files, and nothing ever reads a ``.tmp``).

What a resumed run does differently from an uninterrupted one: the episode in progress at the checkpoint
is abandoned (its transitions are in the buffer; simulator states are not portable across gymnasium
environments) and a new episode starts at the same step count.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import torch

__all__ = ["CHECKPOINT_NAME", "CheckpointError", "save_atomic", "save_checkpoint", "load_checkpoint", "load_torch_file",
           "temporary_path"]

CHECKPOINT_NAME = "checkpoint.pt"


class CheckpointError(ValueError):
    """A checkpoint or teacher file that is missing, empty, truncated or not one of ours (names the file)."""


def temporary_path(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


def save_atomic(obj, path: str | Path) -> Path:
    """``torch.save(obj)`` to ``path`` via ``path.tmp``, fsync and rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def save_checkpoint(state: dict, directory: str | Path) -> Path:
    return save_atomic(state, Path(directory) / CHECKPOINT_NAME)


def load_torch_file(path: str | Path, device: str | torch.device = "cpu", *, what: str = "checkpoint") -> dict:
    """A dict saved by ``torch.save``, or CheckpointError naming the file and what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no {what} file at {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{what} file {path} is empty (0 bytes; a write was interrupted?)")
    try:
        data = torch.load(path, map_location=device, weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, OSError, ValueError,
            AttributeError, ImportError, IndexError, KeyError, TypeError) as err:
        raise CheckpointError(f"{what} file {path} is damaged or not a torch file (truncated by a kill or a full "
                              f"disk?): {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{what} file {path} holds a {type(data).__name__}, not a distlab {what}")
    return data


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> dict:
    """The checkpoint in run directory ``path`` (or the file ``path``); CheckpointError if unusable."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    state = load_torch_file(path, device, what="checkpoint")
    missing = [key for key in ("config", "obs_dim", "act_dim", "ensemble", "step") if key not in state]
    if missing:
        raise CheckpointError(f"checkpoint file {path} lacks {', '.join(missing)}: not a distlab training checkpoint")
    return state
