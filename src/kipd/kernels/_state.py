"""The kernel state that layer maps propagate: covariance bands of a batch of pairs.

A convolution preserves the spatial offset ``D = q - p`` of a covariance entry
``cov(x1[p], x2[q])``, a ReLU acts entry by entry, and a 2x2 average pool maps offset ``D``
to offsets ``2D + {-1, 0, 1}``. So a network whose readout needs only offset 0 (Flatten)
needs, at every resolution, only a band of offsets ``|D_h| <= R_h, |D_w| <= R_w``: the state
keeps that band instead of the full ``(H*W)^2`` covariance (DESIGN.md, "Use the
structure").
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class KernelState(NamedTuple):
    """Covariances of a batch of input pairs after some layers of a network.

    Two layouts, told apart by ``nngp.ndim``:

    * spatial: ``nngp[i, j, a, b, h, w] = cov(x1_i[h, w], x2_j[h + a - R_h, w + b - R_w])``
      with shape ``(n1, n2, 2*R_h + 1, 2*R_w + 1, H, W)``; entries whose second position
      falls outside the image are kept at exactly zero;
    * flat (after Flatten): ``nngp[i, j]`` with shape ``(n1, n2)``.

    Attributes:
      nngp: cross covariance of x1 and x2 (the NNGP kernel so far).
      ntk: the NTK so far, same shape as ``nngp``; ``None`` when only the NNGP is asked
        for, so no work is spent on it.
      var1: covariance band of each x1 with itself, ``(n1, 2R_h+1, 2R_w+1, H, W)`` spatial
        or ``(n1,)`` flat. The ReLU needs its offset-0 entries (variances); pooling
        needs the neighbouring offsets to pool them.
      var2: the same for x2, ``(n2, ...)``.
    """

    nngp: jax.Array
    ntk: jax.Array | None
    var1: jax.Array
    var2: jax.Array

    @property
    def is_flat(self) -> bool:
        return self.nngp.ndim == 2

    @property
    def radius(self) -> tuple[int, int]:
        """Band half-widths ``(R_h, R_w)`` of a spatial state."""
        return (self.nngp.shape[2] - 1) // 2, (self.nngp.shape[3] - 1) // 2

    @property
    def spatial_shape(self) -> tuple[int, int]:
        return self.nngp.shape[-2], self.nngp.shape[-1]

    def replace(self, **fields) -> "KernelState":
        return self._replace(**fields)


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
