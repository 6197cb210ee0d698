"""A fused C++ kernel (XLA FFI) for the full-resolution stage of the ConvNet kernel on CPUs.

The stage is ``num_relus`` times (3x3 'SAME' conv, ReLU) on the covariance band of
``_state.py``, NTK parameterization: what ``serial(conv(), relu(), ...).kernel`` computes
on ``input_state(x1, x2, (R, R), with_ntk=True, var1=..., var2=...)``. On XLA:CPU its
fusions of the 6-D band arrays (stacks of shifted slices, box filters) run at 1-3 ns per
band entry per layer, far from what the arithmetic needs. A conv keeps the offset ``D``
and a ReLU acts entry by entry, so ``cpu_band.cc`` runs each (pair, offset plane) through
the whole stage with the plane's ``H x W`` tile in cache: the arc-cosine polynomial is
evaluated once per entry for both outputs, the rows whose second position lies outside
the image are skipped, and the work is split over threads inside each call.

Build. ``cpu_build.py`` compiles ``cpu_band.cc`` on first use and registers its
handlers; every function here raises a RuntimeError that says why if that failed.

Exactness. The XLA path's grid pass gets ``c == 1`` exactly for a pixel with itself,
which keeps the NTK diagonal exact and its gradient finite. Here
:func:`conv_relu_variances` runs the very same C++ operations as the ``D = 0`` plane of
:func:`conv_relu_band` (the variance is read off the plane's own covariance), so with
``v = conv_relu_variances(x)``, ``conv_relu_band(x, x, v, v)`` has a covariance equal to
both variances at ``D = 0``, bit for bit, where the ReLU takes ``s = v`` and ``c == 1``
exactly. Elsewhere it takes ``s = sqrt(v1) sqrt(v2)`` and ``c = nngp (1 / sqrt(v1)
1 / sqrt(v2))`` from roots computed once per call: two products per entry instead of XLA's
square root and division, so the two paths agree to float32 rounding, not bit for bit.

Threads: ``$KIPD_CPU_THREADS`` if set, else the CPUs in the process's affinity mask (so a
worker pinned to one core runs one thread); read at every call.

The stages after a pooling. The ConvNet's later [conv, ReLU] groups (each followed by the
next pooling) run the same per-plane code on a band input instead of images
(:func:`conv_relu_on_band`, :func:`conv_relu_on_band_diagonal`,
:func:`conv_relu_on_band_variances`): as XLA fusions they cost ~17 ns per band entry
(over a quarter of a KIP block's time at 28x28, docs/kernels.md), against ~1.3 ns per
entry and layer here.
Their variance pass reads the offset-0 plane of each image's own band, which equals the
grid's plane of the pair (x, x) bit for bit, so c == 1 stays exact through every stage.

Limits: float32 only (float64 raises ``ValueError``; the XLA path handles it); any
``H, W, C``, radius (0 is ConvVec's stage) and number of [conv, ReLU] groups.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np

from kipd.kernels._layers import pooled_radius
from kipd.kernels._stages import cpu_build
from kipd.kernels._stages.stage import BandStage, FusedStage


@dataclasses.dataclass(frozen=True)
class _Spec:
    """Static parameters of one call (hashable: a ``custom_vjp`` static argument)."""

    radius: int
    num_relus: int
    height: int
    width: int
    channels: int
    w2: float
    b2: float
    pool: bool = False
    # The input is a band (the stages after a pooling), of each image with itself with
    # diagonal; channels is then 1 and unused.
    band_input: bool = False
    diagonal: bool = False

    @property
    def offsets(self) -> int:
        return 2 * self.radius + 1

    def constants(self) -> dict:
        # float32 like the XLA path's weakly typed W_std**2 * band: the same constants.
        return dict(w2=np.float32(self.w2), b2=np.float32(self.b2))

    def attributes(self) -> dict:
        if self.band_input:  # the radius is the input band's
            return dict(
                **self.constants(), diagonal=np.int64(self.diagonal), pool=np.int64(self.pool)
            )
        return dict(radius=np.int64(self.radius), **self.constants(), pool=np.int64(self.pool))


def _f32(shape) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(tuple(shape), jnp.float32)


def _call(target: str, results, *args, **attributes):
    """``jax.ffi.ffi_call`` of a registered target; a vmap runs it once per batch entry."""
    return jax.ffi.ffi_call(target, results, vmap_method="sequential")(*args, **attributes)


def _band_shape(spec: _Spec, *batch: int) -> tuple[int, ...]:
    if spec.pool:
        offsets = 2 * pooled_radius(spec.radius) + 1
        return (*batch, offsets, offsets, spec.height // 2, spec.width // 2)
    return (*batch, spec.offsets, spec.offsets, spec.height, spec.width)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _band(spec: _Spec, x1, x2, v1, v2):
    shape = _band_shape(spec, x1.shape[0], x2.shape[0])
    return tuple(
        _call(
            "kipd_cpu_band_forward",
            (_f32(shape), _f32(shape)),
            x1,
            x2,
            v1,
            v2,
            diagonal=np.int64(0),
            **spec.attributes(),
        )
    )


# Symbolic zeros (``defvjp(..., symbolic_zeros=True)``): the forward learns which inputs
# are perturbed and the backward which cotangents are zero. The C++ backward then skips
# the accumulations of the gradients nobody needs (K(x1, x2) differentiated in x1 only:
# the bilinear transpose into x2 and the variance gradients of x2), and a zero cotangent
# (the NNGP output of an NTK-only kernel) is passed as an empty array, not a zero band.


def _cotangent(cotangent):
    """A zero (symbolic) cotangent as an empty array, the C++ backward's "zero"."""
    if isinstance(cotangent, jax.custom_derivatives.SymbolicZero):
        return jnp.zeros((0,), jnp.float32)
    return cotangent


def _forward_keeping_inputs(function):
    """A ``custom_vjp`` forward rule (symbolic zeros) of ``function(spec, *inputs)`` whose
    residuals are the inputs and which of them are perturbed."""

    def forward(spec, *primals):
        perturbed = tuple(bool(a.perturbed) for a in primals)
        values = tuple(a.value for a in primals)
        return function(spec, *values), (values, perturbed)

    return forward


_band_fwd = _forward_keeping_inputs(_band)


def _band_bwd(spec, residuals, cotangents):
    (x1, x2, v1, v2), perturbed = residuals
    g_nngp, g_ntk = (_cotangent(c) for c in cotangents)
    if not any(perturbed) or (g_nngp.size == 0 and g_ntk.size == 0):
        return (None,) * 4
    # The gradient of an input that is not perturbed is not computed: an empty result.
    results = tuple(_f32(a.shape if need else (0,)) for a, need in zip((x1, x2, v1, v2), perturbed))
    needs = {
        f"need_{name}": np.int64(need) for name, need in zip(("x1", "x2", "v1", "v2"), perturbed)
    }
    gradients = _call(
        "kipd_cpu_band_backward",
        results,
        x1,
        x2,
        v1,
        v2,
        g_nngp,
        g_ntk,
        **spec.attributes(),
        **needs,
    )
    return tuple(g if need else None for g, need in zip(gradients, perturbed))


_band.defvjp(_band_fwd, _band_bwd, symbolic_zeros=True)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _diagonal(spec: _Spec, x, v):
    shape = _band_shape(spec, x.shape[0])
    return tuple(
        _call(
            "kipd_cpu_band_forward",
            (_f32(shape), _f32(shape)),
            x,
            x,
            v,
            v,
            diagonal=np.int64(1),
            **spec.attributes(),
        )
    )


def _diagonal_fwd(spec, x, v):
    perturbed = (bool(x.perturbed), bool(v.perturbed))
    return _diagonal(spec, x.value, v.value), (x.value, v.value, perturbed)


def _diagonal_bwd(spec, residuals, cotangents):
    x, v, perturbed = residuals
    g_nngp, g_ntk = (_cotangent(c) for c in cotangents)
    if not any(perturbed) or (g_nngp.size == 0 and g_ntk.size == 0):
        return None, None
    gradients = _call(
        "kipd_cpu_diagonal_backward",
        (_f32(x.shape), _f32(v.shape)),
        x,
        v,
        g_nngp,
        g_ntk,
        **spec.attributes(),
    )
    return tuple(g if need else None for g, need in zip(gradients, perturbed))


_diagonal.defvjp(_diagonal_fwd, _diagonal_bwd, symbolic_zeros=True)


# k1(1) = k0(1) = fl(fl(pi) * fl(1 / (2 pi))) in float32: at c == 1 the ReLU maps the
# variance v to k1(1) * s = k1(1) * v, and its derivative in v is k0(1) (the path
# through s has factor k1 - k0 c = 0).
_K_AT_ONE = float(np.float32(np.float32(math.pi) * np.float32(1.0 / (2.0 * math.pi))))


def _box_mean(cov: jax.Array) -> jax.Array:
    """3x3 mean over the last two axes, zero padded."""
    height, width = cov.shape[-2:]
    padded = jnp.pad(cov, [(0, 0)] * (cov.ndim - 2) + [(1, 1), (1, 1)])
    taps = (padded[..., a : a + height, b : b + width] for a in range(3) for b in range(3))
    return cast(jax.Array, sum(taps)) / 9


def _variances_jnp(spec: _Spec, x: jax.Array) -> jax.Array:
    """The variance chain in jnp, (n, H, W, C) (band input: the offset-0 plane, (n, H, W))
    -> (n, L, H, W); only differentiated.

    At offset 0 of an image with itself every entry has c == 1, so the chain is linear
    between the ReLUs; this is the function whose VJP :func:`conv_relu_variances` uses
    (the C++ forward is what must be exact, not its derivative).
    """
    nngp = x if spec.band_input else jnp.sum(x * x, axis=-1) / spec.channels
    variances = []
    for _ in range(spec.num_relus):
        nngp = spec.w2 * _box_mean(nngp) + spec.b2
        variances.append(nngp)
        nngp = _K_AT_ONE * nngp
    return jnp.stack(variances, axis=1)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _variances(spec: _Spec, x):
    shape = (x.shape[0], spec.num_relus, spec.height, spec.width)
    return _call(
        "kipd_cpu_variances",
        _f32(shape),
        x,
        **spec.constants(),
        band_input=np.int64(spec.band_input),
    )


def _variances_fwd(spec, x):
    return _variances(spec, x), x


def _variances_bwd(spec, x, g_var):
    return jax.vjp(functools.partial(_variances_jnp, spec), x)[1](g_var)


_variances.defvjp(_variances_fwd, _variances_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _on_band(spec: _Spec, nngp, ntk, v1, v2):
    shape = _band_shape(spec, *nngp.shape[: 1 if spec.diagonal else 2])
    return tuple(
        _call(
            "kipd_cpu_band_on_band_forward",
            (_f32(shape), _f32(shape)),
            nngp,
            ntk,
            v1,
            v2,
            **spec.attributes(),
        )
    )


_on_band_fwd = _forward_keeping_inputs(_on_band)


def _on_band_bwd(spec, residuals, cotangents):
    (nngp, ntk, v1, v2), perturbed = residuals
    g_nngp, g_ntk = (_cotangent(c) for c in cotangents)
    need_band = perturbed[0] or perturbed[1]
    # A diagonal call gets one variance set twice (v1 is v2): the C++ adds both sides'
    # contributions into d v1.
    need_v1 = perturbed[2] or (spec.diagonal and perturbed[3])
    need_v2 = perturbed[3] and not spec.diagonal
    if not (need_band or need_v1 or need_v2) or (g_nngp.size == 0 and g_ntk.size == 0):
        return (None,) * 4
    needs = (need_band, need_band, need_v1, need_v2)
    results = tuple(_f32(a.shape if need else (0,)) for a, need in zip((nngp, ntk, v1, v2), needs))
    d_nngp, d_ntk, d_v1, d_v2 = _call(
        "kipd_cpu_band_on_band_backward",
        results,
        nngp,
        ntk,
        v1,
        v2,
        g_nngp,
        g_ntk,
        **spec.attributes(),
        need_band=np.int64(need_band),
        need_v1=np.int64(need_v1),
        need_v2=np.int64(need_v2),
    )
    return (
        d_nngp if perturbed[0] else None,
        d_ntk if perturbed[1] else None,
        d_v1 if need_v1 else None,
        d_v2 if need_v2 else None,
    )


_on_band.defvjp(_on_band_fwd, _on_band_bwd, symbolic_zeros=True)


def _check_float32(name: str, array) -> jax.Array:
    array = jnp.asarray(array)
    if array.dtype != jnp.float32:
        raise ValueError(
            f"the C++ CPU kernel takes float32 only, {name} is {array.dtype}; the XLA path "
            "(kipd.kernels._layers) handles float64"
        )
    return array


def _spec(images, *, radius, num_relus, W_std, b_std, pool=False) -> _Spec:
    if images.ndim != 4:
        raise ValueError(f"images must be NHWC (n, H, W, C), got shape {images.shape}")
    if radius < 0 or num_relus < 1:
        raise ValueError(f"need radius >= 0 and num_relus >= 1, got {radius}, {num_relus}")
    _, height, width, channels = images.shape
    if pool and (radius < 1 or min(height, width) < 2):
        raise ValueError(
            f"pool=True needs radius >= 1 and at least 2x2 pixels, got radius {radius} and "
            f"{height}x{width} images"
        )
    cpu_build.require()
    return _Spec(
        int(radius),
        int(num_relus),
        height,
        width,
        channels,
        float(W_std) ** 2,
        float(b_std) ** 2,
        bool(pool),
    )


def _band_spec(nngp, ntk, *, diagonal, num_relus, W_std, b_std, pool) -> _Spec:
    """The spec of a call on an input band ``(*batch, A, A, H, W)`` (batch: 1 axis with
    ``diagonal``, else 2)."""
    nngp, ntk = _check_float32("nngp", nngp), _check_float32("ntk", ntk)
    rank = 5 if diagonal else 6
    layout = "(n, A, A, H, W)" if diagonal else "(n1, n2, A, A, H, W)"
    if nngp.ndim != rank or ntk.shape != nngp.shape:
        raise ValueError(
            f"the input bands must both be {layout}, got nngp {nngp.shape} and ntk {ntk.shape}"
        )
    offsets, offsets_w, height, width = nngp.shape[-4:]
    if offsets != offsets_w or offsets % 2 != 1:
        raise ValueError(f"the input band needs a square, odd offset window, got {nngp.shape}")
    radius = (offsets - 1) // 2
    if num_relus < 1:
        raise ValueError(f"need num_relus >= 1, got {num_relus}")
    if pool and min(height, width) < 2:
        raise ValueError(
            f"pooling needs at least 2x2 positions but the band has {height}x{width}: the "
            "images are too small for this many pooling layers (use a smaller depth= or "
            "larger images)"
        )
    if pool and radius < 1:
        raise ValueError(f"pool=True needs an input band of radius >= 1, got {nngp.shape}")
    cpu_build.require()
    return _Spec(
        radius,
        int(num_relus),
        height,
        width,
        1,
        float(W_std) ** 2,
        float(b_std) ** 2,
        bool(pool),
        band_input=True,
        diagonal=diagonal,
    )


def _stack_variances(variances: Sequence[jax.Array], n: int, spec: _Spec, name: str):
    expected = (n, spec.height, spec.width)
    variances = [_check_float32(name, v) for v in variances]
    if len(variances) != spec.num_relus or any(v.shape != expected for v in variances):
        raise ValueError(
            f"{name} must hold num_relus={spec.num_relus} arrays of shape {expected}, got "
            f"{[tuple(v.shape) for v in variances]}"
        )
    return jnp.stack(variances, axis=1)  # (n, L, H, W): one image's variances together


def conv_relu_band(
    x1: jax.Array,
    x2: jax.Array,
    var1: Sequence[jax.Array],
    var2: Sequence[jax.Array],
    *,
    radius: int,
    num_relus: int,
    W_std: float = 2**0.5,
    b_std: float = 0.1,
    pool: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """NNGP and NTK bands of every pair after ``num_relus`` x (3x3 conv, ReLU), in C++.

    The same as ``serial(*[conv(W_std=W_std, b_std=b_std), relu()] * num_relus).kernel``
    on ``input_state(x1, x2, (radius, radius), with_ntk=True, var1=var1, var2=var2)``
    (NTK parameterization; Arora et al. 2019, Sec. 4 and App. B) to float32 rounding,
    several times faster on a CPU. Differentiable in all four arguments (the backward is
    C++ too: it recomputes each plane and transposes it by hand).

    Args:
      x1: ``(n1, H, W, C)`` float32 images.
      x2: ``(n2, H, W, C)`` float32 images.
      var1: ``num_relus`` arrays ``(n1, H, W)``: the positive variances of x1 at each
        ReLU's input (:func:`conv_relu_variances` gives ones that make the correlation of
        a pixel with itself exactly 1).
      var2: the same for x2, ``(n2, H, W)`` each.
      radius: band half-width ``R`` in both directions.
      num_relus: number of (conv, ReLU) groups.
      W_std, b_std: weight and bias standard deviations of the convs.
      pool: follow the stage by the 2x2 average pooling (stride 2) of
        :func:`kipd.kernels.avg_pool`, fused: each plane adds into its pair's pooled
        band while it is on chip, so the full-resolution band never reaches memory.

    Returns:
      ``(nngp, ntk)``, each ``(n1, n2, 2R+1, 2R+1, H, W)`` float32:
      ``[i, j, a, b, h, w] = cov(x1_i[h, w], x2_j[h + a - R, w + b - R])``, exactly zero
      where the second position lies outside the image. With ``pool``, each
      ``(n1, n2, 2R'+1, 2R'+1, H // 2, W // 2)`` with ``R' = (R - 1) // 2``: the band of the
      pooled images (equal to ``avg_pool().kernel`` of the band to float32 rounding).

    Raises:
      ValueError: on float64 (or other non-float32) inputs, or mismatched shapes.
      RuntimeError: if the kernel could not be built (see :func:`available`).
    """
    x1, x2 = _check_float32("x1", x1), _check_float32("x2", x2)
    spec = _spec(x1, radius=radius, num_relus=num_relus, W_std=W_std, b_std=b_std, pool=pool)
    if x2.ndim != 4 or x2.shape[1:] != x1.shape[1:]:
        raise ValueError(f"x2 {x2.shape} must match x1 {x1.shape} but for the batch axis")
    v1 = _stack_variances(var1, x1.shape[0], spec, "var1")
    v2 = _stack_variances(var2, x2.shape[0], spec, "var2")
    return _band(spec, x1, x2, v1, v2)


def conv_relu_band_diagonal(
    x: jax.Array,
    var: Sequence[jax.Array],
    *,
    radius: int,
    num_relus: int,
    W_std: float = 2**0.5,
    b_std: float = 0.1,
    pool: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """The band of each image with itself: pairs ``(i, i)`` only, n of them, not n^2.

    Equal, bit for bit, to the diagonal ``[i, i]`` of ``conv_relu_band(x, x, var, var,
    ...)`` (the same C++ plane code); differentiable in ``x`` and ``var``, with both sides
    of each pair contributing to the image's gradient.

    Args:
      x: ``(n, H, W, C)`` float32 images.
      var: ``num_relus`` arrays ``(n, H, W)``, the variances of x at each ReLU's input.
      radius, num_relus, W_std, b_std, pool: as for :func:`conv_relu_band`.

    Returns:
      ``(nngp, ntk)``, each ``(n, 2R+1, 2R+1, H, W)`` float32 (pooled: as for
      :func:`conv_relu_band`).
    """
    x = _check_float32("x", x)
    spec = _spec(x, radius=radius, num_relus=num_relus, W_std=W_std, b_std=b_std, pool=pool)
    return _diagonal(spec, x, _stack_variances(var, x.shape[0], spec, "var"))


def conv_relu_variances(
    x: jax.Array,
    *,
    num_relus: int,
    W_std: float = 2**0.5,
    b_std: float = 0.1,
) -> tuple[jax.Array, ...]:
    """Per-image variances at the input of each ReLU of the stage (the diagonal pass).

    The offset-0 plane of each image with itself, through the same C++ operations as the
    offset-0 plane of :func:`conv_relu_band`, the variance read off the plane's own
    covariance: so ``conv_relu_band(x, x, v, v)`` with ``v = conv_relu_variances(x)``
    has correlation exactly 1 for a pixel with itself, and its offset-0 entries are what
    this chain computed, bit for bit. Agrees with the XLA diagonal pass (``state.var1``
    of ``input_state(x, None, ...)``) to float32 rounding. Differentiable (its VJP is the
    autodiff of an equivalent jnp chain, :func:`_variances_jnp`).

    Args:
      x: ``(n, H, W, C)`` float32 images.
      num_relus, W_std, b_std: as for :func:`conv_relu_band`.

    Returns:
      ``num_relus`` arrays ``(n, H, W)``, in ReLU order.
    """
    x = _check_float32("x", x)
    spec = _spec(x, radius=0, num_relus=num_relus, W_std=W_std, b_std=b_std)
    variances = _variances(spec, x)
    return tuple(variances[:, k] for k in range(num_relus))


def conv_relu_on_band(
    nngp: jax.Array,
    ntk: jax.Array,
    var1: Sequence[jax.Array],
    var2: Sequence[jax.Array],
    *,
    num_relus: int,
    W_std: float = 2**0.5,
    b_std: float = 0.1,
    pool: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """``num_relus`` x (3x3 conv, ReLU) on the band of every pair, in C++: a stage after a
    pooling.

    The same as ``serial(*[conv(W_std=W_std, b_std=b_std), relu()] * num_relus)`` (then
    ``avg_pool()`` with ``pool``) applied to a grid :class:`~kipd.kernels._state.KernelState`
    holding these bands, to float32 rounding. Differentiable in all four arguments.

    Args:
      nngp, ntk: ``(n1, n2, 2R+1, 2R+1, H, W)`` float32 input bands (entries whose second
        position lies outside the image are ignored: they are zero in a band).
      var1, var2: ``num_relus`` arrays ``(n1, H, W)`` / ``(n2, H, W)`` each: the variances
        at each ReLU's input (:func:`conv_relu_on_band_variances`).
      num_relus, W_std, b_std, pool: as for :func:`conv_relu_band`.

    Returns:
      ``(nngp, ntk)``, each ``(n1, n2, 2R+1, 2R+1, H, W)``; with ``pool``,
      ``(n1, n2, 2R'+1, 2R'+1, H // 2, W // 2)``, ``R' = (R - 1) // 2``.
    """
    spec = _band_spec(
        nngp, ntk, diagonal=False, num_relus=num_relus, W_std=W_std, b_std=b_std, pool=pool
    )
    v1 = _stack_variances(var1, nngp.shape[0], spec, "var1")
    v2 = _stack_variances(var2, nngp.shape[1], spec, "var2")
    return _on_band(spec, nngp, ntk, v1, v2)


def conv_relu_on_band_diagonal(
    nngp: jax.Array,
    ntk: jax.Array,
    var: Sequence[jax.Array],
    *,
    num_relus: int,
    W_std: float = 2**0.5,
    b_std: float = 0.1,
    pool: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """:func:`conv_relu_on_band` on each image's own band: equal, bit for bit, to the
    pairs ``(i, i)`` of the grid call when its input's pairs ``(i, i)`` are these bands.

    Args:
      nngp, ntk: ``(n, 2R+1, 2R+1, H, W)`` float32.
      var: ``num_relus`` arrays ``(n, H, W)``.
      num_relus, W_std, b_std, pool: as for :func:`conv_relu_band`.

    Returns:
      ``(nngp, ntk)``, each ``(n, 2R+1, 2R+1, H, W)`` (pooled: as for
      :func:`conv_relu_on_band`).
    """
    spec = _band_spec(
        nngp, ntk, diagonal=True, num_relus=num_relus, W_std=W_std, b_std=b_std, pool=pool
    )
    v = _stack_variances(var, nngp.shape[0], spec, "var")
    return _on_band(spec, nngp, ntk, v, v)


def conv_relu_on_band_variances(
    nngp: jax.Array,
    *,
    num_relus: int,
    W_std: float = 2**0.5,
    b_std: float = 0.1,
) -> tuple[jax.Array, ...]:
    """Per-image variances at the input of each ReLU of a stage on a band (diagonal pass).

    Runs the offset-0 plane of each image's own band through the same C++ operations as
    plane 0 of :func:`conv_relu_on_band`, so the grid's pairs ``(i, i)`` have correlation
    exactly 1 at offset 0. Differentiable.

    Args:
      nngp: ``(n, 2R+1, 2R+1, H, W)`` float32, each image's own NNGP band.
      num_relus, W_std, b_std: as for :func:`conv_relu_band`.

    Returns:
      ``num_relus`` arrays ``(n, H, W)``, in ReLU order.
    """
    nngp = _check_float32("nngp", nngp)
    if nngp.ndim != 5 or nngp.shape[1] != nngp.shape[2] or nngp.shape[1] % 2 != 1:
        raise ValueError(f"nngp must be a diagonal band (n, A, A, H, W), A odd; got {nngp.shape}")
    radius = (nngp.shape[1] - 1) // 2
    plane = nngp[:, radius, radius]
    spec = _band_spec(
        nngp, nngp, diagonal=True, num_relus=num_relus, W_std=W_std, b_std=b_std, pool=False
    )
    variances = _variances(dataclasses.replace(spec, radius=0), plane)
    return tuple(variances[:, k] for k in range(num_relus))


def stage(*, radius: int, num_relus: int, W_std: float, b_std: float, pool: bool) -> FusedStage:
    """The C++ kernel's :class:`FusedStage` (a ``StageFactory``): it fuses the
    pooling after the stage when there is one (``pools``), and then runs the later
    [conv, ReLU] groups and their poolings on their bands too (``on_band``).

    Raises:
      RuntimeError: the C++ kernel could not be compiled here (the message says why).
    """
    if not cpu_build.available():
        raise RuntimeError(
            f"implementation='cpu' needs the C++ kernel, which did not build: "
            f"{cpu_build.build_error()}; install g++ or use implementation='xla'"
        )
    hyper: dict[str, Any] = dict(num_relus=num_relus, W_std=W_std, b_std=b_std)

    def on_band(num_relus: int, pool: bool) -> BandStage:
        later: dict[str, Any] = dict(num_relus=num_relus, W_std=W_std, b_std=b_std)
        return BandStage(
            band=functools.partial(conv_relu_on_band, **later, pool=pool),
            diagonal=functools.partial(conv_relu_on_band_diagonal, **later, pool=pool),
            variances=functools.partial(conv_relu_on_band_variances, **later),
        )

    return FusedStage(
        band=functools.partial(conv_relu_band, radius=radius, **hyper, pool=pool),
        diagonal=functools.partial(conv_relu_band_diagonal, radius=radius, **hyper, pool=pool),
        variances=functools.partial(conv_relu_variances, **hyper),
        pools=pool,
        on_band=on_band if pool else None,
    )
