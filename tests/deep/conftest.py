"""Shared pytest setup of the deep tests: the ``cuda`` marker (tests that need a CUDA device).

Registered here so that it works whether or not ``pyproject.toml`` lists it; the line for
``[tool.pytest.ini_options] markers`` is
``"cuda: needs a CUDA device; skipped without one (run them with bash scripts/gpu_check.sh)"``.
"""


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA device; skipped without one (run them with bash scripts/gpu_check.sh)")
