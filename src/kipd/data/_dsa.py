"""Differentiable Siamese Augmentation (DSA; Zhao & Bilen 2021) as the field's standard
evaluation protocol uses it: pure, jit-able JAX on a batch of NHWC images.

DC-bench and DD-Ranking train their evaluation networks with DSA's strategy
``color_crop_cutout_flip_scale_rotate`` in its single mode: each call draws one of the six
families for the whole batch, and each image draws its own parameters. The parameters are
DSA's defaults (``ParamDiffAug``):

- color: brightness ``x + (u - 0.5)``, then saturation ``(x - gray) * 2u + gray`` (gray:
  the mean over channels), then contrast ``(x - mean) * (u + 0.5) + mean`` (mean over the
  image), each with its own ``u ~ U[0, 1)``;
- crop: a shift by up to ``round(0.125 H)`` pixels in each direction, zeros shifted in;
- cutout: a square of side ``round(0.5 H)`` at a random centre set to zero;
- flip: left-right with probability 1/2;
- scale: each axis by a factor in ``[1/1.2, 1.2]`` about the centre (bilinear, zeros outside);
- rotate: by up to 15 degrees either way about the centre (bilinear, zeros outside).

Like DSA it acts on the images a network is fed (model-input space), not on pixels.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from kipd.data._augment import _flip, affine_bilinear

DSA_STRATEGY = ("color", "crop", "cutout", "flip", "scale", "rotate")
"""The families of ``color_crop_cutout_flip_scale_rotate``, in DSA's order."""

_SCALE = 1.2
_ROTATE_DEGREES = 15.0
_CROP = 0.125
_CUTOUT = 0.5
_BRIGHTNESS, _SATURATION, _CONTRAST = 1.0, 2.0, 0.5


def _uniform(key: jax.Array, n: int) -> jax.Array:
    return jax.random.uniform(key, (n, 1, 1, 1))


def _color(key: jax.Array, x: jax.Array) -> jax.Array:
    k1, k2, k3 = jax.random.split(key, 3)
    n = len(x)
    x = x + (_uniform(k1, n) - 0.5) * _BRIGHTNESS
    gray = x.mean(axis=3, keepdims=True)
    x = (x - gray) * (_uniform(k2, n) * _SATURATION) + gray
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    return (x - mean) * (_uniform(k3, n) + _CONTRAST) + mean


def _crop(key: jax.Array, x: jax.Array) -> jax.Array:
    n, h, w, _ = x.shape
    limit_h, limit_w = int(h * _CROP + 0.5), int(w * _CROP + 0.5)
    k1, k2 = jax.random.split(key)
    dy = jax.random.randint(k1, (n,), -limit_h, limit_h + 1)
    dx = jax.random.randint(k2, (n,), -limit_w, limit_w + 1)
    rows = jnp.arange(h)[None, :] + dy[:, None]  # output row r reads input row r + dy
    cols = jnp.arange(w)[None, :] + dx[:, None]
    inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
    gathered = x[
        jnp.arange(n)[:, None, None],
        jnp.clip(rows, 0, h - 1)[:, :, None],
        jnp.clip(cols, 0, w - 1)[:, None, :],
    ]
    return jnp.where(inside[..., None], gathered, 0.0)


def _cutout(key: jax.Array, x: jax.Array) -> jax.Array:
    n, h, w, _ = x.shape
    size_h, size_w = int(h * _CUTOUT + 0.5), int(w * _CUTOUT + 0.5)
    k1, k2 = jax.random.split(key)
    top = jax.random.randint(k1, (n,), 0, h + (1 - size_h % 2)) - size_h // 2
    left = jax.random.randint(k2, (n,), 0, w + (1 - size_w % 2)) - size_w // 2
    rows, cols = jnp.arange(h)[None, :], jnp.arange(w)[None, :]
    in_rows = (rows >= top[:, None]) & (rows < top[:, None] + size_h)
    in_cols = (cols >= left[:, None]) & (cols < left[:, None] + size_w)
    hole = in_rows[:, :, None] & in_cols[:, None, :]
    return jnp.where(hole[..., None], 0.0, x)


def _flip_half(key: jax.Array, x: jax.Array) -> jax.Array:
    return _flip(x, jax.random.bernoulli(key, 0.5, (len(x),)))


def _scale(key: jax.Array, x: jax.Array) -> jax.Array:
    low = 1.0 / _SCALE
    factors = jax.random.uniform(key, (len(x), 2)) * (_SCALE - low) + low  # (sy, sx)
    matrices = jax.vmap(jnp.diag)(factors)
    return jax.vmap(affine_bilinear)(x, matrices, jnp.zeros((len(x), 2)))


def _rotate(key: jax.Array, x: jax.Array) -> jax.Array:
    angle = (jax.random.uniform(key, (len(x),)) - 0.5) * 2 * _ROTATE_DEGREES / 180 * math.pi
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    matrices = jnp.stack([jnp.stack([cos, -sin], -1), jnp.stack([sin, cos], -1)], axis=1)
    return jax.vmap(affine_bilinear)(x, matrices, jnp.zeros((len(x), 2)))


_FAMILIES = {
    "color": _color,
    "crop": _crop,
    "cutout": _cutout,
    "flip": _flip_half,
    "scale": _scale,
    "rotate": _rotate,
}


def dsa(key: jax.Array, images: jax.Array, family: str | None = None) -> jax.Array:
    """DSA's ``color_crop_cutout_flip_scale_rotate`` on a batch (single mode).

    Args:
      key: PRNG key; draws the family (unless given) and each image's parameters.
      images: ``(n, H, W, C)`` float images, as the network is fed them.
      family: one of :data:`DSA_STRATEGY` to apply that family only (tests, figures);
        ``None`` draws one uniformly, as DSA does for each training batch.

    Returns:
      The augmented ``(n, H, W, C)`` batch, same dtype.

    Example:
      >>> x = jnp.ones((2, 8, 8, 1))
      >>> dsa(jax.random.PRNGKey(0), x, "cutout").shape
      (2, 8, 8, 1)
    """
    images = jnp.asarray(images)
    if family is not None:
        if family not in _FAMILIES:
            raise ValueError(f"family must be one of {', '.join(DSA_STRATEGY)}, got {family!r}")
        return _FAMILIES[family](key, images).astype(images.dtype)
    choose, apply = jax.random.split(key)
    index = jax.random.randint(choose, (), 0, len(DSA_STRATEGY))
    branches = [lambda k, x, f=_FAMILIES[name]: f(k, x).astype(x.dtype) for name in DSA_STRATEGY]
    return jax.lax.switch(index, branches, apply, images)
