"""Shared fixtures of the distill, run-directory and analysis tests: one tiny dataset, one
finished KIP run, and the kernels runs use.

Every test uses the FC1 kernel on the same 8x8x1 images and the same support size, so
the kernel functions compile once per shape for the whole folder.
"""

import functools
import os

import numpy as np
import pytest

from kipd import compute, runs

CLASSES = 3
PER_CLASS = 4  # support images per class: 12 in all


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """A small learnable .npz dataset: 3 classes of 8x8x1 images around class means, noisy
    enough that KRR on a few images is not perfect."""
    rng = np.random.default_rng(0)
    means = rng.random((CLASSES, 8, 8, 1))
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    splits = {}
    for split, n in (("train", 90), ("test", 30)):
        labels = np.arange(n) % CLASSES
        splits[f"x_{split}"] = np.clip(means[labels] + rng.standard_normal((n, 8, 8, 1)), 0, 1)
        splits[f"y_{split}"] = labels
    np.savez(path, **splits, class_names=np.array(["ant", "bee", "cat"]))
    return str(path)


@pytest.fixture(scope="session")
def tiny_run(tiny_dataset, tmp_path_factory):
    """A finished 6-step KIP run (FC1, 4 images per class) keeping every checkpoint."""
    out = tmp_path_factory.mktemp("runs") / "run"
    config = runs.KipConfig(
        dataset=tiny_dataset,
        kernels=("fc1",),
        images_per_class=PER_CLASS,
        steps=6,
        target_batch_size=30,
        checkpoint_every=2,
        eval_every=2,
        eval_size=15,
        keep_best=5,
    )
    runs.run_kip(config, out, progress=False)
    return out


@pytest.fixture(scope="session")
def ntk():
    """``ntk(name)``: the NTK of a named architecture as ``kernel(x1, x2)``, the same object
    runs use, so that tests share compiled functions."""
    return functools.cache(lambda name: compute.KernelSpec(name).build())


@pytest.fixture
def umask_022():
    """Run one test under umask 022 (the usual one: files 0644), restored afterwards."""
    old = os.umask(0o022)
    yield
    os.umask(old)
