"""DSA (the standard protocol's augmentation): each family's law, single mode, jit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kipd import data

X = jnp.asarray(np.random.default_rng(0).random((6, 8, 8, 3)), jnp.float32)
KEY = jax.random.PRNGKey(3)


def test_flip_mirrors_or_keeps_each_image():
    out = data.dsa(KEY, X, "flip")
    for image, flipped in zip(X, out):
        assert np.array_equal(flipped, image) or np.array_equal(flipped, image[:, ::-1])


def test_cutout_zeros_one_square_of_half_the_side():
    out = np.asarray(data.dsa(KEY, X + 1.0, "cutout"))  # no zero pixels before
    for image in out:
        zero = np.all(image == 0, axis=-1)
        rows, cols = np.flatnonzero(zero.any(1)), np.flatnonzero(zero.any(0))
        assert zero.sum() == len(rows) * len(cols) and len(rows) <= 4 and len(cols) <= 4


def test_crop_shifts_by_whole_pixels_with_zeros():
    out = np.asarray(data.dsa(KEY, X + 1.0, "crop"))
    for image, shifted in zip(np.asarray(X + 1.0), out):
        found = False
        for dy in range(-1, 2):
            for dx in range(-1, 2):
                moved = np.zeros_like(image)
                src = image[max(dy, 0) : 8 + min(dy, 0), max(dx, 0) : 8 + min(dx, 0)]
                moved[max(-dy, 0) : 8 + min(-dy, 0), max(-dx, 0) : 8 + min(-dx, 0)] = src
                found |= np.array_equal(moved, shifted)
        assert found


def test_color_keeps_gray_images_gray_and_scale_rotate_keep_the_centre():
    gray = jnp.repeat(X[..., :1], 3, axis=-1)
    out = np.asarray(data.dsa(KEY, gray, "color"))
    np.testing.assert_allclose(out[..., 0], out[..., 2], atol=1e-6)
    odd = jnp.asarray(np.random.default_rng(1).random((4, 9, 9, 1)), jnp.float32)
    for family in ("scale", "rotate"):
        out = data.dsa(KEY, odd, family)
        np.testing.assert_allclose(out[:, 4, 4], odd[:, 4, 4], atol=1e-5)  # the fixed point


def test_single_mode_applies_one_family_and_is_deterministic():
    out = jax.jit(data.dsa)(KEY, X)
    np.testing.assert_array_equal(out, data.dsa(KEY, X))
    _, apply = jax.random.split(KEY)
    candidates = [data.dsa(apply, X, family) for family in data.DSA_STRATEGY]
    assert any(np.allclose(out, c, atol=1e-6) for c in candidates)
    with pytest.raises(ValueError, match="family must be one of"):
        data.dsa(KEY, X, "mixup")
