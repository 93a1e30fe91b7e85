"""Tidy results on disk: parquet tables written atomically, carrying their config and provenance."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from functools import lru_cache
from pathlib import Path

import pandas as pd

__all__ = ["write_parquet", "read_parquet_metadata", "git_commit", "provenance", "library_versions", "device_info",
           "RECORDED_LIBRARIES"]

# What changes distlab's numbers (constraints.txt pins them; every results file records what actually ran).
RECORDED_LIBRARIES = ("numpy", "numba", "scipy", "pandas", "pyarrow", "torch", "mujoco", "gymnasium")

_META_KEY = b"distlab"


@lru_cache(maxsize=1)
def git_commit() -> str:
    """The commit of the distlab checkout (with ``-dirty`` if modified), or ``"unknown"``."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@lru_cache(maxsize=1)
def library_versions() -> dict:
    """Python's and each :data:`RECORDED_LIBRARIES` package's installed version (None if absent).

    Read from the installed distributions' metadata, so recording them imports nothing (a tabular study
    does not pay for importing torch).
    """
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for name in RECORDED_LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def device_info() -> dict:
    """The machine the numbers came from: CPU model and architecture, core count, and the CUDA device if
    torch is loaded and sees one. Recorded because float32 results (the deep backend) differ between CPU
    models with the same pinned libraries (measured: deep/teachers/README.md)."""
    info = {"cpu": _cpu_model(), "machine": platform.machine(), "cores": os.cpu_count(), "cuda": None}
    torch = sys.modules.get("torch")  # never import torch just to look
    if torch is not None and torch.cuda.is_available():
        info["cuda"] = torch.cuda.get_device_name(0)
    return info


def provenance() -> dict:
    """What every results file records beside its config: package version, commit, library versions, device."""
    from distlab import __version__

    return {"distlab_version": __version__, "git_commit": git_commit(), "versions": library_versions(),
            "device": device_info()}


def write_parquet(table: pd.DataFrame, path: str | Path, config: dict | None = None) -> Path:
    """Write ``table`` to ``path`` atomically (temp file + rename) with config and provenance metadata.

    The metadata (JSON under the schema key ``distlab``) holds ``config`` and :func:`provenance` (package
    version, git commit, library versions, device); read it back with :func:`read_parquet_metadata`.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    if path.suffix != ".parquet":
        path = path / "results.parquet" if path.suffix == "" else path.with_suffix(".parquet")
    path.parent.mkdir(parents=True, exist_ok=True)
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    meta = dict(arrow.schema.metadata or {})
    meta[_META_KEY] = json.dumps({"config": config or {}, **provenance()}, default=str).encode()
    arrow = arrow.replace_schema_metadata(meta)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would make every results file private
    try:
        pq.write_table(arrow, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    """This process's umask: the mode bits a new file must not have (022 -> files are 0644).

    Linux reads it from /proc, which changes nothing; elsewhere it is set and restored at once (a
    moment in which another thread's new file would get the placeholder mask, 022)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def read_parquet_metadata(path: str | Path) -> dict:
    """The ``{"config", "distlab_version", "git_commit", "versions", "device"}`` written by :func:`write_parquet`."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta.get(_META_KEY, b"{}"))
