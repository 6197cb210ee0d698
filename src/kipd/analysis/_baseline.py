"""Natural-image baselines (paper Table A1): KRR on random class-balanced natural subsets.

For each draw, a random class-balanced subset of ``max(per_class)`` train images per class
is drawn, in random order within each class; the subset of ``k`` per class is the first
``k`` of each class. The subsets of one draw are therefore nested (1 in 2 in 4 in 8 per
class), and each is on its own a uniformly random class-balanced subset; different draws
are independent. The kernel between every drawn image and the test images is computed
once and sliced for every draw and size, which is what makes 20 draws affordable.

Optionally the draws come from a fixed random *pool* of ``pool_per_class`` images per
class instead of the whole train set, so that fewer distinct images need a test kernel.
The mean over draws then estimates the accuracy expected given that pool (one random
sample of the train set), and the spread over draws misses the pool's own variation; the
draws overlap more as the pool shrinks. ``bench/table_a1.py`` says what that costs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
from tqdm.auto import tqdm

from kipd import compute, data
from kipd.analysis._errors import AnalysisError
from kipd.analysis._krr import krr_test_accuracy
from kipd.distill import LAMBDA0

PER_CLASS = (1, 2, 4, 8, 16, 32, 64, 128)
"""Images per class of Table A1's rows."""

BASELINE_DRAWS = 20
"""Random subsets per row (Table A1)."""


class BaselineRow(NamedTuple):
    """One row of Table A1.

    Attributes:
      per_class: natural images per class.
      mean: mean KRR test accuracy over the draws.
      std: their standard deviation (``np.std``).
      accuracies: ``(draws,)`` the accuracy of each draw.
    """

    per_class: int
    mean: float
    std: float
    accuracies: tuple[float, ...]


class Baseline(NamedTuple):
    """Natural-image baselines of one dataset and kernel.

    Attributes:
      dataset: dataset name.
      kernel: architecture of the NTK.
      preprocessing: ``"standard"`` or ``"zca"``.
      test_size: test images evaluated.
      draws: random subsets per row.
      pool_per_class: size of the fixed pool per class drawn from, or ``None`` (the whole
        train set).
      seed: seed of the test subset, the pool and the draws.
      lambda0: relative KRR ridge.
      distinct_images: train images that needed a test kernel (the union of all draws).
      kernel_pairs: kernel entries computed in all.
      seconds: wall time.
      rows: one :class:`BaselineRow` per size.
      subsets: ``(draws, C, max(per_class))`` the train indices drawn, per draw and class
        in random order; the row of ``k`` per class uses ``subsets[:, :, :k]``.
    """

    dataset: str
    kernel: str
    preprocessing: str
    test_size: int
    draws: int
    pool_per_class: int | None
    seed: int
    lambda0: float
    distinct_images: int
    kernel_pairs: int
    seconds: float
    rows: tuple[BaselineRow, ...]
    subsets: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready values, without ``subsets``."""
        fields = {k: v for k, v in self._asdict().items() if k != "subsets"}
        return {**fields, "rows": [row._asdict() for row in self.rows]}


def _draw_accuracies(
    spec: compute.KernelSpec,
    preprocessing: data.Preprocessing,
    ds: data.Dataset,
    subsets: np.ndarray,
    per_class: Sequence[int],
    test: tuple[Any, np.ndarray],
    lambda0: float,
    executor: compute.Executor | None,
    progress: bool,
) -> np.ndarray:
    """``(len(per_class), draws)`` KRR test accuracies of the draws ``subsets`` (train
    indices of ``ds``, ``(draws, C, max(per_class))``) on ``test``: preprocessed test
    images and their class ids.

    The test kernel once, against every drawn image; each draw's K_ss either sliced from
    the kernel among all drawn images or computed per draw, whichever has fewer entries.
    """
    test_images, test_labels = test
    union, positions = np.unique(subsets, return_inverse=True)
    positions = positions.reshape(subsets.shape)
    draws, draw_size = len(subsets), positions[0].size
    union_images = preprocessing.apply(ds.x_train[union])
    k_ts = compute.kernel_matrix(
        spec,
        test_images,
        union_images,
        executor=executor,
        desc="K(test, drawn images)" if progress else None,
    )
    per_draw_kss = _kernel_pairs(subsets, 0)["support kernels"] < len(union) ** 2
    k_union = None if per_draw_kss else compute.kernel_matrix(spec, union_images, executor=executor)
    accuracies = np.empty((len(per_class), draws))
    for draw in tqdm(range(draws), desc="draws", disable=not progress):
        full = positions[draw].ravel()
        if k_union is None:
            k_draw = compute.kernel_matrix(spec, union_images[full], executor=executor)
        else:
            k_draw = k_union[np.ix_(full, full)]
        for row, k in enumerate(per_class):
            # The first k of each class, as positions within this draw and within the union.
            within = np.arange(draw_size).reshape(positions[draw].shape)[:, :k].ravel()
            labels = data.centered_one_hot(ds.y_train[union[full[within]]], ds.num_classes)
            accuracies[row, draw] = krr_test_accuracy(
                k_ts[:, full[within]], k_draw[np.ix_(within, within)], labels, test_labels, lambda0
            )
    return accuracies


def _checked_per_class(
    per_class: Sequence[int], draws: int, pool_per_class: int | None, test_size: int | None
) -> tuple[int, ...]:
    """``per_class`` as a tuple, once the options of :func:`natural_baseline` are checked."""
    per_class = tuple(per_class)
    if not per_class or any(not isinstance(k, int) or k < 1 for k in per_class):
        raise AnalysisError(
            f"images per class must be integers >= 1, got {list(per_class)}: pass e.g. "
            "--per-class 1,2,4,8"
        )
    if draws < 1:
        raise AnalysisError(f"draws must be >= 1, got {draws}: pass e.g. --draws 20")
    if test_size is not None and not (isinstance(test_size, int) and test_size >= 1):
        raise AnalysisError(
            f"test size must be an integer >= 1, got {test_size!r}: pass e.g. --test-size 2000, "
            "or leave it out for the whole test set"
        )
    if pool_per_class is not None and pool_per_class < max(per_class):
        raise AnalysisError(
            f"the pool of {pool_per_class} images per class is smaller than the largest subset "
            f"({max(per_class)} per class): pass --pool-per-class {max(per_class)} or more"
        )
    return per_class


def _kernel_pairs(subsets: np.ndarray, test_count: int) -> dict[str, int]:
    """Kernel entries of the baseline of the draws ``subsets``: the test kernel against the
    union of their images, and the support kernels per draw or once among the union,
    whichever has fewer entries (:func:`_draw_accuracies`)."""
    union = len(np.unique(subsets))
    per_draw = len(subsets) * subsets[0].size ** 2
    return {"test kernel": union * test_count, "support kernels": min(per_draw, union**2)}


def _estimate(
    spec: compute.KernelSpec,
    image_shape: tuple[int, ...],
    per_class: Sequence[int],
    subsets: np.ndarray,
    test_count: int,
    log: Callable[[str], None] | None,
) -> compute.Estimate:
    """The cost of :func:`natural_baseline` on this machine (times a few kernel blocks)."""
    union = len(np.unique(subsets))
    return compute.kernel_estimate(
        f"baseline of {len(subsets)} draws x {list(per_class)} per class ({spec.name}), "
        f"{union} distinct images against {test_count} test images",
        spec,
        image_shape,
        union,
        _kernel_pairs(subsets, test_count),
        log=log,
    )


def _draw_subsets(
    ds: data.Dataset, per_class: int, draws: int, pool_per_class: int | None, seed: int
) -> np.ndarray:
    """``(draws, C, per_class)`` train indices of ``ds``: the draws of
    :func:`natural_baseline`, from the whole train split or a fixed random pool of
    ``pool_per_class`` images per class."""
    pool_key, draw_key = jax.random.split(jax.random.PRNGKey(seed))
    candidates = np.arange(len(ds.y_train))
    try:
        if pool_per_class is not None:
            candidates, _, _ = data.class_balanced_subset(
                candidates, ds.y_train, pool_per_class, pool_key
            )
        return _class_balanced_draws(candidates, ds.y_train[candidates], per_class, draws, draw_key)
    except ValueError as err:
        raise AnalysisError(f"cannot draw the subsets from {ds.name}: {err}") from err


def _class_balanced_draws(
    candidates: np.ndarray, labels: np.ndarray, per_class: int, draws: int, key: jax.Array
) -> np.ndarray:
    """``(draws, C, per_class)`` train indices: per draw, a random class-balanced subset
    of ``candidates``, in random order within each class."""
    out = []
    for draw in range(draws):
        chosen, _, _ = data.class_balanced_subset(
            candidates, labels, per_class, jax.random.fold_in(key, draw)
        )
        out.append(chosen.reshape(-1, per_class))
    return np.stack(out)


def natural_baseline(
    dataset: str = "fashion_mnist",
    kernel: str = "convnet",
    per_class: Sequence[int] = PER_CLASS,
    *,
    draws: int = BASELINE_DRAWS,
    test_size: int | None = None,
    pool_per_class: int | None = None,
    seed: int = 0,
    zca: bool | None = None,
    zca_regularization: float | None = None,
    data_dir: str | None = None,
    lambda0: float = LAMBDA0,
    executor: compute.Executor | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    budget_seconds: float | None = None,
) -> Baseline:
    """KRR test accuracy of random class-balanced natural subsets (paper Table A1).

    Args:
      dataset: built-in name or path, as ``kipd.data.load``.
      kernel: architecture of the NTK (``convnet`` in the paper).
      per_class: images per class of each row.
      draws: random subsets per row (20 in the paper).
      test_size: a fixed random test subset of this size, drawn by kipd's one policy
        (:func:`kipd.data.draw_test_subset` with ``seed``); ``None``: the whole test set.
      pool_per_class: draw from a fixed random pool of this many train images per class
        (fewer test kernel entries; see the module notes); ``None``: the whole train set.
      seed: seed of the test subset, the pool and the draws.
      zca: regularized ZCA preprocessing; ``None``: the paper's choice (RGB only).
      zca_regularization: its strength; ``None``: the dataset's default.
      data_dir: folder searched first for the dataset's files.
      lambda0: relative KRR ridge.
      executor: where the kernel blocks go (default: this process's devices).
      progress: progress bars.
      log: where status lines go (the ``estimate:`` line); ``None`` measures nothing.
      budget_seconds: stop with :class:`kipd.compute.OverBudgetError` if estimated to take
        longer (``None``: no limit).

    Returns:
      :class:`Baseline`, rows in the order of ``per_class``.

    Raises:
      AnalysisError: bad options (the message names the fix). ValueError: unknown kernel,
      or the dataset cannot be loaded.

    Example:
      >>> b = natural_baseline(  # doctest: +SKIP
      ...     "fashion_mnist", "fc1", (1, 2), draws=5, test_size=1000
      ... )
      >>> [(row.per_class, round(row.mean, 3)) for row in b.rows]  # doctest: +SKIP

    Paper: appendix C.2, Table A1.
    """
    started = time.perf_counter()
    per_class = _checked_per_class(per_class, draws, pool_per_class, test_size)
    spec = compute.KernelSpec(kernel)
    spec.build()  # an unknown name fails here, before the data is loaded
    ds = data.load(dataset, data_dir=data_dir)
    preprocessing = data.fit_dataset_preprocessing(ds, zca, zca_regularization)
    test_indices = data.draw_test_subset(len(ds.y_test), test_size, seed)
    test_labels = ds.y_test[test_indices]
    draw_indices = _draw_subsets(ds, max(per_class), draws, pool_per_class, seed)
    pairs = _kernel_pairs(draw_indices, len(test_labels))
    if log is not None or budget_seconds is not None:
        estimate = _estimate(spec, ds.image_shape, per_class, draw_indices, len(test_labels), log)
        fix = "--test-size N, fewer --draws, --pool-per-class N, or a cheaper --kernel"
        estimate.announce(log, budget_seconds, fix)
    test = (preprocessing.apply(ds.x_test[test_indices]), test_labels)
    accuracies = _draw_accuracies(
        spec, preprocessing, ds, draw_indices, per_class, test, lambda0, executor, progress
    )
    return Baseline(
        dataset=ds.name,
        kernel=kernel,
        preprocessing=preprocessing.method,
        test_size=len(test_labels),
        draws=draws,
        pool_per_class=pool_per_class,
        seed=seed,
        lambda0=lambda0,
        distinct_images=len(np.unique(draw_indices)),
        kernel_pairs=int(sum(pairs.values())),
        seconds=round(time.perf_counter() - started, 1),
        rows=tuple(
            BaselineRow(k, float(acc.mean()), float(acc.std()), tuple(float(a) for a in acc))
            for k, acc in zip(per_class, accuracies)
        ),
        subsets=draw_indices,
    )
