"""The ReLU's kernel map: the degree-0 and degree-1 arc-cosine kernels (Cho & Saul 2009).

With correlation ``c = cov / sqrt(var1 * var2)`` and ``theta = arccos c``:

* ``nngp' = sqrt(var1 var2) * k1(c)``, ``k1(c) = (sin theta + (pi - theta) c) / (2 pi)``,
* ``ntk'  = k0(c) * ntk``,     ``k0(c) = (pi - theta) / (2 pi)``,

the expectations ``E[relu(u) relu(v)]`` and ``E[relu'(u) relu'(v)]`` of a centred Gaussian
pair (the next affine layer adds its own NNGP to the NTK). ``k1' = k0`` exactly, while ``k0' = 1 / (2 pi sqrt(1 - c^2))`` is infinite at
``c = +-1``; the entries sitting there (a pixel with itself) have ``c = 1`` identically,
so their true derivative is zero and the custom JVP gives zero instead of ``inf * 0``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from kipd.kernels._state import KernelState, shift_band, valid_mask

_INV_2PI = 1.0 / (2.0 * math.pi)


@jax.custom_jvp
def arccos_kernels(correlation: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(k0(c), k1(c))`` for correlations ``c`` (clipped to [-1, 1])."""
    c = jnp.clip(correlation, -1.0, 1.0)
    k0 = (math.pi - jnp.arccos(c)) * _INV_2PI
    k1 = jnp.sqrt(jnp.maximum(1.0 - c * c, 0.0)) * _INV_2PI + k0 * c
    return k0, k1


@arccos_kernels.defjvp
def _arccos_kernels_jvp(primals, tangents):
    (correlation,), (dc,) = primals, tangents
    k0, k1 = arccos_kernels(correlation)
    c = jnp.clip(correlation, -1.0, 1.0)
    one_minus_c2 = 1.0 - c * c
    inside = one_minus_c2 > 0
    dk0_dc = jnp.where(inside, jax.lax.rsqrt(jnp.where(inside, one_minus_c2, 1.0)), 0.0)
    return (k0, k1), (dk0_dc * _INV_2PI * dc, k0 * dc)


def _relu_pairwise(cov, ntk, inv_std1, inv_std2):
    k0, k1 = arccos_kernels(cov * inv_std1 * inv_std2)
    nngp = k1 / (inv_std1 * inv_std2)
    return nngp, (None if ntk is None else k0 * ntk)


def relu_maps(state: KernelState) -> KernelState:
    """Map every covariance (cross and self bands) through a ReLU; see module docstring."""
    if state.is_flat:
        inv1, inv2 = jax.lax.rsqrt(state.var1), jax.lax.rsqrt(state.var2)
        nngp, ntk = _relu_pairwise(state.nngp, state.ntk, inv1[:, None], inv2[None, :])
        var1, _ = _relu_pairwise(state.var1, None, inv1, inv1)
        var2, _ = _relu_pairwise(state.var2, None, inv2, inv2)
        return KernelState(nngp=nngp, ntk=ntk, var1=var1, var2=var2)

    radius = state.radius
    r_h, r_w = radius
    mask = valid_mask(radius, state.spatial_shape)

    def inverse_std(var_band):
        # 1/std at position p, (n, 1, 1, H, W), and at p + D, (n, Dh, Dw, H, W); outside
        # the image the fill 1 keeps the arithmetic finite until the mask zeroes it.
        inv = jax.lax.rsqrt(var_band[:, r_h, r_w])
        return inv[:, None, None], shift_band(inv, radius, 1.0)

    inv1_here, inv1_there = inverse_std(state.var1)
    inv2_here, inv2_there = inverse_std(state.var2)
    nngp, ntk = _relu_pairwise(state.nngp, state.ntk, inv1_here[:, None], inv2_there[None])
    var1, _ = _relu_pairwise(state.var1, None, inv1_here, inv1_there)
    var2, _ = _relu_pairwise(state.var2, None, inv2_here, inv2_there)
    return KernelState(
        nngp=nngp * mask,
        ntk=None if ntk is None else ntk * mask,
        var1=var1 * mask,
        var2=var2 * mask,
    )
