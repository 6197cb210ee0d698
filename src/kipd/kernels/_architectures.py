"""The architecture table: FC-n, ConvVec-n and ConvNet as ``serial`` recipes of layers.

One recipe gives both the finite network (``init``/``apply``, for transfer) and the exact
infinite-width kernel (``make``). Conventions follow neural-tangents and the paper
(appendix A): NTK parameterization, ``W_std = sqrt(2)``, ``b_std = 0.1``, 3x3 'SAME'
convolutions, 2x2 average pooling with stride 2.
"""

from __future__ import annotations

import re
from typing import Callable

import jax
import jax.numpy as jnp

from kipd.kernels._blocks import map_grid, map_rows
from kipd.kernels._layers import (
    Layer,
    avg_pool,
    conv,
    dense,
    flatten,
    global_avg_pool,
    input_state,
    normalization,
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
    match = _NAME.match(name) if isinstance(name, str) else None
    if match is None:
        raise ValueError(
            f"unknown architecture {name!r}: use one of {', '.join(ARCHITECTURES)}, "
            "e.g. 'fc3', 'convvec8' or 'convnet'"
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
        return serial(
            *conv_block(), *conv_block(), avg_pool(), *conv_block(), avg_pool(), *conv_block(),
            global_avg_pool(), readout,
        )
    if name == "convnet":
        depth = 3 if depth is None else depth
        if depth < 0:
            raise ValueError(f"convnet depth must be >= 0 pooling blocks, got {depth}")
        blocks = [
            layer for _ in range(depth) for layer in (*block(conv(width, **affine)), avg_pool())
        ]
        return serial(*block(conv(width, **affine)), *blocks, flatten(), readout)
    kind, hidden = match.group(1), int(match.group(2))
    if kind == "fc":
        hidden_layers = [layer for _ in range(hidden) for layer in block(dense(width, **affine))]
        return serial(flatten(), *hidden_layers, readout)
    if hidden < 1:
        raise ValueError("convvec needs at least one conv layer, e.g. 'convvec3'")
    hidden_layers = [layer for _ in range(hidden) for layer in block(conv(width, **affine))]
    return serial(*hidden_layers, flatten(), readout)


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


def _default_pairs_per_block(in_band: tuple[int, int], image_shape: tuple[int, ...]) -> int:
    """Pairs per block so that one band array of a block is about 2**17 entries (512 KiB)."""
    height, width = image_shape[:2]
    entries_per_pair = (2 * in_band[0] + 1) * (2 * in_band[1] + 1) * height * width
    return max(1, 2**17 // entries_per_pair)


def make(
    name: str,
    *,
    W_std: float = 2**0.5,
    b_std: float = 0.1,
    parameterization: str = "ntk",
    depth: int | None = None,
    pairs_per_block: int | None = None,
) -> KernelFn:
    """The exact infinite-width NNGP / NTK kernel of a named architecture.

    Args:
      name: ``"fc<n>"``, ``"convvec<n>"`` or ``"convnet"`` (see :func:`architecture`).
      W_std, b_std: weight and bias standard deviations.
      parameterization: must be ``"ntk"`` (the infinite-width NTK of the standard
        parameterization depends on the layer widths).
      depth: number of pooling blocks of ``convnet`` (default 3).
      pairs_per_block: pairs computed at once (memory and cache use); by default about
        2**17 band entries per block.

    Returns:
      ``kernel(x1, x2=None, get="ntk")``: ``x1`` of shape ``(n1, H, W, C)``, ``x2`` of
      shape ``(n2, H, W, C)`` (``None`` means ``x1``); returns the ``(n1, n2)`` kernel
      matrix, or a tuple of them when ``get`` is a tuple. Jit-compiled; differentiable
      with ``jax.grad`` / ``jax.vjp`` in both inputs.

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
    network = architecture(name, W_std=W_std, b_std=b_std, depth=depth)
    in_band = network.band(None)

    def variances(images):
        # The diagonal pass: each image with itself, recording the ReLU input variances.
        return network.kernel(input_state(images, None, in_band, with_ntk=False)).var1

    def kernel(x1: jax.Array, x2: jax.Array | None = None, get: Get = "ntk"):
        names = _parse_get(get)
        _check_images(x1, "x1")
        if x2 is not None:
            _check_images(x2, "x2")
            if x1.shape[1:] != x2.shape[1:]:
                raise ValueError(
                    f"x1 and x2 images differ in shape: {x1.shape[1:]} vs {x2.shape[1:]}"
                )
        block = pairs_per_block or _default_pairs_per_block(in_band, x1.shape[1:])
        var1 = map_rows(variances, x1, block)
        var2 = var1 if x2 is None else map_rows(variances, x2, block)
        x2 = x1 if x2 is None else x2
        with_ntk = "ntk" in names

        def grid_block(side1, side2):
            (images1, v1), (images2, v2) = side1, side2
            state = network.kernel(
                input_state(images1, images2, in_band, with_ntk=with_ntk, var1=v1, var2=v2)
            )
            return {"nngp": state.nngp, "ntk": state.ntk}

        out = map_grid(grid_block, (x1, var1), (x2, var2), block)
        results = tuple(out[g] for g in names)
        return results[0] if isinstance(get, str) else results

    return jax.jit(kernel, static_argnames="get")
