"""Shared pytest setup of the deep tests: the ``cuda`` marker (tests that need a CUDA device), one torch
thread for the tests that ask for it, and an environment wrapper whose rewards turn NaN.

Registered here so that it works whether or not ``pyproject.toml`` lists it; the line for
``[tool.pytest.ini_options] markers`` is
``"cuda: needs a CUDA device; skipped without one (run them with bash scripts/gpu_check.sh)"``.
"""

import math

import pytest
import torch


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA device; skipped without one (run them with bash scripts/gpu_check.sh)")


@pytest.fixture
def one_torch_thread():
    """One torch thread during the test (xdist runs two workers on two cores), restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class _NanRewardEnv:
    """A gymnasium env whose every reward is NaN (so the critic's loss turns NaN): the divergence tests."""

    def __init__(self, env):
        self.env = env

    def __getattr__(self, name):
        return getattr(self.env, name)

    def step(self, action):
        obs, _, term, trunc, info = self.env.step(action)
        return obs, math.nan, term, trunc, info


@pytest.fixture
def nan_reward_env():
    """The NaN-reward wrapper class: ``nan_reward_env(make_env(env_id))``."""
    return _NanRewardEnv
