"""Layers: one description gives the finite network and its infinite-width kernel map.

Each factory returns a :class:`Layer`. ``init``/``apply`` are the finite-width network
(used by transfer); ``kernel`` maps a :class:`KernelState` through the layer in the
infinite-width limit (NTK parameterization, as neural-tangents); ``band`` says which
covariance offsets the layer needs from its input to produce a given band at its output.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from kipd.kernels._relu import relu_maps
from kipd.kernels._state import KernelState, materialize, shift_band, valid_mask

Shape = tuple[int, ...]
# A band requirement: offsets (R_h, R_w) of a spatial state, or None for a flat state.
Band = tuple[int, int] | None


class Layer(NamedTuple):
    """A network layer in both its finite and its infinite-width meaning.

    Attributes:
      init: ``init(key, in_shape) -> (out_shape, params)``; shapes exclude the batch axis.
      apply: ``apply(params, x) -> y`` on a batch ``x`` of shape ``(n, *in_shape)``.
      kernel: ``kernel(state) -> state``, the exact infinite-width map.
      band: ``band(out_band) -> in_band``, the offsets needed at the input.
      offsetwise: whether ``kernel`` acts on each covariance offset separately (conv,
        ReLU), so that it also maps a window of offset rows (see :class:`KernelState`).
      fusable_pool: whether this is the 2x2 average pooling (stride 2) that a fused
        full-resolution stage can compute on chip (:func:`avg_pool`).
      example_gradients: for a layer with parameters (dense, conv),
        ``example_gradients(params, x, cotangent) -> (n, q)``: for each of the ``n``
        inputs, the gradient of ``apply(params, x)[i] . cotangent[i]`` with respect to
        the ``q`` parameters, in the order of ``ravel_pytree(params)``; ``None`` for a
        layer without parameters. The rows of a network's parameter gradients (its
        empirical NTK's features, :func:`kipd.kernels.random_features`) are these, at
        the cotangents of its output.
    """

    init: Callable[[jax.Array, Shape], tuple[Shape, Any]]
    apply: Callable[[Any, jax.Array], jax.Array]
    kernel: Callable[[KernelState], KernelState]
    band: Callable[[Band], Band]
    offsetwise: bool = False
    fusable_pool: bool = False
    example_gradients: Callable[[Any, jax.Array, jax.Array], jax.Array] | None = None


def _check_parameterization(parameterization: str) -> None:
    if parameterization not in ("ntk", "standard"):
        raise ValueError(f"parameterization must be 'ntk' or 'standard', got {parameterization!r}")


def _affine_params(key, fan_in, weight_shape, bias_shape, W_std, b_std, parameterization):
    w_key, b_key = jax.random.split(key)
    weights = jax.random.normal(w_key, weight_shape)
    biases = jax.random.normal(b_key, bias_shape)
    if parameterization == "standard":
        weights = weights * (W_std / math.sqrt(fan_in))
        biases = biases * b_std
    return weights, biases


def _affine_scales(fan_in, W_std, b_std, parameterization):
    """Multipliers of (weights, biases) in the forward pass."""
    if parameterization == "ntk":
        return W_std / math.sqrt(fan_in), b_std
    return 1.0, 1.0


def _affine_kernel(state: KernelState, mix, W_std: float, b_std: float) -> KernelState:
    """``nngp' = W^2 mix(nngp) + b^2``, ``ntk' = nngp' + W^2 mix(ntk)`` (NTK param.).

    ``mix`` is the linear map of the layer on covariances (identity for Dense, the
    filter average for Conv); it must keep invalid band entries at zero.
    """
    w2, b2 = W_std**2, b_std**2
    bias = b2 if state.is_flat else b2 * valid_mask(state.radius, state.spatial_shape)
    nngp = w2 * mix(state.nngp) + bias
    if state.ntk is None:
        ntk = None
    elif state.ntk.ndim == 0:  # the zero NTK of the inputs (input_state)
        ntk = nngp
    else:
        ntk = nngp + w2 * mix(state.ntk)
    return state.replace(nngp=nngp, ntk=ntk)


def dense(
    width: int = 1,
    *,
    W_std: float = 2**0.5,
    b_std: float = 0.1,
    parameterization: str = "ntk",
) -> Layer:
    """Fully connected layer on flat inputs ``(n, features)``."""
    _check_parameterization(parameterization)

    def init(key, in_shape):
        (fan_in,) = in_shape
        params = _affine_params(
            key, fan_in, (fan_in, width), (width,), W_std, b_std, parameterization
        )
        return (width,), params

    def apply(params, x):
        weights, biases = params
        w_scale, b_scale = _affine_scales(x.shape[-1], W_std, b_std, parameterization)
        return w_scale * (x @ weights) + b_scale * biases

    def kernel(state):
        if not state.is_flat:
            raise ValueError("dense needs a flat input: put flatten() before it")
        return _affine_kernel(state, lambda cov: cov, W_std, b_std)

    def band(out_band):
        if out_band is not None:
            raise ValueError("dense gives a flat output; a spatial band was asked of it")
        return None

    def example_gradients(params, x, cotangent):
        w_scale, b_scale = _affine_scales(x.shape[-1], W_std, b_std, parameterization)
        weights = (x[:, :, None] * cotangent[:, None, :]).reshape(x.shape[0], -1)
        return jnp.concatenate([w_scale * weights, b_scale * cotangent], axis=1)

    return Layer(init, apply, kernel, band, example_gradients=example_gradients)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _box_filter(cov: jax.Array, filter_shape: tuple[int, int]) -> jax.Array:
    """Mean over a ``filter_shape`` window of the last two axes, zero padded ('SAME').

    This is a convolution on a covariance band: ``cov'(p, p + D)`` is the mean over
    filter taps ``t`` of ``cov(p + t, p + D + t)``, so the offset ``D`` is unchanged and
    the map is a box filter over positions, separable into two 1-D sums. A centred box
    filter with zero padding is self-adjoint, so its VJP is the same filter.
    """
    return _box_filter_sums(cov, filter_shape)


def _box_filter_sums(cov: jax.Array, filter_shape: tuple[int, int]) -> jax.Array:
    for axis, size in zip((-2, -1), filter_shape):
        half = size // 2
        pad = [(0, 0)] * cov.ndim
        pad[axis] = (half, half)
        padded = jnp.pad(cov, pad)
        length = cov.shape[axis]
        taps = [jax.lax.slice_in_dim(padded, tap, tap + length, axis=axis) for tap in range(size)]
        cov = functools.reduce(operator.add, taps)
    return cov / (filter_shape[0] * filter_shape[1])


_box_filter.defvjp(
    lambda cov, filter_shape: (_box_filter_sums(cov, filter_shape), None),
    lambda filter_shape, _, cotangent: (_box_filter_sums(cotangent, filter_shape),),
)


def conv(
    width: int = 1,
    filter_shape: tuple[int, int] = (3, 3),
    *,
    W_std: float = 2**0.5,
    b_std: float = 0.1,
    parameterization: str = "ntk",
) -> Layer:
    """2-D convolution, stride 1, 'SAME' zero padding, on NHWC inputs."""
    _check_parameterization(parameterization)
    if any(size % 2 == 0 for size in filter_shape):
        raise ValueError(f"conv filter sizes must be odd for 'SAME' padding, got {filter_shape}")
    filter_shape = (filter_shape[0], filter_shape[1])

    def init(key, in_shape):
        height, width_in, channels = in_shape
        fan_in = filter_shape[0] * filter_shape[1] * channels
        params = _affine_params(
            key,
            fan_in,
            (*filter_shape, channels, width),
            (width,),
            W_std,
            b_std,
            parameterization,
        )
        return (height, width_in, width), params

    def apply(params, x):
        weights, biases = params
        fan_in = filter_shape[0] * filter_shape[1] * x.shape[-1]
        w_scale, b_scale = _affine_scales(fan_in, W_std, b_std, parameterization)
        y = jax.lax.conv_general_dilated(
            x, weights, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        return w_scale * y + b_scale * biases

    def kernel(state):
        if state.is_flat:
            raise ValueError("conv needs a spatial input, but the kernel state is flat")
        mask = valid_mask(state.radius, state.spatial_shape)

        def mix(cov):
            # The box filter spreads values into entries whose second position lies
            # outside the image; those are zero by definition.
            return _box_filter(cov, filter_shape) * mask

        return _affine_kernel(state, mix, W_std, b_std)

    def example_gradients(params, x, cotangent):
        n, height, width_in, channels = x.shape
        w_scale, b_scale = _affine_scales(
            filter_shape[0] * filter_shape[1] * channels, W_std, b_std, parameterization
        )
        half_h, half_w = filter_shape[0] // 2, filter_shape[1] // 2
        padded = jnp.pad(x, ((0, 0), (half_h, half_h), (half_w, half_w), (0, 0)))
        # One contraction over positions per filter tap, on a shifted view of the input:
        # patches made by a convolution (conv_general_dilated_patches) cost 9x the layer's
        # own multiply-adds, and vmap's per-image weight gradients lower to grouped
        # convolutions; both were 4-28x slower on the CPU (ConvNet width 32, 4 networks,
        # a KIP step of 100 + 100 images at 28x28: 7.1 s and 46 s against 1.7 s).
        taps = [
            jnp.einsum(
                "nhwc,nhwo->nco",
                padded[:, row : row + height, column : column + width_in],
                cotangent,
            )
            for row in range(filter_shape[0])
            for column in range(filter_shape[1])
        ]
        weights = jnp.stack(taps, axis=1).reshape(n, -1)  # (n, fh * fw * c * o): HWIO order
        biases = cotangent.sum(axis=(1, 2))
        return jnp.concatenate([w_scale * weights, b_scale * biases], axis=1)

    return Layer(
        init,
        apply,
        kernel,
        lambda out_band: out_band,
        offsetwise=True,
        example_gradients=example_gradients,
    )


def relu() -> Layer:
    """ReLU; its kernel map is the arc-cosine kernel of degree 1 (Cho & Saul 2009)."""

    def init(key, in_shape):
        return in_shape, ()

    def apply(params, x):
        return jax.nn.relu(x)

    return Layer(init, apply, relu_maps, lambda out_band: out_band, offsetwise=True)


def _pool_axis(cov: jax.Array, axis: int, coarse_radius: int) -> jax.Array:
    """2x average pooling along one spatial axis of a band (offset axis ``axis - 2``).

    Coarse entry ``(E, P)`` averages fine entries ``cov(2P + a, 2P + 2E + b)`` over
    ``a, b in {0, 1}``, i.e. fine offset ``2E + b - a`` at fine position ``2P + a``.
    """
    offset_axis = axis - 2
    coarse_len = cov.shape[axis] // 2
    num_offsets = 2 * coarse_radius + 1
    total: Any = 0.0  # a Python zero, then the sum of the four slices
    for a in (0, 1):
        positions = jax.lax.slice_in_dim(cov, a, a + 2 * coarse_len - 1, stride=2, axis=axis)
        for b in (0, 1):
            start = 1 + b - a  # fine offset index of 2E + b - a for E = -coarse_radius
            total = total + jax.lax.slice_in_dim(
                positions, start, start + 2 * num_offsets - 1, stride=2, axis=offset_axis
            )
    return total / 4.0


def pooled_radius(radius: int) -> int:
    """The band radius after a 2x2 average pooling of a band of ``radius``: coarse offset
    ``E`` needs fine offsets ``2E - 1 .. 2E + 1``."""
    return (radius - 1) // 2


def avg_pool(window: int = 2) -> Layer:
    """Average pooling with a 2x2 window, stride 2, 'VALID' padding (odd edges dropped)."""
    if window != 2:
        raise ValueError(f"avg_pool supports a 2x2 window with stride 2, got window={window}")

    def check_size(spatial_shape):
        if min(spatial_shape) < 2:
            raise ValueError(
                f"avg_pool needs at least 2x2 positions but gets {spatial_shape}: the images "
                "are too small for this many pooling layers (use a smaller depth= or larger "
                "images)"
            )

    def init(key, in_shape):
        height, width, channels = in_shape
        check_size((height, width))
        return (height // 2, width // 2, channels), ()

    def apply(params, x):
        n, height, width, channels = x.shape
        x = x[:, : 2 * (height // 2), : 2 * (width // 2)]
        return x.reshape(n, height // 2, 2, width // 2, 2, channels).mean(axis=(2, 4))

    def kernel(state):
        if state.is_flat:
            raise ValueError("avg_pool needs a spatial input, but the kernel state is flat")
        check_size(state.spatial_shape)
        r_h, r_w = state.radius
        coarse = (pooled_radius(r_h), pooled_radius(r_w))
        if min(coarse) < 0:
            raise ValueError(
                f"avg_pool needs covariance offsets up to +-1 at its input, the state "
                f"carries the band {state.radius}"
            )

        def pool(cov):
            cov = _pool_axis(cov, cov.ndim - 2, coarse[0])
            cov = _pool_axis(cov, cov.ndim - 1, coarse[1])
            # With an odd fine size, a coarse entry whose second position lies outside
            # the coarse image can still see one valid fine row: zero it.
            return cov * valid_mask(coarse, cov.shape[-2:])

        return state.replace(
            nngp=pool(state.nngp), ntk=None if state.ntk is None else pool(state.ntk)
        )

    def band(out_band):
        if out_band is None:
            raise ValueError("avg_pool gives a spatial output; flatten() must follow it")
        return tuple(2 * r + 1 for r in out_band)

    return Layer(init, apply, kernel, band, fusable_pool=True)


def flatten() -> Layer:
    """Flatten NHWC to ``(n, H*W*C)``; the kernel averages the offset-0 band over positions."""

    def init(key, in_shape):
        return (int(np.prod(in_shape)),), ()

    def apply(params, x):
        return x.reshape(x.shape[0], -1)

    def kernel(state):
        if state.is_flat:
            return state
        r_h, r_w = state.radius

        def diagonal_mean(cov):
            # A fixed chain of adds instead of a reduction: XLA orders a reduction by the
            # array's shape, so the grid pass (n1, n2, ...) and the diagonal pass (n, ...)
            # would round a pixel's variance differently, and a pair of equal images would
            # lose its exact correlation 1 (theta ~ 5e-4 instead of 0 in float32).
            diagonal = cov[..., r_h, r_w, :, :]
            rows = functools.reduce(jnp.add, [diagonal[..., w] for w in range(diagonal.shape[-1])])
            total = functools.reduce(jnp.add, [rows[..., h] for h in range(rows.shape[-1])])
            return total / (diagonal.shape[-2] * diagonal.shape[-1])

        return state.replace(
            nngp=diagonal_mean(state.nngp),
            # The inputs' zero NTK (0-d) stays as it is.
            ntk=state.ntk if state.ntk is None or state.ntk.ndim == 0 else diagonal_mean(state.ntk),
        )

    return Layer(init, apply, kernel, lambda out_band: (0, 0))


def serial(*layers: Layer) -> Layer:
    """Compose layers in order, as ``stax.serial``: one description, both meanings."""

    def init(key, in_shape):
        params = []
        for layer, layer_key in zip(layers, jax.random.split(key, len(layers))):
            in_shape, layer_params = layer.init(layer_key, in_shape)
            params.append(layer_params)
        return in_shape, tuple(params)

    def apply(params, x):
        for layer, layer_params in zip(layers, params):
            x = layer.apply(layer_params, x)
        return x

    def kernel(state):
        for layer in layers:
            state = materialize(layer.kernel(state))
        return state

    def band(out_band):
        for layer in reversed(layers):
            out_band = layer.band(out_band)
        return out_band

    return Layer(init, apply, kernel, band)


def input_state(
    x1: jax.Array,
    x2: jax.Array | None,
    in_band: Band,
    *,
    with_ntk: bool,
    var1: tuple[jax.Array, ...] = (),
    var2: tuple[jax.Array, ...] = (),
) -> KernelState:
    """Covariances of the raw inputs, averaged over channels, on the band a network needs.

    Args:
      x1: ``(n1, H, W, C)``.
      x2: ``(n2, H, W, C)`` for the grid of pairs, or ``None`` for the diagonal pass
        (each x1 with itself).
      in_band: the band of offsets the network needs (``serial(...).band(None)``).
      with_ntk: whether to carry an NTK (zero at the input).
      var1, var2: for a grid pass, the per-ReLU variances from the diagonal passes.

    The NTK of the raw inputs is zero; it is carried as a 0-d zero (the affine maps
    treat it as a zero band) rather than a band of zeros that every map would read.
    """
    if in_band is None:
        raise ValueError("the network's first layer needs a flat input; kernels take NHWC images")
    diagonal = x2 is None
    x1_channels = jnp.moveaxis(x1, -1, 1)  # (n1, C, H, W)
    x2_channels = x1_channels if x2 is None else jnp.moveaxis(x2, -1, 1)
    here = x1_channels[:, :, None, None] if diagonal else x1_channels[:, None, :, None, None]
    # A sum of per-channel products (C is 1 or 3 for images) fuses into one pass that
    # writes the band; an einsum here becomes H*W tiny batched matmuls, 3-7x slower.
    nngp: Any = 0.0  # a Python zero, then the sum of the per-channel products
    for channel in range(x1.shape[-1]):
        there = shift_band(x2_channels[:, channel], in_band, 0.0)  # (n2, Dh, Dw, H, W)
        nngp = nngp + here[..., channel, :, :, :, :] * (there if diagonal else there[None])
    nngp = nngp / x1.shape[-1]
    return materialize(
        KernelState(
            nngp=nngp,
            ntk=jnp.zeros((), nngp.dtype) if with_ntk else None,
            var1=var1,
            var2=var2,
            diagonal=diagonal,
        )
    )


_NORMALIZATIONS = {
    "layer": "layer norm",
    "instance": "instance norm",
    "batch": "batch norm",
}


def _no_kernel(what: str) -> Callable[[KernelState], KernelState]:
    def kernel(state):
        raise ValueError(f"{what} has no exact kernel in kipd; use it for finite networks only")

    return kernel


def normalization(kind: str, *, epsilon: float = 1e-5) -> Layer:
    """Layer, instance or batch normalization with a learned scale and shift per channel.

    Finite networks only (Zhao et al. 2021's ConvNet puts one after each conv, before the
    ReLU): the normalized activations have no simple infinite-width kernel here, so
    ``kernel`` raises a ``ValueError``; ``band`` is the identity.

    Args:
      kind: what the mean and variance are taken over, per example unless said:
        ``"layer"``: all of H, W, C (flat inputs: all features), as ``GroupNorm(1, C)``;
        ``"instance"``: H, W per channel, as ``GroupNorm(C, C)`` (spatial inputs only);
        ``"batch"``: the batch and H, W per channel (flat inputs: the batch, per feature).
        Batch norm always uses the statistics of the batch it is applied to (training and
        evaluation alike); there are no running averages.
      epsilon: added to the variance.

    Returns:
      A :class:`Layer`; params ``(scale, shift)`` of shape ``(C,)``, initialized to 1, 0.
    """
    if kind not in _NORMALIZATIONS:
        raise ValueError(f"normalization must be 'layer', 'instance' or 'batch', got {kind!r}")

    def init(key, in_shape):
        if kind == "instance" and len(in_shape) != 3:
            raise ValueError(
                "instance norm needs spatial (H, W, C) inputs; use layer or batch norm"
            )
        channels = in_shape[-1]
        return in_shape, (jnp.ones((channels,)), jnp.zeros((channels,)))

    def apply(params, x):
        scale, shift = params
        spatial = x.ndim == 4
        if kind == "layer":
            axes = (1, 2, 3) if spatial else (1,)
        elif kind == "instance":
            axes = (1, 2)
        else:
            axes = (0, 1, 2) if spatial else (0,)
        mean = x.mean(axis=axes, keepdims=True)
        var = jnp.square(x - mean).mean(axis=axes, keepdims=True)
        return (x - mean) * jax.lax.rsqrt(var + epsilon) * scale + shift

    return Layer(init, apply, _no_kernel(_NORMALIZATIONS[kind]), lambda out_band: out_band)


def global_avg_pool() -> Layer:
    """Mean over all spatial positions, NHWC to ``(n, C)``.

    Finite networks only: its kernel needs the covariance at every spatial offset, which
    kipd's band representation does not carry yet, so ``band`` and ``kernel`` raise a
    ``ValueError``.
    """

    def init(key, in_shape):
        return (in_shape[-1],), ()

    def apply(params, x):
        return x.mean(axis=(1, 2))

    message = (
        "global average pooling has no exact kernel in kipd (it needs every spatial offset); "
        "use it for finite networks only"
    )

    def band(out_band):
        raise ValueError(message)

    return Layer(init, apply, _no_kernel("global average pooling"), band)
