"""``make``: the jit-compiled kernel function of a named architecture, and the choice of
its full-resolution stage (``implementation``, with ``"auto"``'s calibration on a GPU).

The calibration builds kernels with ``make`` itself, so it lives here, beside it.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Hashable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from kipd.kernels._architectures import _layers
from kipd.kernels._chunks import map_grid, map_rows, map_symmetric
from kipd.kernels._grid import diagonal_variances, grid_state, pool_follows_stage, stage_relus
from kipd.kernels._layers import Layer, serial
from kipd.kernels._sizes import default_pairs_per_block
from kipd.kernels._stages import FUSED_STAGES, FusedStage, cpu_build

KERNEL_OUTPUTS = ("ntk", "nngp")
"""What a kernel gives (``get``): the NTK (gradient-descent-trained networks; the paper's
kernel and kipd's default) or the NNGP (Bayesian networks)."""

Get = str | tuple[str, ...]
KernelFn = Callable[..., jax.Array | tuple[jax.Array, ...]]


def _parse_get(get: Get) -> tuple[str, ...]:
    names = (get,) if isinstance(get, str) else tuple(get)
    if not names or any(g not in KERNEL_OUTPUTS for g in names):
        raise ValueError(f"get must be 'nngp', 'ntk' or a tuple of them, got {get!r}")
    return names


def _check_images(x: jax.Array, argname: str) -> None:
    if getattr(x, "ndim", None) != 4:
        raise ValueError(
            f"{argname} must be a batch of NHWC images (n, height, width, channels), got "
            f"shape {getattr(x, 'shape', type(x))}; add a channel axis for grayscale: x[..., None]"
        )


def _check_pair(x1: jax.Array, x2: jax.Array | None) -> None:
    _check_images(x1, "x1")
    if x2 is not None:
        _check_images(x2, "x2")
        if x1.shape[1:] != x2.shape[1:]:
            raise ValueError(f"x1 and x2 images differ in shape: {x1.shape[1:]} vs {x2.shape[1:]}")


def _stage(
    implementation: str,
    architecture: tuple[str, float, float, int | None],
    layers: Sequence[Layer],
    in_band: tuple[int, int],
    images: jax.Array,
) -> FusedStage | None:
    """The fused stage of :func:`make`'s kernel that runs on ``images``, or None: the layer
    maps (``"xla"``, no stage, or float64, which only the layer maps compute).
    ``architecture``: ``(name, W_std, b_std, depth)``."""
    chosen = implementation
    if chosen == "auto":
        chosen = auto_implementation(architecture, tuple(images.shape[1:]), jax.default_backend())
    relus = stage_relus(layers)
    if chosen == "xla" or relus == 0 or images.dtype != jnp.float32:
        return None
    if in_band[0] != in_band[1]:
        raise ValueError(f"the fused kernels take a square band, got radius {in_band}")
    _, W_std, b_std, _ = architecture
    return FUSED_STAGES[chosen](
        radius=in_band[0],
        num_relus=relus,
        W_std=W_std,
        b_std=b_std,
        pool=pool_follows_stage(layers),
    )


def _chunk_pairs(
    pairs_per_block: int | None,
    remat: bool,
    in_band: tuple[int, int],
    stage: FusedStage | None,
    x1: jax.Array,
    x2: jax.Array | None,
) -> int:
    """Pairs :func:`make`'s kernel computes at once (see its ``pairs_per_block``)."""
    if pairs_per_block is not None:
        return pairs_per_block
    if remat:
        return default_pairs_per_block(
            in_band,
            x1.shape[1:],
            fused=stage is not None,
            pooled=stage is not None and stage.pools,
        )
    # Every chunk's intermediates are kept anyway: one chunk, which skips the stacking of
    # per-chunk residuals (measured 1.15x faster fwd + VJP at 250 ConvNet pairs on a CPU
    # than chunks of 50).
    return x1.shape[0] * (x1.shape[0] if x2 is None else x2.shape[0])


IMPLEMENTATIONS = ("auto", "xla", "cpu", "pallas")
"""Full-resolution stage implementations: the XLA layer maps, the fused C++ kernel for CPUs,
the fused Pallas kernel for GPUs, or ``auto`` (the fastest available on the backend)."""


def make(
    name: str,
    *,
    W_std: float = 2**0.5,
    b_std: float = 0.1,
    parameterization: str = "ntk",
    depth: int | None = None,
    pairs_per_block: int | None = None,
    implementation: str = "auto",
    remat: bool = True,
) -> KernelFn:
    """The exact infinite-width NNGP / NTK kernel of a named architecture.

    Args:
      name: ``"fc<n>"``, ``"convvec<n>"`` or ``"convnet"`` (see :func:`~kipd.kernels.architecture`).
      W_std, b_std: weight and bias standard deviations.
      parameterization: must be ``"ntk"`` (the infinite-width NTK of the standard
        parameterization depends on the layer widths).
      depth: number of [Conv, ReLU, AvgPool] groups of ``convnet`` (default 3).
      pairs_per_block: pairs computed at once, one chunk (memory and cache use); by default
        :func:`default_pairs_per_block` for the backend (64 ConvNet pairs at 32x32 with
        the C++ stage, one with the XLA stage on a CPU, hundreds on a GPU).
      implementation: the full-resolution stage (the conv and ReLU layers before the
        first pooling, ~90% of a ConvNet kernel's work): ``"xla"`` (layer maps),
        ``"cpu"`` (a fused C++ kernel, compiled on first use with the system's g++; it
        also runs the later [conv, ReLU] groups and poolings, on their bands),
        ``"pallas"`` (a fused Pallas kernel; interpreted on a CPU, which is slow: for
        testing), or ``"auto"``: ``"cpu"`` on a CPU when it compiles, the faster of
        ``"xla"`` and ``"pallas"`` on a GPU (a short calibration, once per shape).
        float64 inputs always use ``"xla"``.
      remat: whether a VJP recomputes each chunk of pairs instead of keeping its
        intermediates (bounded memory). ``False`` keeps them, and computes all pairs as
        one chunk unless ``pairs_per_block`` is given: ``jax.vjp`` then costs more memory
        (~0.5 MB per ConvNet pair at 28x28) and its pullback runs only the backward pass,
        which is what ``kipd.compute`` uses when the pullback is applied in a later pass.

    Returns:
      ``kernel(x1, x2=None, get="ntk")``: ``x1`` of shape ``(n1, H, W, C)``, ``x2`` of
      shape ``(n2, H, W, C)``; returns the ``(n1, n2)`` kernel matrix, or a tuple of them
      when ``get`` is a tuple. ``x2=None`` gives the symmetric ``K(x1, x1)``, each
      unordered pair computed once. Jit-compiled; differentiable with ``jax.grad`` /
      ``jax.vjp`` in both inputs.

    Example:
      >>> kernel = make("convnet")
      >>> x = jnp.ones((2, 28, 28, 1))
      >>> kernel(x, get=("nngp", "ntk"))[1].shape
      (2, 2)
    """
    if parameterization != "ntk":
        raise ValueError(
            "kernels use the NTK parameterization (parameterization='ntk'); the standard "
            "parameterization is available for finite networks via architecture()"
        )
    if pairs_per_block is not None and pairs_per_block < 1:
        raise ValueError(f"pairs_per_block must be >= 1, got {pairs_per_block}")
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(
            f"implementation must be one of {', '.join(map(repr, IMPLEMENTATIONS))}, "
            f"got {implementation!r}"
        )
    layers = _layers(name, W_std=W_std, b_std=b_std, depth=depth)
    in_band = serial(*layers).band(None)
    assert in_band is not None  # every architecture starts from images: a spatial band

    architecture = (name, W_std, b_std, depth)

    def kernel(x1: jax.Array, x2: jax.Array | None = None, get: Get = "ntk"):
        names = _parse_get(get)
        _check_pair(x1, x2)
        stage = _stage(implementation, architecture, layers, in_band, x1)
        chunk = _chunk_pairs(pairs_per_block, remat, in_band, stage, x1, x2)
        with_ntk = "ntk" in names

        def variances(images):
            return diagonal_variances(layers, in_band, images, stage)

        def grid_chunk(side1, side2):
            (images1, v1), (images2, v2) = side1, side2
            state = grid_state(
                layers, in_band, images1, images2, v1, v2, with_ntk=with_ntk, stage=stage
            )
            return {"nngp": state.nngp, "ntk": state.ntk}

        var1 = map_rows(variances, x1, chunk, remat)
        if x2 is None:
            out = map_symmetric(grid_chunk, (x1, var1), math.isqrt(chunk) or 1, remat)
        else:
            out = map_grid(
                grid_chunk, (x1, var1), (x2, map_rows(variances, x2, chunk, remat)), chunk, remat
            )
        results = tuple(out[g] for g in names)
        return results[0] if isinstance(get, str) else results

    return jax.jit(kernel, static_argnames="get")


@functools.cache
def auto_implementation(architecture: Hashable, image_shape: tuple[int, ...], backend: str) -> str:
    """The implementation ``"auto"`` resolves to for a kernel, image shape and backend:
    the C++ kernel on a CPU when it compiles (measured faster than the layer maps,
    docs/kernels.md), else whichever of the XLA layer maps and the Pallas kernel a short
    calibration measures faster.

    Args:
      architecture: ``(name, W_std, b_std, depth)`` as given to ``make``.
      image_shape: ``(H, W, C)``.
      backend: JAX's backend name.
    """
    if backend == "cpu":
        return "cpu" if cpu_build.available() else "xla"
    return _calibrate(architecture, image_shape, ("xla", "pallas"))


def _calibrate(architecture, image_shape, candidates) -> str:
    """The fastest of ``candidates`` on a 16 x 16 chunk of random images (forward)."""
    name, W_std, b_std, depth = architecture
    rng = np.random.default_rng(0)
    images = rng.standard_normal((2, 16, *image_shape), dtype=np.float32)
    seconds: dict[str, float] = {}
    # A kernel traced inside another jit calls this while tracing: evaluate eagerly.
    with jax.ensure_compile_time_eval():
        for implementation in candidates:
            try:
                kernel = make(
                    name, W_std=W_std, b_std=b_std, depth=depth, implementation=implementation
                )
                x1, x2 = jnp.asarray(images[0]), jnp.asarray(images[1])
                jax.block_until_ready(kernel(x1, x2))
                start = time.perf_counter()
                jax.block_until_ready(kernel(x1, x2))
                seconds[implementation] = time.perf_counter() - start
            except Exception:  # noqa: BLE001 - a path that fails here is simply not chosen
                continue
    return min(seconds, key=seconds.__getitem__) if seconds else "xla"
