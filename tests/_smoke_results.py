"""Smoke-scale results of every study, computed once per test session (shared by the study and figure tests)."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=1)
def smoke_results_root() -> Path:
    """A temporary results root holding ``smoke/<study>/results.parquet`` for every study."""
    from distlab import studies

    root = Path(tempfile.mkdtemp(prefix="distlab-smoke-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    for name in studies.names():
        studies.run_study(name, "smoke", root, workers=1, progress=False)
    return root
