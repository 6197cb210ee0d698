"""A distilled set together with everything needed to use it: its dataset, its
preprocessing, its test subset, its kernel and ridge.

Every command that takes a distilled set (``evaluate``, ``transfer``, the analyses and the
report) resolves it here, so they agree on what a run was distilled from and which test
images it is judged on.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

import kipd.kernels
from kipd import data
from kipd.distill import LAMBDA0
from kipd.runs._rundir import Distilled, Run, load_distilled, test_subsets

DEFAULT_KERNEL = "convnet"
"""The KRR kernel of a released file, which does not record one (the paper's Table 1)."""


class Resolved(NamedTuple):
    """A distilled set ready to be evaluated.

    Attributes:
      distilled: the set (images, labels, and the initial set where known).
      dataset: the dataset it was distilled from (pixels).
      preprocessing: maps the dataset's pixels into the set's space.
      test_indices: ``(t,)`` the test images to judge it on: the run's recorded final
        subset, or the whole test set for a released file.
      kernel: the architecture of the KRR kernel.
      lambda0: the relative KRR ridge.
      note: a line to show the user, or ``None``: what was assumed for a file that does
        not record its preprocessing.
    """

    distilled: Distilled
    dataset: data.Dataset
    preprocessing: data.Preprocessing
    test_indices: np.ndarray
    kernel: str
    lambda0: float
    note: str | None = None

    def test_set(self) -> tuple[np.ndarray, np.ndarray]:
        """``(images (t, H, W, C) preprocessed, labels (t,))`` of :attr:`test_indices`."""
        indices = self.test_indices
        images = self.preprocessing.apply(self.dataset.x_test[indices])
        return np.asarray(images), np.asarray(self.dataset.y_test[indices])


# Over 60 lines: one decision per attribute of ``Resolved`` (set, dataset, preprocessing,
# test subset, kernel), in the order each needs the one before; every branch is a kind of
# source that the docstring names.
def _preprocessing(
    distilled: Distilled,
    name: str,
    ds: data.Dataset,
    zca: bool | None,
    zca_regularization: float | None,
) -> tuple[data.Preprocessing, str | None]:
    """The preprocessing of a distilled set (see :func:`resolve`) and the note that says
    what was assumed for a set that does not record it (else ``None``)."""
    config = distilled.config
    if distilled.preprocessing is None and config is None:
        preprocessing = data.fit_dataset_preprocessing(ds, zca, zca_regularization)
        reg = (
            ""
            if preprocessing.regularization is None
            else f", regularization {preprocessing.regularization:g}"
        )
        return preprocessing, (
            f"{name} does not record its preprocessing: assumed {preprocessing.method}{reg} "
            f"fitted on the {ds.name} train set"
            + (" (the paper's default)" if zca is None and zca_regularization is None else "")
            + "; pass --zca / --no-zca and --zca-regularization if the set was made otherwise"
        )
    if zca is not None or zca_regularization is not None:
        raise ValueError(
            f"{name} records its preprocessing: leave out --zca / --zca-regularization"
        )
    if distilled.preprocessing is None:
        # A run's distilled.npz away from its preprocessing.npz: the fit is deterministic,
        # so the run's own options give its preprocessing again.
        assert config is not None  # the branch above took the sets without a config
        return data.fit_dataset_preprocessing(ds, config.zca, config.zca_regularization), None
    return distilled.preprocessing, None


def resolve(
    source: str | os.PathLike | Run,
    *,
    dataset: str | None = None,
    data_dir: str | None = None,
    kernel: str | None = None,
    zca: bool | None = None,
    zca_regularization: float | None = None,
) -> Resolved:
    """Resolves a distilled set and its dataset, preprocessing, test subset and kernel.

    Args:
      source: a run directory, its ``distilled.npz``, a ``.npz`` of the paper's released
        layout, or a :class:`Run` already read (finished or not).
      dataset: the dataset; default: the run's. Required for a released file, whose
        preprocessing is then the paper's default for the dataset, fitted on its train set.
      data_dir: folder searched first for the dataset's files; default: the run's.
      kernel: the KRR kernel's architecture; default: the run's first kernel, ``convnet``
        for a released file.
      zca, zca_regularization: the preprocessing of a file that does not record its own
        (the paper's released files); default: the paper's for the dataset. A set that
        records its preprocessing refuses them.

    Returns:
      The :class:`Resolved` set.

    Raises:
      DistillError: nothing readable at ``source``.
      ValueError: no dataset for a released file, an unknown kernel, or a set whose image
        shape or classes do not fit the dataset (the message names the fix).
    """
    if isinstance(source, Run):
        distilled = Distilled(
            images=source.images,
            labels=source.labels,
            config=source.config,
            preprocessing=source.preprocessing,
            init_images=source.init_images,
            init_labels=source.init_labels,
            test_indices=source.test_indices,
        )
        name = str(source.path)
    else:
        distilled = load_distilled(source)
        name = str(source)
    config = distilled.config
    if config is None and dataset is None:
        raise ValueError(
            f"{name} does not record its dataset: pass it, e.g. --dataset fashion_mnist"
        )
    kernel = kernel or (DEFAULT_KERNEL if config is None else config.eval_kernel)
    kipd.kernels.make(kernel)  # an unknown name fails here, before the data is loaded
    same_dataset = config is not None and dataset in (None, config.dataset)
    if config is not None:
        dataset = dataset or config.dataset
        data_dir = config.data_dir if data_dir is None else data_dir
    assert dataset is not None  # given, or the config's (checked above)
    ds = data.load(dataset, data_dir=data_dir)
    images, labels = distilled.images, distilled.labels
    if images.shape[1:] != ds.image_shape or labels.shape[1] != ds.num_classes:
        raise ValueError(
            f"the distilled set has images {images.shape[1:]} and {labels.shape[1]} classes, "
            f"{ds.name} has images {ds.image_shape} and {ds.num_classes} classes: pass the "
            "--dataset it was distilled from"
        )
    preprocessing, note = _preprocessing(distilled, name, ds, zca, zca_regularization)
    if not same_dataset:  # a released file, or a run judged on another dataset
        test_indices = np.arange(len(ds.y_test))
    elif distilled.test_indices is not None:
        test_indices = distilled.test_indices
    else:  # a distilled.npz, or a run of kipd 0.1: the policy that drew them
        assert config is not None  # same_dataset needs one
        test_indices = test_subsets(config, len(ds.y_test))["final"]
    return Resolved(
        distilled=distilled,
        dataset=ds,
        preprocessing=preprocessing,
        test_indices=np.asarray(test_indices),
        kernel=kernel,
        lambda0=LAMBDA0 if config is None else config.lambda0,
        note=note,
    )
