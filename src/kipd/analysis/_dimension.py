"""Intrinsic and linear dimension of a support set, of its images and of its NTK gradients.

Paper §4 (Fig. 7) and appendix A/C (eqs. 4-6, Fig. A3). Four numbers per support set:

- **intrinsic dimension**: the Two-NN estimator (Facco et al. 2017) on the Euclidean
  distances between the (preprocessed, flattened) images;
- **linear dimension**: the fewest principal components that explain 90% of the variance
  of the images;
- **gradient intrinsic / linear dimension**: the same two on the gradients
  ``g(x) = df(x)/dtheta`` of an infinitely wide network. Their inner products are the NTK,
  ``<g(x1), g(x2)> = Theta(x1, x2)``, so by the parallelogram law (eqs. 4-6)
  ``||g(x1) - g(x2)||^2 = Theta(x1, x1) + Theta(x2, x2) - 2 Theta(x1, x2)``, and PCA of the
  gradients is the eigendecomposition of the centred NTK matrix (kernel PCA).

Both estimators therefore work on a Gram matrix of inner products: the images' ``X X^T``
or the NTK. Everything is float64 NumPy.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from tqdm.auto import tqdm

from kipd import compute, runs
from kipd.analysis._errors import AnalysisError

TWO_NN_FRACTION = 0.9
"""Fraction of the points (smallest ratios) in the Two-NN fit: Ansuini et al.'s default."""

LINEAR_VARIANCE = 0.9
"""Fraction of variance the linear dimension explains (paper, appendix A)."""


def gram_distances(gram: np.ndarray) -> np.ndarray:
    """Pairwise Euclidean distances between feature vectors, from their inner products.

    ``d_ij = sqrt(G_ii + G_jj - 2 G_ij)`` (eqs. 4-6 with the NTK as ``G``); rounding can
    make the bracket slightly negative, which is clipped to 0.

    Args:
      gram: ``(n, n)`` symmetric matrix of inner products ``G_ij = <phi(x_i), phi(x_j)>``.

    Returns:
      ``(n, n)`` float64 distances with a zero diagonal.

    Example:
      >>> x = np.array([[0.0, 0.0], [3.0, 4.0]])
      >>> float(gram_distances(x @ x.T)[0, 1])
      5.0
    """
    g = np.asarray(gram, np.float64)
    diagonal = np.diag(g)
    squared = diagonal[:, None] + diagonal[None, :] - 2.0 * g
    distances = np.sqrt(np.clip(squared, 0.0, None))
    np.fill_diagonal(distances, 0.0)
    return distances


def two_nn_dimension(distances: np.ndarray, fraction: float = TWO_NN_FRACTION) -> float:
    """The Two-NN intrinsic dimension estimate (Facco et al. 2017) from pairwise distances.

    For each point, ``mu = r2 / r1``, the ratio of its second- to first-nearest-neighbour
    distance, follows ``P(mu <= m) = 1 - m^(-d)`` on a d-dimensional manifold of locally
    uniform density. So ``-log(1 - F(mu)) = d log(mu)``: ``d`` is the slope of a line
    through the origin fitted to the empirical distribution of the sorted ratios. As in
    the code of Ansuini et al. (2019) that the paper used with its defaults: points whose
    nearest neighbour is at distance 0 (duplicates) or whose two nearest neighbours are
    equally far are dropped, the empirical CDF of the N remaining ratios is ``i / N``, and
    the fit uses the smallest ``min(floor(fraction N), N - 2)`` of them (the largest
    ratios, the tail, are the noisiest).

    Written here in a few lines of NumPy rather than taken from scikit-dimension: that
    package brings scikit-learn and numba (with LLVM) for one least-squares slope.

    Args:
      distances: ``(n, n)`` symmetric pairwise distances (zero diagonal).
      fraction: fraction of the ratios used in the fit.

    Returns:
      The estimated dimension (a float).

    Raises:
      AnalysisError: fewer than 3 points with distinct nearest-neighbour distances.

    Example:
      >>> rng = np.random.default_rng(0)
      >>> x = rng.standard_normal((2000, 2)) @ rng.standard_normal((2, 50))
      >>> round(two_nn_dimension(gram_distances(x @ x.T)))
      2

    Paper: §4 "Dimensional Analysis", Fig. 7.
    """
    d = np.array(distances, np.float64)
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        raise AnalysisError(f"distances must be a square (n, n) matrix, got shape {d.shape}")
    np.fill_diagonal(d, np.inf)
    nearest = np.sort(d, axis=1)[:, :2] if len(d) >= 3 else np.zeros((0, 2))
    r1, r2 = nearest[:, 0], nearest[:, 1]
    good = (r1 > 0) & (r2 > r1)
    ratios = np.sort(r2[good] / r1[good])
    n = len(ratios)
    used = min(math.floor(fraction * n), n - 2)
    if used < 1:
        raise AnalysisError(
            f"Two-NN needs at least 3 points with distinct nearest-neighbour distances; got "
            f"{len(d)} points, {n} usable"
        )
    log_mu = np.log(ratios[:used])
    log_survival = -np.log(1.0 - np.arange(1, used + 1) / n)
    return float(log_mu @ log_survival / (log_mu @ log_mu))


def linear_dimension(gram: np.ndarray, variance: float = LINEAR_VARIANCE) -> int:
    """The fewest principal components that explain ``variance`` of the total variance.

    PCA of feature vectors ``phi(x_i)`` from their Gram matrix ``G``: the centred Gram
    matrix ``H G H`` (``H = I - 11^T / n``) has the same non-zero eigenvalues as the
    covariance of the centred features, so this is PCA for images (``G = X X^T``) and
    kernel PCA for NTK gradients (``G = Theta``).

    Args:
      gram: ``(n, n)`` symmetric matrix of inner products.
      variance: fraction of the variance to explain, in ``(0, 1]``.

    Returns:
      The smallest ``k`` whose top-``k`` eigenvalues sum to at least ``variance`` of the
      total.

    Raises:
      AnalysisError: the features have no variance (all points equal).

    Example:
      >>> x = np.diag([3.0, 1.0, 0.1])            # 3 points, spread mostly along axis 0
      >>> linear_dimension(x @ x.T, variance=0.8)
      1

    Paper: appendix A ("Linear dimension"), Fig. A3.
    """
    g = np.asarray(gram, np.float64)
    centred = g - g.mean(axis=0, keepdims=True)
    centred = centred - centred.mean(axis=1, keepdims=True)
    eigenvalues = np.clip(np.linalg.eigvalsh((centred + centred.T) / 2)[::-1], 0.0, None)
    total = eigenvalues.sum()
    if not total > 0:
        raise AnalysisError("the points have no variance (all equal): no linear dimension")
    explained = np.cumsum(eigenvalues) / total
    # A tolerance so that an exact 90% (constructed data) counts as reached.
    return int(np.searchsorted(explained, variance - 1e-12) + 1)


class Dimensions(NamedTuple):
    """The four dimensions of one support set (Fig. 7, A3).

    Attributes:
      intrinsic: Two-NN dimension of the images.
      linear: PCA components for 90% of the images' variance.
      gradient_intrinsic: Two-NN dimension of the infinite-width gradients (NTK distances).
      gradient_linear: kernel-PCA components for 90% of the gradients' variance.
    """

    intrinsic: float
    linear: int
    gradient_intrinsic: float
    gradient_linear: int


def dimensions(
    images: np.ndarray,
    kernel: str | Callable[[np.ndarray, np.ndarray], np.ndarray],
    *,
    executor: compute.Executor | None = None,
) -> Dimensions:
    """The image and gradient dimensions of a support set.

    Args:
      images: ``(n, H, W, C)`` support images (preprocessed space, as KIP learns them).
      kernel: the architecture whose NTK Gram matrix stands for the gradients' inner
        products (``kipd.kernels.make`` names; computed through ``kipd.compute``), or any
        positive semi-definite ``kernel(x1, x2) -> (n1, n2)``.
      executor: where the kernel blocks go (default: this process's devices).

    Returns:
      :class:`Dimensions`.

    Example:
      >>> x = np.random.default_rng(0).standard_normal((20, 4, 4, 1))
      >>> dimensions(x, "fc1").linear
      9

    Paper: §4, appendix A eqs. (4)-(6), Figs. 7 and A3.
    """
    flat = np.asarray(images, np.float64).reshape(len(images), -1)
    image_gram = flat @ flat.T
    if callable(kernel):
        gradient_gram = np.asarray(kernel(images, images), np.float64)
    else:
        spec = compute.KernelSpec(kernel)
        gradient_gram = compute.kernel_matrix(spec, images, executor=executor)
    return Dimensions(
        intrinsic=two_nn_dimension(gram_distances(image_gram)),
        linear=linear_dimension(image_gram),
        gradient_intrinsic=two_nn_dimension(gram_distances(gradient_gram)),
        gradient_linear=linear_dimension(gradient_gram),
    )


def dimensions_over_training(
    run: runs.Run,
    *,
    kernel: str | None = None,
    executor: compute.Executor | None = None,
    progress: bool = True,
) -> dict[int, Dimensions]:
    """The dimensions of a run's support set at step 0 and at every kept checkpoint.

    Args:
      run: a run from :func:`kipd.runs.load_run`.
      kernel: architecture of the NTK of the gradient dimensions; default: the run's
        evaluation kernel.
      executor: where the kernel blocks go (default: this process's devices).
      progress: a progress bar over the checkpoints.

    Returns:
      ``{step: Dimensions}`` in increasing step order.

    Example:
      >>> run = runs.load_run("runs/quickstart")  # doctest: +SKIP
      >>> for step, dims in dimensions_over_training(run).items():  # doctest: +SKIP
      ...     print(step, dims.intrinsic)

    Paper: Figs. 7 and A3.
    """
    kernel = kernel or run.config.eval_kernel
    supports = runs.checkpoint_supports(run)
    return {
        step: dimensions(images, kernel, executor=executor)
        for step, (images, _) in tqdm(
            supports.items(), desc="dimensions", unit="checkpoint", disable=not progress
        )
    }
