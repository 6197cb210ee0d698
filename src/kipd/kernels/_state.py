"""The kernel state that layer maps propagate: covariance bands of a batch of pairs.

A convolution preserves the spatial offset ``D = q - p`` of a covariance entry
``cov(x1[p], x2[q])``, a ReLU acts entry by entry, and a 2x2 average pool maps offset ``D``
to offsets ``2D + {-1, 0, 1}``. So a network whose readout needs only offset 0 (Flatten)
needs, at every resolution, only a band of offsets ``|D_h| <= R_h, |D_w| <= R_w``: the state
keeps that band instead of the full ``(H*W)^2`` covariance (docs/design.md, "Use the
structure").
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


@partial(
    jax.tree_util.register_dataclass,
    data_fields=["nngp", "ntk", "var1", "var2"],
    meta_fields=["diagonal"],
)
@dataclasses.dataclass(frozen=True)
class KernelState:
    """Covariances of a batch of input pairs after some layers of a network.

    The batch is either a grid of pairs ``(x1_i, x2_j)`` (``diagonal=False``, batch axes
    ``(n1, n2)``) or each image with itself (``diagonal=True``, batch axis ``(n,)``). The
    trailing axes tell the layout:

    * spatial: ``nngp[..., a, b, h, w] = cov(x1[h, w], x2[h + a - R_h, w + b - R_w])``,
      trailing shape ``(2*R_h + 1, 2*R_w + 1, H, W)``; entries whose second position
      falls outside the image are kept at exactly zero;
    * flat (after Flatten): no trailing axes.

    Attributes:
      nngp: the NNGP covariance so far.
      ntk: the NTK so far, same shape as ``nngp``; ``None`` when only the NNGP is asked
        for, so no work is spent on it.
      var1: variances of x1 at the inputs of the ReLUs: ``(n1, H, W)`` or ``(n1,)`` each.
        A grid pass consumes them (one per ReLU, in order); a diagonal pass, which reads
        them off its own offset-0 entries, appends them. Computing them once per image
        keeps a grid chunk from redoing per-image work for every pair.
      var2: the same for x2 (unused by a diagonal pass).
      diagonal: whether this is the per-image (diagonal) pass.
    """

    nngp: jax.Array
    ntk: jax.Array | None
    var1: tuple[jax.Array, ...]
    var2: tuple[jax.Array, ...]
    diagonal: bool

    def replace(self, **fields) -> KernelState:
        """A copy with the given fields changed (the state is immutable)."""
        return dataclasses.replace(self, **fields)

    @property
    def batch_ndim(self) -> int:
        return 1 if self.diagonal else 2

    @property
    def is_flat(self) -> bool:
        return self.nngp.ndim == self.batch_ndim

    @property
    def radius(self) -> tuple[int, int]:
        """Band half-widths ``(R_h, R_w)`` of a spatial state."""
        shape = self.nngp.shape[self.batch_ndim :]
        return (shape[0] - 1) // 2, (shape[1] - 1) // 2

    @property
    def spatial_shape(self) -> tuple[int, int]:
        return self.nngp.shape[-2], self.nngp.shape[-1]


def valid_mask(radius: tuple[int, int], spatial_shape: tuple[int, int]) -> np.ndarray:
    """1 where the band entry's second position lies inside the image, else 0.

    Returns:
      float32 array ``(2R_h+1, 2R_w+1, H, W)``, a compile-time constant.
    """
    (r_h, r_w), (height, width) = radius, spatial_shape
    rows = np.arange(height)[None, :] + np.arange(-r_h, r_h + 1)[:, None]
    cols = np.arange(width)[None, :] + np.arange(-r_w, r_w + 1)[:, None]
    rows_ok = (rows >= 0) & (rows < height)
    cols_ok = (cols >= 0) & (cols < width)
    return (rows_ok[:, None, :, None] & cols_ok[None, :, None, :]).astype(np.float32)


def shift_band(values: jax.Array, radius: tuple[int, int], fill: float) -> jax.Array:
    """``out[..., a, b, h, w] = values[..., h + a - R_h, w + b - R_w]``, ``fill`` outside.

    Args:
      values: ``(..., H, W)``.
    Returns:
      ``(..., 2R_h+1, 2R_w+1, H, W)``.
    """
    (r_h, r_w), (height, width) = radius, values.shape[-2:]
    pad = [(0, 0)] * (values.ndim - 2) + [(r_h, r_h), (r_w, r_w)]
    padded = jnp.pad(values, pad, constant_values=fill)
    rows = jnp.stack([padded[..., a : a + height, :] for a in range(2 * r_h + 1)], axis=-3)
    return jnp.stack([rows[..., b : b + width] for b in range(2 * r_w + 1)], axis=-3)


def materialize(tree: Any) -> Any:
    """Return ``tree`` (a pytree of arrays) unchanged, as arrays that XLA must write to memory.

    XLA fuses an elementwise producer into the shifted reads of a stencil (box filter,
    pooling) and recomputes it once per read; chained through a ConvNet that costs ~4x
    in time. On a GPU (or TPU) ``optimization_barrier`` keeps the fusions apart on the
    device. XLA:CPU drops that barrier, but never fuses across a conditional, so there
    the arrays pass through one whose predicate it cannot prove: ``v == v`` fails only
    for a NaN ``v``, and then the NaN-filled branch gives what the NaN would have spread
    to anyway. (On a GPU the conditional would make the host read the predicate, a
    device-to-host sync per layer, which is why it is used on the CPU only.)
    """
    if jax.default_backend() != "cpu":
        return jax.lax.optimization_barrier(tree)
    probe = jax.tree_util.tree_leaves(tree)[0].ravel()[0]

    def nan_filled(tree):
        return jax.tree_util.tree_map(lambda a: jnp.full_like(a, jnp.nan), tree)

    return jax.lax.cond(probe == probe, lambda tree: tree, nan_filled, tree)
