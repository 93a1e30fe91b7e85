"""distlab: policy distillation in reinforcement learning, exactly (tabular) and at scale (deep).

Importing distlab first points numba's on-disk cache at a directory keyed by a hash of the kernel
sources (the files of ``distlab/`` and ``mdps/`` that use numba), unless ``NUMBA_CACHE_DIR`` is set: numba keys a cached kernel
on the file of the jitted function only, so editing a helper that is inlined (or called) from another
file (``distlab.rollout``, ``distlab.components``, ``distlab.exact`` -> ``distlab.kernels``) would
otherwise load a stale kernel. One directory per source version: ``~/.cache/distlab/numba-<hash>``
(``$XDG_CACHE_HOME`` respected); old ones can be deleted at any time.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

__version__ = "0.1.0"

_PACKAGE = Path(__file__).resolve().parent


def kernel_sources_hash(root: Path | str = _PACKAGE.parent) -> str:
    """A hash of the kernel sources under ``root``: the files of ``distlab/`` and ``mdps/`` (recursively)
    that import numba, names and bytes. (Pure-Python modules are left out, so editing them does not cost a
    recompilation.)"""
    digest = hashlib.sha256()
    root = Path(root)
    needle = b"import " + b"numba"  # spelled apart so that this file does not match itself
    for path in sorted([*root.glob("distlab/**/*.py"), *root.glob("mdps/**/*.py")]):
        source = path.read_bytes()
        if needle not in source:
            continue
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        digest.update(source)
    return digest.hexdigest()[:16]


def kernel_cache_dir(root: Path | str = _PACKAGE.parent) -> Path:
    """The numba cache directory of the kernel sources under ``root``."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "distlab" / f"numba-{kernel_sources_hash(root)}"


def kernel_cache_is_warm(directory: Path | str | None = None) -> bool:
    """Whether numba's cache (``directory``, default the one in use) holds any compiled kernel (an index
    file). A cold cache means the next tabular run first compiles its kernels, for a minute or more."""
    directory = Path(directory or os.environ.get("NUMBA_CACHE_DIR") or kernel_cache_dir())
    return directory.is_dir() and next(directory.rglob("*.nbi"), None) is not None


def _point_numba_cache() -> None:
    if os.environ.get("NUMBA_CACHE_DIR"):
        return  # the user's choice (or a parent process's, with the same sources)
    path = str(kernel_cache_dir())
    os.environ["NUMBA_CACHE_DIR"] = path  # numba reads it at import; child processes inherit it
    if "numba" in sys.modules:  # imported before distlab: set its config too (read when a kernel is decorated)
        sys.modules["numba"].config.CACHE_DIR = path


_point_numba_cache()

from distlab.options import UpdateOptions  # noqa: E402  (after the cache is pointed: options imports no kernels)

__all__ = ["UpdateOptions", "kernel_cache_dir", "kernel_cache_is_warm", "kernel_sources_hash"]
