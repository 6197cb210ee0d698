"""The architecture table: FC-n, ConvVec-n and ConvNet as ``serial`` recipes of layers.

One recipe gives both the finite network (``init``/``apply``, for transfer) and the exact
infinite-width kernel (``make``). Conventions follow neural-tangents and the paper
(appendix A): NTK parameterization, ``W_std = sqrt(2)``, ``b_std = 0.1``, 3x3 'SAME'
convolutions, 2x2 average pooling with stride 2.
"""

from __future__ import annotations

import math
import re
from typing import Callable

import jax
import jax.numpy as jnp

from kipd.kernels._blocks import map_grid, map_rows, map_symmetric
from kipd.kernels._grid import (
    FusedStage,
    diagonal_variances,
    grid_state,
    pool_follows_stage,
    stage_blocks,
)
from kipd.kernels._implementations import auto_implementation, fused_stage
from kipd.kernels._layers import (
    Layer,
    avg_pool,
    conv,
    dense,
    flatten,
    global_avg_pool,
    normalization,
    pooled_radius,
    relu,
    serial,
)

Get = str | tuple[str, ...]
KernelFn = Callable[..., jax.Array | tuple[jax.Array, ...]]

ARCHITECTURES = ("fc<depth>", "convvec<depth>", "convnet", "myrtle5")
_NAME = re.compile(r"^(fc|convvec)(\d+)$|^convnet$|^myrtle5$")


def architecture(
    name: str,
    *,
    width: int = 1,
    W_std: float = 2**0.5,
    b_std: float = 0.1,
    parameterization: str = "ntk",
    depth: int | None = None,
    out_width: int = 1,
    norm: str | None = None,
) -> Layer:
    """The layer description of a named architecture.

    Args:
      name: ``"fc<n>"`` (Flatten, n x [Dense, ReLU], Dense), ``"convvec<n>"``
        (n x [Conv, ReLU], Flatten, Dense), ``"convnet"`` (Conv, ReLU, then ``depth`` x
        [Conv, ReLU, AvgPool], Flatten, Dense; paper appendix A) or
        ``"myrtle5"`` (Shankar et al. 2020: 2 x [Conv, ReLU], AvgPool, [Conv, ReLU],
        AvgPool, [Conv, ReLU], global average pool, Dense; finite networks only: its
        kernel raises, as kipd's band kernels have no global average pool).
      width: hidden channels / units of the finite network (the kernel ignores it).
      W_std, b_std: weight and bias standard deviations.
      parameterization: ``"ntk"`` or ``"standard"`` (finite network only).
      depth: for ``convnet``, the number of pooling blocks (default 3).
      out_width: units of the readout (1 by default; the number of classes for transfer;
        the kernel ignores it).
      norm: ``None``, or ``"layer"``, ``"instance"``, ``"batch"``: a normalization after
        every hidden Conv / Dense, before its ReLU (Zhao et al. 2021); finite networks
        only (the kernel of a normalized network raises).

    Returns:
      A :class:`~kipd.kernels.Layer` whose output has ``out_width`` units.
    """
    return serial(
        *_layers(
            name, width=width, W_std=W_std, b_std=b_std, parameterization=parameterization,
            depth=depth, out_width=out_width, norm=norm,
        )
    )


def _layers(
    name: str,
    *,
    width: int = 1,
    W_std: float = 2**0.5,
    b_std: float = 0.1,
    parameterization: str = "ntk",
    depth: int | None = None,
    out_width: int = 1,
    norm: str | None = None,
) -> list[Layer]:
    """The layers of :func:`architecture`, in order."""
    match = _NAME.match(name) if isinstance(name, str) else None
    if match is None:
        raise ValueError(
            f"unknown architecture {name!r}: use fc<depth>, convvec<depth> or convnet (exact "
            "kernels and finite networks), e.g. 'fc3', 'convvec8' or 'convnet'; or myrtle5 (a "
            "finite network for kipd transfer only: it has no exact kernel)"
        )
    if depth is not None and name != "convnet":
        raise ValueError(f"depth= applies to 'convnet' only; {name!r} carries its depth in the name")
    if norm is not None and norm not in ("layer", "instance", "batch"):
        raise ValueError(f"norm must be None, 'layer', 'instance' or 'batch', got {norm!r}")
    if not (isinstance(out_width, int) and out_width >= 1):
        raise ValueError(f"out_width must be an integer >= 1, got {out_width!r}")
    affine = dict(W_std=W_std, b_std=b_std, parameterization=parameterization)
    readout = dense(out_width, **affine)

    def block(layer: Layer) -> list[Layer]:
        # Affine, [normalization], ReLU.
        return [layer, relu()] if norm is None else [layer, normalization(norm), relu()]

    if name == "myrtle5":
        if depth is not None:
            raise ValueError("depth= applies to 'convnet' only; myrtle5 has a fixed depth")
        conv_block = lambda: block(conv(width, **affine))  # noqa: E731
        return [
            *conv_block(), *conv_block(), avg_pool(), *conv_block(), avg_pool(), *conv_block(),
            global_avg_pool(), readout,
        ]
    if name == "convnet":
        depth = 3 if depth is None else depth
        if depth < 0:
            raise ValueError(f"convnet depth must be >= 0 pooling blocks, got {depth}")
        blocks = [
            layer for _ in range(depth) for layer in (*block(conv(width, **affine)), avg_pool())
        ]
        return [*block(conv(width, **affine)), *blocks, flatten(), readout]
    kind, hidden = match.group(1), int(match.group(2))
    if kind == "fc":
        hidden_layers = [layer for _ in range(hidden) for layer in block(dense(width, **affine))]
        return [flatten(), *hidden_layers, readout]
    if hidden < 1:
        raise ValueError("convvec needs at least one conv layer, e.g. 'convvec3'")
    hidden_layers = [layer for _ in range(hidden) for layer in block(conv(width, **affine))]
    return [*hidden_layers, flatten(), readout]


def _parse_get(get: Get) -> tuple[str, ...]:
    names = (get,) if isinstance(get, str) else tuple(get)
    if not names or any(g not in ("nngp", "ntk") for g in names):
        raise ValueError(f"get must be 'nngp', 'ntk' or a tuple of them, got {get!r}")
    return names


def _check_images(x: jax.Array, argname: str) -> None:
    if getattr(x, "ndim", None) != 4:
        raise ValueError(
            f"{argname} must be a batch of NHWC images (n, height, width, channels), got "
            f"shape {getattr(x, 'shape', type(x))}; add a channel axis for grayscale: x[..., None]"
        )


IMPLEMENTATIONS = ("auto", "xla", "cpu", "pallas")
"""Full-resolution stage implementations: the XLA layer maps, the fused C++ kernel for CPUs,
the fused Pallas kernel for GPUs, or ``auto`` (the fastest available on the backend)."""

# Entries of the full-resolution stage's output per block of pairs. On a CPU the XLA
# stage's arrays should stay in cache (2**17 entries, 512 KiB: one ConvNet pair at 32x32,
# measured fastest); the fused C++ stage keeps its own tiles in cache, and bigger blocks
# spread the per-operation cost of the XLA layers after it (2**20: 4 unpooled pairs at
# 32x32, fwd+VJP ~10% faster than 1 pair; 64 pairs when the stage pools, its output being
# 18x smaller; at most 128 pairs: ConvVec's one-entry-per-pixel band measured faster at
# 128 than 1024). A GPU needs hundreds of pairs per block to fill its cores (2**26, 256
# MiB per array).
_BLOCK_ENTRIES = {"cpu": 2**17, "cpu-fused": 2**20, "gpu": 2**26}
_FUSED_CPU_MAX_PAIRS = 128


def default_pairs_per_block(
    in_band: tuple[int, int],
    image_shape: tuple[int, ...],
    backend: str | None = None,
    fused: bool = False,
    pooled: bool = False,
) -> int:
    """Pairs per block of a kernel evaluation (``make``'s default ``pairs_per_block``).

    Args:
      in_band: the input band ``(R_h, R_w)`` of the network.
      image_shape: ``(H, W, C)``.
      backend: ``"cpu"``, ``"gpu"`` (``"cuda"``/``"rocm"``) or ``"tpu"``; default JAX's.
      fused: whether the full-resolution stage is a fused kernel (``implementation``
        ``"cpu"`` or ``"pallas"``).
      pooled: whether that fused stage also computes the 2x2 pooling after it (its
        output is then the pooled band, ``(R - 1) // 2`` offsets at half the size).
    """
    backend = backend or jax.default_backend()
    if backend == "cpu":
        entries = _BLOCK_ENTRIES["cpu-fused" if fused else "cpu"]
    else:
        entries = _BLOCK_ENTRIES["gpu"]
    height, width = image_shape[:2]
    band = in_band
    if fused and pooled:
        band = tuple(pooled_radius(r) for r in in_band)
        height, width = height // 2, width // 2
    entries_per_pair = (2 * band[0] + 1) * (2 * band[1] + 1) * height * width
    pairs = max(1, entries // entries_per_pair)
    if backend == "cpu" and fused:
        # A power of two: blocks then tile the usual batch sizes without padded pairs
        # (5 pairs per block would pad 16 columns to 20).
        pairs = min(2 ** int(math.log2(pairs)), _FUSED_CPU_MAX_PAIRS)
    return pairs


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
      name: ``"fc<n>"``, ``"convvec<n>"`` or ``"convnet"`` (see :func:`architecture`).
      W_std, b_std: weight and bias standard deviations.
      parameterization: must be ``"ntk"`` (the infinite-width NTK of the standard
        parameterization depends on the layer widths).
      depth: number of pooling blocks of ``convnet`` (default 3).
      pairs_per_block: pairs computed at once (memory and cache use); by default
        :func:`default_pairs_per_block` for the backend (64 ConvNet pairs at 32x32 with
        the C++ stage, one with the XLA stage on a CPU, hundreds on a GPU).
      implementation: the full-resolution stage (the conv and ReLU layers before the
        first pooling, ~90% of a ConvNet kernel's work): ``"xla"`` (layer maps),
        ``"cpu"`` (a fused C++ kernel, compiled on first use with the system's g++; it
        also runs the later [conv, ReLU] blocks and poolings, on their bands),
        ``"pallas"`` (a fused Pallas kernel; interpreted on a CPU, which is slow: for
        testing), or ``"auto"``: ``"cpu"`` on a CPU when it compiles, the faster of
        ``"xla"`` and ``"pallas"`` on a GPU (a short calibration, once per shape).
        float64 inputs always use ``"xla"``.
      remat: whether a VJP recomputes each block of pairs instead of keeping its
        intermediates (bounded memory). ``False`` keeps them, and computes all pairs as
        one block unless ``pairs_per_block`` is given: ``jax.vjp`` then costs more memory
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
    blocks = stage_blocks(layers)

    def stage_for(images: jax.Array) -> FusedStage | None:
        chosen = implementation
        if chosen == "auto":
            chosen = auto_implementation(
                (name, W_std, b_std, depth), tuple(images.shape[1:]), jax.default_backend()
            )
        if chosen == "xla" or blocks == 0 or images.dtype != jnp.float32:
            return None
        return fused_stage(
            chosen, radius=in_band, num_blocks=blocks, W_std=W_std, b_std=b_std,
            pool=pool_follows_stage(layers),
        )

    def kernel(x1: jax.Array, x2: jax.Array | None = None, get: Get = "ntk"):
        names = _parse_get(get)
        _check_images(x1, "x1")
        if x2 is not None:
            _check_images(x2, "x2")
            if x1.shape[1:] != x2.shape[1:]:
                raise ValueError(
                    f"x1 and x2 images differ in shape: {x1.shape[1:]} vs {x2.shape[1:]}"
                )
        stage = stage_for(x1)
        if pairs_per_block is not None:
            block = pairs_per_block
        elif remat:
            block = default_pairs_per_block(
                in_band, x1.shape[1:], fused=stage is not None,
                pooled=stage is not None and stage.pools,
            )
        else:
            # Every block's intermediates are kept anyway: one block, which skips the
            # stacking of per-block residuals (measured 1.15x faster fwd + VJP at 250
            # ConvNet pairs on a CPU than blocks of 50).
            block = x1.shape[0] * (x1.shape[0] if x2 is None else x2.shape[0])
        with_ntk = "ntk" in names

        def variances(images):
            return diagonal_variances(layers, in_band, images, stage)

        def grid_block(side1, side2):
            (images1, v1), (images2, v2) = side1, side2
            state = grid_state(
                layers, in_band, images1, images2, v1, v2, with_ntk=with_ntk, stage=stage
            )
            return {"nngp": state.nngp, "ntk": state.ntk}

        var1 = map_rows(variances, x1, block, remat)
        if x2 is None:
            out = map_symmetric(grid_block, (x1, var1), math.isqrt(block) or 1, remat)
        else:
            out = map_grid(
                grid_block, (x1, var1), (x2, map_rows(variances, x2, block, remat)), block, remat
            )
        results = tuple(out[g] for g in names)
        return results[0] if isinstance(get, str) else results

    return jax.jit(kernel, static_argnames="get")
