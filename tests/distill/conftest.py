"""Shared fixtures of the distill tests: float64 on demand."""

import jax
import pytest


@pytest.fixture
def x64():
    """Run one test with float64 enabled; the setting is restored afterwards."""
    with jax.enable_x64(True):
        yield
