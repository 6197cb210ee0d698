"""The ReLU's kernel map: the degree-0 and degree-1 arc-cosine kernels (Cho & Saul 2009).

With correlation ``c = cov / sqrt(var1 * var2)`` and ``theta = arccos c``:

* ``nngp' = sqrt(var1 var2) * k1(c)``, ``k1(c) = (sin theta + (pi - theta) c) / (2 pi)``,
* ``ntk'  = k0(c) * ntk``,             ``k0(c) = (pi - theta) / (2 pi)``,

the expectations ``E[relu(u) relu(v)]`` and ``E[relu'(u) relu'(v)]`` of a centred Gaussian
pair (the next affine layer adds its own NNGP to the NTK). ``k1' = k0`` exactly, while
``k0' = 1 / (2 pi sqrt(1 - c^2))`` is infinite at ``c = +-1``; the entries sitting there (a
pixel with itself) have ``c = 1`` identically, so their true derivative is zero and the
hand-written VJP gives zero instead of ``inf * 0``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from kipd.kernels._state import KernelState, shift_band, valid_mask

_INV_2PI = 1.0 / (2.0 * math.pi)


def _pi_minus_arccos(c: jax.Array) -> jax.Array:
    """``pi - arccos(c)`` for ``c`` in [-1, 1], without cancellation near ``c = -1``.

    In float32 this evaluates arcsin with the Cephes single-precision minimax polynomial
    (relative error ~1e-7, i.e. float32 rounding): XLA's generic ``acos`` goes through
    ``atan2`` and, on CPU, costs 10-70x more per element, and the ReLU map is the bulk of a
    ConvNet kernel. float64 uses ``jnp.arccos``.
    """
    if c.dtype != jnp.float32:
        return math.pi - jnp.arccos(c)
    magnitude = jnp.abs(c)
    near_one = magnitude > 0.5
    # arccos|c| = pi/2 - arcsin|c| for |c| <= 1/2, else 2 arcsin(sqrt((1 - |c|) / 2)).
    z = jnp.where(near_one, 0.5 * (1.0 - magnitude), magnitude * magnitude)
    s = jnp.where(near_one, jnp.sqrt(z), magnitude)
    poly = (
        ((4.2163199048e-2 * z + 2.4181311049e-2) * z + 4.5470025998e-2) * z + 7.4953002686e-2
    ) * z + 1.6666752422e-1
    arcsin_s = s + s * z * poly
    arccos_magnitude = jnp.where(near_one, 2.0 * arcsin_s, math.pi / 2 - arcsin_s)
    return jnp.where(c < 0, arccos_magnitude, math.pi - arccos_magnitude)


def arccos_kernels(correlation: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(k0(c), k1(c))`` for correlations ``c`` (clipped to [-1, 1])."""
    c = jnp.clip(correlation, -1.0, 1.0)
    k0 = _pi_minus_arccos(c) * _INV_2PI
    k1 = jnp.sqrt(jnp.maximum(1.0 - c * c, 0.0)) * _INV_2PI + k0 * c
    return k0, k1


@jax.custom_vjp
def arccos_maps(
    nngp: jax.Array, ntk: jax.Array | None, std_product: jax.Array
) -> tuple[jax.Array, jax.Array | None]:
    """``(k1(c) s, k0(c) ntk)`` with ``c = nngp / s``, ``s = std_product``, elementwise.

    Its VJP is written out (below) rather than derived by JAX: autodiff would re-run the
    map with its linearization (the arc-cosine polynomial and its derivative) before the
    transpose; the hand-written rule reuses ``c`` and ``k0`` from the forward and needs one
    square root and one reciprocal square root per entry. ``ntk`` may be ``None`` (NNGP
    only).
    """
    return _arccos_maps_fwd(nngp, ntk, std_product)[0]


def _arccos_maps_fwd(nngp, ntk, std_product):
    c = nngp / std_product
    k0, k1 = arccos_kernels(c)
    out = (k1 * std_product, None if ntk is None else k0 * ntk)
    return out, (c, k0, ntk, std_product)


def _arccos_maps_bwd(residuals, cotangents):
    c, k0, ntk, s = residuals
    d_nngp_out, d_ntk_out = cotangents
    clipped = jnp.clip(c, -1.0, 1.0)
    one_minus_c2 = 1.0 - clipped * clipped
    # k1(c) - k0(c) c, the derivative of k1(c) s in s; written with the clipped c inside
    # k1 and the raw c outside, as the chain rule through the clip gives it.
    sine = jnp.sqrt(jnp.maximum(one_minus_c2, 0.0)) * _INV_2PI
    d_nngp = d_nngp_out * k0
    d_s = d_nngp_out * (sine + k0 * (clipped - c))
    if ntk is None:
        return d_nngp, None, d_s
    # k0'(c) = 1 / (2 pi sqrt(1 - c^2)), infinite at c = +-1; those entries have c = 1
    # identically (a pixel with itself), so their derivative is 0 (module docstring).
    inside = one_minus_c2 > 0
    dk0_dc = jnp.where(inside, jax.lax.rsqrt(jnp.where(inside, one_minus_c2, 1.0)), 0.0) * _INV_2PI
    through_c = d_ntk_out * ntk * dk0_dc / s  # d ntk' / d nngp
    return d_nngp + through_c, d_ntk_out * k0, d_s - through_c * c


arccos_maps.defvjp(_arccos_maps_fwd, _arccos_maps_bwd)


def relu_maps(state: KernelState) -> KernelState:
    """Map the covariances of ``state`` through a ReLU; see the module docstring."""
    flat = state.is_flat
    rest2: tuple[jax.Array, ...]  # empty for a diagonal pass
    if state.diagonal:
        r_h, r_w = (0, 0) if flat else state.radius
        variance = state.nngp if flat else state.nngp[:, r_h, r_w]
        var1 = var2 = variance
        rest1, rest2 = state.var1 + (variance,), ()
    else:
        if not state.var1:
            raise ValueError("a grid kernel pass needs the variances of both inputs at every ReLU")
        var1, var2 = state.var1[0], state.var2[0]
        rest1, rest2 = state.var1[1:], state.var2[1:]

    if flat:
        here, there = (var1, var2) if state.diagonal else (var1[:, None], var2[None, :])
    else:
        # Variance at the first position p, (n1, 1, 1, H, W), and at the second, p + D,
        # (n2, Dh, Dw, H, W); outside the image the fill 1 keeps the arithmetic finite
        # until the mask zeroes those entries.
        here, there = var1[:, None, None], shift_band(var2, state.radius, 1.0)
        if not state.diagonal:
            here, there = here[:, None], there[None]

    # cov / sqrt(var1 var2), not cov * rsqrt(var1) * rsqrt(var2): for a pixel with itself
    # sqrt(fl(v * v)) == v exactly, so c == 1 exactly and theta == 0, where the product
    # of reciprocals leaves c = 1 +- 1e-7 and theta ~ 5e-4 in float32.
    nngp, ntk = arccos_maps(state.nngp, state.ntk, jnp.sqrt(here * there))
    if not flat:
        mask = valid_mask(state.radius, state.spatial_shape)
        nngp = nngp * mask
        ntk = None if ntk is None else ntk * mask
    return state.replace(nngp=nngp, ntk=ntk, var1=rest1, var2=rest2)
