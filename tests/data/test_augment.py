"""augment: determinism, the fraction, shapes and range, flips, the two RGB strategies
agreeing, each AutoAugment operation against PIL (the original implementation's
library), and the grayscale warp against scipy (Keras' implementation)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage
from hypothesis import given, settings
from hypothesis import strategies as st

import kipd.data as kd
from kipd.data import _augment as aug

# One shape per kind, so each jitted function compiles once for the whole module.
RGB = np.random.default_rng(0).random((12, 16, 16, 3), dtype=np.float32)
GRAY = np.random.default_rng(1).random((12, 12, 12, 1), dtype=np.float32)


@pytest.mark.parametrize("images", [RGB, GRAY], ids=["rgb", "gray"])
def test_deterministic_shape_dtype_range(images):
    key = jax.random.PRNGKey(0)
    out = kd.augment(key, images, 1.0)
    assert out.shape == images.shape and out.dtype == jnp.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    np.testing.assert_array_equal(out, kd.augment(key, images, 1.0))
    assert not np.array_equal(out, kd.augment(jax.random.PRNGKey(1), images, 1.0))


@pytest.mark.parametrize("images", [RGB, GRAY], ids=["rgb", "gray"])
@pytest.mark.parametrize("fraction", [0.0, 0.25, 0.5, 1.0])
def test_only_the_selected_fraction_changes(images, fraction):
    key = jax.random.PRNGKey(7)
    out = np.asarray(kd.augment(key, images, fraction))
    selected = np.asarray(aug._selection_mask(jax.random.split(key)[0], len(images), fraction))
    assert selected.sum() == round(fraction * len(images))
    np.testing.assert_array_equal(out[~selected], images[~selected])  # bit for bit
    changed = np.any(out != images, axis=(1, 2, 3))
    assert not np.any(changed & ~selected)
    if kind_is_gray := images.shape[-1] == 1:
        assert np.all(changed == selected)  # a random warp always moves something
    assert kind_is_gray or changed.sum() >= selected.sum() // 2


@settings(max_examples=30, deadline=None)
@given(n=st.sampled_from([1, 12, 50]), fraction=st.floats(0.0, 1.0), seed=st.integers(0, 2**31))
def test_selection_mask_counts_exactly(n, fraction, seed):
    mask = aug._selection_mask(jax.random.PRNGKey(seed), n, fraction)
    assert int(mask.sum()) == round(fraction * n)


def test_flips_are_flips():
    flip = np.array([True, False] * 6)
    out = np.asarray(aug._flip(jnp.asarray(RGB), jnp.asarray(flip)))
    np.testing.assert_array_equal(out[flip], RGB[flip][:, :, ::-1])
    np.testing.assert_array_equal(out[~flip], RGB[~flip])


def test_kind_checks():
    with pytest.raises(ValueError, match="needs 3 channels"):
        kd.augment(jax.random.PRNGKey(0), GRAY, 1.0, "rgb")
    with pytest.raises(ValueError, match="cannot infer"):
        kd.augment(jax.random.PRNGKey(0), np.zeros((2, 4, 4, 2)), 1.0)
    with pytest.raises(ValueError, match="unknown augmentation kind"):
        kd.augment(jax.random.PRNGKey(0), RGB, 1.0, "cutout")


def test_policy_table_is_the_25_cifar10_subpolicies():
    assert len(aug.CIFAR10_POLICY) == 25
    assert all(len(sub) == 2 for sub in aug.CIFAR10_POLICY)
    assert aug.CIFAR10_POLICY[0] == (("Invert", 0.1, 7), ("Contrast", 0.2, 6))
    assert aug.CIFAR10_POLICY[24] == (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, 1))


def test_select_and_switch_strategies_agree():
    ops = jnp.arange(30) % 15  # every operation id twice
    level = jnp.linspace(0.0, 1.0, 30)
    sign = jnp.where(jnp.arange(30) % 4 < 2, 1.0, -1.0)
    x = jnp.asarray(np.concatenate([RGB, RGB, RGB[:6]]))
    select = jax.jit(aug._rgb_step_select)(x, ops, level, sign)
    switch = jax.jit(aug._rgb_step_switch)(x, ops, level, sign)
    np.testing.assert_allclose(select, switch, atol=1e-6)
    assert np.any(np.asarray(select) != np.asarray(x), axis=(1, 2, 3)).sum() >= 20


# --- each operation against PIL ---------------------------------------------------------

PIL_FILL = (128, 128, 128)
_select_step = jax.jit(aug._rgb_step_select)  # compiled once for every PIL case


def _pil_reference(image_u8: np.ndarray, name: str, magnitude: int, sign: int) -> np.ndarray:
    """The operation as the original AutoAugment code applies it with PIL."""
    from PIL import Image, ImageEnhance, ImageOps

    img = Image.fromarray(image_u8)
    level = magnitude / 10
    w, h = img.size
    factor = 0.1 + 1.8 * level
    ops = {
        "ShearX": lambda: img.transform(
            (w, h), Image.AFFINE, (1, sign * 0.3 * level, 0, 0, 1, 0), fillcolor=PIL_FILL
        ),
        "ShearY": lambda: img.transform(
            (w, h), Image.AFFINE, (1, 0, 0, sign * 0.3 * level, 1, 0), fillcolor=PIL_FILL
        ),
        "TranslateX": lambda: img.transform(
            (w, h),
            Image.AFFINE,
            (1, 0, sign * int(level * 10 * w / 32), 0, 1, 0),
            fillcolor=PIL_FILL,
        ),
        "TranslateY": lambda: img.transform(
            (w, h),
            Image.AFFINE,
            (1, 0, 0, 0, 1, sign * int(level * 10 * h / 32)),
            fillcolor=PIL_FILL,
        ),
        "Rotate": lambda: img.rotate(sign * int(level * 30), fillcolor=PIL_FILL),
        "AutoContrast": lambda: ImageOps.autocontrast(img),
        "Equalize": lambda: ImageOps.equalize(img),
        "Invert": lambda: ImageOps.invert(img),
        "Solarize": lambda: ImageOps.solarize(img, 256 - int(level * 256)),
        "Posterize": lambda: ImageOps.posterize(img, 8 - int(level * 4)),
        "Color": lambda: ImageEnhance.Color(img).enhance(factor),
        "Contrast": lambda: ImageEnhance.Contrast(img).enhance(factor),
        "Brightness": lambda: ImageEnhance.Brightness(img).enhance(factor),
        "Sharpness": lambda: ImageEnhance.Sharpness(img).enhance(factor),
    }
    return np.asarray(ops[name](), dtype=np.float32) / 255


# (name, magnitudes, tolerance in 8-bit levels, least fraction of pixels within it).
# PIL truncates each result to 8 bits (1 level) and blends from an 8-bit rounded gray,
# mean or blur (half a level more); kipd keeps floats, hence the tolerances.
# Rotation: PIL computes sin/cos in double precision, so a few pixel centres that fall on
# a pixel boundary round the other way.
PIL_CASES = [
    ("ShearX", (3, 8), 0, 1.0),
    ("ShearY", (3, 8), 0, 1.0),
    ("TranslateX", (3, 9), 0, 1.0),
    ("TranslateY", (3, 9), 0, 1.0),
    ("Rotate", (2, 9), 0, 0.97),
    ("AutoContrast", (0,), 1, 1.0),
    ("Equalize", (0,), 0, 1.0),
    ("Invert", (0,), 0, 1.0),
    ("Solarize", (2, 5, 8), 0, 1.0),
    ("Posterize", (0, 7, 10), 0, 1.0),
    ("Color", (0, 9), 2, 1.0),
    ("Contrast", (0, 6, 9), 2, 1.0),
    ("Brightness", (0, 9), 1, 1.0),
    ("Sharpness", (1, 9), 2, 1.0),
]


@pytest.mark.parametrize(
    "name, magnitudes, tolerance, fraction", PIL_CASES, ids=[c[0] for c in PIL_CASES]
)
def test_operation_matches_pil(name, magnitudes, tolerance, fraction):
    pytest.importorskip("PIL")
    rng = np.random.default_rng(3)
    # Low-contrast images make AutoContrast and Equalize do real work.
    images_u8 = rng.integers(40, 200, size=(2, 16, 16, 3), dtype=np.uint8)
    op = aug._NAMES[name]
    for magnitude in magnitudes:
        for sign in (1, -1):
            n = len(images_u8)
            ours = _select_step(
                jnp.asarray(images_u8 / np.float32(255)),
                jnp.full((n,), op),
                jnp.full((n,), magnitude / 10),
                jnp.full((n,), float(sign)),
            )
            ref = np.stack([_pil_reference(im, name, magnitude, sign) for im in images_u8])
            close = np.abs(np.asarray(ours) - ref) <= (tolerance + 0.01) / 255
            assert close.mean() >= fraction, (name, magnitude, sign, close.mean())


def test_gray_warp_matches_scipy_affine_transform():
    """Keras' ImageDataGenerator: scipy.ndimage.affine_transform, order 1, mode nearest."""
    image = GRAY[0]
    h, w = image.shape[:2]
    for theta_deg, shift in [(7.0, (1.3, -0.6)), (-10.0, (-1.2, 1.2)), (0.0, (0.0, 0.0))]:
        theta = np.deg2rad(theta_deg)
        rotation = np.array(
            [[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]]
        )
        shift_m = np.array([[1, 0, shift[0]], [0, 1, shift[1]], [0, 0, 1]])
        ox, oy = h / 2 - 0.5, w / 2 - 0.5
        offset = np.array([[1, 0, ox], [0, 1, oy], [0, 0, 1]])
        reset = np.array([[1, 0, -ox], [0, 1, -oy], [0, 0, 1]])
        matrix = offset @ rotation @ shift_m @ reset
        ref = scipy.ndimage.affine_transform(
            image[..., 0].astype(np.float64),
            matrix[:2, :2],
            matrix[:2, 2],
            order=1,
            mode="nearest",
        )
        ours = aug._rotate_shift_bilinear(
            jnp.asarray(image), jnp.float32(theta), jnp.asarray(shift, jnp.float32)
        )
        np.testing.assert_allclose(np.asarray(ours)[..., 0], ref, atol=2e-5)
