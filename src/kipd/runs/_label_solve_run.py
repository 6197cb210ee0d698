"""A durable Label Solve run: eq. (2) on a class-balanced natural support set, into a run
directory.

Its stages: check the destination -> load the data -> start or resume (``_resume``) ->
``K(targets, support)`` chunk by chunk, each saved as it is done -> solve the labels ->
evaluate the natural and the solved labels -> write the summary. Nearly all of the cost is
``K(targets, support)``, so a killed run resumes with the chunks it saved.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
from tqdm.auto import tqdm

from kipd import compute, data
from kipd.distill import label_solve
from kipd.runs import _resume, _rundir
from kipd.runs._config import LabelSolveConfig
from kipd.runs._context import Log, executor_for, load_dataset, say_start
from kipd.runs._estimate import announce, final_test_size, label_solve_estimate
from kipd.runs._evaluate import Evaluator
from kipd.runs._features import feature_kernel
from kipd.runs._summary import run_summary

KERNEL_ROWS_CHUNK_ENTRIES = 2**18
"""Kernel entries per saved chunk of Label Solve's ``K(targets, support)``: a few minutes
of ConvNet blocks on a 2-core CPU, so a kill loses at most that much; small enough that
saving costs nothing against computing (1 MiB per chunk)."""


class _Targets(NamedTuple):
    """Label Solve's target rows, preprocessed a chunk at a time."""

    dataset: data.Dataset
    preprocessing: data.Preprocessing
    indices: np.ndarray

    def images(self, first: int, stop: int) -> np.ndarray:
        """The preprocessed images of target rows ``first .. stop - 1``."""
        return np.asarray(self.preprocessing.apply(self.dataset.x_train[self.indices[first:stop]]))

    def labels(self) -> np.ndarray:
        """``(n_t, C)`` centred one-hot labels of the target rows."""
        labels = self.dataset.y_train[self.indices]
        return np.asarray(data.centered_one_hot(labels, self.dataset.num_classes))


def _draw_targets(
    config: LabelSolveConfig,
    dataset: data.Dataset,
    preprocessing: data.Preprocessing,
    key: jax.Array,
) -> _Targets:
    """``config.target_size`` train images drawn without replacement, in index order."""
    assert config.target_size is not None  # a resolved config
    drawn = jax.random.choice(key, len(dataset.x_train), (config.target_size,), replace=False)
    return _Targets(dataset, preprocessing, np.sort(np.asarray(drawn)))


KernelMatrix = Callable[..., np.ndarray]
"""``matrix(x1, x2=None, desc=None) -> (n1, n2)``: the run's kernel, exact or on features."""


def _kernel_matrix(config: LabelSolveConfig, executor: compute.Executor) -> KernelMatrix:
    """The kernel Label Solve solves with: exact (through ``executor``), or the run's
    fixed-draw feature kernel."""
    if config.features is not None:
        features = feature_kernel(config)
        return lambda x1, x2=None, desc=None: features.matrix(x1, x2)
    spec = compute.KernelSpec(config.kernel)
    return lambda x1, x2=None, desc=None: np.asarray(
        compute.kernel_matrix(spec, x1, x2, executor=executor, desc=desc)
    )


def _durable_kernel_rows(
    matrix: KernelMatrix,
    targets: _Targets,
    support_images: Any,
    out: Path,
    saved: dict[int, np.ndarray],
    desc: str | None,
) -> np.ndarray:
    """``K(targets, support)`` by chunks of rows, each saved in ``out`` as it is done;
    chunks in ``saved`` (by first row) are reused, not computed again. Entries do not
    depend on how rows are chunked, so a resumed run gets the same matrix.

    Returns:
      ``(len(targets), len(support_images))`` NumPy array.
    """
    n_targets, n_support = len(targets.indices), len(support_images)
    rows_per_chunk = max(64, KERNEL_ROWS_CHUNK_ENTRIES // n_support // 64 * 64)
    chunks = []
    with tqdm(total=n_targets, desc=desc, disable=desc is None, unit="target") as bar:
        for first in range(0, n_targets, rows_per_chunk):
            stop = min(first + rows_per_chunk, n_targets)
            rows = saved.get(first)
            if rows is None or rows.shape != (stop - first, n_support):
                rows = matrix(
                    targets.images(first, stop),
                    support_images,
                    desc=None if desc is None else f"rows {first:,}-{stop - 1:,}",
                )
                _rundir.write_kernel_rows(out, first, rows)
            chunks.append(rows)
            bar.update(stop - first)
    return np.concatenate(chunks)


def _solve(
    config: LabelSolveConfig,
    out: Path,
    begun: _resume.Start,
    targets: _Targets,
    executor: compute.Executor,
    saved: dict[int, np.ndarray],
    progress: bool,
) -> np.ndarray:
    """Stage: the solved labels of the support set (eq. 2), written to ``distilled.npz``."""
    support = begun.init
    matrix = _kernel_matrix(config, executor)
    k_ss = matrix(support["images"])
    desc = "K(targets, support)" if progress else None
    k_ts = _durable_kernel_rows(matrix, targets, support["images"], out, saved, desc)
    labels = label_solve(k_ts, k_ss, targets.labels(), config.lambda0, config.rcond)
    _rundir.write_distilled(out, support["images"], labels, support, config, begun.preprocessing)
    return labels


def _accuracies(
    config: LabelSolveConfig,
    dataset: data.Dataset,
    begun: _resume.Start,
    executor: compute.Executor,
    labels: np.ndarray,
    progress: bool,
) -> tuple[tuple[float, float], dict[str, Any]]:
    """Stage: the exact kernel's test accuracy of the natural and the solved labels (one
    kernel matrix), and for a run on features the feature kernel's, as summary entries."""
    support, final = begun.init, begun.test_subsets["final"]
    exact = Evaluator(config, dataset, begun.preprocessing, executor)
    evaluators = [exact]
    if config.features is not None:
        evaluators.append(exact._replace(kernel=feature_kernel(config)))
    (init_accuracy, final_accuracy), *on_features = [
        evaluator.accuracies(
            support["images"],
            [support["labels"], labels],
            final,
            f"test accuracy ({evaluator.name})" if progress else None,
        )
        for evaluator in evaluators
    ]
    if not on_features:
        return (init_accuracy, final_accuracy), {}
    return (init_accuracy, final_accuracy), {
        "features": config.features,
        "feature_kernel": config.feature_kernel,
        "feature_init_test_accuracy": on_features[0][0],
        "feature_test_accuracy": on_features[0][1],
    }


def _announce(
    config: LabelSolveConfig,
    dataset: data.Dataset,
    num_test: int,
    done_targets: int,
    resume: bool,
    running: compute.Executor,
    log: Log | None,
    budget_seconds: float | None,
) -> None:
    """Stage: where the blocks run, a feature map's threshold note, and the ``estimate:``
    line of the rest of the run, checked against the budget before anything is written."""
    say_start(log, running, config, dataset)
    estimate = label_solve_estimate(
        config,
        dataset.image_shape,
        dataset.num_classes,
        num_test,
        done_targets=done_targets,
        workers=running.workers_alive,
        log=log,
    )
    cheaper = (
        "--target-size N (fewer targets), --test-size N, a cheaper --kernel, or more "
        "workers (--executor ray)"
    )
    announce(estimate, config, dataset, resume, log, budget_seconds, cheaper)


@_resume.one_writer
def run_label_solve(
    config: LabelSolveConfig,
    out: str | os.PathLike,
    *,
    resume: bool = False,
    progress: bool = True,
    executor: compute.Executor | None = None,
    log: Log | None = None,
    budget_seconds: float | None = None,
) -> dict[str, Any]:
    """Runs Label Solve (eq. 2) on a class-balanced natural support set into ``out``.

    Solves for the least-norm labels of the support images that minimize the KRR loss on
    the whole train set (or ``config.target_size`` random train images), then evaluates
    the natural labels and the solved labels with KRR on the whole test set (or
    ``config.test_size`` images of it). ``K(targets, support)``, nearly all of the cost,
    is saved in ``out`` chunk by chunk as it is computed, so a killed run resumes with
    ``resume=True`` where it stopped, to the same labels.

    Args:
      config: the run's options; ``None`` fields are resolved for the dataset.
      out: run directory. Must not exist for a new run; must be a run of the same config
        for ``resume`` (only ``data_dir`` and ``test_size`` may change).
      resume: continue the run in ``out``; a finished run is evaluated again only if
        ``test_size`` changed.
      progress: show progress bars.
      executor: where the kernel blocks go (default: this process's devices).
      log, budget_seconds: as for :func:`run_kip`.

    Returns:
      The summary (also in ``summary.json``): ``init_test_accuracy`` (centred one-hot
      labels), ``test_accuracy`` (solved labels), ``kernel``, ``support_size``,
      ``target_size``, ``test_size``, ``seconds``, ``dataset``, ``algorithm``.

    Raises:
      DistillError: ``out`` exists (without ``resume``), is not a run or a run of another
        config (with ``resume``), another process is writing it, or a file of it is damaged
        (a finished run's ``distilled.npz`` or ``summary.json`` is written again instead).
      ValueError: bad options or dataset.

    Example:
      >>> config = LabelSolveConfig(kernel="fc1")
      >>> run_label_solve(config, "runs/ls")["test_accuracy"]  # doctest: +SKIP

    Paper: eq. (2), §3.1.
    """
    started = time.perf_counter()
    out = Path(out)
    _resume.check_destination(out, resume, config)
    dataset = load_dataset(config, log)
    config = config.resolve(dataset)
    init_key, target_key = jax.random.split(jax.random.PRNGKey(config.seed))
    if resume:
        _resume.check_same_config(out, config)
    num_test = final_test_size(config, dataset)
    end = _resume.kept_end(out, num_test) if resume else _resume.End(None, None)
    if end.summary is not None:
        return end.summary  # a finished run, asked for the same summary
    saved = _rundir.read_kernel_rows(out) if resume else {}
    with executor_for(executor) as running:
        if log is not None or budget_seconds is not None:
            done = sum(len(rows) for rows in saved.values())
            _announce(config, dataset, num_test, done, resume, running, log, budget_seconds)
        begun = _resume.start(config, out, dataset, resume, init_key, log)
        support, final = begun.init, begun.test_subsets["final"]
        targets = _draw_targets(config, dataset, begun.preprocessing, target_key)
        if not resume:
            _resume.create(out, config, begun)
        if end.distilled is not None:  # finished: the solved labels are stored
            labels = end.distilled["labels"]
        else:
            labels = _solve(config, out, begun, targets, running, saved, progress)
        (init_accuracy, final_accuracy), features = _accuracies(
            config, dataset, begun, running, labels, progress
        )
    summary = run_summary(
        config,
        dataset,
        len(support["images"]),
        len(final),
        init_accuracy,
        final_accuracy,
        started,
        target_size=config.target_size,
        **features,
    )
    _rundir.write_summary(out, summary)
    _rundir.remove_kernel_rows(out)
    return summary
