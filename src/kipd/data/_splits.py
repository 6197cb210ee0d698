"""Validation splits, class-balanced subsets, and the KRR regression targets."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from kipd.data._datasets import Dataset


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
