"""The kernel matrices that the test-set analyses of a run share, computed once.

The spectral band analysis and the subsampling analysis both need ``K_ss`` and ``K_ts``
of the final and of the initial support against the same test images; a report needs
both analyses, so :func:`run_kernels` computes the four matrices once and the analyses
slice them.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from kipd import compute, data, runs


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


def run_kernels(
    run: runs.Run,
    *,
    kernel: str | None = None,
    test_size: int | None = None,
    seed: int | None = None,
    data_dir: str | None = None,
    executor: compute.Executor | None = None,
    progress: bool = True,
) -> RunKernels:
    """Kernel matrices of the run's final and initial supports against a test set.

    Args:
      run: a run from :func:`kipd.runs.load_run`.
      kernel: architecture of the NTK; default: the run's evaluation kernel (its first).
      test_size: test images, drawn by kipd's one policy
        (:func:`kipd.data.draw_test_subset` with ``seed``); ``None``: the run's own final
        test subset (the images of its ``summary.json``).
      seed: seed of that draw; default: the run's seed.
      data_dir: folder searched first for the dataset; default: the run's.
      executor: where the kernel blocks go (default: this process's devices).
      progress: progress bars over the kernel blocks.

    Returns:
      The :class:`RunKernels`: for ``n`` support and ``t`` test images, ``(n, n)`` and
      ``(t, n)`` matrices for each of the two supports.

    Raises:
      ValueError: bad test size, unknown kernel, or the dataset cannot be loaded.

    Example:
      >>> kernels = run_kernels(runs.load_run("runs/quickstart"), test_size=2000)  # doctest: +SKIP
      >>> kernels.final.k_ts.shape  # doctest: +SKIP
      (2000, 10)
    """
    resolved = runs.resolve(run, data_dir=data_dir, kernel=kernel)
    dataset = resolved.dataset
    if test_size is not None:
        seed = run.config.seed if seed is None else seed
        resolved = resolved._replace(
            test_indices=data.draw_test_subset(len(dataset.y_test), test_size, seed)
        )
    test_images, test_labels = resolved.test_set()
    spec = compute.KernelSpec(resolved.kernel)

    def support(images: np.ndarray, labels: np.ndarray, which: str) -> SupportKernels:
        desc = f"K(test, {which} support)" if progress else None
        return SupportKernels(
            labels=np.asarray(labels),
            k_ss=compute.kernel_matrix(spec, images, executor=executor),
            k_ts=compute.kernel_matrix(spec, test_images, images, executor=executor, desc=desc),
        )

    return RunKernels(
        final=support(run.images, run.labels, "final"),
        initial=support(run.init_images, run.init_labels, "initial"),
        test_labels=np.asarray(test_labels),
        num_classes=dataset.num_classes,
        class_names=tuple(dataset.class_names),
        kernel=resolved.kernel,
        lambda0=run.config.lambda0,
    )
