"""KRR test accuracy: of support sets under several label sets (one kernel matrix), of a
run's support sets on its test subsets while it runs (:class:`Evaluator`), and of any
distilled set afterwards (:func:`evaluate`). Every kernel goes through ``kipd.compute``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import kipd.kernels
from kipd import compute, data
from kipd.distill import accuracy, krr_predict, krr_predict_features
from kipd.runs._config import KipConfig, LabelSolveConfig
from kipd.runs._context import Log, executor_for, say
from kipd.runs._features import FeatureKernel
from kipd.runs._resolve import Resolved, resolve


def krr_test_accuracies(
    kernel: str | FeatureKernel,
    support_images: Any,
    label_sets: Sequence[Any],
    test_images: Any,
    test_labels: Any,
    lambda0: float,
    *,
    executor: compute.Executor | None = None,
    desc: str | None = None,
    get: str = "ntk",
) -> list[float]:
    """KRR test accuracy of one support image set under each of several label sets; the
    kernel matrices once: an exact kernel (by name; its ``get``, ``"ntk"`` or ``"nngp"``)
    through ``kipd.compute`` (any executor), a run's feature kernel from its feature rows
    (by :func:`kipd.distill.krr_predict_features`, stable where a Gram's Cholesky is
    not)."""
    predict: Callable[[Any], jax.Array]
    if isinstance(kernel, FeatureKernel):
        phi_s, phi_t = kernel.rows(support_images), kernel.rows(test_images)

        def predict(labels: Any) -> jax.Array:
            return krr_predict_features(phi_t, phi_s, labels, lambda0)

    else:
        spec = compute.KernelSpec(kernel, get=get)
        k_ss = compute.kernel_matrix(spec, support_images, executor=executor)
        k_ts = compute.kernel_matrix(
            spec, test_images, support_images, executor=executor, desc=desc
        )

        def predict(labels: Any) -> jax.Array:
            return krr_predict(k_ts, k_ss, labels, lambda0)

    return [float(accuracy(predict(jnp.asarray(y)), test_labels)) for y in label_sets]


class Evaluator(NamedTuple):
    """KRR test accuracy of support sets on a run's test subsets, with the run's exact
    kernel (``config.eval_kernel``) or ``kernel``: a run's feature kernel."""

    config: KipConfig | LabelSolveConfig
    dataset: data.Dataset
    preprocessing: data.Preprocessing
    executor: compute.Executor
    kernel: FeatureKernel | None = None

    @property
    def name(self) -> str:
        """The kernel's name, e.g. ``convnet`` or ``convnet features 128:4``."""
        return self.config.eval_kernel if self.kernel is None else self.kernel.name

    def accuracies(
        self, images: Any, label_sets: Sequence[Any], subset: np.ndarray, desc: str | None = None
    ) -> list[float]:
        """The accuracy of ``images`` under each of ``label_sets`` on the test images
        ``subset`` (indices into the test split)."""
        return krr_test_accuracies(
            self.config.eval_kernel if self.kernel is None else self.kernel,
            images,
            label_sets,
            self.preprocessing.apply(self.dataset.x_test[subset]),
            jnp.asarray(self.dataset.y_test[subset]),
            self.config.lambda0,
            executor=self.executor,
            desc=desc,
        )


def _announce(
    resolved: Resolved,
    sets: int,
    running: compute.Executor,
    log: Log | None,
    budget_seconds: float | None,
    get: str,
) -> None:
    """Says the ``estimate:`` line of evaluating ``sets`` support sets and checks it
    against the budget."""
    n_s, num_test = len(resolved.distilled.images), len(resolved.test_indices)
    estimate = compute.kernel_estimate(
        f"KRR of {sets} x {n_s} support images on {num_test} test images ({resolved.kernel})",
        compute.KernelSpec(resolved.kernel, get=get),
        resolved.dataset.image_shape,
        n_s,
        {"test": sets * (num_test + n_s) * n_s},
        workers=running.workers_alive,
        log=log,
    )
    estimate.announce(log, budget_seconds, "a cheaper --kernel, or more workers (--executor ray)")


def evaluate(
    path: str | os.PathLike,
    *,
    dataset: str | None = None,
    data_dir: str | None = None,
    kernel: str | None = None,
    get: str = "ntk",
    zca: bool | None = None,
    zca_regularization: float | None = None,
    progress: bool = True,
    executor: compute.Executor | None = None,
    log: Log | None = None,
    budget_seconds: float | None = None,
) -> dict[str, Any]:
    """KRR test accuracy of a distilled set on the test images of its run.

    Args:
      path: a run directory, its ``distilled.npz``, or a ``.npz`` of the paper's released
        layout.
      dataset: the dataset to test on; default: the run's. Required for the released
        layout, which does not record it; its preprocessing is then the paper's default
        for the dataset, fitted on the train set.
      data_dir: folder searched first for the dataset's files; default: the run's.
      kernel: architecture of the KRR kernel; default: the run's (the first of a
        sampling-KIP family), ``convnet`` for the released layout.
      get: ``"ntk"`` (the paper's kernel and every run's referee) or ``"nngp"`` (the
        kernel a run on random features trains on: its set judged by what it fits).
      zca, zca_regularization: the preprocessing of a released file, which does not record
        it (default: the paper's for the dataset; see :func:`resolve`).
      progress: show a progress bar.
      executor: where the kernel blocks go (default: this process's devices).
      log, budget_seconds: as for :func:`run_kip`.

    Returns:
      ``test_accuracy``, ``kernel``, ``get``, ``dataset``, ``support_size``, ``test_size`` (the
      run's final test subset, so the numbers match its ``summary.json``; the whole test
      set for a released file or another dataset), and for a kipd run or its
      ``distilled.npz`` also ``init_test_accuracy`` (the natural init).

    Raises:
      DistillError: the path holds no distilled set.
      ValueError: no dataset for a released file, images that do not fit the dataset, or
        an unknown ``get``.

    Example:
      >>> evaluate("runs/quickstart")["test_accuracy"]  # doctest: +SKIP
    """
    if get not in kipd.kernels.KERNEL_OUTPUTS:
        raise ValueError(
            f"unknown kernel output {get!r}: pass --get ntk (the paper's kernel) or --get nngp"
        )
    resolved = resolve(
        path,
        dataset=dataset,
        data_dir=data_dir,
        kernel=kernel,
        zca=zca,
        zca_regularization=zca_regularization,
    )
    if resolved.note is not None:
        say(log, f"note: {resolved.note}")
    distilled = resolved.distilled
    test_images, test_labels = resolved.test_set()
    result = {
        "dataset": resolved.dataset.name,
        "kernel": resolved.kernel,
        "get": get,
        "support_size": len(distilled.images),
        "test_size": len(test_labels),
    }
    images, labels = distilled.images, distilled.labels
    separate_init = distilled.init_images is not None and not np.array_equal(
        distilled.init_images, images
    )
    with executor_for(executor) as running:
        if log is not None or budget_seconds is not None:
            _announce(resolved, 2 if separate_init else 1, running, log, budget_seconds, get)
        accuracies = functools.partial(
            krr_test_accuracies,
            resolved.kernel,
            test_images=test_images,
            test_labels=test_labels,
            lambda0=resolved.lambda0,
            executor=running,
            desc="test accuracy" if progress else None,
            get=get,
        )
        if distilled.init_images is None:
            (result["test_accuracy"],) = accuracies(images, [labels])
        elif not separate_init:  # Label Solve: one kernel matrix
            result["test_accuracy"], result["init_test_accuracy"] = accuracies(
                images, [labels, distilled.init_labels]
            )
        else:
            (result["test_accuracy"],) = accuracies(images, [labels])
            (result["init_test_accuracy"],) = accuracies(
                distilled.init_images, [distilled.init_labels]
            )
    return result
