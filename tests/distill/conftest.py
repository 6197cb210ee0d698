"""Shared fixtures of the distill tests: float64 on demand and the kernels runs use."""

import functools

import jax
import pytest

from kipd import compute


@pytest.fixture
def x64():
    """Run one test with float64 enabled; the setting is restored afterwards."""
    with jax.enable_x64(True):
        yield


@pytest.fixture(scope="session")
def ntk():
    """``ntk(name)``: the NTK of a named architecture as ``kernel(x1, x2)``, the same object
    runs use, so that tests share compiled functions."""
    return functools.cache(lambda name: compute.KernelSpec(name).build())
