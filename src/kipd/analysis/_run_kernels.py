"""The kernel matrices that the test-set analyses of a run share, computed once.

The spectral band analysis and the subsampling analysis both need ``K_ss`` and ``K_ts``
of the final and of the initial support against the same test images; a report needs
both analyses, so :func:`run_kernels` computes the four matrices once and the analyses
slice them.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from kipd import data
from kipd.analysis._errors import AnalysisError
from kipd.analysis._runs import Run, load_dataset
from kipd.distill import _run
from kipd.distill._blocks import kernel_matrix


class SupportKernels(NamedTuple):
    """One support set with its kernel matrices.

    Attributes:
      labels: ``(n, C)`` support labels.
      k_ss: ``(n, n)`` support-support kernel.
      k_ts: ``(t, n)`` test-support kernel.
    """

    labels: np.ndarray
    k_ss: np.ndarray
    k_ts: np.ndarray


class RunKernels(NamedTuple):
    """The final and the initial support of a run against one test set.

    Attributes:
      final: the final (learned) support and its kernels.
      initial: the initial (natural) support and its kernels.
      test_labels: ``(t,)`` integer classes of the test images.
      num_classes: C.
      class_names: the C class names.
      kernel: the architecture name of the kernel (its NTK).
      lambda0: the run's relative ridge.
    """

    final: SupportKernels
    initial: SupportKernels
    test_labels: np.ndarray
    num_classes: int
    class_names: tuple[str, ...]
    kernel: str
    lambda0: float


def evaluation_set(
    dataset: data.Dataset, size: int | None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A fixed class-balanced subset of the test set, or the whole test set.

    Args:
      dataset: the dataset.
      size: test images wanted; ``size // C`` are drawn from each class (so the subset
        has ``C * (size // C)`` images). ``None``: the whole test set.
      seed: seed of the draw; the same seed gives the same subset.

    Returns:
      ``(pixels (t, H, W, C), labels (t,))``.

    Raises:
      AnalysisError: ``size`` is below the number of classes or above the test set.
    """
    if size is None:
        return dataset.x_test, dataset.y_test
    n_test, classes = len(dataset.y_test), dataset.num_classes
    if not classes <= size <= n_test:
        raise AnalysisError(
            f"test size must be between {classes} (one image per class) and {n_test} (the "
            f"{dataset.name} test set), got {size}: pass e.g. --test-size {min(2000, n_test)}"
        )
    try:
        pixels, labels, _ = data.class_balanced_subset(
            dataset.x_test, dataset.y_test, size // classes, seed
        )
    except ValueError as err:
        raise AnalysisError(f"no class-balanced test subset of {size} images: {err}") from err
    return pixels, labels


def run_kernels(
    run: Run,
    *,
    kernel: str | None = None,
    test_size: int | None = None,
    seed: int = 0,
    data_dir: str | None = None,
    progress: bool = True,
) -> RunKernels:
    """Kernel matrices of the run's final and initial supports against a test set.

    Args:
      run: a run from :func:`load_run`.
      kernel: architecture of the NTK; default: the run's evaluation kernel (its first).
      test_size: a fixed class-balanced test subset of about this size (see
        :func:`evaluation_set`); ``None``: the whole test set.
      seed: seed of the test subset.
      data_dir: folder searched first for the dataset; default: the run's.
      progress: progress bars over the kernel blocks.

    Returns:
      The :class:`RunKernels`: for ``n`` support and ``t`` test images, ``(n, n)`` and
      ``(t, n)`` matrices for each of the two supports.

    Raises:
      AnalysisError: bad test size. ValueError: unknown kernel, or the dataset cannot be
      loaded.

    Example:
      >>> kernels = run_kernels(load_run("runs/quickstart"), test_size=2000)  # doctest: +SKIP
      >>> kernels.final.k_ts.shape  # doctest: +SKIP
      (2000, 10)
    """
    name = kernel or run.config.eval_kernel
    kernel_fn = _run.ntk(name)  # an unknown name fails here, before the data is loaded
    dataset = load_dataset(run, data_dir)
    pixels, test_labels = evaluation_set(dataset, test_size, seed)
    test_images = run.preprocessing.apply(pixels)

    def support(images: np.ndarray, labels: np.ndarray, which: str) -> SupportKernels:
        desc = f"K(test, {which} support)" if progress else None
        return SupportKernels(
            labels=np.asarray(labels),
            k_ss=kernel_matrix(kernel_fn, images, images),
            k_ts=kernel_matrix(kernel_fn, test_images, images, desc=desc),
        )

    return RunKernels(
        final=support(run.images, run.labels, "final"),
        initial=support(run.init_images, run.init_labels, "initial"),
        test_labels=np.asarray(test_labels),
        num_classes=dataset.num_classes,
        class_names=tuple(dataset.class_names),
        kernel=name,
        lambda0=run.config.lambda0,
    )
