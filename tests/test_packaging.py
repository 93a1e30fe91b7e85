"""pyproject.toml as setuptools reads it: the licence is an SPDX expression, so no install prints the
TOML-table deprecation, and the build requires a setuptools that understands it."""

from __future__ import annotations

import tomllib
import warnings
from pathlib import Path

from packaging.requirements import Requirement

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def test_license_is_an_spdx_string_that_setuptools_reads_without_a_warning():
    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dist = apply_configuration(Distribution(), PYPROJECT)
    licence_warnings = [str(w.message).splitlines()[0] for w in caught if "license" in str(w.message).lower()]
    assert not licence_warnings, licence_warnings
    assert dist.metadata.license_expression == "Apache-2.0"


def test_the_build_requires_a_setuptools_that_accepts_spdx_licences():
    """SPDX strings in project.license (PEP 639) need setuptools >= 77; an older one refuses the file."""
    requires = [Requirement(r) for r in tomllib.loads(PYPROJECT.read_text())["build-system"]["requires"]]
    setuptools = next(r for r in requires if r.name == "setuptools")
    assert "76.9" not in setuptools.specifier and "77.0" in setuptools.specifier
