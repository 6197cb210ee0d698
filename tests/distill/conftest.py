"""Shared fixtures of the distill tests: float64 on demand and the kernels runs use."""

import jax
import pytest

from kipd.distill import _run


@pytest.fixture
def x64():
    """Run one test with float64 enabled; the setting is restored afterwards."""
    with jax.enable_x64(True):
        yield


@pytest.fixture(scope="session")
def ntk():
    """``ntk(name)``: the NTK of a named architecture as ``kernel(x1, x2)``, the same object
    runs use, so that tests share compiled functions."""
    return _run.ntk
