"""Validation splits, class-balanced subsets, and the KRR regression targets."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from kipd.data._datasets import Dataset

TEST_SUBSET_STREAMS = {"readings": (), "final": (1,)}
"""The random stream of each use of :func:`draw_test_subset`: the readings taken during
training and the final evaluation draw independent subsets from the same seed."""


def draw_test_subset(
    num_test: int, size: int | None, seed: int, purpose: str = "final"
) -> np.ndarray:
    """The test images a run or an analysis evaluates on: kipd's one test-subset policy.

    A uniformly random subset of ``size`` test indices without replacement, sorted,
    drawn from ``numpy.random.default_rng([seed, *TEST_SUBSET_STREAMS[purpose]])``; the
    whole test set when ``size`` is ``None`` or not smaller than it. A run directory
    records the indices it used (``test_subset.npz``), and every later command on the run
    reuses them.

    Args:
      num_test: images in the test set.
      size: images wanted, ``>= 1``; ``None``: all of them.
      seed: the run's (or analysis') seed.
      purpose: ``"final"`` (a summary's accuracy) or ``"readings"`` (during training).

    Returns:
      ``(t,)`` int64 sorted indices into the test set.

    Raises:
      ValueError: ``size`` below 1 or an unknown ``purpose``.

    Example:
      >>> draw_test_subset(10, 4, seed=0).tolist(), draw_test_subset(10, None, seed=0).size
      ([3, 5, 7, 8], 10)
    """
    if purpose not in TEST_SUBSET_STREAMS:
        raise ValueError(f"purpose must be one of {sorted(TEST_SUBSET_STREAMS)}, got {purpose!r}")
    if size is not None and not (isinstance(size, (int, np.integer)) and size >= 1):
        raise ValueError(
            f"test size must be an integer >= 1, got {size!r}: pass e.g. --test-size 2000"
        )
    if size is None or size >= num_test:
        return np.arange(num_test, dtype=np.int64)
    rng = np.random.default_rng([seed, *TEST_SUBSET_STREAMS[purpose]])
    return np.sort(rng.choice(num_test, size, replace=False)).astype(np.int64)


def split_validation(dataset: Dataset, size: int = 5000, seed: int = 0) -> Dataset:
    """Holds a random validation split out of the train split.

    Args:
      dataset: a dataset without a validation split yet.
      size: number of train images moved to validation, 0 < size < n_train.
      seed: seed of the random choice; the same seed gives the same split.

    Returns:
      A copy of ``dataset`` whose ``x_train``/``y_train`` keep the other n_train - size
      images in their original order, and whose ``x_val``/``y_val`` hold the ``size``
      held-out images, also in original order. Test data is untouched.

    Raises:
      ValueError: ``size`` is out of range, or ``dataset`` already has a validation split.

    Example:
      >>> ds = split_validation(kipd.data.load("cifar10"), size=5000)  # doctest: +SKIP

    Paper: appendix A (a separate 5K validation set chooses hyperparameters).
    """
    n = len(dataset.x_train)
    if dataset.x_val is not None:
        raise ValueError(f"{dataset.name} already has a validation split")
    if not 0 < size < n:
        raise ValueError(f"validation size must be in (0, {n}), got {size}")
    held = np.zeros(n, dtype=bool)
    held[np.random.default_rng(seed).choice(n, size=size, replace=False)] = True
    return dataclasses.replace(
        dataset,
        x_train=dataset.x_train[~held],
        y_train=dataset.y_train[~held],
        x_val=dataset.x_train[held],
        y_val=dataset.y_train[held],
    )


def class_balanced_subset(
    images: np.ndarray,
    labels: np.ndarray,
    per_class: int,
    seed_or_key: int | np.integer | jax.Array,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draws ``per_class`` random images of every class, e.g. to initialize KIP or LS.

    Args:
      images: (n, H, W, C) images (any array type numpy can index).
      labels: (n,) integer class ids.
      per_class: images drawn from each class present in ``labels``, without
        replacement.
      seed_or_key: an int seed or a JAX PRNG key; equal seeds give equal subsets.

    Returns:
      (images, labels, indices): the (k * per_class, H, W, C) images and (k * per_class,)
      labels of the k classes present, grouped by class in ascending class order, and the
      (k * per_class,) int64 indices into the inputs they were taken from.

    Raises:
      ValueError: a class has fewer than ``per_class`` examples, or ``per_class`` < 1.

    Example:
      >>> x, y, idx = class_balanced_subset(ds.x_train, ds.y_train, 10, 0)  # doctest: +SKIP

    Paper: appendix A, "Initialization" (class-balanced subsets of the train data).
    """
    if per_class < 1:
        raise ValueError(f"per_class must be at least 1, got {per_class}")
    labels_np = np.asarray(labels)
    # A JAX key is reduced to a numpy seed so that both spellings give the same kind of
    # draw and the selection runs on the host, where the images are.
    if isinstance(seed_or_key, (int, np.integer)):
        key = jax.random.PRNGKey(int(seed_or_key))
    else:
        key = seed_or_key
    seed = int(jax.random.randint(key, (), 0, np.iinfo(np.int32).max))
    rng = np.random.default_rng(seed)
    chosen = []
    for cls in np.unique(labels_np):
        members = np.flatnonzero(labels_np == cls)
        if len(members) < per_class:
            raise ValueError(
                f"class {cls} has {len(members)} examples, fewer than per_class={per_class}"
            )
        chosen.append(rng.choice(members, size=per_class, replace=False))
    indices = np.concatenate(chosen).astype(np.int64)
    return np.asarray(images)[indices], labels_np[indices], indices


def centered_one_hot(labels: jax.Array | np.ndarray, num_classes: int) -> jax.Array:
    """Mean-centred one-hot regression targets for kernel ridge regression.

    Args:
      labels: (n,) integer class ids in [0, num_classes).
      num_classes: C.

    Returns:
      (n, C) float32: one_hot(labels) - 1/C, so each row sums to zero.

    Example:
      >>> centered_one_hot(jnp.array([0, 2]), 4)  # doctest: +SKIP
      Array([[ 0.75, -0.25, -0.25, -0.25],
             [-0.25, -0.25,  0.75, -0.25]], dtype=float32)

    Paper: appendix A, "Datasets" (mean-centred one-hot labels for the MSE loss).
    """
    return jax.nn.one_hot(labels, num_classes, dtype=jnp.float32) - 1.0 / num_classes
