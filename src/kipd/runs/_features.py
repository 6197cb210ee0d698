"""Runs on random features: the feature map a config names, its kernel matrices, and the
exact kernel as referee.

A run on features (``--features W:M``) trains through :func:`kipd.distill.kip_on_features`
(fresh networks each step); everything that reads a support set during or after it uses
one fixed draw of the same map (:func:`feature_kernel`), so readings are comparable from
step to step. The map estimates the NNGP or the NTK (``--feature-kernel``). The exact
kernel judges it twice: at the start, the relative error of the map's kernel against the
same exact kernel on a few of the run's images (:func:`referee_error`), and at the end,
the KRR test accuracy of the distilled set with the exact NTK.
"""

from __future__ import annotations

import functools
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import kipd.kernels
from kipd import compute
from kipd.kernels import FeatureFn

FEATURE_CHUNK = 256
"""Images per forward pass of the feature map: one compiled shape (the last chunk is
padded), and a few hundred MiB of activations at most for a width-128 ConvNet."""

REFEREE_IMAGES = 16
"""Images of the start-of-run comparison with the exact NNGP: 136 kernel entries."""

REFEREE_DRAWS = 16
"""Independent draws of the networks averaged in :func:`referee_error`: one draw's error
is dominated by a random overall scale shared by every entry (strongly correlated images
such as Fashion-MNIST's), which varies several-fold from draw to draw. Measured on 16
Fashion-MNIST images at ``convnet 32:2`` (128 draws): single draws 0.11-0.66 (10th-90th
percentile); the mean of 4 scattered with std 0.12, of 16 with std 0.06 (the median of
16: 0.10). 16 draws of 16 images cost milliseconds."""

_EVAL_STREAM = 0x657661
"""Folded into the run's seed to draw the fixed networks of :func:`feature_kernel`."""


def feature_fn(config: Any) -> FeatureFn:
    """The random feature map of a config on features (``config.feature_map``, estimating
    ``config.feature_kernel``)."""
    width, networks = config.feature_map
    return kipd.kernels.random_features(
        config.eval_kernel, width=width, networks=networks, get=config.feature_kernel
    )


class FeatureKernel(NamedTuple):
    """The kernel ``phi(x1) . phi(x2)`` of one fixed draw of a feature map.

    Attributes:
      features: ``features(key, images) -> (n, p)`` (:func:`kipd.kernels.random_features`),
        jitted: every chunk of a run shares one compiled map.
      key: draws its networks.
      name: what the run calls it, e.g. ``convnet features 128:4`` (NNGP) or ``convnet
        NTK features 16:4``.
    """

    features: FeatureFn
    key: jax.Array
    name: str

    def rows(self, images: Any) -> np.ndarray:
        """``(n, p)`` features of ``images`` ``(n, H, W, C)``, :data:`FEATURE_CHUNK` images
        per pass."""
        images = np.asarray(images, np.float32)
        chunks = []
        for first in range(0, len(images), FEATURE_CHUNK):
            chunk = images[first : first + FEATURE_CHUNK]
            padded = np.zeros((FEATURE_CHUNK, *images.shape[1:]), np.float32)
            padded[: len(chunk)] = chunk
            chunks.append(np.asarray(self.features(self.key, jnp.asarray(padded)))[: len(chunk)])
        return np.concatenate(chunks)

    def matrix(self, x1: Any, x2: Any = None) -> np.ndarray:
        """``(n1, n2)`` kernel matrix (``x2=None``: ``K(x1, x1)``), float32."""
        phi1 = self.rows(x1)
        phi2 = phi1 if x2 is None else self.rows(x2)
        return phi1 @ phi2.T


def threshold_note(config: Any, image_shape: tuple[int, ...], num_classes: int) -> str | None:
    """A note where the feature count ``p`` of a config on features is near its support
    size ``n_s`` (``3/4 n_s <= p <= 2 n_s``): at the interpolation threshold KRR on
    features is poor (measured, natural Fashion-MNIST, 500 images, ConvNet maps of 2
    networks, 2000 test images: 75.5% at ``p = 217``, 74.3% at 289, 62.9% at 433, 51.9% at
    577, 68.4% at 865, 74.2% at 1153; docs/distill.md), so it names maps of 4x the
    networks and of a quarter of the width; ``None`` otherwise."""
    width, networks = config.feature_map
    support = config.images_per_class * num_classes

    def count(width: int, networks: int) -> int:
        return kipd.kernels.feature_count(
            config.eval_kernel,
            tuple(image_shape),
            width=width,
            networks=networks,
            get=config.feature_kernel,
        )

    features = count(width, networks)
    if not 3 * support / 4 <= features <= 2 * support:
        return None
    options = [(width, 4 * networks)] + ([(width // 4, networks)] if width >= 4 else [])
    named = " or ".join(f"--features {w}:{m} (p = {count(w, m)})" for w, m in options)
    return (
        f"note: features {config.features} give p = {features} per image, near the {support} "
        "support images: at this interpolation threshold KRR on features is poor "
        f"(docs/distill.md). Pass e.g. {named}"
    )


def feature_label(config: Any) -> str:
    """How messages name the map of a config on features: ``features 128:4`` (the NNGP's,
    RFAD's map) or ``NTK features 16:4``."""
    estimated = "" if config.feature_kernel == "nngp" else "NTK "
    return f"{estimated}features {config.features}"


def feature_kernel(config: Any) -> FeatureKernel:
    """The fixed-draw feature kernel of a run on features (readings and evaluation)."""
    key = jax.random.fold_in(jax.random.PRNGKey(config.seed), _EVAL_STREAM)
    name = f"{config.eval_kernel} {feature_label(config)}"
    return FeatureKernel(jax.jit(feature_fn(config)), key, name)


def referee_error(config: Any, images: Any, *, executor: compute.Executor | None = None) -> float:
    """Relative Frobenius error ``|K_phi - K| / |K|`` of the feature kernel of a run on
    features against the exact kernel it estimates (``config.feature_kernel``), on the
    first :data:`REFEREE_IMAGES` of ``images`` ``(n, H, W, C)``, averaged over
    :data:`REFEREE_DRAWS` draws of the networks (a number near 0 means the features stand
    for the exact kernel; ~1 that they do not)."""
    images = jnp.asarray(images[:REFEREE_IMAGES], jnp.float32)
    exact = np.asarray(
        compute.kernel_matrix(
            compute.KernelSpec(config.eval_kernel, get=config.feature_kernel),
            images,
            executor=executor,
        ),
        np.float64,
    )
    features = jax.jit(feature_fn(config))
    errors = []
    base = jax.random.PRNGKey(config.seed)
    for draw in range(REFEREE_DRAWS):
        phi = np.asarray(features(jax.random.fold_in(base, draw), images), np.float64)
        errors.append(np.linalg.norm(phi @ phi.T - exact) / np.linalg.norm(exact))
    return float(np.mean(errors))


TIMING_IMAGES = 16
"""Images per timed pass of :func:`feature_image_seconds`."""


@functools.cache
def feature_image_seconds(
    name: str, width: int, networks: int, get: str, image_shape: tuple[int, ...]
) -> tuple[float, float]:
    """Seconds per image of the feature map of ``name`` at ``width`` x ``networks``
    estimating ``get`` on this machine: its forward pass, and its forward pass with the
    gradient of the features with respect to the images (a KIP step's support). Compiled,
    then the best of two timed passes of :data:`TIMING_IMAGES` images; once per process."""
    features = kipd.kernels.random_features(name, width=width, networks=networks, get=get)
    images = jnp.zeros((TIMING_IMAGES, *image_shape), jnp.float32)
    key = jax.random.PRNGKey(0)
    forward = jax.jit(features)
    gradient = jax.jit(jax.grad(lambda x: jnp.sum(features(key, x) ** 2)))
    seconds = []
    for run in (lambda: forward(key, images), lambda: gradient(images)):
        jax.block_until_ready(run())  # compiles
        timed = []
        for _ in range(2):
            begun = time.perf_counter()
            jax.block_until_ready(run())
            timed.append(time.perf_counter() - begun)
        seconds.append(min(timed) / TIMING_IMAGES)
    return seconds[0], seconds[1]
