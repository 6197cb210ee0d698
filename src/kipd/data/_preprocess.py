"""Preprocessing fitted on train images and applied to any images: standard or ZCA.

standard (appendix A): per channel c, ``(x - mean_c) / std_c`` with the mean and standard
deviation over every train pixel of that channel.

regularized ZCA (appendix A, following Shankar et al. 2020). With x an image flattened to
d = H*W*C features:

1. layer normalization, per image: ``z = (x - mean(x)) / std(x)`` over its d features;
2. feature standardization across train: ``z' = (z - mu) / sigma`` per feature;
3. whitening: ``out = z' W`` with ``W = U (S + lambda * tr(C)/d)^(-1/2) U^T``, where
   ``C = U S U^T`` is the (d, d) covariance of the standardized train features.

lambda = 0 is plain ZCA; as layer normalization leaves C singular (each image's features
sum to zero), it whitens with the pseudo-inverse, giving zero-variance directions a zero
gain. The fit accumulates ``C`` in float64 over chunks of images (never a float64 copy
of the whole train set) and diagonalizes it with ``eigh``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

from kipd import files
from kipd.data._datasets import Dataset, builtin_name

# Paper, appendix A: lambda = 100 for SVHN, 0.1 for CIFAR-10 and CIFAR-100.
_ZCA_REGULARIZATION = {"svhn": 100.0, "cifar10": 0.1, "cifar100": 0.1}
_FALLBACK_ZCA_REGULARIZATION = 0.1
_RGB_BUILTINS = {"svhn", "cifar10", "cifar100"}
_GRAY_BUILTINS = {"mnist", "fashion_mnist"}
# Images per chunk of the float64 fit: 2048 x 3072 x 8 bytes = 48 MiB for CIFAR.
_CHUNK = 2048
# Side of the problem the fit's cost model is measured on: from about 1024 features on,
# BLAS and LAPACK keep the per-d^3 rate they have for larger matrices (measured on 2
# cores: 0.5-0.9 ns per d^3 from d = 1024 to 3072, 6 ns at d = 256), and a fit of it
# costs about a second.
_CALIBRATION_FEATURES = 1024
_PREFIX = "preprocessing."


def default_preprocessing(dataset: Dataset | str) -> str:
    """The paper's preprocessing for a dataset: ``"zca"`` for RGB, ``"standard"`` for
    grayscale.

    Args:
      dataset: a :class:`Dataset` (its channel count decides) or a built-in name.

    Returns:
      ``"zca"`` or ``"standard"``.

    Raises:
      ValueError: ``dataset`` is a string that names no built-in dataset.

    Paper: appendix A, "Preprocessing" and Table 1 (ZCA for RGB datasets only).
    """
    if isinstance(dataset, Dataset):
        return "zca" if dataset.image_shape[-1] == 3 else "standard"
    name = builtin_name(dataset)
    if name in _RGB_BUILTINS:
        return "zca"
    if name in _GRAY_BUILTINS:
        return "standard"
    raise ValueError(f"{dataset!r} is not a built-in dataset; pass the Dataset instead")


def default_zca_regularization(dataset: Dataset | str) -> float:
    """The paper's ZCA regularization strength lambda for a dataset.

    Args:
      dataset: a :class:`Dataset` or a dataset name.

    Returns:
      100.0 for SVHN, 0.1 for CIFAR-10 and CIFAR-100, and 0.1 for any other dataset
      (the paper uses ZCA only on those three).

    Paper: appendix A, "Preprocessing".
    """
    name = dataset.name if isinstance(dataset, Dataset) else dataset
    return _ZCA_REGULARIZATION.get(builtin_name(name) or "", _FALLBACK_ZCA_REGULARIZATION)


@dataclasses.dataclass(frozen=True, eq=False)
class Preprocessing:
    """Fitted preprocessing parameters; a JAX pytree (arrays are leaves).

    Build one with :func:`fit_preprocessing`; use ``apply`` on any images (jit-able, also
    inside a jitted KIP step) and ``invert`` to map results back towards pixels.

    Attributes:
      method: ``"standard"`` or ``"zca"``.
      image_shape: (H, W, C) of the images it was fitted on and accepts.
      mean: standard: (C,) channel means. zca: (d,) feature means of the
        layer-normalized train images.
      std: standard: (C,) channel standard deviations. zca: (d,) feature standard
        deviations. A zero deviation (a constant channel or feature) is stored as 1.
      whitening: zca: (d, d) float32 W. standard: None.
      coloring: zca: (d, d) float32 inverse of W, ``U (S + r)^(1/2) U^T`` with
        r = lambda tr(C)/d (pseudo-inverse when lambda = 0). standard: None.
      eigenvalues: zca: (d,) float64 eigenvalues S of the standardized feature
        covariance, descending. standard: None.
      regularization: zca: lambda. standard: None.
      image_mean: zca: () train average of the per-image means, used by ``invert``.
      image_std: zca: () train average of the per-image standard deviations.

    Paper: appendix A, "Preprocessing".
    """

    method: str
    image_shape: tuple[int, int, int]
    mean: np.ndarray
    std: np.ndarray
    whitening: np.ndarray | None = None
    coloring: np.ndarray | None = None
    eigenvalues: np.ndarray | None = None
    regularization: float | None = None
    image_mean: np.ndarray | np.floating | None = None
    image_std: np.ndarray | np.floating | None = None

    def __repr__(self) -> str:
        # The default repr would print the d x d matrices.
        reg = "" if self.regularization is None else f", regularization={self.regularization}"
        return f"Preprocessing(method={self.method!r}, image_shape={self.image_shape}{reg})"

    def apply(self, images: jax.Array | np.ndarray) -> jax.Array:
        """Preprocesses images with the fitted parameters.

        Args:
          images: (n, H, W, C) pixels in [0, 1], with (H, W, C) == ``image_shape``.

        Returns:
          (n, H, W, C) float32 preprocessed images (a JAX array).

        Raises:
          ValueError: the image shape differs from ``image_shape``.
        """
        x = self._check(images)
        if self.method == "standard":
            return (x - self.mean) / self.std
        flat = _layer_norm(x.reshape(x.shape[0], -1))
        flat = (flat - self.mean) / self.std
        assert self.whitening is not None  # a zca Preprocessing has its matrices
        return (flat @ self.whitening).reshape(x.shape)

    def invert(self, images: jax.Array | np.ndarray) -> jax.Array:
        """Maps preprocessed images back to pixel space, for display.

        standard: the exact inverse, ``x * std_c + mean_c``.

        zca: undoes whitening and feature standardization exactly, but the per-image
        layer normalization discarded each image's own mean and scale, so the result is
        the layer-normalized image rescaled by the train averages:
        ``invert(apply(x)) == (x - mean(x)) / std(x) * image_std + image_mean``.
        That equals x for an image with the average brightness and contrast, and is the
        natural pixel view of a learned (KIP) image, which has no original to recover.
        Values are not clipped to [0, 1].

        Args:
          images: (n, H, W, C) preprocessed images.

        Returns:
          (n, H, W, C) float32 images in (approximately) pixel units.
        """
        x = self._check(images)
        if self.method == "standard":
            return x * self.std + self.mean
        assert self.coloring is not None and self.image_std is not None
        assert self.image_mean is not None  # a zca Preprocessing has all of them
        flat = x.reshape(x.shape[0], -1) @ self.coloring
        flat = flat * self.std + self.mean
        return (flat * self.image_std + self.image_mean).reshape(x.shape)

    def _check(self, images: jax.Array | np.ndarray) -> jax.Array:
        x = jnp.asarray(images, dtype=jnp.float32)
        if x.ndim != 4 or tuple(x.shape[1:]) != tuple(self.image_shape):
            raise ValueError(
                f"images have shape {x.shape}; this preprocessing expects "
                f"(n, {', '.join(map(str, self.image_shape))})"
            )
        return x

    def to_dict(self) -> dict[str, np.ndarray]:
        """The parameters as numpy arrays under ``"preprocessing.*"`` keys, ready to be
        stored in an .npz beside other arrays (``np.savez(f, **p.to_dict(), ...)``)."""
        out = {
            _PREFIX + "method": np.array(self.method),
            _PREFIX + "image_shape": np.array(self.image_shape, dtype=np.int64),
        }
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name not in ("method", "image_shape") and value is not None:
                out[_PREFIX + field.name] = np.asarray(value)
        return out

    @staticmethod
    def stored_in(arrays: Mapping[str, np.ndarray]) -> bool:
        """Whether ``arrays`` hold :meth:`to_dict`'s parameters."""
        return _PREFIX + "method" in arrays

    @classmethod
    def from_dict(cls, arrays: Mapping[str, np.ndarray]) -> Preprocessing:
        """Rebuilds a Preprocessing from :meth:`to_dict`'s arrays (other keys ignored),
        e.g. from ``np.load("distilled.npz")``."""
        if not cls.stored_in(arrays):
            raise ValueError("no preprocessing parameters (preprocessing.* keys) found")
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            key = _PREFIX + field.name
            if key in arrays:
                values[field.name] = np.asarray(arrays[key])
        values["method"] = str(values["method"])
        values["image_shape"] = tuple(int(v) for v in values["image_shape"])
        if "regularization" in values:
            values["regularization"] = float(values["regularization"])
        return cls(**values)

    def save(self, path: str | os.PathLike) -> None:
        """Writes the parameters to an .npz file atomically, with their content hash."""
        files.write_npz(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Preprocessing:
        """Reads parameters written by :meth:`save` (or any .npz holding ``to_dict``).

        Raises:
          kipd.files.DamagedFileError: the file is truncated or corrupted.
        """
        return cls.from_dict(files.read_npz(path))


jax.tree_util.register_dataclass(
    Preprocessing,
    data_fields=["mean", "std", "whitening", "coloring", "eigenvalues", "image_mean", "image_std"],
    meta_fields=["method", "image_shape", "regularization"],
)


def fit_preprocessing(
    x_train: np.ndarray | jax.Array,
    method: str = "standard",
    zca_regularization: float | None = None,
) -> Preprocessing:
    """Fits standard or regularized-ZCA preprocessing on train images.

    Args:
      x_train: (n, H, W, C) train pixels in [0, 1].
      method: ``"standard"`` (channel-wise mean/std) or ``"zca"`` (regularized ZCA).
      zca_regularization: lambda >= 0 for ``"zca"``; None means 0.1, the paper's CIFAR
        value (:func:`default_zca_regularization` gives each dataset's). Ignored by
        ``"standard"``.

    Returns:
      The fitted :class:`Preprocessing`.

    Raises:
      ValueError: unknown method or negative lambda.

    Example:
      >>> lam = default_zca_regularization(ds)  # doctest: +SKIP
      >>> prep = fit_preprocessing(ds.x_train, "zca", lam)  # doctest: +SKIP
      >>> x = prep.apply(ds.x_test)  # doctest: +SKIP

    Paper: appendix A, "Preprocessing" (eq. 3 defines tr(C)/len(C)).
    """
    x = np.asarray(x_train)
    if x.ndim != 4 or len(x) < 2:
        raise ValueError(f"x_train has shape {x.shape}; expected (n >= 2, H, W, C)")
    height, width, channels = (int(s) for s in x.shape[1:])
    shape = (height, width, channels)
    if method == "standard":
        mean, std = _channel_moments(x)
        return Preprocessing("standard", shape, mean, std)
    if method == "zca":
        lam = _FALLBACK_ZCA_REGULARIZATION if zca_regularization is None else zca_regularization
        if lam < 0:
            raise ValueError(f"zca_regularization must be >= 0, got {lam}")
        return _fit_zca(x, shape, float(lam))
    raise ValueError(f"unknown preprocessing method {method!r}; use 'standard' or 'zca'")


def fit_dataset_preprocessing(
    dataset: Dataset, zca: bool | None = None, zca_regularization: float | None = None
) -> Preprocessing:
    """The preprocessing of a run, a baseline or a released set on ``dataset``, fitted on
    its train images: every command that fits one for a dataset goes through here.

    Args:
      dataset: the dataset.
      zca: regularized ZCA; ``None`` means the paper's choice for the dataset
        (:func:`default_preprocessing`: ZCA for RGB, standard for grayscale).
      zca_regularization: ZCA strength; ``None`` means the dataset's default
        (:func:`default_zca_regularization`).

    Example:
      >>> prep = fit_dataset_preprocessing(load("cifar10"))  # doctest: +SKIP
      >>> prep.method, prep.regularization  # doctest: +SKIP
      ('zca', 0.1)
    """
    if zca is None:
        zca = default_preprocessing(dataset) == "zca"
    if not zca:
        return fit_preprocessing(dataset.x_train, "standard")
    if zca_regularization is None:
        zca_regularization = default_zca_regularization(dataset)
    return fit_preprocessing(dataset.x_train, "zca", zca_regularization)


def _channel_moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    channels = x.shape[-1]
    count = x.size // channels
    total = np.zeros(channels)
    for start in range(0, len(x), _CHUNK):
        total += x[start : start + _CHUNK].reshape(-1, channels).sum(0, dtype=np.float64)
    mean = total / count
    # Second pass around the mean: no cancellation, unlike E[x^2] - E[x]^2.
    squares = np.zeros(channels)
    for start in range(0, len(x), _CHUNK):
        chunk = x[start : start + _CHUNK].reshape(-1, channels).astype(np.float64) - mean
        squares += np.einsum("ij,ij->j", chunk, chunk)
    std = np.sqrt(squares / count)
    std = np.where(std > 0, std, 1.0)
    return mean.astype(np.float32), std.astype(np.float32)


def _layer_norm(flat: jax.Array) -> jax.Array:
    """Standardizes each row (one image's features); a constant image is only centred."""
    mean = flat.mean(axis=1, keepdims=True)
    std = flat.std(axis=1, keepdims=True)
    return (flat - mean) / jnp.where(std > 0, std, 1.0)


class _Moments(NamedTuple):
    """What ZCA needs of the train images: the standardized feature covariance and the
    statistics that standardize them."""

    mean: np.ndarray
    std: np.ndarray
    cov: np.ndarray
    image_mean: float
    image_std: float


def _fit_zca(x: np.ndarray, shape: tuple[int, int, int], lam: float) -> Preprocessing:
    return _zca_from_moments(_zca_moments(x, int(np.prod(shape))), shape, lam)


@functools.cache
def _zca_rates(d: int) -> tuple[float, float]:
    """Seconds per ``n d^2`` (the moments) and per ``d^3`` (the rest) of the fit on this
    machine: the fit's own two stages timed on random pixels, ``d`` images of ``d``
    features, the faster of two runs (other work on the machine only slows a run); once
    per process."""
    x = np.random.default_rng(0).random((d, d, 1, 1), dtype=np.float32)
    moments, cubes = [], []
    for _ in range(2):
        started = time.perf_counter()
        fitted = _zca_moments(x, d)
        measured = time.perf_counter()
        _zca_from_moments(fitted, (d, 1, 1), _FALLBACK_ZCA_REGULARIZATION)
        moments.append(measured - started)
        cubes.append(time.perf_counter() - measured)
    return min(moments) / d**3, min(cubes) / d**3


def zca_fit_seconds(num_images: int, image_shape: tuple[int, ...]) -> float:
    """The predicted wall time of a regularized-ZCA fit on this machine.

    With d = H*W*C features, the fit is the covariance of the ``num_images`` train images,
    O(n d^2), then the eigendecomposition of the d x d covariance and the two d x d
    products that make the whitening and coloring matrices, O(d^3), which dominates for
    large images: at 64x64 RGB (d = 12,288) it costs 64 times as much as at 32x32 RGB (d =
    3,072, about 20 s on 2 CPU cores). The two rates are measured once per
    process by fitting random pixels with ``min(d, 1024)`` features twice (about two
    seconds).

    Args:
      num_images: train images the fit reads.
      image_shape: ``(H, W, C)``.

    Returns:
      Seconds.

    Example:
      >>> zca_fit_seconds(50000, (32, 32, 3)) > zca_fit_seconds(50000, (16, 16, 3)) > 0
      True
    """
    d = int(np.prod(image_shape))
    per_moment, per_cube = _zca_rates(min(d, _CALIBRATION_FEATURES))
    return per_moment * num_images * d * d + per_cube * d**3


def _zca_moments(x: np.ndarray, d: int) -> _Moments:
    """The O(n d^2) part of the fit: one pass over chunks of images."""
    n = len(x)
    total = np.zeros(d)
    gram = np.zeros((d, d))
    image_mean_sum = image_std_sum = 0.0
    for start in range(0, n, _CHUNK):
        chunk = x[start : start + _CHUNK].reshape(-1, d).astype(np.float64)
        mean = chunk.mean(axis=1, keepdims=True)
        std = chunk.std(axis=1, keepdims=True)
        image_mean_sum += float(mean.sum())
        image_std_sum += float(std.sum())
        chunk -= mean
        chunk /= np.where(std > 0, std, 1.0)
        total += chunk.sum(axis=0)
        gram += chunk.T @ chunk  # numpy calls BLAS syrk for this symmetric product
    mu = total / n
    cov = gram / n - np.outer(mu, mu)
    sigma = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    sigma = np.where(sigma > 1e-12, sigma, 1.0)
    cov /= np.outer(sigma, sigma)
    return _Moments(mu, sigma, cov, image_mean_sum / n, image_std_sum / n)


def _zca_from_moments(moments: _Moments, shape: tuple[int, int, int], lam: float) -> Preprocessing:
    """The O(d^3) part of the fit: the eigendecomposition and the two d x d products."""
    cov = moments.cov
    d = len(cov)
    trace = float(np.trace(cov))
    # LAPACK's syevr is the fastest of numpy's and scipy's eigensolvers here (3072 x 3072
    # CIFAR covariance: ~20 s against ~30 s for numpy's syevd on 2 cores).
    eigenvalues, eigenvectors = scipy.linalg.eigh(
        cov, driver="evr", overwrite_a=True, check_finite=False
    )
    eigenvalues, eigenvectors = eigenvalues[::-1], eigenvectors[:, ::-1]
    eigenvalues = np.clip(eigenvalues, 0.0, None)  # round-off makes null ones ~ -1e-15
    shifted = eigenvalues + lam * trace / d
    # Directions without variance get a zero gain instead of an infinite one (the
    # pseudo-inverse). They exist only when lambda = 0: layer normalization makes every
    # image's features sum to zero, so C is always singular, and more so when n <= d.
    # The tolerance is numpy's matrix_rank default.
    kept = shifted > shifted[0] * d * np.finfo(np.float64).eps
    gain = np.zeros_like(shifted)
    gain[kept] = shifted[kept] ** -0.5
    whitening = (eigenvectors * gain) @ eigenvectors.T
    coloring = (eigenvectors * np.where(kept, shifted, 0.0) ** 0.5) @ eigenvectors.T
    return Preprocessing(
        method="zca",
        image_shape=shape,
        mean=moments.mean.astype(np.float32),
        std=moments.std.astype(np.float32),
        whitening=whitening.astype(np.float32),
        coloring=coloring.astype(np.float32),
        eigenvalues=eigenvalues,
        regularization=lam,
        image_mean=np.float32(moments.image_mean),
        image_std=np.float32(moments.image_std),
    )
