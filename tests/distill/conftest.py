"""Shared fixtures of the distill tests: float64 on demand and the kernels runs use."""

import functools

import jax
import numpy as np
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


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """A tiny learnable .npz dataset: 3 classes of 8x8x1 images around class means (90
    train, 30 test images)."""
    rng = np.random.default_rng(0)
    means = rng.random((3, 8, 8, 1))
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    splits = {}
    for split, n in (("train", 90), ("test", 30)):
        labels = np.arange(n) % 3
        splits[f"x_{split}"] = np.clip(
            means[labels] + 0.3 * rng.standard_normal((n, 8, 8, 1)), 0, 1
        )
        splits[f"y_{split}"] = labels
    np.savez(path, **splits)
    return str(path)
