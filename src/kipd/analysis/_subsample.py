"""Subsampling robustness (paper Fig. A1): how much a support set loses when part is dropped.

KIP images are learned jointly, so they may depend on each other more than natural
images do. For each kept fraction, random subsets of the support indices are drawn, and
the KRR test accuracy of the learned subset is compared with that of the *same* indices
of the natural initial support ("the corresponding subsample"). The kernel matrices are
computed once (:func:`run_kernels`) and sliced for every draw.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from tqdm.auto import tqdm

from kipd.analysis._errors import AnalysisError
from kipd.analysis._krr import krr_test_accuracy
from kipd.analysis._run_kernels import RunKernels, SupportKernels

FRACTIONS = (0.2, 0.4, 0.6, 0.8)
"""Kept fractions of the support set."""

DRAWS = 100
"""Random subsets per fraction (the paper averages 100)."""


class SubsampleRow(NamedTuple):
    """KRR test accuracy of random subsets of one size, learned vs natural.

    Attributes:
      fraction: kept fraction of the support set.
      size: images kept, ``max(1, round(fraction * n))``.
      final_mean, final_std: mean and standard deviation (``np.std``) over draws
        (learned support).
      initial_mean, initial_std: the same for the natural initial support.
      final_drop: relative drop ``1 - final_mean / full accuracy`` of the learned support.
      initial_drop: the same for the natural support (Fig. A1's axes).
    """

    fraction: float
    size: int
    final_mean: float
    final_std: float
    initial_mean: float
    initial_std: float
    final_drop: float
    initial_drop: float


def subset_accuracies(
    support: SupportKernels,
    test_labels: np.ndarray,
    subsets: np.ndarray,
    lambda0: float,
) -> np.ndarray:
    """KRR test accuracy of each subset of a support set, from its sliced kernel matrices.

    Args:
      support: labels ``(n, C)``, ``k_ss`` ``(n, n)``, ``k_ts`` ``(t, n)``.
      test_labels: ``(t,)`` integer classes.
      subsets: ``(draws, m)`` support indices, one subset per row.
      lambda0: relative ridge.

    Returns:
      ``(draws,)`` accuracies.
    """
    return np.array(
        [
            krr_test_accuracy(
                support.k_ts[:, idx],
                support.k_ss[np.ix_(idx, idx)],
                support.labels[idx],
                test_labels,
                lambda0,
            )
            for idx in subsets
        ]
    )


def _relative_drop(mean: float, full: float) -> float:
    return 1.0 - mean / full if full > 0 else float("nan")


def subsampling(
    kernels: RunKernels,
    fractions: Sequence[float] = FRACTIONS,
    draws: int = DRAWS,
    seed: int = 0,
    progress: bool = True,
) -> tuple[dict[str, float], list[SubsampleRow]]:
    """KRR test accuracy of random subsets of the learned and of the natural support.

    Each draw is a uniformly random subset of the support indices (not class-balanced,
    so a subset may miss a class, as in a plain subsample); the learned and the natural
    supports use the same indices.

    Args:
      kernels: from :func:`run_kernels`.
      fractions: kept fractions, each in ``(0, 1]``.
      draws: random subsets per fraction.
      seed: seed of the draws.
      progress: a progress bar over the fractions.

    Returns:
      ``(full, rows)``: ``full`` the accuracies of the whole supports,
      ``{"final": ..., "initial": ...}``; ``rows`` one :class:`SubsampleRow` per fraction.

    Raises:
      AnalysisError: a fraction outside ``(0, 1]`` or ``draws < 1``.

    Paper: appendix C.1 "Subsampling", Fig. A1.
    """
    if draws < 1:
        raise AnalysisError(f"draws must be >= 1, got {draws}")
    bad = [f for f in fractions if not 0 < f <= 1]
    if bad or not fractions:
        raise AnalysisError(
            f"fractions must be in (0, 1], got {list(fractions)}: pass e.g. --fractions 0.2,0.5,0.8"
        )
    n = len(kernels.final.labels)
    everything = np.arange(n)[None]
    supports = {"final": kernels.final, "initial": kernels.initial}
    full = {
        which: float(
            subset_accuracies(support, kernels.test_labels, everything, kernels.lambda0)[0]
        )
        for which, support in supports.items()
    }
    rng = np.random.default_rng(seed)
    rows = []
    for fraction in tqdm(fractions, desc="subsampling", unit="fraction", disable=not progress):
        size = max(1, round(fraction * n))
        subsets = np.stack([rng.choice(n, size, replace=False) for _ in range(draws)])
        stats = {}
        for which, support in supports.items():
            acc = subset_accuracies(support, kernels.test_labels, subsets, kernels.lambda0)
            stats[which] = (float(acc.mean()), float(acc.std()))
        rows.append(
            SubsampleRow(
                fraction=float(fraction),
                size=size,
                final_mean=stats["final"][0],
                final_std=stats["final"][1],
                initial_mean=stats["initial"][0],
                initial_std=stats["initial"][1],
                final_drop=_relative_drop(stats["final"][0], full["final"]),
                initial_drop=_relative_drop(stats["initial"][0], full["initial"]),
            )
        )
    return full, rows
