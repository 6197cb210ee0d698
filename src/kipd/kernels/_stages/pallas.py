"""A fused Pallas (Triton) kernel for the full-resolution stage of the ConvNet kernel.

The stage is ``num_relus`` times (3x3 'SAME' conv, ReLU) on the covariance band of
``_state.py``; the band of one pair splits into ``(2R+1)^2`` offset planes, and a conv
keeps the offset ``D`` (docs/design.md, "Use the structure"), so one plane of one pair runs the
whole stage on its own: here one program per (pair, plane) keeps it in registers from
the raw images to the last ReLU. It computes what ``serial(conv, relu, ...)`` computes on
``input_state(x1, x2, (R, R), with_ntk=True, var1, var2)``, NTK parameterization.

Layout. A plane is a power-of-two tile (Triton needs power-of-two shapes; at least 16 per side, the
smallest ``tt.dot``), positions ``p`` of the first image; 28x28 pads to 32x32, and the
mask (``p`` and ``p + D`` inside the image) keeps padding and out-of-image entries at
zero. Shifted reads are masked gathers at the shifted indices (fill 0 for images, 1 for
variances, which keeps the ReLU arithmetic finite where the mask zeroes it), and the
planes are stored with a mask straight into ``(n1, n2, 2R+1, 2R+1, H, W)``. The 3x3 box
filter is ``T @ X @ T / 9`` with the 0/1 tridiagonal ``T``, in IEEE float32
(``Precision.HIGHEST`` lowers to ``input_precision=ieee``; any other precision lowers to
TF32 and loses 3 digits). A dot with ``T`` adds the three taps in ascending order, as the
XLA box filter does.

What the Triton lowering emits (jax 0.10.2, read off ``pallas_call(debug=True)`` and
Triton's NVIDIA backend): ``x / y`` on float32 is ``arith.divf``, which Triton lowers to
``llvm.nvvm.div.full``, PTX ``div.full.f32``: an approximate division (error up to 2
ulp), so ``v / v`` need not be 1. ``jnp.sqrt`` is an ``extern_elementwise`` call of
libdevice's ``__nv_sqrtf``, whose rounding (IEEE or approximate) is a setting of the
compiler that links libdevice, not something the kernel controls, and
``lax.rsqrt`` is ``__nv_rsqrtf``, approximate. Multiplies and adds carry no fast-math
flags, but the GPU compiler may contract ``a * b + c`` into an FMA. So every division and
square root of the stage goes through inline PTX ``div.rn.f32`` / ``sqrt.rn.f32``
(IEEE round-to-nearest, :func:`_div`, :func:`_sqrt`); in interpret mode they are plain
``/`` and ``jnp.sqrt``, which XLA:CPU computes IEEE-exactly too. The one exception is the
``sqrt`` inside the arc-cosine polynomial (``_relu._pi_minus_arccos``, shared, not
copied): at ``c = 1`` its argument is exactly 0, so the exact diagonal does not depend on
its rounding.

Exact correlation 1. For a pixel with itself the XLA path gets ``c = 1`` exactly because
its grid pass reproduces the diagonal pass bit for bit. The kernel sums in its own order
(dots, possibly FMAs), so it reproduces XLA's variances only to an ulp, and ``c = 1 +-
1e-7`` would move the NTK diagonal by ~1e-4. :func:`conv_relu_variances` therefore runs
the offset-0 plane through the very same traced code as :func:`conv_relu_band` (the
offset comes from the program id there too, so no compiler folds it away), reading each
ReLU's variances off its own covariance: with ``v = conv_relu_variances(x)``,
``conv_relu_band(x, x, v, v)`` has ``c = 1`` exactly at ``D = 0``, since
``sqrt.rn(v * v) == v`` and ``div.rn(v, v) == 1``.

Backward. A ``jax.custom_vjp`` whose backward is a Pallas kernel too: one program per pair
loops over the planes, recomputes the plane's forward, and transposes it by hand (the box
filter is self-adjoint; the ReLU derivatives are those of the XLA path, ``_relu.py``,
with ``d k0 / d c`` defined as 0 where ``1 - c^2 <= 0``). Contributions to the second image
land at ``q = p + D``; they are moved there by a product with 0/1 shift matrices
(exact: one nonzero term per entry) and accumulated per pair; XLA sums the per-pair
partial gradients.

Lowering (jax 0.10.2): without ``compiler_params=plgpu.CompilerParams(...)`` a GPU
``pallas_call`` goes to Mosaic GPU, which lowers neither this ``sqrt`` nor
``dot_general``; jnp's integer ``//`` and ``%`` do not lower to Triton (their sign
fix-ups reach ``rem`` with a boolean operand), hence ``lax.div`` / ``lax.rem``. Exporting
for CUDA from a machine without a GPU needs ``interpret=False`` and
``jax.export.export(..., platforms=("cuda",), disabled_checks=[jax.export.
DisabledSafetyCheck.custom_call("__gpu$xla.gpu.triton")])``; nothing else.

Limits: float32 only; the compiled path is CUDA (inline PTX), elsewhere use interpret
mode. Any ``H, W`` and radius work (offsets beyond the image are zero planes); the tile
is ``next_power_of_two(max(16, H)) x next_power_of_two(max(16, W))``, so the design
targets ``H, W <= 32``: registers per program grow with the tile area times
``2C + 2 num_relus`` plus the recomputed intermediates.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any, cast

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

from kipd.kernels._relu import _INV_2PI, _pi_minus_arccos
from kipd.kernels._stages.stage import FusedStage


@dataclasses.dataclass(frozen=True)
class _Spec:
    """Static shape and parameters of one launch (hashable: a ``custom_vjp`` static arg)."""

    radius: int
    num_relus: int
    channels: int
    height: int
    width: int
    w2: float
    b2: float
    interpret: bool

    @property
    def tile(self) -> tuple[int, int]:
        return (
            pl.next_power_of_2(max(16, self.height)),
            pl.next_power_of_2(max(16, self.width)),
        )

    @property
    def offsets(self) -> int:
        return 2 * self.radius + 1

    def call(self, kernel, grid, out_shape, name):
        """``pallas_call`` of ``kernel(*refs, spec=self)`` on the Triton backend."""
        # About four entries of a tile per thread: the backward program holds some 30
        # tiles at once (sums, inputs, the recomputed forward), which must fit in registers.
        num_warps = min(8, max(1, self.tile[0] * self.tile[1] // 128))
        return pl.pallas_call(
            functools.partial(kernel, spec=self),
            grid=grid,
            out_shape=out_shape,
            interpret=self.interpret,
            compiler_params=plgpu.CompilerParams(num_warps=num_warps),
            name=name,
        )


def _asm(ptx: str, *args) -> jax.Array:
    """One float32 PTX instruction applied elementwise (operands broadcast)."""
    shape = jnp.broadcast_shapes(*(jnp.shape(a) for a in args))
    operands = [jnp.broadcast_to(jnp.asarray(a, jnp.float32), shape) for a in args]
    constraints = ",".join(["=f"] + ["f"] * len(operands))
    [out] = plgpu.elementwise_inline_asm(
        ptx,
        args=operands,
        constraints=constraints,
        pack=1,
        result_shape_dtypes=[jax.ShapeDtypeStruct(shape, jnp.float32)],
    )
    return out


def _div(spec: _Spec, a: jax.Array, b) -> jax.Array:
    """IEEE ``a / b``: Triton's own f32 division is the approximate ``div.full.f32``."""
    return a / b if spec.interpret else _asm("div.rn.f32 $0, $1, $2;", a, b)


def _sqrt(spec: _Spec, a: jax.Array) -> jax.Array:
    """IEEE square root, whatever libdevice's ``__nv_sqrtf`` is configured to do."""
    return jnp.sqrt(a) if spec.interpret else _asm("sqrt.rn.f32 $0, $1;", a)


def _dot(a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.dot(a, b, precision=jax.lax.Precision.HIGHEST)


def _band_matrix(size: int, offset) -> jax.Array:
    """0/1 matrix ``M[r, c] = (c - r == offset)``; ``offset`` may be traced."""
    rows = jax.lax.broadcasted_iota(jnp.int32, (size, size), 0)
    cols = jax.lax.broadcasted_iota(jnp.int32, (size, size), 1)
    return jnp.where(cols - rows == offset, 1.0, 0.0)


class _Tile:
    """Index grids, masks and the box filter of one tile of positions ``p``."""

    def __init__(self, spec: _Spec):
        self.spec = spec
        hp, wp = spec.tile
        self.rows = jax.lax.broadcasted_iota(jnp.int32, (hp, wp), 0)
        self.cols = jax.lax.broadcasted_iota(jnp.int32, (hp, wp), 1)
        self.inside = self._inside(self.rows, self.cols)
        # The tridiagonal sums of the 3x3 box filter along rows (left) and columns (right).
        self.t_rows = cast(jax.Array, sum(_band_matrix(hp, k) for k in (-1, 0, 1)))
        self.t_cols = cast(jax.Array, sum(_band_matrix(wp, k) for k in (-1, 0, 1)))

    def _inside(self, rows, cols):
        return (rows >= 0) & (rows < self.spec.height) & (cols >= 0) & (cols < self.spec.width)

    def shifted(self, d_rows, d_cols):
        """Indices of ``p + D`` and whether they lie inside the image."""
        rows, cols = self.rows + d_rows, self.cols + d_cols
        return rows, cols, self._inside(rows, cols)

    def load(self, ref, index, count, rows, cols, mask, fill):
        """Planes ``ref[index, k, rows, cols]``, ``k < count``, ``fill`` where not ``mask``."""
        return [
            plgpu.load(ref.at[index, k, rows, cols], mask=mask, other=fill) for k in range(count)
        ]

    def box(self, x: jax.Array) -> jax.Array:
        """Mean over the 3x3 window, zero outside: rows first, then columns, as in XLA."""
        return _div(self.spec, _dot(_dot(self.t_rows, x), self.t_cols), 9.0)


@dataclasses.dataclass
class _Step:
    """What the backward pass needs of one ReLU: its inputs and arc-cosine values."""

    nngp: jax.Array
    ntk: jax.Array | None
    std: jax.Array
    corr: jax.Array
    k0: jax.Array
    sin_term: jax.Array  # sqrt(1 - c^2) / (2 pi) = d nngp' / d std


def _forward_plane(tile, x1s, x2s, vars1, vars2, valid, with_ntk):
    """One offset plane through the stage.

    Args:
      tile: the :class:`_Tile`.
      x1s, x2s: per channel, the first image at ``p`` and the second at ``p + D`` (zero
        outside the image).
      vars1, vars2: per ReLU, the variances at ``p`` and ``p + D`` (1 outside), or
        ``None`` for the diagonal pass, which reads them off its own covariance.
      valid: the plane's mask.
      with_ntk: whether to carry the NTK.

    Returns:
      ``(nngp, ntk, steps)``: the outputs (``ntk`` is ``None`` without NTK) and one
      :class:`_Step` per ReLU.
    """
    spec = tile.spec
    # The same add chain as ``input_state``: ((x1 x2)_0 + (x1 x2)_1) + ..., then / C.
    nngp = functools.reduce(jnp.add, [a * b for a, b in zip(x1s, x2s)])
    nngp = _div(spec, nngp, float(len(x1s)))
    ntk, steps = None, []
    for relu in range(spec.num_relus):
        # Selects close each expression, so a mask that a compiler can prove all-true
        # never changes how the arithmetic around it is contracted into FMAs.
        nngp = jnp.where(valid, spec.w2 * tile.box(nngp) + spec.b2, 0.0)
        if with_ntk:
            # The NTK is zero at the input: its first conv adds nothing but the NNGP.
            ntk = nngp if ntk is None else jnp.where(valid, nngp + spec.w2 * tile.box(ntk), 0.0)
        if vars1 is None:
            here = there = jnp.where(valid, nngp, 1.0)
        else:
            here, there = vars1[relu], vars2[relu]
        # sqrt(v1 v2), not the product of roots: sqrt.rn(v * v) == v, so c == 1 exactly.
        std = _sqrt(spec, here * there)
        corr = jnp.clip(_div(spec, nngp, std), -1.0, 1.0)
        k0 = _pi_minus_arccos(corr) * _INV_2PI
        sin_term = _sqrt(spec, jnp.maximum(1.0 - corr * corr, 0.0)) * _INV_2PI
        steps.append(_Step(nngp, ntk, std, corr, k0, sin_term))
        nngp = jnp.where(valid, (sin_term + k0 * corr) * std, 0.0)
        ntk = jnp.where(valid, k0 * ntk, 0.0) if with_ntk else None
    return nngp, ntk, steps


def _backward_plane(tile, x1s, x2s, vars1, vars2, valid, g_nngp, g_ntk, g_vars):
    """Transpose of :func:`_forward_plane` (recomputed) for given output cotangents.

    Args:
      tile, x1s, x2s, vars1, vars2, valid: as for :func:`_forward_plane`.
      g_nngp, g_ntk: cotangents of the plane's outputs; ``g_ntk`` is ``None`` for the
        diagonal pass (no NTK).
      g_vars: for the diagonal pass, the cotangents of the recorded variances, else
        ``None``.

    Returns:
      ``(g_input, g_std_times_std)``: the cotangent of the input band ``sum_c x1 x2 / C``,
      and per ReLU ``d L / d std * std``, from which ``d L / d v = that / (2 v)`` for
      either variance (grid pass only; ``None`` entries for the diagonal pass).
    """
    spec = tile.spec
    with_ntk = g_ntk is not None
    _, _, steps = _forward_plane(tile, x1s, x2s, vars1, vars2, valid, with_ntk)
    g_std_std = [None] * spec.num_relus
    for relu in reversed(range(spec.num_relus)):
        step = steps[relu]
        # ReLU: nngp' = k1(c) std, ntk' = k0(c) ntk, c = nngp / std.
        g_nngp = jnp.where(valid, g_nngp, 0.0)
        g_in = g_nngp * step.k0
        g_std = g_nngp * step.sin_term
        if with_ntk:
            g_ntk = jnp.where(valid, g_ntk, 0.0)
            one_minus_c2 = 1.0 - step.corr * step.corr
            inside = one_minus_c2 > 0
            # d k0 / d c = 1 / (2 pi sqrt(1 - c^2)), defined as 0 at |c| = 1, where a
            # pixel sits with itself and c == 1 identically (the XLA path's custom JVP).
            dk0 = jnp.where(
                inside,
                _div(spec, _INV_2PI, _sqrt(spec, jnp.where(inside, one_minus_c2, 1.0))),
                0.0,
            )
            through_corr = _div(spec, g_ntk * step.ntk * dk0, step.std)
            g_in = g_in + through_corr
            g_std = g_std - through_corr * step.corr
            g_ntk_in = g_ntk * step.k0
        if g_vars is None:
            g_std_std[relu] = g_std * step.std
        else:
            # Diagonal pass: std = sqrt(nngp * nngp), and nngp is the recorded variance.
            g_in = g_in + g_std * _div(spec, step.nngp, step.std) + g_vars[relu]
        # Conv: nngp' = w2 box(nngp) + b2, ntk' = nngp' + w2 box(ntk), box self-adjoint.
        if with_ntk:
            g_ntk_in = jnp.where(valid, g_ntk_in, 0.0)
            g_in = g_in + g_ntk_in
            g_ntk = spec.w2 * tile.box(g_ntk_in) if relu > 0 else None
        g_nngp = spec.w2 * tile.box(jnp.where(valid, g_in, 0.0))
    return g_nngp, g_std_std


def _forward_kernel(*refs, spec: _Spec, diagonal: bool):
    """One (pair, offset plane) of the grid pass, or one image of the diagonal pass.

    Grid pass refs: x1 (n1, C, H, W), x2 (n2, C, H, W), var1 (n1, L, H, W),
    var2 (n2, L, H, W) -> nngp, ntk (n1, n2, 2R+1, 2R+1, H, W); grid (n1, n2, 2R+1, 2R+1).
    Diagonal pass refs: x (n, C, H, W) -> var (n, L, H, W); grid (n, 1, 1).
    """
    tile = _Tile(spec)
    if diagonal:
        (x1_ref, var_ref), x2_ref = refs, refs[0]
        i = j = pl.program_id(0)
        a, b = pl.program_id(1), pl.program_id(2)
    else:
        x1_ref, x2_ref, v1_ref, v2_ref, nngp_ref, ntk_ref = refs
        i, j, a, b = (pl.program_id(k) for k in range(4))
    # The offset is a program id even for the diagonal pass's D = 0, so that plane compiles
    # to the same arithmetic as the grid pass's D = 0 plane (see the module docstring).
    rows2, cols2, inside2 = tile.shifted(a - spec.radius, b - spec.radius)
    valid = tile.inside & inside2
    rows, cols, inside = tile.rows, tile.cols, tile.inside
    x1s = tile.load(x1_ref, i, spec.channels, rows, cols, inside, 0.0)
    x2s = tile.load(x2_ref, j, spec.channels, rows2, cols2, inside2, 0.0)
    if diagonal:
        _, _, steps = _forward_plane(tile, x1s, x2s, None, None, valid, with_ntk=False)
        for relu, step in enumerate(steps):
            plgpu.store(var_ref.at[i, relu, rows, cols], step.nngp, mask=inside)
        return
    vars1 = tile.load(v1_ref, i, spec.num_relus, rows, cols, inside, 1.0)
    vars2 = tile.load(v2_ref, j, spec.num_relus, rows2, cols2, inside2, 1.0)
    nngp, ntk, _ = _forward_plane(tile, x1s, x2s, vars1, vars2, valid, with_ntk=True)
    plgpu.store(nngp_ref.at[i, j, a, b, rows, cols], nngp, mask=inside)
    plgpu.store(ntk_ref.at[i, j, a, b, rows, cols], ntk, mask=inside)


def _band_backward_kernel(
    x1_ref,
    x2_ref,
    v1_ref,
    v2_ref,
    gn_ref,
    gk_ref,
    dx1_ref,
    dx2_ref,
    dv1_ref,
    dv2_ref,
    *,
    spec: _Spec,
):
    """Per pair: partial gradients w.r.t. both images and both variance sets.

    Refs as in :func:`_forward_kernel` plus the output cotangents; outputs
    dx1, dx2 (n1, n2, C, H, W) and dv1, dv2 (n1, n2, L, H, W), each holding pair (i, j)'s
    share, at the positions of its own image. Grid (n1, n2).
    """
    tile = _Tile(spec)
    hp, wp = spec.tile
    channels, relus, offsets = spec.channels, spec.num_relus, spec.offsets
    i, j = pl.program_id(0), pl.program_id(1)
    rows, cols, inside = tile.rows, tile.cols, tile.inside
    x1s = tile.load(x1_ref, i, channels, rows, cols, inside, 0.0)
    vars1 = tile.load(v1_ref, i, relus, rows, cols, inside, 1.0)

    def plane(index, sums):
        # lax, not jnp: jnp's floor division and modulo do not lower to Triton.
        a, b = jax.lax.div(index, offsets), jax.lax.rem(index, offsets)
        d_rows, d_cols = a - spec.radius, b - spec.radius
        rows2, cols2, inside2 = tile.shifted(d_rows, d_cols)
        valid = inside & inside2
        x2s = tile.load(x2_ref, j, channels, rows2, cols2, inside2, 0.0)
        vars2 = tile.load(v2_ref, j, relus, rows2, cols2, inside2, 1.0)
        g_nngp = plgpu.load(gn_ref.at[i, j, a, b, rows, cols], mask=valid, other=0.0)
        g_ntk = plgpu.load(gk_ref.at[i, j, a, b, rows, cols], mask=valid, other=0.0)
        g_input, g_std_std = _backward_plane(
            tile, x1s, x2s, vars1, vars2, valid, g_nngp, g_ntk, None
        )
        # Move a plane indexed by p to q = p + D: exact, one nonzero product per entry.
        to_rows, to_cols = _band_matrix(hp, -d_rows), _band_matrix(wp, d_cols)

        def to_second(x):
            return _dot(_dot(to_rows, x), to_cols)

        dx1, dx2, dv1, dv2 = sums
        return (
            [s + g_input * x for s, x in zip(dx1, x2s)],
            [s + to_second(g_input * x) for s, x in zip(dx2, x1s)],
            [s + g for s, g in zip(dv1, g_std_std)],
            [s + to_second(g) for s, g in zip(dv2, g_std_std)],
        )

    zero = jnp.zeros((hp, wp), jnp.float32)
    init = ([zero] * channels, [zero] * channels, [zero] * relus, [zero] * relus)
    dx1, dx2, dv1, dv2 = jax.lax.fori_loop(0, offsets * offsets, plane, init)
    vars2 = tile.load(v2_ref, j, relus, rows, cols, inside, 1.0)
    for out, sums, scale in (
        (dx1_ref, dx1, None),
        (dx2_ref, dx2, None),
        (dv1_ref, dv1, vars1),
        (dv2_ref, dv2, vars2),
    ):
        for k, total in enumerate(sums):
            total = (
                _div(spec, total, float(channels))
                if scale is None
                else _div(spec, total, 2.0 * scale[k])
            )
            plgpu.store(out.at[i, j, k, rows, cols], total, mask=inside)


def _diagonal_backward_kernel(x_ref, gv_ref, dx_ref, *, spec: _Spec):
    """Per image: the gradient w.r.t. the image of the recorded variances. Grid (n,)."""
    tile = _Tile(spec)
    i = pl.program_id(0)
    rows, cols, inside = tile.rows, tile.cols, tile.inside
    xs = tile.load(x_ref, i, spec.channels, rows, cols, inside, 0.0)
    g_vars = tile.load(gv_ref, i, spec.num_relus, rows, cols, inside, 0.0)
    zero = jnp.zeros(spec.tile, jnp.float32)
    g_input, _ = _backward_plane(tile, xs, xs, None, None, inside, zero, None, g_vars)
    for k, x in enumerate(xs):
        # The input band x * x / C has derivative 2 x / C.
        plgpu.store(
            dx_ref.at[i, k, rows, cols],
            _div(spec, 2.0 * g_input * x, float(spec.channels)),
            mask=inside,
        )


def _f32(shape) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(shape, jnp.float32)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _band(spec: _Spec, x1, x2, v1, v2):
    n1, n2 = x1.shape[0], x2.shape[0]
    shape = (n1, n2, spec.offsets, spec.offsets, spec.height, spec.width)
    call = spec.call(
        functools.partial(_forward_kernel, diagonal=False),
        (n1, n2, spec.offsets, spec.offsets),
        (_f32(shape), _f32(shape)),
        "conv_relu_band",
    )
    return tuple(call(x1, x2, v1, v2))


def _band_fwd(spec, x1, x2, v1, v2):
    return _band(spec, x1, x2, v1, v2), (x1, x2, v1, v2)


def _band_bwd(spec, residuals, cotangents):
    x1, x2, v1, v2 = residuals
    g_nngp, g_ntk = cotangents
    n1, n2 = x1.shape[0], x2.shape[0]
    spatial = (spec.height, spec.width)
    x_part = _f32((n1, n2, spec.channels, *spatial))
    v_part = _f32((n1, n2, spec.num_relus, *spatial))
    call = spec.call(
        _band_backward_kernel,
        (n1, n2),
        (x_part, x_part, v_part, v_part),
        "conv_relu_band_bwd",
    )
    dx1, dx2, dv1, dv2 = call(x1, x2, v1, v2, g_nngp, g_ntk)
    return dx1.sum(1), dx2.sum(0), dv1.sum(1), dv2.sum(0)


_band.defvjp(_band_fwd, _band_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _variances(spec: _Spec, x):
    n = x.shape[0]
    call = spec.call(
        functools.partial(_forward_kernel, diagonal=True),
        (n, 1, 1),
        _f32((n, spec.num_relus, spec.height, spec.width)),
        "conv_relu_variances",
    )
    return call(x)


def _variances_fwd(spec, x):
    return _variances(spec, x), x


def _variances_bwd(spec, x, g_vars):
    call = spec.call(
        _diagonal_backward_kernel, (x.shape[0],), _f32(x.shape), "conv_relu_variances_bwd"
    )
    return (call(x, g_vars),)


_variances.defvjp(_variances_fwd, _variances_bwd)


def _spec(images, *, radius, num_relus, W_std, b_std, interpret) -> _Spec:
    if images.ndim != 4:
        raise ValueError(f"images must be NHWC (n, H, W, C), got shape {images.shape}")
    if radius < 0 or num_relus < 1:
        raise ValueError(f"need radius >= 0 and num_relus >= 1, got {radius}, {num_relus}")
    _, height, width, channels = images.shape
    if interpret is None:
        interpret = jax.default_backend() == "cpu"
    return _Spec(
        int(radius),
        int(num_relus),
        channels,
        height,
        width,
        float(W_std) ** 2,
        float(b_std) ** 2,
        bool(interpret),
    )


def _channels_first(images) -> jax.Array:
    return jnp.moveaxis(jnp.asarray(images, jnp.float32), -1, 1)


def _stack_variances(variances: Sequence[jax.Array], n: int, spec: _Spec, name: str):
    expected = (n, spec.height, spec.width)
    if len(variances) != spec.num_relus or any(v.shape != expected for v in variances):
        raise ValueError(
            f"{name} must hold num_relus={spec.num_relus} arrays of shape {expected}, got "
            f"{[tuple(v.shape) for v in variances]}"
        )
    return jnp.stack([jnp.asarray(v, jnp.float32) for v in variances], axis=1)


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
    interpret: bool | None = None,
) -> tuple[jax.Array, jax.Array]:
    """NNGP and NTK bands of every pair after ``num_relus`` x (3x3 conv, ReLU).

    The same as ``serial(*[conv(W_std, b_std), relu()] * num_relus).kernel`` applied to
    ``input_state(x1, x2, (radius, radius), with_ntk=True, var1=var1, var2=var2)``
    (NTK parameterization: the CNTK recursion of Arora et al. 2019, "On Exact Computation
    with an Infinitely Wide Neural Net", on a band of offsets), fused into one Pallas
    kernel; differentiable in all four arguments (its backward is a Pallas kernel too).

    Args:
      x1: ``(n1, H, W, C)`` float32 images.
      x2: ``(n2, H, W, C)``.
      var1: ``num_relus`` arrays ``(n1, H, W)``, the positive variances of x1 at each
        ReLU's input (from a diagonal pass; :func:`conv_relu_variances` gives ones that
        make the correlation of a pixel with itself exactly 1).
      var2: the same for x2, ``(n2, H, W)`` each.
      radius: band half-width ``R`` in both directions.
      num_relus: number of (conv, ReLU) groups.
      W_std, b_std: weight and bias standard deviations of the convs.
      interpret: run the kernel in Pallas interpret mode; ``None``: when the default
        backend is the CPU. The compiled path is Triton on CUDA.

    Returns:
      ``(nngp, ntk)``, each ``(n1, n2, 2R+1, 2R+1, H, W)`` float32:
      ``[i, j, a, b, h, w] = cov(x1_i[h, w], x2_j[h + a - R, w + b - R])``, zero where the
      second position lies outside the image.
    """
    spec = _spec(
        x1, radius=radius, num_relus=num_relus, W_std=W_std, b_std=b_std, interpret=interpret
    )
    if x2.ndim != 4 or x2.shape[1:] != x1.shape[1:]:
        raise ValueError(f"x2 {x2.shape} must match x1 {x1.shape} but for the batch axis")
    v1 = _stack_variances(var1, x1.shape[0], spec, "var1")
    v2 = _stack_variances(var2, x2.shape[0], spec, "var2")
    return _band(spec, _channels_first(x1), _channels_first(x2), v1, v2)


def conv_relu_variances(
    x: jax.Array,
    *,
    num_relus: int,
    W_std: float = 2**0.5,
    b_std: float = 0.1,
    interpret: bool | None = None,
) -> tuple[jax.Array, ...]:
    """Per-image variances at the input of each ReLU of the stage (the diagonal pass).

    The offset-0 plane of each image with itself, computed by the same traced code as
    :func:`conv_relu_band`'s offset-0 plane, so ``conv_relu_band(x, x, v, v)`` with
    ``v = conv_relu_variances(x)`` has correlation exactly 1 for a pixel with itself
    (the NTK diagonal exact, its gradient finite). Agrees with the XLA diagonal pass
    (``state.var1`` of ``input_state(x, None, ...)``) to float32 rounding. Differentiable.

    Args:
      x: ``(n, H, W, C)`` float32 images.
      num_relus, W_std, b_std, interpret: as for :func:`conv_relu_band`.

    Returns:
      ``num_relus`` arrays ``(n, H, W)``, in ReLU order.
    """
    spec = _spec(x, radius=0, num_relus=num_relus, W_std=W_std, b_std=b_std, interpret=interpret)
    variances = _variances(spec, _channels_first(x))
    return tuple(variances[:, k] for k in range(num_relus))


def stage(*, radius: int, num_relus: int, W_std: float, b_std: float, pool: bool) -> FusedStage:
    """The Pallas kernel's :class:`FusedStage` (a ``StageFactory``): the stage alone. It
    does not fuse a pooling (``pool`` is ignored: ``pools`` is False, the pooling and
    everything after it run as layer maps), and it has no diagonal kernel: the diagonal
    pass runs each image with itself as a one-pair grid."""
    del pool  # not fused: see the docstring
    hyper: dict[str, Any] = dict(num_relus=num_relus, W_std=W_std, b_std=b_std)
    band = functools.partial(conv_relu_band, radius=radius, **hyper)

    def diagonal(images, variances):
        def one(image_and_variances):
            image, image_variances = image_and_variances
            side = tuple(v[None] for v in image_variances)
            nngp, ntk = band(image[None], image[None], side, side)
            return nngp[0, 0], ntk[0, 0]

        return jax.lax.map(one, (images, tuple(variances)))

    return FusedStage(
        band=band, diagonal=diagonal, variances=functools.partial(conv_relu_variances, **hyper)
    )
