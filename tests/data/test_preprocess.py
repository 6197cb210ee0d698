"""Standard and regularized-ZCA preprocessing against their defining laws (appendix A),
computed here independently with numpy."""

from __future__ import annotations

import time

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kipd.data as kd

SHAPE = (4, 4, 3)  # d = 48 features


def _correlated_images(n: int, seed: int = 0) -> np.ndarray:
    """Pixels in [0, 1] with strong correlations between features, like real images."""
    rng = np.random.default_rng(seed)
    d = int(np.prod(SHAPE))
    mixing = rng.normal(size=(6, d))
    latent = rng.normal(size=(n, 6))
    x = latent @ mixing + 0.3 * rng.normal(size=(n, d))
    x = 1 / (1 + np.exp(-x / 3))  # squash into (0, 1)
    return x.reshape(n, *SHAPE).astype(np.float32)


def _reference_zca_spectrum(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigen-decomposition of the covariance of layer-normalized, standardized features."""
    flat = x.reshape(len(x), -1).astype(np.float64)
    flat = (flat - flat.mean(1, keepdims=True)) / flat.std(1, keepdims=True)
    flat = (flat - flat.mean(0)) / flat.std(0)
    cov = flat.T @ flat / len(flat)
    return np.linalg.eigh(cov)


@pytest.mark.parametrize("lam", [0.1, 100.0])
def test_zca_whitened_covariance_follows_the_regularized_law(lam):
    x = _correlated_images(300)
    prep = kd.fit_preprocessing(x, "zca", lam)
    white = np.asarray(prep.apply(x), dtype=np.float64).reshape(len(x), -1)
    np.testing.assert_allclose(white.mean(0), 0.0, atol=1e-4)
    cov_white = white.T @ white / len(white)
    s, u = _reference_zca_spectrum(x)
    shrink = s / (s + lam * s.sum() / len(s))  # S / (S + lambda tr(C)/d)
    np.testing.assert_allclose(cov_white, (u * shrink) @ u.T, atol=2e-4)
    np.testing.assert_allclose(prep.eigenvalues, s[::-1], atol=1e-9 * s.max())
    assert prep.regularization == lam


@pytest.mark.parametrize("n", [400, 20], ids=["n>d", "n<d"])
def test_unregularized_zca_whitens_the_data_subspace(n):
    """lambda = 0: identity covariance on the directions the data spans (one fewer than
    the features at most, since layer normalization makes features sum to zero)."""
    x = _correlated_images(n)
    prep = kd.fit_preprocessing(x, "zca", 0.0)
    white = np.asarray(prep.apply(x), dtype=np.float64).reshape(n, -1)
    s, u = _reference_zca_spectrum(x)
    spanned = u[:, s > 1e-9 * s.max()]
    assert spanned.shape[1] == min(n - 1, 47)
    np.testing.assert_allclose(white.T @ white / n, spanned @ spanned.T, atol=3e-3)
    back = np.asarray(prep.invert(prep.apply(x))).reshape(n, -1)
    assert np.all(np.isfinite(back))


def test_constant_images_and_features_do_not_divide_by_zero():
    x = _correlated_images(100)
    x[:5] = 0.5  # constant images: layer norm only centres them
    x[:, 0, 0, :] = 0.25  # ...and, after it, a feature that is constant only up to them
    prep = kd.fit_preprocessing(x, "zca", 0.1)
    assert np.all(np.isfinite(np.asarray(prep.apply(x))))
    standard = kd.fit_preprocessing(np.full((3, 2, 2, 1), 0.7, np.float32))
    np.testing.assert_array_equal(standard.std, [1.0])


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 1000), n=st.sampled_from([2, 17, 40]))
def test_standard_preprocessing_standardizes_each_channel(seed, n):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 3, 3, 3)) * np.array([0.2, 1.0, 0.5]) + [0.1, 0.0, 0.3]
    x = x.astype(np.float32)
    prep = kd.fit_preprocessing(x)
    out = np.asarray(prep.apply(x), dtype=np.float64)
    np.testing.assert_allclose(out.mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(0, 1, 2)), 1.0, rtol=1e-4)
    np.testing.assert_allclose(prep.invert(out), x, atol=1e-6)


def test_save_load_and_npz_embedding(tmp_path):
    x = _correlated_images(100)
    for method in ("standard", "zca"):
        prep = kd.fit_preprocessing(x, method, 0.1)
        prep.save(tmp_path / f"{method}.npz")
        loaded = kd.Preprocessing.load(tmp_path / f"{method}.npz")
        np.testing.assert_array_equal(loaded.apply(x), prep.apply(x))
        np.testing.assert_array_equal(loaded.invert(x), prep.invert(x))
        assert loaded.method == method and loaded.image_shape == SHAPE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["standard.npz", "zca.npz"]
    np.savez(tmp_path / "distilled.npz", support_images=x[:3], **prep.to_dict())
    with np.load(tmp_path / "distilled.npz") as arrays:
        again = kd.Preprocessing.from_dict(arrays)
    assert again.regularization == 0.1
    np.testing.assert_array_equal(again.apply(x), prep.apply(x))
    with pytest.raises(ValueError, match="no preprocessing parameters"):
        kd.Preprocessing.from_dict({"support_images": x})


def test_preprocessing_is_a_pytree_usable_under_jit():
    x = _correlated_images(60)
    prep = kd.fit_preprocessing(x, "zca", 0.1)
    jitted = jax.jit(lambda p, images: p.apply(images))
    np.testing.assert_allclose(jitted(prep, x), prep.apply(x), atol=1e-5)
    leaves = jax.tree_util.tree_leaves(prep)
    assert any(leaf.shape == (48, 48) for leaf in leaves)


def test_shape_and_method_errors():
    prep = kd.fit_preprocessing(_correlated_images(10))
    with pytest.raises(ValueError, match=r"expects \(n, 4, 4, 3\)"):
        prep.apply(np.zeros((2, 4, 4, 1)))
    with pytest.raises(ValueError, match="unknown preprocessing method"):
        kd.fit_preprocessing(_correlated_images(10), "pca")
    with pytest.raises(ValueError, match=">= 0"):
        kd.fit_preprocessing(_correlated_images(10), "zca", -1.0)


def test_paper_defaults():
    assert kd.default_zca_regularization("svhn") == 100.0
    assert kd.default_zca_regularization("CIFAR-10") == 0.1
    assert kd.default_zca_regularization("cifar100") == 0.1
    assert kd.default_zca_regularization("my_images") == 0.1
    assert [
        kd.default_preprocessing(n)
        for n in ("mnist", "fashion_mnist", "svhn", "cifar10", "cifar100")
    ] == ["standard", "standard", "zca", "zca", "zca"]
    rgb = kd.Dataset(
        "mine",
        np.zeros((2, 4, 4, 3), np.float32),
        np.zeros(2, np.int32),
        np.zeros((1, 4, 4, 3), np.float32),
        np.zeros(1, np.int32),
        1,
        ("a",),
    )
    assert kd.default_preprocessing(rgb) == "zca"
    with pytest.raises(ValueError, match="pass the Dataset"):
        kd.default_preprocessing("my_images")


def test_zca_fit_time_is_predicted_from_the_features():
    """O(n d^2) for the covariance, O(d^3) for the eigendecomposition: twice the side is 16
    to 64 times the time; and the prediction is the measured fit's order of magnitude."""
    small, large = kd.zca_fit_seconds(1000, (32, 32, 3)), kd.zca_fit_seconds(1000, (64, 64, 3))
    assert 16 <= large / small <= 64
    x = np.random.default_rng(0).random((600, 16, 16, 3), dtype=np.float32)
    started = time.perf_counter()
    kd.fit_preprocessing(x, "zca", 0.1)
    measured = time.perf_counter() - started
    assert measured / 5 < kd.zca_fit_seconds(600, (16, 16, 3)) < 5 * measured
